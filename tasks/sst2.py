"""SST-2 from GLUE (Socher et al., EMNLP 2013): movie-review sentences and phrases, positive vs negative."""

from bench.registry import TASKS
from tasks.base import HubTask, TaskMetadata


@TASKS.register("sst2")
class Sst2Task(HubTask):
    dataset = "nyu-mll/glue"
    config = "sst2"
    revision = "bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c"
    splits = ("train", "validation")  # GLUE hides the test labels (-1)
    columns = {"sentence": "text"}
    metadata = TaskMetadata(
        problem_type="classification",
        label_names=("negative", "positive"),
        main_metric="accuracy",
        higher_is_better=True,
        source="hf:nyu-mll/glue@bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c:sst2 (train+validation)",
        version="1.1",
        description="GLUE SST-2 movie-review phrases, positive vs negative (~68k, 56% positive; needs the hub once).",
    )
