"""lossbench: fine-tune a task x loss matrix with one custom-loss Trainer and report which differences are real."""

from bench.plugins import get_loss, get_task

__all__ = ["get_loss", "get_task"]
