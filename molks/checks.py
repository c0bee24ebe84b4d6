"""Predicates for checking option values before anything runs (training options, regulariser options).

Kept free of heavy imports: the command line checks options before it imports torch.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["is_int", "is_number"]


def is_int(value: Any) -> bool:
    """An integer, not a bool (``True`` is an int to Python, never to a user)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
