"""NumPy reference backend: the oracle every other backend is tested against."""
from __future__ import annotations

NAME = "numpy"


def unavailable_reason():
    return None
