"""Build losses and tasks from their names or specs (``focal:gamma=1.0``); specs are parsed as data, never evaluated."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.api.params import loss_defaults
from bench.registry import LOSSES, TASKS

if TYPE_CHECKING:  # the API modules import torch and pandas: building specs and listing plug-ins stay light
    from bench.api.loss import Loss
    from bench.api.task import Task

__all__ = ["default_task_names", "get_loss", "get_task", "loss_defaults", "parse_loss_spec"]


def parse_loss_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``'name:key=value,key=value'`` into the name and the raw parameter strings."""
    name, _, raw = spec.strip().partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Bad loss parameter {item!r} in {spec!r}: expected key=value, e.g. 'focal:gamma=1.0'")
        params[key.strip()] = value.strip()
    return name, params


def _coerce(loss_name: str, key: str, value: str, default: Any) -> Any:
    """Convert a spec string to the type of the parameter's default."""
    try:
        if isinstance(default, bool):
            if value.lower() not in {"true", "false", "1", "0"}:
                raise ValueError(value)
            return value.lower() in {"true", "1"}
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        kind = type(default).__name__
        raise ValueError(f"Loss {loss_name!r}: parameter {key}={value!r} is not a valid {kind}") from None
    return value


def get_loss(spec: str) -> Loss:
    """A constructed loss from a spec such as ``'focal'`` or ``'focal:gamma=1.0'``."""
    name, raw = parse_loss_spec(spec)
    loss_class = LOSSES.get(name)
    defaults = loss_defaults(loss_class)
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "none"
        raise ValueError(f"Loss {name!r} has no parameter {', '.join(unknown)}; its parameters: {valid}")
    return loss_class(**{key: _coerce(name, key, value, defaults[key]) for key, value in raw.items()})


def default_task_names() -> list[str]:
    """The tasks of the default matrix: those that declare ``in_default_matrix``."""
    return [name for name in TASKS.names() if TASKS.get(name).in_default_matrix]


def get_task(name: str) -> Task:
    """A task instance by registered name."""
    return TASKS.get(name)()
