"""The status of a row of ``runs.csv``, in one place."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """A row's ``status``: a ``str``, so that the CSV holds the plain word (``ok``) and compares equal to it."""

    OK = "ok"  # the run finished: its test metrics are in the row
    SKIPPED = "skipped"  # an incompatible (task, loss) pair: a row, never a run
    ERROR = "error"  # the run raised (or its worker died); the row has error_type and message
    DIVERGED = "diverged"  # the training loss became NaN or infinite; the row has diverged_step

    def __str__(self) -> str:
        return self.value


STATUSES = tuple(Status)
FAILED = (Status.ERROR, Status.DIVERGED)  # runs that did not finish
