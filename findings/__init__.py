"""Finding cards: one module per claim from the literature, discovered automatically (see findings/base.py)."""
