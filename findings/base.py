"""What a card module imports: the ``Card`` base class and its statistics, defined in the core (``bench.api.card``).

from findings.base import CARDS, HIGHER, LOWER, Card, Comparison
"""

from bench.api.card import HIGHER, LOWER, Card, Comparison, Spread
from bench.registry import CARDS

__all__ = ["CARDS", "HIGHER", "LOWER", "Card", "Comparison", "Spread"]
