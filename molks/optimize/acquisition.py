"""Batch proposals: qLogEI optimised inside a region where the decoder is trustworthy.

Regions (both inside the bounding box of the starting pool's codes, the box the Grammar VAE
protocol optimises in):

- ``"trust-region"`` (default): a TuRBO-style box around the best point found so far, with
  per-dimension half-widths ``length / 2`` (in units of the bounding box's width) scaled by
  the GP's lengthscales; the length doubles after ``success_tolerance`` batches in a row that
  improve on the best score and halves after ``failure_tolerance`` batches that do not.
- ``"box"``: the whole bounding box.

Trust-region restarts (TuRBO, Eriksson et al. 2019; on by default, ``restarts``): in a long run
the region shrinks around the best point and its proposals decode to molecules already scored, so
the oracle calls per round collapse (measured on ``moses``, celecoxib rediscovery, q = 200: 189 new
calls in the first round, 15 later). The loop restarts the region after a round that

- brought fewer new oracle calls than ``restart_yield`` (default 0.25) of its proposals (the
  proposals the budget left unscored aside), or
- halved its length below ``tr_length_min`` (TuRBO's own trigger; without restarts the length
  stays at the floor, as before).

A restart resets the length to ``tr_length`` and the counters, and re-centres the region on the
best valid point evaluated outside every region abandoned so far (the best point overall if none
lies outside). Not necessarily the best point: the region around it is the one that stopped
yielding new molecules, and the abandoned boxes keep a later restart from returning to it. Not a
fresh draw from the prior either, as TuRBO's restart from a new design would be: that spends oracle
calls on random molecules far from anything good, while the best point outside the exhausted
region starts a new local run from a good molecule (measured on ``moses``, celecoxib: the best
molecule again, at another of its codes; the rounds after brought 46, 48, 36 ... new calls of 50
instead of 0-3). Data are kept (one GP over all of them, as latent-space BO with TuRBO does, e.g.
LOL-BO). From then on the region follows its own local run: its centre is
the best point of the run (the restart's centre, then any better point proposed in it), a batch
succeeds when it beats that, and qLogEI's incumbent is the largest posterior mean over the local
run's points. Before the first restart everything is as it was without restarts. Every restart is
recorded in the region's state (:meth:`TrustRegion.to_dict`, saved with the run, so a resumed run
continues identically) and in the iteration's record.

Batch strategies for the ``q`` proposals:

- ``"joint"`` (default): one L-BFGS-B run over all q x D coordinates of the joint qLogEI
  from a few restarts. The joint acquisition accounts for the batch's correlations by
  itself; one q x D problem costs far less than q sequential ones.
- ``"sequential"``: BoTorch's greedy sequential qLogEI (q problems of D coordinates, each
  conditioning on the points already chosen): the plain baseline.

The incumbent ``best_f`` is by default the largest posterior mean over the evaluated codes,
not the largest observed score: scores are noisy functions of the codes (the GP's noise
term is large), and improving on the luckiest observation is so improbable that the joint
qLogEI becomes flat and L-BFGS stops at its starting point.

Measured on one fitted GP (2,000 MOSES molecules, 56-D codes of a small molks GMM model,
q=50, 2-core CPU, one thread), joint qLogEI of the batch under a 1,024-sample judge:
exact GP, trust region: joint (2 restarts, 64 raw samples) 9 s, value 0.001; sequential
(4 restarts, 256 raw samples) 310 s, value -0.105. SVGP: joint 1.2 s, -0.44; sequential
71 s, -0.58. With ``best_f`` the best observed score instead, the joint batch scored -43.9
against -6.3 for the sequential one. Regions, two seeds x two iterations x 50 proposals
(``benchmarks/bo_logp.py``): trust region: per-run best 1.96-2.05, valid 0.81-0.85, average
valid score -1.41; whole box: per-run best 1.45, valid 0.74, average -1.98.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import gpytorch
import torch
from botorch.acquisition.logei import qLogExpectedImprovement
from botorch.exceptions.warnings import OptimizationWarning
from botorch.models.model import Model, ModelList
from botorch.optim import optimize_acqf
from botorch.sampling.normal import SobolQMCNormalSampler
from torch import Tensor

from molks.errors import InputError

__all__ = [
    "REGIONS",
    "STRATEGIES",
    "AcquisitionConfig",
    "AcquisitionError",
    "Proposal",
    "TrustRegion",
    "best_posterior_mean",
    "bounding_box",
    "lengthscales",
    "propose",
    "restart_center",
    "trust_region_bounds",
]

REGIONS = ("box", "trust-region")
STRATEGIES = ("joint", "sequential")
BEST_F = ("posterior-mean", "observed")
DTYPE = torch.float64


class AcquisitionError(InputError):
    """Bad acquisition settings (unknown region or strategy, non-positive sizes)."""


@dataclass(frozen=True)
class AcquisitionConfig:
    """How proposals are made.

    q: proposals per iteration. region: one of REGIONS. strategy: one of STRATEGIES.
    num_restarts / raw_samples: L-BFGS starts, and the random q-batches they are picked from. 32
        raw samples, not 64: the same judged qLogEI (1.411 on six runs with 30 iterations,
        ``benchmarks/proposal_speed.py``) in 6.8 s instead of 7.7 at load 3. Not part of a run's identity.
    mc_samples: quasi-Monte-Carlo samples of the joint posterior in qLogEI.
    maxiter: L-BFGS-B iterations per start. 30: on the states of six of the ten beam logP runs (2,250 codes,
        q = 50, ``benchmarks/proposal_speed.py``) the batch's qLogEI under a 1,024-sample judge is
        the same at 30 and 50 (mean 1.411; 1.410 at 20), and at most 0.014 below 100's on four of
        them (one run: 0.931 after 1 iteration, 1.327 after 10, 1.330 after 30 and 100), while 30
        takes a third of 100's time (7.7 s against 22.6 s per proposal at load 3).
        Not part of a run's identity (``molks.optimize.state.EFFORT_SETTINGS``).
    margin: the bounding box is widened by this fraction of its width on each side.
    best_f: the incumbent qLogEI improves on: "posterior-mean" (largest posterior mean over the
        evaluated codes) or "observed" (largest observed value).
    tr_length / tr_length_min / tr_length_max: trust-region side lengths (box-width units).
    success_tolerance / failure_tolerance: batches in a row before expanding / shrinking.
    restarts: restart the trust region when a round yields few new oracle calls or its length
        falls below ``tr_length_min`` (see the module's docstring); False: the length stays at the
        floor and the region around the best point, the rule before restarts.
    restart_yield: the fraction of a round's proposals, in [0, 1], that must be new oracle calls
        (items not scored before) for the region not to restart; 0 restarts only on collapse.
    """

    q: int = 50
    region: str = "trust-region"
    strategy: str = "joint"
    num_restarts: int = 2
    raw_samples: int = 32
    mc_samples: int = 128
    maxiter: int = 30
    margin: float = 0.0
    best_f: str = "posterior-mean"
    tr_length: float = 0.4
    tr_length_min: float = 0.05
    tr_length_max: float = 1.6
    success_tolerance: int = 2
    failure_tolerance: int = 2
    restarts: bool = True
    restart_yield: float = 0.25

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise AcquisitionError(f"unknown region {self.region!r}; choose one of {REGIONS}")
        if self.strategy not in STRATEGIES:
            raise AcquisitionError(f"unknown batch strategy {self.strategy!r}; choose one of {STRATEGIES}")
        for name in ("q", "num_restarts", "raw_samples", "mc_samples", "maxiter", "success_tolerance", "failure_tolerance"):
            if int(getattr(self, name)) < 1:
                raise AcquisitionError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.best_f not in BEST_F:
            raise AcquisitionError(f"unknown best_f {self.best_f!r}; choose one of {BEST_F}")
        if self.margin < 0:
            raise AcquisitionError(f"margin must be >= 0, got {self.margin}")
        if not 0 < self.tr_length_min <= self.tr_length <= self.tr_length_max:
            raise AcquisitionError(
                f"need 0 < tr_length_min <= tr_length <= tr_length_max, got "
                f"{self.tr_length_min}, {self.tr_length}, {self.tr_length_max}"
            )
        if not 0.0 <= self.restart_yield <= 1.0:
            raise AcquisitionError(f"restart_yield must lie in [0, 1] (a fraction of the proposals), got {self.restart_yield}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share: all of them, but without the restart settings when
        restarts are off, as runs saved before restarts existed have them (they resume with restarts off)."""
        d = self.to_dict()
        if not self.restarts:
            del d["restarts"], d["restart_yield"]
        return d


@dataclass
class TrustRegion:
    """TuRBO's state: side length (box-width units), the current runs of successes and failures,
    and where the region is.

    ``center``: the row (index into the evaluated codes) of the region's centre, the best point of
    its local run; None (before any restart, and in states saved before restarts): the best point
    evaluated. ``start``: the number of evaluated points when the local run began (None: the whole
    run is one). ``restarts``: one record per restart (:meth:`restart`): the iteration, why, the
    length abandoned, the new centre, and the bounds [2][D] of the region abandoned (the next
    centres lie outside them).
    """

    length: float
    successes: int = 0
    failures: int = 0
    history: list[float] = field(default_factory=list)  # length used at each iteration
    center: int | None = None
    start: int | None = None
    restarts: list[dict[str, Any]] = field(default_factory=list)

    def update(self, improved: bool, config: AcquisitionConfig) -> bool:
        """After a batch: count it, then expand or shrink (TuRBO's rule, per batch). Returns whether
        the region collapsed: halving took it below ``tr_length_min`` (TuRBO restarts then; the
        length is held at the floor until :meth:`restart` is called)."""
        if improved:
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1
        if self.successes >= config.success_tolerance:
            self.length, self.successes = min(2.0 * self.length, config.tr_length_max), 0
        elif self.failures >= config.failure_tolerance:
            halved = self.length / 2.0
            self.length, self.failures = max(halved, config.tr_length_min), 0
            return halved < config.tr_length_min
        return False

    def center_index(self, Y: Tensor) -> int:
        """The row of the centre among values Y [N] (one target): the local run's best, or the best of Y."""
        return int(torch.argmax(Y)) if self.center is None else self.center

    def local_rows(self, n: int) -> list[int] | None:
        """Rows of the current local run among ``n`` evaluated points (its centre and the points
        evaluated since it began); None when the whole run is one."""
        if self.center is None or self.start is None:
            return None
        return [self.center, *(i for i in range(self.start, n) if i != self.center)]

    def follow(self, Y: Tensor, first: int) -> None:
        """After a round appended rows ``first`` .. N-1 to Y [N] (one target): a local run's centre
        moves to the best of them if it beats the centre (before any restart the centre is the best
        point anyway)."""
        if self.center is None or first >= len(Y):
            return
        best = first + int(torch.argmax(Y[first:]))
        if float(Y[best]) > float(Y[self.center]):
            self.center = best

    def abandoned(self) -> list[Tensor]:
        """The bounds [2, D] of every region a restart abandoned."""
        return [torch.tensor(r["bounds"], dtype=DTYPE) for r in self.restarts if "bounds" in r]

    def restart(
        self, config: AcquisitionConfig, *, iteration: int, reason: str, bounds: Tensor, center: int | None, n_rows: int
    ) -> dict[str, Any]:
        """Restart: the length back to ``tr_length``, the counters to zero, a new local run from row
        ``center`` (None: around the best point, as before any restart) that begins at ``n_rows``
        points; ``bounds`` [2, D] are those of the region abandoned. Returns the record saved (without
        the bounds)."""
        record = {"iteration": iteration, "reason": reason, "length": self.length, "center": center}
        self.restarts.append({**record, "bounds": bounds.tolist()})
        self.length, self.successes, self.failures = config.tr_length, 0, 0
        self.center, self.start = center, (None if center is None else n_rows)
        return record

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrustRegion:
        """The region of ``to_dict``; dicts saved before restarts (length, counters, history) too."""
        return cls(**data)


def restart_center(X: Tensor, Y: Tensor, valid: Tensor, abandoned: list[Tensor]) -> int:
    """The row of the best valid point of X [N, D] (values Y [N], ``valid`` [N] bool) outside every
    abandoned region (bounds [2, D] each); the best valid point (any point, if none is valid) when
    every one lies inside."""
    X = torch.as_tensor(X, dtype=DTYPE)
    Y = torch.as_tensor(Y, dtype=DTYPE).reshape(-1)
    inside = torch.zeros(len(X), dtype=torch.bool)
    for bounds in abandoned:
        inside |= ((X >= bounds[0]) & (X <= bounds[1])).all(dim=1)
    allowed = valid & ~inside
    if not bool(allowed.any()):
        allowed = valid if bool(valid.any()) else torch.ones_like(valid)
    return int(torch.argmax(torch.where(allowed, Y, torch.tensor(-math.inf, dtype=DTYPE))))


def bounding_box(X: Tensor, margin: float = 0.0) -> Tensor:
    """Bounds [2, D] of codes X [N, D], widened by ``margin`` x width on each side (never zero-width)."""
    X = torch.as_tensor(X, dtype=DTYPE)
    if X.ndim != 2 or len(X) == 0:
        raise AcquisitionError(f"need codes [N, D] with N >= 1, got {list(X.shape)}")
    low, high = X.min(dim=0).values, X.max(dim=0).values
    width = (high - low).clamp_min(1e-6)
    return torch.stack([low - margin * width, high + margin * width])


def lengthscales(model: Model, dim: int) -> Tensor:
    """The GP kernel's lengthscales [D] (ones if the kernel has none, e.g. a custom model); of a
    ``ModelList`` (a GP per objective) their geometric mean over its models."""
    if isinstance(model, ModelList):
        return torch.stack([lengthscales(m, dim) for m in model.models]).log().mean(dim=0).exp()
    for module in model.modules():
        ls = getattr(module, "lengthscale", None)
        if isinstance(ls, Tensor) and ls.numel() in (1, dim):
            return ls.detach().reshape(-1).expand(dim).to(DTYPE)
    return torch.ones(dim, dtype=DTYPE)


def trust_region_bounds(center: Tensor, length: float, box: Tensor, model: Model) -> Tensor:
    """Bounds [2, D] of the trust region around ``center`` [D], clipped to ``box`` [2, D].

    Per-dimension widths follow TuRBO: lengthscales (in the GP's normalised inputs) divided by
    their geometric mean, so the region has the volume of a cube of side ``length`` and is
    longer where the function varies slowly.
    """
    dim = box.shape[1]
    ls = lengthscales(model, dim)
    weights = ls / ls.log().mean().exp()
    width = box[1] - box[0]
    half = 0.5 * length * weights * width
    low = torch.maximum(center - half, box[0])
    high = torch.minimum(center + half, box[1])
    return torch.stack([low, high])


@torch.no_grad()
def best_posterior_mean(model: Model, X: Tensor, batch: int = 4096) -> Tensor:
    """Largest posterior mean over the evaluated codes: the incumbent EI improves on under noise."""
    return torch.cat([model.posterior(X[i : i + batch]).mean.reshape(-1) for i in range(0, len(X), batch)]).max()


@dataclass
class Proposal:
    """Proposed codes [q, D], the region they were optimised in [2, D], and diagnostics."""

    X: Tensor
    bounds: Tensor
    acq_value: float  # joint qLogEI of the whole batch under the model (same sampler seed)
    seconds: float


def propose(
    model: Model,
    X: Tensor,
    Y: Tensor,
    box: Tensor,
    config: AcquisitionConfig,
    seed: int,
    trust_region: TrustRegion | None = None,
    max_cholesky: int = 10_000,
) -> Proposal:
    """q new codes maximising qLogEI over the best value in Y [N], inside the configured region.

    X [N, D] and Y [N] are the evaluated codes and their values to maximise (the trust region
    is centred on the best of them, or after a restart on its local run's centre,
    :class:`TrustRegion`); box [2, D] is the bounding box of the starting pool.
    ``seed`` fixes the QMC sampler and the random starts, so a proposal is reproducible.
    """
    started = time.perf_counter()
    X = torch.as_tensor(X, dtype=DTYPE)
    Y = torch.as_tensor(Y, dtype=DTYPE).reshape(-1)
    box = torch.as_tensor(box, dtype=DTYPE)
    local: list[int] | None = None  # rows whose best (largest posterior mean) is qLogEI's incumbent; None: all
    if config.region == "trust-region":
        if trust_region is None:
            raise AcquisitionError("region 'trust-region' needs a TrustRegion state")
        center = trust_region.center_index(Y)
        if not 0 <= center < len(X):
            raise AcquisitionError(f"the trust region's centre is row {center}, but only {len(X)} points are evaluated")
        bounds = trust_region_bounds(X[center], trust_region.length, box, model)
        local = trust_region.local_rows(len(X))  # a restarted region improves on its own run's best, as TuRBO's local runs do
    else:
        bounds = box.clone()
    torch.manual_seed(seed)
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([config.mc_samples]), seed=seed)
    with gpytorch.settings.max_cholesky_size(max_cholesky), warnings.catch_warnings():
        X_inc, Y_inc = (X, Y) if local is None else (X[local], Y[local])
        best_f = Y_inc.max() if config.best_f == "observed" else best_posterior_mean(model, X_inc)
        acqf = qLogExpectedImprovement(model, best_f=best_f, sampler=sampler)
        # L-BFGS-B stopping at maxiter is expected with a small budget; it is not a failure.
        warnings.simplefilter("ignore", OptimizationWarning)
        candidates, _ = optimize_acqf(
            acqf,
            bounds=bounds,
            q=config.q,
            num_restarts=config.num_restarts,
            raw_samples=config.raw_samples,
            sequential=config.strategy == "sequential",
            options={"maxiter": config.maxiter, "seed": seed, "batch_limit": config.num_restarts},
            retry_on_optimization_warning=False,
        )
        with torch.no_grad():
            value = float(acqf(candidates.unsqueeze(0)))
    candidates = torch.maximum(torch.minimum(candidates.detach(), bounds[1]), bounds[0])
    return Proposal(candidates, bounds, value if math.isfinite(value) else float("-inf"), time.perf_counter() - started)
