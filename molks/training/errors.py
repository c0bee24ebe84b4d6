"""The error of training, below both the specification (:mod:`molks.training.spec`) and the
trainer (:mod:`molks.training.trainer`), so that neither imports the other to raise it."""

from __future__ import annotations

from molks.errors import InputError

__all__ = ["TrainingError"]


class TrainingError(InputError):
    """Training cannot start or continue (bad options, mismatched checkpoint or data)."""
