"""The saved state of an optimisation run (``state.safetensors``): the source of truth for resuming
it and for rendering its report.

Every value in it is a value to maximise: the target's direction is applied once, when scores
become values (:meth:`molks.optimize.targets.Target.objective`), and the rows keep the scores as
the target gave them, for the report. A run of several targets
(:mod:`molks.optimize.multiobjective`) has values [N, M], rows with each target's score under its
name, and ``meta["objectives"]``: the targets, their directions and the reference point of the
hypervolume, fixed when the run started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from molks.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["STATE_FILE", "STATE_VERSION", "OptimizationState"]

STATE_FILE = "state.safetensors"
STATE_VERSION = 1


@dataclass
class OptimizationState:
    """Everything evaluated so far; ``rows`` align with ``X`` and ``Y``.

    X: [N, D] float64 codes. Y: [N] float64 values to maximise (an invalid proposal: the fill
    value); [N, M] for M targets optimised together. box: [2, D] the bounding box of the pool's codes. rows: per code its iteration
    (0 = the starting pool), string, valid, and the target's named score terms ("score" and any
    others; none when invalid). meta: identity, settings, completed iterations, fill value, trust
    region, timings, held-out metrics. gp: the last fit's hyperparameters (a warm start).
    """

    X: torch.Tensor
    Y: torch.Tensor
    box: torch.Tensor
    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    gp: dict[str, torch.Tensor] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        tensors = {"X": self.X, "Y": self.Y, "box": self.box, **{f"gp.{k}": v for k, v in self.gp.items()}}
        save_checkpoint(path, tensors, {**self.meta, "rows": self.rows})

    @classmethod
    def load(cls, path: Path) -> OptimizationState:
        tensors, meta, _ = load_checkpoint(path, finite=False)  # a target may score invalid items -inf
        try:
            rows = meta.pop("rows")
            gp = {k[len("gp."):]: v for k, v in tensors.items() if k.startswith("gp.")}
            state = cls(tensors["X"], tensors["Y"], tensors["box"], rows, meta, gp)
        except KeyError as err:
            raise CheckpointError(f"{path}: not an optimisation state (missing {err})") from None
        if meta.get("version") != STATE_VERSION or len(rows) != len(state.X) or len(state.Y) != len(state.X):
            raise CheckpointError(f"{path}: inconsistent or unsupported optimisation state")
        return state

    @property
    def objectives(self) -> dict[str, Any] | None:
        """A multi-objective run's targets, directions and reference point (None: one target)."""
        return self.meta.get("objectives")

    def ranked(self, *, pool: bool) -> list[dict[str, Any]]:
        """The valid rows of the starting pool (``pool=True``) or of the proposals, best first
        (highest value; ties: the earlier iteration, then the earlier row). One target only: several
        have a Pareto front instead (:mod:`molks.optimize.report`)."""
        if self.Y.ndim != 1:
            raise ValueError("ranked: a run of several targets has no single best; see its Pareto front")
        values = self.Y.tolist()
        kept = [i for i, row in enumerate(self.rows) if row["valid"] and (row["iteration"] == 0) == pool]
        return [self.rows[i] for i in sorted(kept, key=lambda i: (-values[i], self.rows[i]["iteration"]))]

    def best(self, *, pool: bool) -> dict[str, Any] | None:
        """The best valid row of the pool or of the proposals (see :meth:`ranked`); None if none."""
        ranked = self.ranked(pool=pool)
        return ranked[0] if ranked else None

    def term_names(self) -> list[str]:
        """The target's score terms besides "score", in the order it gives them (the extra columns
        of candidates.csv); read from the rows, so that states of every version answer."""
        names: dict[str, None] = {}
        for row in self.rows:
            names.update(dict.fromkeys(k for k in row if k not in _ROW_FIELDS))
        return list(names)


_ROW_FIELDS = ("iteration", "string", "valid", "score", "failure")  # "failure": why the target failed on it
