"""Several objectives at once: a GP per objective, qLogNEHVI batches, the Pareto front and its hypervolume.

``molks optimize --target logp --target qed --target sa`` runs the loop of :mod:`molks.optimize.loop`
with these parts in place of the single-objective ones:

- :class:`Objectives`: two or three targets scored together, one
  :class:`~molks.optimize.guard.TargetRunner` each (a user target keeps its worker process and its
  timeout). A string's row holds each target's score under the target's name, and its values to
  maximise are each target's :meth:`~molks.optimize.targets.Target.objective` (a minimised target,
  such as ``sa``, negated). A string is one oracle call however many targets score it.
- :func:`fit_surrogates`: one GP per objective (:func:`~molks.optimize.surrogate.fit_surrogate`,
  the single-objective settings) in a BoTorch ``ModelListGP``.
- :func:`propose_pareto`: BoTorch's ``qLogNoisyExpectedHypervolumeImprovement`` over the evaluated
  codes (``prune_baseline``, ``cache_root``), with ``PARETO_MC_SAMPLES`` QMC samples. The joint
  q-batch's inclusion-exclusion has 2^q - 1 terms, so ``--strategy joint`` (default) builds the
  batch in chunks of ``PARETO_CHUNK`` codes, each optimised jointly given the chunks before it as
  pending points; ``--strategy sequential`` is BoTorch's sequential greedy, one code at a time. The
  region is the trust region (centred on the evaluated point of largest exclusive hypervolume
  contribution, as MORBO centres its regions; it grows and shrinks with the hypervolume) or the
  whole box.
- :func:`reference_point`: BoTorch's ``infer_reference_point`` of the starting pool's Pareto front
  (its nadir lowered by 10% of the front's range in each objective), fixed when a run starts and
  saved with it, so a resumed run measures against the same point.
- :func:`pareto_mask`, :func:`hypervolume`, :func:`contributions`: BoTorch's ``is_non_dominated``
  and ``Hypervolume`` on values to maximise.

Where a proposal's time goes (``moses``, logp/qed/sa, pool 300, q = 20, first iteration, one torch
thread on a 2-core CPU at load 3-7, ``cProfile``): sequential greedy with 128 samples took 272 s:
20 L-BFGS runs of ~80 evaluations of qLogNEHVI (posterior of the pruned baseline and the new code
~100 s, backward ~45 s, the fused hypervolume kernel ~7 s), 20 x 128 box decompositions of the
sampled fronts (one per sample each time a pending code is added: ~85 s), the random starts
~37 s. Chunks of 4 need 5 decompositions and ~530 evaluations in all. Same fitted GPs and region,
the batch judged by one 64-sample estimate of its joint expected hypervolume improvement:
sequential, 128 samples 1.862 (220 s in the loop); chunks of 4: 128 samples 1.835 in 136 s, 32
samples 1.823 in 71 s; chunks of 5, 32 samples 1.787 in 69 s; qLogNParEGO (a random Chebyshev
scalarisation per chunk of 4, 64 samples) 1.516 in 47 s, one scalarisation for all 20 1.367 in
6 s. Three iterations of 20 (``benchmarks/multiobjective.py``): sequential, 128 samples: proposal
220 / 387 / 362 s, hypervolume 0.687 / 0.728 / 0.779; chunks of 4, 32 samples: 66 / 96 / 159 s,
0.791 / 0.824 / 0.824 (one seed). Still far from 10 s: most of what remains is the ~500
qLogNEHVI evaluations (~0.1 s each at that load), and the three GP fits take ~20 s besides.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

import gpytorch
import torch
from botorch.acquisition.multi_objective.logei import (
    qLogNoisyExpectedHypervolumeImprovement,
)
from botorch.exceptions.warnings import OptimizationWarning
from botorch.models import ModelListGP
from botorch.models.model import Model, ModelList
from botorch.optim import optimize_acqf
from botorch.sampling.normal import SobolQMCNormalSampler
from botorch.utils.multi_objective.hypervolume import Hypervolume, infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated
from torch import Tensor

from molks.errors import InputError
from molks.optimize.acquisition import (
    AcquisitionConfig,
    Proposal,
    TrustRegion,
    trust_region_bounds,
)
from molks.optimize.guard import DEFAULT_TIMEOUT, Scores, TargetRunner, open_target
from molks.optimize.surrogate import Surrogate, SurrogateConfig, fit_surrogate
from molks.optimize.targets import Target, TargetError, Terms

__all__ = [
    "MAX_OBJECTIVES",
    "MultiObjectiveError",
    "Objectives",
    "SurrogateList",
    "check_target_names",
    "contributions",
    "fit_surrogates",
    "hypervolume",
    "open_objectives",
    "pareto_mask",
    "propose_pareto",
    "reference_point",
]

MAX_OBJECTIVES = 3
"""Most targets of one run: the box decompositions of qLogNEHVI grow fast with the objectives."""
REFERENCE_SCALE = 0.1
"""The reference point lies this fraction of the pool front's range below its nadir (BoTorch's default)."""
REFERENCE_RULE = "infer_reference_point of the starting pool's Pareto front: its nadir minus 0.1 x its range per objective"
PARETO_CHUNK = 4
"""Codes optimised jointly per step of a "joint" batch: 2^4 - 1 = 15 inclusion-exclusion terms per
sample and cell, and q / 4 box decompositions of the sampled fronts instead of q (measurements in
the module's docstring)."""
PARETO_MC_SAMPLES = 32
"""QMC samples of qLogNEHVI (``AcquisitionConfig.mc_samples`` is qLogEI's). Each costs a box
decomposition of its sampled front per chunk and a share of every evaluation; 32 gave batches
within 1% of 128's in half the time (module docstring)."""
MAX_CHUNK = 8
"""Most codes of one joint step: its inclusion-exclusion has 2^chunk - 1 terms per sample and cell."""
DTYPE = torch.float64


class MultiObjectiveError(InputError):
    """Bad targets for a multi-objective run (too few, too many, one named twice)."""


class Objectives:
    """Two or three targets scored together, runner-like (``score``, ``check``, ``exhausted``,
    ``stopping_error``, ``close``), so that the loop's scoring, oracle ledger and resuming serve
    both kinds of run. Made by :func:`open_objectives`.

    ``name``: the targets' names, in order; ``maximize``: each one's direction.
    """

    def __init__(self, runners: Sequence[TargetRunner]) -> None:
        self.runners = list(runners)

    @property
    def target(self) -> Objectives:
        """Itself: the loop asks a runner for its target's name and direction."""
        return self

    @property
    def name(self) -> list[str]:
        return [r.target.name for r in self.runners]

    @property
    def maximize(self) -> list[bool]:
        return [r.target.maximize for r in self.runners]

    def check(self, texts: Sequence[str], n: int = 2) -> None:
        for runner in self.runners:
            runner.check(texts, n)

    def score(self, texts: Sequence[str], processes: int | None = 1, call_size: int | None = None) -> Scores:
        """Every target's score of ``texts``: terms ``{name: score, ...}`` per text, None where any
        target has no usable score (its failure, named by the target, kept)."""
        texts = list(texts)
        parts = [runner.score(texts, processes, call_size) for runner in self.runners]
        merged = Scores()
        for i in range(len(texts)):
            terms = [p.terms[i] for p in parts]
            failure = next((_named(name, p.failures[i]) for name, p in zip(self.name, parts) if p.failures[i] is not None), None)
            merged.terms.append(None if any(t is None for t in terms) else
                                {name: t["score"] for name, t in zip(self.name, terms) if t is not None})  # fmt: skip
            merged.failures.append(failure)
        for p in parts:
            merged.kinds.update(p.kinds)
            merged.failed_calls.extend(p.failed_calls)
        return merged

    def values(self, scored: Sequence[Terms | None]) -> list[list[float] | None]:
        """Values to maximise [M] per scored text (None: no usable score): each target's objective."""
        out: list[list[float] | None] = []
        for terms in scored:
            if terms is None:
                out.append(None)
                continue
            row = [r.target.objective([terms[name]])[0] for name, r in zip(self.name, self.runners)]
            out.append(None if any(v is None for v in row) else [float(v) for v in row if v is not None])
        return out

    def fill_values(self, Y: Tensor) -> list[float]:
        """The values [M] an invalid proposal gets: per objective the target's invalid score, or the
        worst value of the starting pool ``Y`` [N, M] (as the single-objective loop does)."""
        worst = Y.min(dim=0).values.tolist()
        return [w if r.target.invalid_score is None else float(r.target.objective([None])[0])  # type: ignore[arg-type]
                for w, r in zip(worst, self.runners)]  # fmt: skip

    @property
    def exhausted(self) -> bool:
        return any(r.exhausted for r in self.runners)

    def stopping_error(self, last_reason: str, where: str = "") -> TargetError:
        runner = next((r for r in self.runners if r.exhausted), self.runners[0])
        return runner.stopping_error(last_reason, where)

    def close(self) -> None:
        for runner in self.runners:
            runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _named(name: str, failure: str) -> str:
    return failure if failure.startswith("target ") else f"target {name!r}: {failure}"


def check_target_names(names: Sequence[str]) -> list[str]:
    """``names`` as a list, or a :class:`MultiObjectiveError`: 2 to ``MAX_OBJECTIVES`` distinct names."""
    names = list(names)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise MultiObjectiveError(f"--target {repeated[0]} is given more than once: name each objective once")
    if not 2 <= len(names) <= MAX_OBJECTIVES:
        raise MultiObjectiveError(
            f"a multi-objective run takes 2 to {MAX_OBJECTIVES} targets, got {len(names)} ({', '.join(names)})"
        )
    return names


def open_objectives(targets: Sequence[Target | str], timeout: float = DEFAULT_TIMEOUT) -> Objectives:
    """:class:`Objectives` of 2 to ``MAX_OBJECTIVES`` distinct targets (names as ``--target``
    takes them, ``"sa"`` included, or :class:`Target` objects); close it when done."""
    check_target_names([t if isinstance(t, str) else t.name for t in targets])
    runners: list[TargetRunner] = []
    try:
        for t in targets:
            runners.append(open_target(t, timeout))
    except BaseException:
        for runner in runners:
            runner.close()
        raise
    return Objectives(runners)


# ---------------------------------------------------------------- Pareto front and hypervolume


def pareto_mask(Y: Tensor) -> Tensor:
    """Whether each point of Y [N, M] (values to maximise) is non-dominated [N] (bool); equal points all kept."""
    Y = torch.as_tensor(Y, dtype=DTYPE)
    if len(Y) == 0:
        return torch.zeros(0, dtype=torch.bool)
    return is_non_dominated(Y, deduplicate=False)


def hypervolume(Y: Tensor, ref_point: Tensor) -> float:
    """The hypervolume dominated by the points of Y [N, M] (values to maximise) and bounded below by
    ``ref_point`` [M]; points not above it in every objective add nothing."""
    Y, ref = torch.as_tensor(Y, dtype=DTYPE), torch.as_tensor(ref_point, dtype=DTYPE)
    above = Y[(Y > ref).all(dim=-1)] if len(Y) else Y
    if len(above) == 0:
        return 0.0
    return float(Hypervolume(ref).compute(above[pareto_mask(above)]))


def contributions(Y: Tensor, ref_point: Tensor) -> Tensor:
    """Each point's exclusive hypervolume contribution [N]: what the hypervolume of Y [N, M] loses
    without it (0 for a dominated point, and for each of two equal points)."""
    Y = torch.as_tensor(Y, dtype=DTYPE)
    total = hypervolume(Y, ref_point)
    out = torch.zeros(len(Y), dtype=DTYPE)
    for i in torch.nonzero(pareto_mask(Y)).reshape(-1).tolist():
        rest = torch.cat([Y[:i], Y[i + 1 :]])
        out[i] = total - hypervolume(rest, ref_point)
    return out


def reference_point(Y: Tensor) -> Tensor:
    """The reference point [M] of a run from its starting pool's values Y [N, M]: the nadir of the
    pool's Pareto front lowered by ``REFERENCE_SCALE`` x the front's range (BoTorch's rule)."""
    Y = torch.as_tensor(Y, dtype=DTYPE)
    return infer_reference_point(Y[pareto_mask(Y)], scale=REFERENCE_SCALE)


# ---------------------------------------------------------------- model and acquisition


@dataclass
class SurrogateList:
    """One fitted GP per objective and their BoTorch ``ModelListGP`` (``model``)."""

    model: Model
    parts: list[Surrogate]

    @property
    def kind(self) -> str:
        return self.parts[0].kind

    @property
    def n_points(self) -> int:
        return max(p.n_points for p in self.parts)

    @property
    def n_fit(self) -> int:
        return max(p.n_fit for p in self.parts)

    def hyperparameters(self) -> dict[str, Tensor]:
        """Each GP's hyperparameters, keyed ``"<objective index>.<name>"`` (a warm start of the next fit)."""
        return {f"{j}.{k}": v for j, part in enumerate(self.parts) for k, v in part.hyperparameters().items()}


def fit_surrogates(
    X: Tensor,
    Y: Tensor,
    bounds: Tensor,
    config: SurrogateConfig,
    seed: int = 0,
    kind: str | None = None,
    warm_start: dict[str, Tensor] | None = None,
) -> SurrogateList:
    """A GP per column of Y [N, M] (values to maximise) over codes X [N, D] in ``bounds`` [2, D],
    each fitted as :func:`~molks.optimize.surrogate.fit_surrogate` fits one."""
    Y = torch.as_tensor(Y, dtype=DTYPE)
    if Y.ndim != 2 or Y.shape[1] < 2:
        raise MultiObjectiveError(f"need values [N, M] with M >= 2 objectives, got {list(Y.shape)}")
    parts = []
    for j in range(Y.shape[1]):
        prefix = f"{j}."
        warm = {k[len(prefix):]: v for k, v in (warm_start or {}).items() if k.startswith(prefix)}
        parts.append(fit_surrogate(X, Y[:, j], bounds, config, seed=seed, kind=kind, warm_start=warm or None))
    models = [p.model for p in parts]
    model = ModelListGP(*models) if all(p.kind == "exact" for p in parts) else ModelList(*models)
    return SurrogateList(model, parts)


def _center(X: Tensor, Y: Tensor, ref_point: Tensor) -> Tensor:
    """The code [D] of the point of largest exclusive hypervolume contribution (ties: the first);
    with no point above the reference, the point best in the first objective."""
    gains = contributions(Y, ref_point)
    best = int(torch.argmax(gains)) if float(gains.max()) > 0 else int(torch.argmax(Y[:, 0]))
    return X[best]


def propose_pareto(
    model: Model,
    X: Tensor,
    Y: Tensor,
    box: Tensor,
    ref_point: Tensor,
    config: AcquisitionConfig,
    seed: int,
    trust_region: TrustRegion | None = None,
    max_cholesky: int = 10_000,
    chunk: int | None = None,
    mc_samples: int = PARETO_MC_SAMPLES,
) -> Proposal:
    """q new codes [q, D] maximising qLogNEHVI over the evaluated codes X [N, D] (values Y [N, M]),
    above ``ref_point`` [M], inside the configured region of ``box`` [2, D].

    The batch is built in chunks of ``chunk`` codes [chunk, D], each optimised jointly given the
    chunks before it as pending points (default: ``PARETO_CHUNK`` for ``config.strategy ==
    "joint"``, 1 -- BoTorch's sequential greedy -- for ``"sequential"``). ``mc_samples``: QMC
    samples of qLogNEHVI, each with a box decomposition of its sampled front (``config.mc_samples``
    is qLogEI's). ``acq_value`` is the log of the summed expected hypervolume improvements of the
    chunks (each given the ones before it). ``seed`` fixes the QMC sampler and the random starts.
    """
    started = time.perf_counter()
    X, Y = torch.as_tensor(X, dtype=DTYPE), torch.as_tensor(Y, dtype=DTYPE)
    box, ref = torch.as_tensor(box, dtype=DTYPE), torch.as_tensor(ref_point, dtype=DTYPE)
    if chunk is None:
        chunk = 1 if config.strategy == "sequential" else PARETO_CHUNK
    if not 1 <= chunk <= MAX_CHUNK:
        raise MultiObjectiveError(f"chunk must be 1 to {MAX_CHUNK} codes (2^chunk - 1 terms per sample), got {chunk}")
    if mc_samples < 1:
        raise MultiObjectiveError(f"mc_samples must be at least 1, got {mc_samples}")
    if config.region == "trust-region":
        if trust_region is None:
            raise MultiObjectiveError("region 'trust-region' needs a TrustRegion state")
        bounds = trust_region_bounds(_center(X, Y, ref), trust_region.length, box, model)
    else:
        bounds = box.clone()
    torch.manual_seed(seed)
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([mc_samples]), seed=seed)
    chosen: list[Tensor] = []  # [chunk, D] each
    values: list[Tensor] = []
    with gpytorch.settings.max_cholesky_size(max_cholesky), warnings.catch_warnings():
        # prune_baseline: only points likely on a sampled front enter the box decompositions;
        # cache_root: the baseline's Cholesky factor is reused with low-rank updates.
        acqf = qLogNoisyExpectedHypervolumeImprovement(
            model, ref_point=ref, X_baseline=X, sampler=sampler, prune_baseline=True, cache_root=True
        )
        warnings.simplefilter("ignore", OptimizationWarning)  # L-BFGS-B stopping at maxiter: expected
        for start in range(0, config.q, chunk):
            if chosen:  # one new box decomposition per chunk (cached pending points), not per code
                acqf.set_X_pending(torch.cat(chosen))
            candidates, value = optimize_acqf(
                acqf,
                bounds=bounds,
                q=min(chunk, config.q - start),
                num_restarts=config.num_restarts,
                raw_samples=config.raw_samples,
                options={"maxiter": config.maxiter, "seed": seed, "batch_limit": config.num_restarts},
                retry_on_optimization_warning=False,
            )
            chosen.append(candidates.detach())
            values.append(value.detach().reshape(-1))
    value = float(torch.logsumexp(torch.cat(values), dim=0))
    candidates = torch.cat(chosen)
    candidates = torch.maximum(torch.minimum(candidates, bounds[1]), bounds[0])
    return Proposal(candidates, bounds, value if math.isfinite(value) else float("-inf"), time.perf_counter() - started)
