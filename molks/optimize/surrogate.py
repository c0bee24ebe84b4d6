"""GP surrogates of a score over latent codes, and held-out checks to choose between them.

Two BoTorch models, both with BoTorch's ``Normalize`` input transform (fixed bounds: the
search box, so that every refit sees the same scaling) and ``Standardize`` outcome transform:

- ``"exact"`` (default): a ``SingleTaskGP``. Its posterior conditions on at most ``max_exact``
  points (all of them for the default pool of 2,000; beyond that the best half plus a random
  rest: the points that matter for improvement plus coverage). Its hyperparameters are fitted
  on a random subset of at most ``max_fit`` of those points, then reused for the posterior
  over all of them; in a loop each fit starts from the previous iteration's hyperparameters.
- ``"variational"``: a ``SingleTaskVariationalGP`` (SVGP, like the Grammar VAE's sparse GP)
  on every point, ``inducing_points`` of them, fitted full-batch with L-BFGS on the ELBO.

:func:`heldout_metrics` fits each kind on 90% of the data and reports RMSE and mean
predictive log-likelihood on the other 10% (the Grammar VAE protocol); ``kind="auto"``
picks the kind with the higher held-out log-likelihood.

Measured (penalised logP of 2,000 MOSES molecules, 56-D codes of a small molks GMM model,
2-core CPU, one torch thread; three 10% splits), held-out RMSE / log-likelihood / fit time:
exact on all 1,800 training points 1.075 / -1.491 / 159 s; exact, hyperparameters on 1,000
1.086 / -1.507 / 33 s, on 500 1.087 / -1.506 / 5 s; SVGP with 500 inducing points 1.074 /
-1.489 / 44 s, with 200 1.072 / -1.488 / 11 s (mean-only baseline 1.155 / -1.564). On two
more splits exact-500, exact-1000 and SVGP-200 agreed within 0.002 in both numbers. The
kinds are equally accurate here, so the defaults are the fast ones: exact with
``max_fit=500`` (its qLogEI optimisation costs more than the SVGP's, ~9 s against ~2 s for
q=50, but its fit is cheaper, ~4-7 s against ~12 s; one whole BO iteration took 17 s
against 18 s, and the exact GP found the better molecules in a short benchmark), and
``inducing_points=200`` for the SVGP.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import gpytorch
import torch
from botorch.exceptions.warnings import InputDataWarning, UserInputWarning
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.approximate_gp import SingleTaskVariationalGP
from botorch.models.gpytorch import GPyTorchModel
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood, VariationalELBO
from torch import Tensor

from molks.errors import InputError

__all__ = [
    "SURROGATE_KINDS",
    "Surrogate",
    "SurrogateConfig",
    "SurrogateError",
    "fit_surrogate",
    "heldout_metrics",
    "choose_surrogate",
    "select_subset",
]

SURROGATE_KINDS = ("exact", "variational")
DTYPE = torch.float64  # BoTorch's advice: GP fitting and acquisition in double precision


class SurrogateError(InputError):
    """Bad surrogate settings or data (shapes, too few points, unknown kind)."""


@dataclass(frozen=True)
class SurrogateConfig:
    """How to build the GP.

    kind: "exact", "variational", or "auto" (compare both on a 10% held-out split, keep the better).
    max_exact: most points the exact GP's posterior conditions on.
    max_fit: most points its hyperparameters are fitted on (a random subset of those).
    inducing_points: number of inducing points of the variational GP.
    maxiter: L-BFGS iterations for the hyperparameters. 50, not scipy's usual hundreds: on the data of
        ten logP BO runs (2,250 points each) the fit stopped at 50 predicts held-out points better
        than one run to 200 (higher log-likelihood in every run) in a quarter of the time
        (``benchmarks/surrogate_fit.py``; benchmarks/RESULTS.md); in a BO loop each fit starts from
        the last one's hyperparameters, so the iterations add up across rounds.
    warm_start: in a BO loop, start each exact-GP fit from the previous iteration's hyperparameters.
    """

    kind: str = "exact"
    max_exact: int = 4000
    max_fit: int = 500
    inducing_points: int = 200
    maxiter: int = 50
    warm_start: bool = True

    def __post_init__(self) -> None:
        if self.kind not in (*SURROGATE_KINDS, "auto"):
            raise SurrogateError(f"unknown surrogate kind {self.kind!r}; choose one of {[*SURROGATE_KINDS, 'auto']}")
        for name in ("max_exact", "max_fit", "inducing_points", "maxiter"):
            if int(getattr(self, name)) < 1:
                raise SurrogateError(f"{name} must be at least 1, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Surrogate:
    """A fitted BoTorch model plus how it was built (for logs and summary.json)."""

    model: GPyTorchModel
    kind: str
    n_points: int  # points the posterior uses (exact) or the ELBO saw (variational)
    n_fit: int  # points the hyperparameters were fitted on
    seconds: float

    def hyperparameters(self) -> dict[str, Tensor]:
        """Mean, kernel and likelihood parameters (the state a later fit can start from)."""
        if self.kind != "exact":
            return {}
        return {
            f"{name}.{key}": value.detach().clone()
            for name in _HYPER_MODULES
            for key, value in getattr(self.model, name).state_dict().items()
        }


_HYPER_MODULES = ("mean_module", "covar_module", "likelihood")


def _load_hyperparameters(model: SingleTaskGP, values: dict[str, Tensor]) -> None:
    for name in _HYPER_MODULES:
        prefix = f"{name}."
        getattr(model, name).load_state_dict({k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)})


def _check(X: Tensor, Y: Tensor, bounds: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    X, Y, bounds = (torch.as_tensor(t, dtype=DTYPE) for t in (X, Y, bounds))
    if Y.ndim == 1:
        Y = Y.unsqueeze(-1)
    if X.ndim != 2 or Y.shape != (len(X), 1):
        raise SurrogateError(f"need X [N, D] and Y [N] or [N, 1], got {list(X.shape)} and {list(Y.shape)}")
    if bounds.shape != (2, X.shape[1]):
        raise SurrogateError(f"bounds must have shape [2, {X.shape[1]}], got {list(bounds.shape)}")
    if len(X) < 3:
        raise SurrogateError(f"need at least 3 scored points to fit a GP, got {len(X)}")
    if not (torch.isfinite(X).all() and torch.isfinite(Y).all()):
        raise SurrogateError("latent points and scores must be finite")
    return X, Y, bounds


def select_subset(Y: Tensor, size: int, generator: torch.Generator) -> Tensor:
    """Indices [min(N, size)] of a subset: the best half of ``size`` by Y, the rest uniformly at random.

    All indices (in order) when N <= size.
    """
    n = len(Y)
    if n <= size:
        return torch.arange(n)
    n_best = size // 2
    order = torch.argsort(Y.reshape(-1), descending=True, stable=True)
    best, rest = order[:n_best], order[n_best:]
    picked = rest[torch.randperm(len(rest), generator=generator)[: size - n_best]]
    return torch.sort(torch.cat([best, picked])).values


def _transforms(bounds: Tensor) -> tuple[Normalize, Standardize]:
    return Normalize(d=bounds.shape[1], bounds=bounds), Standardize(m=1)


def _exact(X: Tensor, Y: Tensor, bounds: Tensor) -> SingleTaskGP:
    normalize, standardize = _transforms(bounds)
    with warnings.catch_warnings():
        # Codes outside the pool's box (a trust region's proposals never are) only trigger a scaling hint.
        warnings.simplefilter("ignore", InputDataWarning)
        return SingleTaskGP(X, Y, input_transform=normalize, outcome_transform=standardize)


def fit_exact(
    X: Tensor, Y: Tensor, bounds: Tensor, config: SurrogateConfig, seed: int = 0, warm_start: dict[str, Tensor] | None = None
) -> Surrogate:
    """Exact GP: hyperparameters on <= max_fit random points, posterior on <= max_exact chosen points.

    ``warm_start``: hyperparameters of an earlier fit (:meth:`Surrogate.hyperparameters`) to start
    L-BFGS from; after adding a batch to the data they are close to the new optimum, so the fit
    converges in a fraction of the iterations.
    """
    X, Y, bounds = _check(X, Y, bounds)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    keep = select_subset(Y, config.max_exact, generator)
    X, Y = X[keep], Y[keep]
    fit_idx = torch.arange(len(X))
    if len(X) > config.max_fit:
        fit_idx = torch.sort(torch.randperm(len(X), generator=generator)[: config.max_fit]).values
    torch.manual_seed(seed)  # fit_gpytorch_mll re-draws hyperparameters from their priors on a failed attempt
    with gpytorch.settings.max_cholesky_size(max(config.max_exact, config.max_fit) + 1):
        fitted = _exact(X[fit_idx], Y[fit_idx], bounds)
        if warm_start:
            _load_hyperparameters(fitted, warm_start)
        fit_gpytorch_mll(
            ExactMarginalLogLikelihood(fitted.likelihood, fitted),
            optimizer_kwargs={"options": {"maxiter": config.maxiter}},
        )
    model = fitted
    if len(fit_idx) < len(X):
        # Same hyperparameters, posterior over every kept point. Standardize's statistics of a
        # random subset match the full ones up to sampling noise, so the copied mean and noise
        # (in standardised units) carry over.
        model = _exact(X, Y, bounds)
        for name in _HYPER_MODULES:
            getattr(model, name).load_state_dict(getattr(fitted, name).state_dict())
    model.eval()
    return Surrogate(model, "exact", len(X), len(fit_idx), time.perf_counter() - started)


def fit_variational(X: Tensor, Y: Tensor, bounds: Tensor, config: SurrogateConfig, seed: int = 0) -> Surrogate:
    """Variational GP on every point, inducing points initialised greedily and then learned."""
    X, Y, bounds = _check(X, Y, bounds)
    started = time.perf_counter()
    torch.manual_seed(seed)
    normalize, standardize = _transforms(bounds)
    with warnings.catch_warnings():
        # BoTorch warns that learnable transforms drift under mini-batch training; the fit below
        # is full-batch, so the transforms see the whole data set once, as for the exact GP.
        warnings.simplefilter("ignore", UserInputWarning)
        warnings.simplefilter("ignore", InputDataWarning)
        model = SingleTaskVariationalGP(
            X,
            Y,
            inducing_points=min(config.inducing_points, len(X)),
            input_transform=normalize,
            outcome_transform=standardize,
        )
    mll = VariationalELBO(model.likelihood, model.model, num_data=len(X))
    # Full batch (deterministic L-BFGS), whatever the size: the default switches to Adam on minibatches.
    fit_gpytorch_mll(mll, full_batch_limit=len(X) + 1, optimizer_kwargs={"options": {"maxiter": config.maxiter}})
    model.eval()
    return Surrogate(model, "variational", len(X), len(X), time.perf_counter() - started)


def fit_surrogate(
    X: Tensor,
    Y: Tensor,
    bounds: Tensor,
    config: SurrogateConfig,
    seed: int = 0,
    kind: str | None = None,
    warm_start: dict[str, Tensor] | None = None,
) -> Surrogate:
    """Fit the surrogate of ``kind`` (default ``config.kind``; "auto" must be resolved first).

    X [N, D] latent codes, Y [N] or [N, 1] values to maximise, bounds [2, D] the search box.
    ``warm_start`` (exact GP only): hyperparameters of an earlier fit to start from.
    """
    kind = kind or config.kind
    if kind == "exact":
        return fit_exact(X, Y, bounds, config, seed, warm_start)
    if kind == "variational":
        return fit_variational(X, Y, bounds, config, seed)
    raise SurrogateError(f"cannot fit surrogate kind {kind!r}: choose one of {SURROGATE_KINDS}")


@torch.no_grad()
def predictive_metrics(model: GPyTorchModel, X: Tensor, Y: Tensor, max_cholesky: int = 10_000) -> dict[str, float]:
    """RMSE and mean log-likelihood per point of Y [M] under the model's predictive distribution.

    The predictive variance includes the observation noise, as the Grammar VAE's test log-likelihood does.
    """
    X, Y = torch.as_tensor(X, dtype=DTYPE), torch.as_tensor(Y, dtype=DTYPE).reshape(-1)
    with gpytorch.settings.max_cholesky_size(max_cholesky):
        posterior = model.posterior(X, observation_noise=True)
    mean = posterior.mean.reshape(-1)
    var = posterior.variance.reshape(-1).clamp_min(1e-12)
    rmse = float(((mean - Y) ** 2).mean().sqrt())
    ll = float((-0.5 * (math.log(2 * math.pi) + var.log() + (Y - mean) ** 2 / var)).mean())
    return {"rmse": rmse, "log_likelihood": ll}


def heldout_metrics(
    X: Tensor,
    Y: Tensor,
    bounds: Tensor,
    config: SurrogateConfig,
    kinds: Sequence[str] = SURROGATE_KINDS,
    holdout: float = 0.1,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Fit each kind on a random (1 - holdout) of the data; RMSE, log-likelihood, seconds on the rest.

    Returns {kind: {"rmse", "log_likelihood", "seconds", "n_train", "n_test"}}; also
    "baseline" (predict the training mean with the training variance) for scale.
    """
    X, Y, bounds = _check(X, Y, bounds)
    if not 0 < holdout < 1:
        raise SurrogateError(f"holdout must lie in (0, 1), got {holdout}")
    n_test = max(1, round(holdout * len(X)))
    if len(X) - n_test < 3:
        raise SurrogateError(f"too few points ({len(X)}) for a {holdout:.0%} held-out split")
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    test, train = order[:n_test], order[n_test:]
    results: dict[str, dict[str, float]] = {}
    mu, sd = Y[train].mean(), Y[train].std().clamp_min(1e-12)
    y = Y[test].reshape(-1)
    results["baseline"] = {
        "rmse": float(((y - mu) ** 2).mean().sqrt()),
        "log_likelihood": float((-0.5 * (math.log(2 * math.pi) + 2 * sd.log() + ((y - mu) / sd) ** 2)).mean()),
        "seconds": 0.0,
        "n_train": len(train),
        "n_test": n_test,
    }
    for kind in kinds:
        surrogate = fit_surrogate(X[train], Y[train], bounds, config, seed=seed, kind=kind)
        metrics = predictive_metrics(surrogate.model, X[test], Y[test])
        results[kind] = {**metrics, "seconds": surrogate.seconds, "n_train": len(train), "n_test": n_test}
    return results


def choose_surrogate(metrics: dict[str, dict[str, float]]) -> str:
    """The kind with the highest held-out log-likelihood (ties: the first listed)."""
    kinds = [k for k in metrics if k in SURROGATE_KINDS]
    if not kinds:
        raise SurrogateError("no surrogate kinds among the held-out metrics")
    return max(kinds, key=lambda k: metrics[k]["log_likelihood"])
