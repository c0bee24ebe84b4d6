"""Where a training run stands between epochs: what a checkpoint saves besides the tensors.

:class:`RunState` is saved in every checkpoint's JSON meta under ``"state"`` with the keys
checkpoints have always had (``epoch``, ``best_val``, ``bad_epochs``, ``history``, ``stopped``;
``partial`` too when the checkpoint was taken inside an epoch), so checkpoints written before this
class existed resume, and new ones are read by older molks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunState"]


@dataclass
class RunState:
    """epoch: the last finished epoch (0: none). best_val: its lowest validation loss so far.
    bad_epochs: epochs in a row without a lower one (early stopping). history: one row of metrics
    per finished epoch (metrics.csv). stopped: early stopping has ended the run."""

    epoch: int = 0
    best_val: float = math.inf
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False

    def to_meta(self, partial: dict[str, Any] | None = None) -> dict[str, Any]:
        """The checkpoint's ``"state"``; ``partial``: how far an unfinished epoch got (a mid-epoch checkpoint)."""
        meta = {"epoch": self.epoch, "best_val": self.best_val, "bad_epochs": self.bad_epochs,
                "history": self.history, "stopped": self.stopped}  # fmt: skip
        return meta if partial is None else {**meta, "partial": partial}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> tuple[RunState, dict[str, Any] | None]:
        """(the state, the unfinished epoch's ``partial`` or None) from a checkpoint's ``"state"``;
        a KeyError, TypeError or ValueError where it is not one."""
        state = cls(int(meta["epoch"]), float(meta["best_val"]), int(meta["bad_epochs"]), list(meta["history"]),
                    bool(meta["stopped"]))  # fmt: skip
        partial = meta.get("partial")
        if partial is not None and not isinstance(partial, dict):
            raise TypeError(f"partial is a {type(partial).__name__}, not an object")
        return state, partial

    def end_epoch(self, epoch: int, val_loss: float, patience: int, row: dict[str, Any]) -> bool:
        """Record the finished ``epoch`` (its validation loss, its metrics ``row``); returns whether
        the loss is the lowest so far. ``patience`` epochs in a row without one stop the run."""
        improved = val_loss < self.best_val
        if improved:
            self.best_val, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
        self.stopped = self.bad_epochs >= patience
        self.epoch = epoch
        self.history.append(row)
        return improved
