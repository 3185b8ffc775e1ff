"""The columns of a row of ``runs.csv``, in groups, in one place: the row builder (``bench.rows``) writes them in
this order, the results store puts them first, and the report reads the groups by name.

- identity: which run the row is (``run_id``, the cell of the matrix) and how it ended (``status``);
- description: the task's and loss's names in other forms (the task without stressors, each stressor's value, the
  loss spec with its non-default parameters, the task's baseline loss);
- settings: every field of ``TrainConfig``, and the protocol they make;
- environment: library versions, commit, hardware and torch threads (``bench.environment``), and the time.

A finished run adds its results (``train_*``, ``test_*``, costs), a failed one ``error_type`` and ``message``.
"""

from __future__ import annotations

from dataclasses import fields

from bench import environment
from bench.config import TrainConfig

IDENTITY_COLUMNS = (
    "run_id",
    "status",
    "task",
    "task_version",
    "problem_type",
    "main_metric",
    "loss",
    "loss_params",
    "seed",
)
STRESSOR_PREFIX = "stress_"  # stress_<name>: the value of each stressor of the task spec
DESCRIPTION_COLUMNS = ("task_base", "stressors", "loss_spec", "baseline_loss")
SETTING_COLUMNS = (*(field.name for field in fields(TrainConfig)), "protocol")
ENVIRONMENT_COLUMNS = (*environment.ENVIRONMENT_COLUMNS, "timestamp")
VERSION_COLUMNS = environment.VERSION_COLUMNS  # the Python and library versions among them
LEADING_COLUMNS = (*IDENTITY_COLUMNS, *SETTING_COLUMNS)  # first in runs.csv, in this order
