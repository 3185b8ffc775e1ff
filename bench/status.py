"""The status words of a row of ``runs.csv``, in one place."""

from __future__ import annotations

OK = "ok"  # the run finished: its test metrics are in the row
SKIPPED = "skipped"  # an incompatible (task, loss) pair: a row, never a run
ERROR = "error"  # the run raised (or its worker died); the row has error_type and message
DIVERGED = "diverged"  # the training loss became NaN or infinite; the row has diverged_step

STATUSES = (OK, SKIPPED, ERROR, DIVERGED)
FAILED = (ERROR, DIVERGED)  # runs that did not finish
