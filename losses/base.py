"""What a loss module imports: the ``Loss`` base class and its helpers, defined in the core (``bench.api.loss``).

from losses.base import CLASSIFICATION, Loss, check_range, upcast
"""

from bench.api.loss import (
    CLASSIFICATION,
    REGRESSION,
    Loss,
    check_range,
    check_robust_weights,
    regression_predictions,
    regression_targets,
    reverse_cross_entropy,
    upcast,
)
from bench.api.space import Choice, FloatRange, IntRange

__all__ = [
    "CLASSIFICATION",
    "REGRESSION",
    "Choice",
    "FloatRange",
    "IntRange",
    "Loss",
    "check_range",
    "check_robust_weights",
    "regression_predictions",
    "regression_targets",
    "reverse_cross_entropy",
    "upcast",
]
