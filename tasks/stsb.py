"""STS-B from GLUE (Cer et al., SemEval 2017): similarity of two sentences, 0 (unrelated) to 5 (same meaning)."""

from bench.registry import TASKS
from tasks.base import HubTask, TaskMetadata


@TASKS.register("stsb")
class StsbTask(HubTask):
    dataset = "nyu-mll/glue"
    config = "stsb"
    revision = "bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c"
    splits = ("train", "validation")  # GLUE hides the test labels (-1)
    metadata = TaskMetadata(
        problem_type="regression",
        text_fields=("sentence1", "sentence2"),
        main_metric="spearman",
        higher_is_better=True,
        source="hf:nyu-mll/glue@bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c:stsb (train+validation)",
        version="1.1",
        description="GLUE STS-B sentence pairs scored for similarity, 0..5 (~7.2k pairs; needs the hub once).",
    )
