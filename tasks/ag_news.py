"""AG News (Zhang et al., NeurIPS 2015): news titles and descriptions in 4 topics."""

from bench.registry import TASKS
from tasks.base import HubTask, TaskMetadata


@TASKS.register("ag_news")
class AgNewsTask(HubTask):
    dataset = "fancyzhx/ag_news"
    revision = "eb185aade064a813bc0b7f42de02595523103ca4"
    metadata = TaskMetadata(
        problem_type="classification",
        label_names=("World", "Sports", "Business", "Sci/Tech"),
        main_metric="accuracy",
        higher_is_better=True,
        source="hf:fancyzhx/ag_news@eb185aade064a813bc0b7f42de02595523103ca4 (train+test)",
        version="1.1",
        description="AG News articles in 4 balanced topics (127.6k before cleaning; needs the hub once).",
    )
