"""Loss plug-ins: one module per loss, discovered automatically (see losses/base.py)."""
