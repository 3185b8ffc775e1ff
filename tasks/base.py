"""What a task module imports: ``Task``, ``TaskMetadata`` and the generic sources ``HubTask`` and ``FileTask``,
defined in the core (``bench.api.task`` and ``bench.api.task_sources``).

    from tasks.base import FileTask, TaskMetadata
"""

from bench.api.task import (
    BASELINE_LOSS_BY_PROBLEM_TYPE,
    F32_MAX,
    SPLITS,
    ProblemType,
    Task,
    TaskMetadata,
    default_baseline_loss,
    package_file,
)
from bench.api.task_sources import (
    COMPRESSIONS,
    HUB_PROBE_TIMEOUT_S,
    DatasetUnavailableError,
    FileTask,
    HubTask,
    hub_unavailable_reason,
)

__all__ = [
    "BASELINE_LOSS_BY_PROBLEM_TYPE",
    "COMPRESSIONS",
    "F32_MAX",
    "HUB_PROBE_TIMEOUT_S",
    "SPLITS",
    "DatasetUnavailableError",
    "FileTask",
    "HubTask",
    "ProblemType",
    "Task",
    "TaskMetadata",
    "default_baseline_loss",
    "hub_unavailable_reason",
    "package_file",
]
