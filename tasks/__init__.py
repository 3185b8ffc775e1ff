"""Task plug-ins: one module per task, discovered automatically (see tasks/base.py)."""
