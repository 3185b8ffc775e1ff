"""A loss's hyper-parameters: the keyword-only arguments of its constructor and their defaults.

Kept apart from ``bench.api.loss`` (which imports torch) so that building specs and listing plug-ins stay light.
"""

from __future__ import annotations

import inspect
from typing import Any


def loss_defaults(loss_class: type) -> dict[str, Any]:
    """Keyword-only hyper-parameters of a loss class and their defaults, read from its signature."""
    signature = inspect.signature(loss_class.__init__)
    return {p.name: p.default for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
