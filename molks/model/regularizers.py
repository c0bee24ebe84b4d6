"""Latent regularisers behind one interface, chosen by name: the method ("gmm") and the baselines.

Every regulariser is a ``LatentRegularizer`` (an ``nn.Module``) that tells the model how many encoder
heads it needs, turns encoder outputs into the code ``z`` fed to the decoder, scores a batch of codes,
and draws latent points from its prior for decoding:

    reg = make_regularizer("gmm", latent_dim=56, batch_size=500)
    mean, logvar = encoder(x)            # logvar is None when reg.encoder_outputs == 1
    z = reg.latent(mean, logvar)         # reparameterised when reg.stochastic and training
    terms = reg.loss(z, mean, logvar)    # {"total": ..., "ks": ..., "cv": ...}
    z_new = reg.sample_prior(100)        # [100, D] points to decode

``loss`` returns the raw (unweighted) named terms plus "total", the weighted sum that is added to the
weighted reconstruction loss. Names and terms:

* "gmm"    (``GMMRegularizer``): lambda_KS * L_KS + lambda_CV * L_CV towards a Gaussian-mixture prior,
           weights estimated at construction from prior samples of the training batch size. Terms: ks, cv.
* "vae"    (``VAERegularizer``): beta * KL(q(z|x) || N(0, I)), reparameterisation trick. Term: kl.
* "cv-vae" (``CVVAERegularizer``): VAE whose encoder variance is a constant (not learned). Term: kl
           (its mean part, 0.5 ||mu||^2; the variance part is a constant).
* "rae"    (``RAERegularizer``): beta * ||z||^2, deterministic; L2 on decoder weights is applied by the
           optimiser's weight decay (``decoder_weight_decay``); sampling needs an ex-post GMM fitted on
           the training codes (``fit_ex_post``). Term: l2.
* "wae"    (``WAERegularizer``): weight * MMD(z, N(0, I) samples) with inverse multiquadratic kernels
           (WAE-MMD). Term: mmd.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from molks.checks import MAX_BATCH_SIZE, MAX_COMPONENTS, MAX_SEED, int_rule, is_int, is_number
from molks.errors import InputError
from molks.model.names import REGULARIZER_NAMES
from molks.model.prior import GaussianMixturePrior, PriorError

__all__ = [
    "CVVAERegularizer",
    "ExPostGMM",
    "GMMRegularizer",
    "LatentRegularizer",
    "RAERegularizer",
    "REGULARIZERS",
    "RegularizerError",
    "VAERegularizer",
    "WAERegularizer",
    "cv_loss",
    "empirical_covariance",
    "estimate_loss_weights",
    "expected_ks_loss",
    "fit_ex_post_gmm",
    "fit_ex_post_kde",
    "DEFAULT_KDE_BANDWIDTH",
    "KDE_BANDWIDTH_PER_NOISE",
    "KDE_CODES",
    "kde_bandwidth",
    "check_regularizer_options",
    "ks_loss",
    "make_regularizer",
    "mmd_imq",
    "regularizer_options",
    "sliced_ks_loss",
]


class RegularizerError(InputError):
    """A regulariser was configured or called with invalid arguments."""


def _check_codes(z: Tensor, dim: int, min_n: int, what: str) -> None:
    if z.ndim != 2 or z.shape[1] != dim:
        raise RegularizerError(f"{what}: z must have shape [N, {dim}], got {tuple(z.shape)}")
    if z.shape[0] < min_n:
        raise RegularizerError(f"{what}: needs a batch of at least {min_n} codes, got {z.shape[0]}")


# ----------------------------------------------------------------------------------------------
# The method's losses
# ----------------------------------------------------------------------------------------------


def ks_loss(z: Tensor, prior: GaussianMixturePrior) -> Tensor:
    """Kolmogorov-Smirnov-inspired marginal loss (scalar).

    L_KS = (1/d) sum_j (1/N) sum_i (i/N - F_j(z_(i),j))^2 with z_(i),j the i-th smallest value of
    dimension j and F_j the prior's marginal CDF. Differentiable through ``torch.sort``.

    z: [N, d], N >= 1.
    """
    _check_codes(z, prior.dim, 1, "ks_loss")
    n = z.shape[0]
    sorted_z = torch.sort(z, dim=0).values
    ecdf = torch.arange(1, n + 1, device=z.device, dtype=z.dtype) / n
    return (ecdf.unsqueeze(1) - prior.marginal_cdf(sorted_z)).square().mean()


def empirical_covariance(z: Tensor) -> Tensor:
    """Batch covariance [d, d], dividing by N (not N - 1). z: [N, d]."""
    centred = z - z.mean(dim=0, keepdim=True)
    return centred.T @ centred / z.shape[0]


def cv_loss(z: Tensor, prior: GaussianMixturePrior) -> Tensor:
    """Covariance loss (scalar): L_CV = (1/d^2) sum_{l,j} (Sigma_hat[l,j] - Sigma[l,j])^2.

    Sigma_hat is the batch covariance (divided by N), Sigma the mixture's covariance. z: [N, d], N >= 2.
    """
    _check_codes(z, prior.dim, 2, "cv_loss")
    target = prior.covariance().to(device=z.device, dtype=z.dtype)
    return (empirical_covariance(z) - target).square().mean()


def sliced_ks_loss(z: Tensor, prior: GaussianMixturePrior, n_projections: int, generator: torch.Generator | None = None) -> Tensor:
    """KS loss of z projected on ``n_projections`` random unit directions, to the prior projected on
    the same directions (scalar). A mixture of isotropic components projects onto a unit direction w
    as the one-dimensional mixture with centres mu_k . w and the same sigma, so the target is exact.
    Marginals alone leave the joint free; random directions see across dimensions.

    z: [N, d]; directions drawn from ``generator`` (default: the global random state).
    """
    _check_codes(z, prior.dim, 1, "sliced_ks_loss")
    directions = torch.randn(prior.dim, n_projections, generator=generator, device=z.device, dtype=z.dtype)
    directions = directions / directions.norm(dim=0, keepdim=True)
    projected = GaussianMixturePrior(prior.means.to(z.dtype) @ directions, float(prior.sigma))
    return ks_loss(z @ directions, projected)


def expected_ks_loss(batch_size: int) -> float:
    """Exact E[L_KS] for N = batch_size true prior samples (any continuous prior, any d).

    F_j(z_(i),j) is the i-th order statistic of N uniforms, Beta(i, N + 1 - i), so
    E[(i/N - U_(i))^2] = i(N+1-i) / ((N+1)^2 (N+2)) + (i / (N(N+1)))^2; about 1/(6N).
    Useful as a check on ``estimate_loss_weights`` and to rescale for a different batch size.
    """
    if batch_size < 1:
        raise RegularizerError(f"batch_size must be >= 1, got {batch_size}")
    n = batch_size
    i = np.arange(1, n + 1, dtype=np.float64)
    var = i * (n + 1 - i) / ((n + 1) ** 2 * (n + 2))
    bias = i / (n * (n + 1))
    return float(np.mean(var + bias**2))


@torch.no_grad()
def estimate_loss_weights(
    prior: GaussianMixturePrior,
    batch_size: int,
    n_batches: int = 256,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """(lambda_KS, lambda_CV) = 1 / mean loss over ``n_batches`` prior samples of ``batch_size``.

    As the authors' code does: the losses are then in units of what a perfect sample of this batch
    size scores, so both are ~1 at the optimum. The relative standard error of each mean is roughly
    1/sqrt(n_batches) (~6% for the default 256).
    """
    if batch_size < 2:
        raise RegularizerError(f"batch_size must be >= 2 (the covariance needs two points), got {batch_size}")
    if n_batches < 1:
        raise RegularizerError(f"n_batches must be >= 1, got {n_batches}")
    ks_sum = 0.0
    cv_sum = 0.0
    for _ in range(n_batches):
        z = prior.sample(batch_size, generator=generator)
        ks_sum += float(ks_loss(z, prior))
        cv_sum += float(cv_loss(z, prior))
    mean_ks, mean_cv = ks_sum / n_batches, cv_sum / n_batches
    if not (mean_ks > 0 and mean_cv > 0):
        raise RegularizerError(f"loss estimates are not positive (ks={mean_ks}, cv={mean_cv}); check the prior")
    return 1.0 / mean_ks, 1.0 / mean_cv


# ----------------------------------------------------------------------------------------------
# WAE's MMD
# ----------------------------------------------------------------------------------------------

WAE_IMQ_SCALES: tuple[float, ...] = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def mmd_imq(x: Tensor, y: Tensor, prior_var: float = 1.0, scales: tuple[float, ...] = WAE_IMQ_SCALES) -> Tensor:
    """Unbiased MMD^2 estimate (scalar) between samples x [N, d] and y [M, d] (N, M >= 2).

    Kernel: sum over s in ``scales`` of k_C(a, b) = C / (C + ||a - b||^2), C = s * 2 d prior_var, the
    inverse multiquadratic kernel of the WAE paper (C = 2 d sigma_z^2 for a N(0, sigma_z^2 I) prior),
    summed over the scales the WAE authors' code uses, so the estimate is robust to the kernel width.
    Within-sample terms exclude the diagonal (U-statistic); it can be slightly negative.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise RegularizerError(f"mmd_imq: x and y must be [N, d] and [M, d], got {tuple(x.shape)}, {tuple(y.shape)}")
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    if n < 2 or m < 2:
        raise RegularizerError(f"mmd_imq: needs at least 2 points in each sample, got {n} and {m}")
    # |a|^2 + |b|^2 - 2 a.b: O(N M) memory instead of O(N M d); no sqrt, so smooth at zero distance.
    nx, ny = x.square().sum(1), y.square().sum(1)
    dxx = (nx.unsqueeze(1) + nx.unsqueeze(0) - 2.0 * x @ x.T).clamp_min(0.0)
    dyy = (ny.unsqueeze(1) + ny.unsqueeze(0) - 2.0 * y @ y.T).clamp_min(0.0)
    dxy = (nx.unsqueeze(1) + ny.unsqueeze(0) - 2.0 * x @ y.T).clamp_min(0.0)
    off_x = 1.0 - torch.eye(n, device=x.device, dtype=x.dtype)
    off_y = 1.0 - torch.eye(m, device=y.device, dtype=y.dtype)
    stat = x.new_zeros(())
    for s in scales:
        c = s * 2.0 * d * prior_var
        kxx = (c / (c + dxx) * off_x).sum() / (n * (n - 1))
        kyy = (c / (c + dyy) * off_y).sum() / (m * (m - 1))
        kxy = (c / (c + dxy)).sum() * 2.0 / (n * m)
        stat = stat + kxx + kyy - kxy
    return stat


# ----------------------------------------------------------------------------------------------
# Ex-post density for deterministic baselines
# ----------------------------------------------------------------------------------------------

_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


class ExPostGMM(nn.Module):
    """A Gaussian mixture fitted after training on the codes (RAE's sampling; the paper's "GMM" column).

    Buffers: weights [K], means [K, d], scale_tril [K, d, d] (Cholesky factors of the covariances) or
    [1, d, d] (one covariance shared by every component: a kernel density on the codes,
    :func:`fit_ex_post_kde`, whose K is the number of codes), so ``state_dict()`` / ``to_tensors()``
    give a flat tensor dict that safetensors can store.
    """

    weights: Tensor
    means: Tensor
    scale_tril: Tensor

    def __init__(self, weights: Tensor, means: Tensor, scale_tril: Tensor) -> None:
        super().__init__()
        if means.ndim != 2:
            raise RegularizerError(f"means must be [K, d], got {tuple(means.shape)}")
        k, d = means.shape
        if weights.shape != (k,) or scale_tril.shape not in ((k, d, d), (1, d, d)):
            raise RegularizerError(
                f"inconsistent ex-post GMM shapes: weights {tuple(weights.shape)}, means {tuple(means.shape)}, "
                f"scale_tril {tuple(scale_tril.shape)} (expected [K], [K, d], [K, d, d] or [1, d, d])"
            )
        _check_mixture_values(weights, means, scale_tril)
        self.register_buffer("weights", weights.detach().clone())
        self.register_buffer("means", means.detach().clone())
        self.register_buffer("scale_tril", scale_tril.detach().clone())

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> "ExPostGMM":
        """Inverse of ``to_tensors`` (keys: weights, means, scale_tril)."""
        missing = {"weights", "means", "scale_tril"} - set(tensors)
        if missing:
            raise RegularizerError(f"ex-post GMM tensors lack {sorted(missing)}")
        return cls(tensors["weights"], tensors["means"], tensors["scale_tril"])

    def to_tensors(self) -> dict[str, Tensor]:
        """{"weights", "means", "scale_tril"} as contiguous CPU tensors (safetensors-ready)."""
        return {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def shared_covariance(self) -> bool:
        """Whether one covariance serves every component (scale_tril [1, d, d])."""
        return self.scale_tril.shape[0] == 1 and self.n_components > 1

    def extra_repr(self) -> str:
        return f"n_components={self.n_components}, dim={self.dim}, shared_covariance={self.shared_covariance}"

    def sample(self, n: int, component: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw n points [n, d] (from component k only if ``component`` = k)."""
        if n < 0:
            raise RegularizerError(f"n must be >= 0, got {n}")
        device, dtype = self.means.device, self.means.dtype
        if component is None:
            idx = torch.multinomial(self.weights, n, replacement=True, generator=generator) if n else \
                torch.zeros(0, dtype=torch.long, device=device)
        else:
            if not 0 <= int(component) < self.n_components:
                raise RegularizerError(f"component must be in [0, {self.n_components}), got {component}")
            idx = torch.full((n,), int(component), dtype=torch.long, device=device)
        eps = torch.randn(n, self.dim, 1, generator=generator, device=device, dtype=dtype)
        scale = self.scale_tril[0] if self.shared_covariance else self.scale_tril[idx]
        return self.means[idx] + (scale @ eps).squeeze(-1)

    def log_prob(self, z: Tensor) -> Tensor:
        """Mixture log density [N] of points z [N, d]."""
        comp = torch.distributions.MultivariateNormal(self.means.to(z.dtype), scale_tril=self.scale_tril.to(z.dtype))
        mix = torch.distributions.Categorical(probs=self.weights.to(z.dtype))
        return torch.distributions.MixtureSameFamily(mix, comp).log_prob(z)


def _check_mixture_values(weights: Tensor, means: Tensor, scale_tril: Tensor) -> None:
    """Refuse values no fitted mixture has (a file damaged or edited), which would otherwise surface
    much later as torch's "invalid multinomial distribution" or NaN samples."""
    if not (torch.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
        raise RegularizerError(f"weights must be finite and >= 0 with a positive sum, got {weights.tolist()}")
    if not torch.isfinite(means).all():
        raise RegularizerError("means must be finite (they hold NaN or infinite values)")
    diagonal = torch.diagonal(scale_tril, dim1=-2, dim2=-1)
    if not (torch.isfinite(scale_tril).all() and (scale_tril.triu(1) == 0).all() and (diagonal > 0).all()):
        raise RegularizerError(
            "scale_tril must be lower-triangular with a positive diagonal and finite (Cholesky factors of covariances)"
        )


def fit_ex_post_gmm(
    codes: Tensor | np.ndarray,
    n_components: int = 10,
    covariance: str = "full",
    seed: int = 0,
    max_iter: int = 200,
    dtype: torch.dtype = torch.float32,
) -> ExPostGMM:
    """Fit a GMM on latent codes [N, d] with ``sklearn.mixture.GaussianMixture``.

    Defaults follow RAE's setting (10 components, full covariances). ``covariance`` is one of
    full / tied / diag / spherical; every type is stored as full Cholesky factors.
    """
    from sklearn.mixture import GaussianMixture  # heavy import, only needed here

    if covariance not in _COVARIANCE_TYPES:
        raise RegularizerError(f"covariance must be one of {', '.join(_COVARIANCE_TYPES)}; got {covariance!r}")
    x = codes.detach().cpu().double().numpy() if isinstance(codes, Tensor) else np.asarray(codes, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 1:
        raise RegularizerError(f"codes must have shape [N, d], got {x.shape}")
    if n_components < 1 or x.shape[0] < max(2, n_components):
        raise RegularizerError(
            f"need n_components >= 1 and at least max(2, n_components) codes; got {n_components} components "
            f"and {x.shape[0]} codes"
        )
    if not np.isfinite(x).all():
        raise RegularizerError("codes contain NaN or infinite values")
    gmm = GaussianMixture(
        n_components=n_components, covariance_type=covariance, random_state=seed, max_iter=max_iter
    ).fit(x)
    k, d = n_components, x.shape[1]
    cov = gmm.covariances_
    if covariance == "tied":
        cov = np.broadcast_to(cov, (k, d, d))
    elif covariance == "diag":
        cov = np.stack([np.diag(c) for c in cov])
    elif covariance == "spherical":
        cov = cov[:, None, None] * np.eye(d)[None]
    scale_tril = np.linalg.cholesky(cov)
    return ExPostGMM(
        torch.as_tensor(gmm.weights_, dtype=dtype),
        torch.as_tensor(gmm.means_, dtype=dtype),
        torch.as_tensor(scale_tril, dtype=dtype),
    )


KDE_CODES = 20_000
"""Codes a kernel density keeps (a seeded random choice of more): 4.5 MB at 56 dimensions, and
enough that its samples are 99% unique (issue 17, benchmarks/ex_post_samplers.py)."""

DEFAULT_KDE_BANDWIDTH = 0.4
"""The kernel's sd for a model trained without ``latent_noise`` (issue 17, benchmarks/ex_post_samplers.py:
the epoch-13 ``moses`` weights at 0.4 were 70% valid, 99.9% unique, FCD 1.53 at 5k; narrower kernels
are more valid but decode more copies of the molecules whose codes the density holds)."""

KDE_BANDWIDTH_PER_NOISE = 1.4
"""The kernel's sd for a model trained with ``latent_noise`` s is this times s. Measured on ``moses``
(s = 0.5, benchmarks/ex_post_samplers.py): at h = s (0.5) 31% of the distinct samples are copies
of the molecules the density holds (MOSES novelty 64%); at 1.4 s (0.7) 11% (novelty 85%), 99.7%
unique, FCD 0.95 to MOSES test at 5k (floor 0.52)."""


def kde_bandwidth(regularizer: nn.Module) -> float:
    """The kernel's sd for a model's kernel density: ``KDE_BANDWIDTH_PER_NOISE`` times the
    ``latent_noise`` its decoder was trained with, else ``DEFAULT_KDE_BANDWIDTH``."""
    noise = float(getattr(regularizer, "latent_noise", 0.0))
    return KDE_BANDWIDTH_PER_NOISE * noise if noise > 0 else DEFAULT_KDE_BANDWIDTH


def fit_ex_post_kde(codes: Tensor | np.ndarray, bandwidth: float, dtype: torch.dtype = torch.float32) -> ExPostGMM:
    """The kernel density of codes [N, d] with an isotropic Gaussian kernel of sd ``bandwidth``: an
    equal-weight mixture of N(code, bandwidth^2 I), one component per code (scale_tril [1, d, d]).

    Sampling it draws a random code and adds N(0, bandwidth^2) per dimension: near the data, where
    the decoder is right (with ``latent_noise`` s it was trained on code + N(0, s^2)). Fit it on the
    codes of molecules the model was *not* trained on (a validation split): around training codes
    such a decoder returns its training molecules. A kernel a little wider than s
    (:func:`kde_bandwidth`) keeps it from copying the held-out molecules themselves (issue 17,
    ``benchmarks/ex_post_samplers.py``).
    """
    x = codes.detach().cpu() if isinstance(codes, Tensor) else torch.as_tensor(np.asarray(codes))
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise RegularizerError(f"codes must have shape [N, d] with N, d >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise RegularizerError("codes contain NaN or infinite values")
    if not (math.isfinite(bandwidth) and bandwidth > 0):
        raise RegularizerError(f"bandwidth must be a finite number > 0, got {bandwidth}")
    n, d = x.shape
    return ExPostGMM(
        torch.full((n,), 1.0 / n, dtype=dtype), x.to(dtype), (bandwidth * torch.eye(d, dtype=dtype)).unsqueeze(0)
    )


# ----------------------------------------------------------------------------------------------
# Regularisers
# ----------------------------------------------------------------------------------------------


class LatentRegularizer(nn.Module):
    """Base class. Subclasses set ``name``, ``stochastic``, ``encoder_outputs``, ``option_docs``.

    stochastic: whether the encoder defines a distribution (z is sampled while training).
    encoder_outputs: 1 (mean only; the encoder's logvar must be None) or 2 (mean and logvar).
    option_docs: constructor option -> one-line description (what ``make_regularizer`` accepts).
    """

    name: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False
    encoder_outputs: ClassVar[int] = 1
    option_docs: ClassVar[dict[str, str]] = {}

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        if int(latent_dim) < 1:
            raise RegularizerError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = int(latent_dim)
        # Non-persistent: tracks .to(device/dtype) for prior sampling without entering state_dict.
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)
        self.config: dict[str, Any] = {"name": self.name, "latent_dim": self.latent_dim}

    # -- encoder side ------------------------------------------------------------------------
    def encoder_logvar(self, h_mean: Tensor, h_logvar: Tensor | None) -> Tensor | None:
        """The log-variance of q(z|x) [B, D] used for sampling, or None if deterministic."""
        return h_logvar if self.stochastic else None

    def latent(self, h_mean: Tensor, h_logvar: Tensor | None = None, training: bool | None = None) -> Tensor:
        """Code z [B, D] from encoder outputs; samples mean + exp(logvar/2) * eps when stochastic and
        training (``training`` None -> ``self.training``), else returns the mean."""
        if h_mean.ndim != 2 or h_mean.shape[1] != self.latent_dim:
            raise RegularizerError(f"h_mean must have shape [B, {self.latent_dim}], got {tuple(h_mean.shape)}")
        if self.encoder_outputs == 1 and h_logvar is not None:
            raise RegularizerError(f"{self.name!r} uses a mean-only encoder (encoder_outputs=1) but got a logvar")
        if self.encoder_outputs == 2 and (h_logvar is None or h_logvar.shape != h_mean.shape):
            got = None if h_logvar is None else tuple(h_logvar.shape)
            raise RegularizerError(f"{self.name!r} needs a logvar of shape {tuple(h_mean.shape)}, got {got}")
        training = self.training if training is None else training
        if not (self.stochastic and training):
            return h_mean
        logvar = self.encoder_logvar(h_mean, h_logvar)
        return h_mean + torch.exp(0.5 * logvar) * torch.randn_like(h_mean)

    # -- loss --------------------------------------------------------------------------------
    def loss(self, z: Tensor, mean: Tensor | None = None, logvar: Tensor | None = None) -> dict[str, Tensor]:
        """Named raw terms plus "total" (the weighted sum), all scalars. z, mean, logvar: [B, D]."""
        raise NotImplementedError

    def forward(self, z: Tensor, mean: Tensor | None = None, logvar: Tensor | None = None) -> dict[str, Tensor]:
        return self.loss(z, mean, logvar)

    # -- decoding side -----------------------------------------------------------------------
    def sample_prior(self, n: int, component: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """n latent points [n, D] from the prior (default: N(0, I), a single component 0)."""
        if component not in (None, 0):
            raise RegularizerError(f"{self.name!r} has a single-component N(0, I) prior; component must be None or 0")
        if n < 0:
            raise RegularizerError(f"n must be >= 0, got {n}")
        a = self._anchor
        return torch.randn(n, self.latent_dim, generator=generator, device=a.device, dtype=a.dtype)

    @property
    def n_prior_components(self) -> int:
        """How many components ``sample_prior(component=...)`` accepts."""
        return 1


class GMMRegularizer(LatentRegularizer):
    """The method: lambda_KS * L_KS + lambda_CV * L_CV towards an equal-weight GMM prior.

    The weights are 1 / the mean loss of true prior samples of ``batch_size`` (estimated once, with a
    generator seeded by ``seed``) and are buffers, so they are saved and restored with ``state_dict``,
    as are the prior's means and sigma. Train with this batch size (drop the last, smaller batch):
    L_KS of a perfect sample scales like 1/(6N), so other sizes are scored on a different scale.
    """

    name = "gmm"
    stochastic = False
    encoder_outputs = 1
    option_docs = {
        "n_components": "K, number of mixture components (10, as in the authors' configurations)",
        "sigma": "shared standard deviation of every component (1.0)",
        "radius": "distance of the centres from the origin; None -> 3*sqrt(2)*sigma, so neighbouring "
        "centres are 6 sigma apart (the separation the authors' code enforces)",
        "seed": "seed for centre placement when K > 2*latent_dim and for the weight estimate (0)",
        "n_weight_batches": "prior batches used to estimate lambda_KS and lambda_CV (256: ~6% standard error)",
        "latent_noise": "s < sigma: train the decoder on code + N(0, s^2) and match the codes to the mixture of "
        "component sd sqrt(sigma^2 - s^2), so that what the decoder learns from is the prior itself (0: off)",
        "projections": "P: also match P random one-dimensional projections of the codes per batch to the "
        "prior's projections (a sliced KS, for the joint distribution; 0: off)",
    }

    lambda_ks: Tensor
    lambda_cv: Tensor

    def __init__(
        self,
        latent_dim: int,
        batch_size: int,
        n_components: int = 10,
        sigma: float = 1.0,
        radius: float | None = None,
        seed: int = 0,
        n_weight_batches: int = 256,
        latent_noise: float = 0.0,
        projections: int = 0,
        prior: GaussianMixturePrior | None = None,
    ) -> None:
        super().__init__(latent_dim)
        if prior is None:
            try:
                prior = GaussianMixturePrior.with_default_centres(latent_dim, n_components, sigma, radius, seed)
            except PriorError as err:
                raise RegularizerError(str(err)) from err
        elif prior.dim != latent_dim:
            raise RegularizerError(f"prior has dim {prior.dim} but latent_dim is {latent_dim}")
        if not 0 <= latent_noise < float(prior.sigma):
            raise RegularizerError(f"latent_noise must be >= 0 and below sigma ({float(prior.sigma)}), got {latent_noise}")
        self.prior = prior
        self.latent_noise = float(latent_noise)
        self.projections = int(projections)
        self.batch_size = int(batch_size)
        gen = torch.Generator(device=prior.means.device).manual_seed(int(seed))
        lam_ks, lam_cv = estimate_loss_weights(self.code_prior, self.batch_size, n_weight_batches, generator=gen)
        self.register_buffer("lambda_ks", torch.tensor(lam_ks, dtype=prior.means.dtype))
        self.register_buffer("lambda_cv", torch.tensor(lam_cv, dtype=prior.means.dtype))
        self.config.update(
            batch_size=self.batch_size,
            n_components=prior.n_components,
            sigma=float(prior.sigma),
            radius=None if radius is None else float(radius),
            seed=int(seed),
            n_weight_batches=int(n_weight_batches),
            latent_noise=self.latent_noise,
            projections=self.projections,
        )

    @property
    def code_prior(self) -> GaussianMixturePrior:
        """What the codes (encoder means) are matched to: the prior, or with ``latent_noise`` s the
        same centres with component sd sqrt(sigma^2 - s^2), so that code + N(0, s^2) is the prior."""
        if self.latent_noise == 0:
            return self.prior
        inner = math.sqrt(float(self.prior.sigma) ** 2 - self.latent_noise**2)
        return GaussianMixturePrior(self.prior.means, inner)

    def latent(self, h_mean: Tensor, h_logvar: Tensor | None = None, training: bool | None = None) -> Tensor:
        """The code itself, or while training with ``latent_noise`` s the code + N(0, s^2): the
        decoder then learns from the whole prior, not only from the data's own codes."""
        z = super().latent(h_mean, h_logvar, training)
        training = self.training if training is None else training
        if training and self.latent_noise > 0:
            z = z + self.latent_noise * torch.randn_like(z)
        return z

    def extra_repr(self) -> str:
        return (
            f"latent_dim={self.latent_dim}, batch_size={self.batch_size}, "
            f"lambda_ks={float(self.lambda_ks):.4g}, lambda_cv={float(self.lambda_cv):.4g}"
        )

    def loss(self, z: Tensor, mean: Tensor | None = None, logvar: Tensor | None = None) -> dict[str, Tensor]:
        """KS and CV of the codes (``mean`` when given: the noise-free codes) to :attr:`code_prior`,
        plus "sks", the sliced KS over ``projections`` random directions, when asked for."""
        codes = z if mean is None else mean
        target = self.code_prior
        ks = ks_loss(codes, target)
        cv = cv_loss(codes, target)
        total = self.lambda_ks.to(codes.dtype) * ks + self.lambda_cv.to(codes.dtype) * cv
        terms = {"ks": ks, "cv": cv}
        if self.projections:
            terms["sks"] = sliced_ks_loss(codes, target, self.projections)
            # Any continuous distribution's KS loss has the same expectation for a perfect sample
            # (``expected_ks_loss``), so lambda_KS puts the sliced term on the same scale.
            total = total + self.lambda_ks.to(codes.dtype) * terms["sks"]
        return {"total": total, **terms}

    def sample_prior(self, n: int, component: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        try:
            return self.prior.sample(n, component=component, generator=generator)
        except PriorError as err:
            raise RegularizerError(str(err)) from err

    @property
    def n_prior_components(self) -> int:
        return self.prior.n_components


def _require(t: Tensor | None, what: str, reg: str, like: Tensor) -> Tensor:
    if t is None:
        raise RegularizerError(f"{reg!r} loss needs the encoder's {what}")
    if t.shape != like.shape:
        raise RegularizerError(f"{reg!r} loss: {what} has shape {tuple(t.shape)}, expected {tuple(like.shape)}")
    return t


class VAERegularizer(LatentRegularizer):
    """VAE: beta * KL(N(mean, exp(logvar)) || N(0, I)), summed over latent dimensions and averaged
    over the batch (nats per example; pair it with a reconstruction loss summed over time steps for
    the ELBO proper)."""

    name = "vae"
    stochastic = True
    encoder_outputs = 2
    option_docs = {
        "beta": "weight of the KL term (1.0: the ELBO)",
        "free_bits": "nats per latent dimension that the KL term does not penalise (0: the ELBO; "
        "0.1-0.5 keeps a strong decoder from ignoring the code, Kingma et al. 2016)",
    }

    def __init__(self, latent_dim: int, beta: float = 1.0, free_bits: float = 0.0) -> None:
        super().__init__(latent_dim)
        if not (math.isfinite(free_bits) and free_bits >= 0):
            raise RegularizerError(f"free_bits must be a finite number >= 0, got {free_bits!r}")
        self.beta = float(beta)
        self.free_bits = float(free_bits)
        self.config.update(beta=self.beta, free_bits=self.free_bits)

    def loss(self, z: Tensor, mean: Tensor | None = None, logvar: Tensor | None = None) -> dict[str, Tensor]:
        mean = _require(mean, "mean", self.name, z)
        logvar = _require(logvar, "logvar", self.name, z)
        kl_per_dim = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean(dim=0)  # [D], batch mean
        # Free bits: below free_bits nats a dimension's KL costs nothing, so the optimiser gains
        # nothing by collapsing it to the prior (the posterior collapse of VAEs with AR decoders).
        penalised = kl_per_dim.clamp_min(self.free_bits).sum() if self.free_bits else kl_per_dim.sum()
        return {"total": self.beta * penalised, "kl": kl_per_dim.sum()}


class CVVAERegularizer(LatentRegularizer):
    """Constant-variance VAE: q(z|x) = N(mean, encoder_std^2 I) with encoder_std fixed (not learned).

    The KL to N(0, I) is 0.5 ||mean||^2 + a constant; the loss is beta * the mean part, summed over
    dimensions and averaged over the batch. ``logvar`` (a buffer) is 2 log(encoder_std).
    """

    name = "cv-vae"
    stochastic = True
    encoder_outputs = 1
    option_docs = {
        "beta": "weight of the KL term (1.0)",
        "encoder_std": "the constant encoder standard deviation (0.7, the value of the RAE authors' CV-VAE runs)",
    }

    logvar: Tensor

    def __init__(self, latent_dim: int, beta: float = 1.0, encoder_std: float = 0.7) -> None:
        super().__init__(latent_dim)
        if not (math.isfinite(encoder_std) and encoder_std > 0):
            raise RegularizerError(f"encoder_std must be a finite number > 0, got {encoder_std}")
        self.beta = float(beta)
        self.register_buffer("logvar", torch.tensor(2.0 * math.log(encoder_std)))
        self.config.update(beta=self.beta, encoder_std=float(encoder_std))

    def encoder_logvar(self, h_mean: Tensor, h_logvar: Tensor | None) -> Tensor:
        return self.logvar.to(h_mean.dtype).expand_as(h_mean)

    def loss(self, z: Tensor, mean: Tensor | None = None, logvar: Tensor | None = None) -> dict[str, Tensor]:
        mean = _require(mean, "mean", self.name, z)
        kl = 0.5 * mean.square().sum(dim=1).mean()
        return {"total": self.beta * kl, "kl": kl}


class RAERegularizer(LatentRegularizer):
    """RAE: beta * ||z||^2 (summed over dimensions, averaged over the batch) on deterministic codes.

    Decoder regularisation (L2 on the decoder's weights) is not part of this loss: the trainer applies
    it as the optimiser's weight decay on the decoder's parameters, ``decoder_weight_decay``. Sampling
    needs an ex-post GMM on the training codes: call ``fit_ex_post(codes)`` after training; it is a
    submodule, so it is saved and restored with ``state_dict``.
    """

    name = "rae"
    stochastic = False
    encoder_outputs = 1
    option_docs = {
        "beta": "weight of ||z||^2 (1e-3: a weak pull towards the origin relative to a summed "
        "cross-entropy; RAE only needs bounded codes, the ex-post GMM does the density)",
        "decoder_weight_decay": "L2 coefficient for the decoder's weights, applied as optimiser weight decay "
        "(1e-6, RAE-L2's CIFAR setting)",
    }

    def __init__(self, latent_dim: int, beta: float = 1e-3, decoder_weight_decay: float = 1e-6) -> None:
        super().__init__(latent_dim)
        self.beta = float(beta)
        self.decoder_weight_decay = float(decoder_weight_decay)
        self.ex_post: ExPostGMM | None
        self.register_module("ex_post", None)
        self.config.update(beta=self.beta, decoder_weight_decay=self.decoder_weight_decay)

    def loss(self, z: Tensor, mean: Tensor | None = None, logvar: Tensor | None = None) -> dict[str, Tensor]:
        _check_codes(z, self.latent_dim, 1, "rae loss")
        l2 = z.square().sum(dim=1).mean()
        return {"total": self.beta * l2, "l2": l2}

    def fit_ex_post(
        self, codes: Tensor | np.ndarray, n_components: int = 10, covariance: str = "full", seed: int = 0
    ) -> ExPostGMM:
        """Fit (or refit) the ex-post GMM on training codes [N, D] and keep it for ``sample_prior``."""
        gmm = fit_ex_post_gmm(codes, n_components=n_components, covariance=covariance, seed=seed)
        if gmm.dim != self.latent_dim:
            raise RegularizerError(f"codes have dim {gmm.dim} but latent_dim is {self.latent_dim}")
        self.ex_post = gmm.to(self._anchor.device)
        return self.ex_post

    def sample_prior(self, n: int, component: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        if self.ex_post is None:
            raise RegularizerError("the RAE has no ex-post GMM yet: call fit_ex_post(training codes) first")
        return self.ex_post.sample(n, component=component, generator=generator)

    @property
    def n_prior_components(self) -> int:
        return 0 if self.ex_post is None else self.ex_post.n_components

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:  # type: ignore[no-untyped-def]
        # A saved RAE may carry an ex-post GMM this instance does not have yet: build an empty one of
        # the saved shapes so the normal loading fills it (children load after this method).
        key = prefix + "ex_post.means"
        if self.ex_post is None and key in state_dict:
            saved = state_dict[key]
            k, d = saved.shape
            opts = {"dtype": saved.dtype, "device": self._anchor.device}
            self.ex_post = ExPostGMM(
                torch.full((k,), 1.0 / k, **opts), torch.zeros(k, d, **opts), torch.eye(d, **opts).expand(k, d, d)
            )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


class WAERegularizer(LatentRegularizer):
    """WAE-MMD: weight * MMD^2(z, fresh N(0, I) samples of the same size), IMQ kernels (``mmd_imq``)."""

    name = "wae"
    stochastic = False
    encoder_outputs = 1
    option_docs = {
        "weight": "weight of the MMD term (10.0, the WAE paper's MNIST setting)",
        "scales": "IMQ kernel scales, multiples of C = 2*latent_dim (WAE authors' code: 0.1 ... 10)",
    }

    def __init__(self, latent_dim: int, weight: float = 10.0, scales: tuple[float, ...] = WAE_IMQ_SCALES) -> None:
        super().__init__(latent_dim)
        scales = tuple(float(s) for s in scales)
        if not scales or any(not (math.isfinite(s) and s > 0) for s in scales):
            raise RegularizerError(f"scales must be a non-empty sequence of positive numbers, got {scales}")
        self.weight = float(weight)
        self.scales = scales
        self.config.update(weight=self.weight, scales=list(scales))

    def loss(self, z: Tensor, mean: Tensor | None = None, logvar: Tensor | None = None) -> dict[str, Tensor]:
        _check_codes(z, self.latent_dim, 2, "wae loss")
        mmd = mmd_imq(z, torch.randn_like(z), prior_var=1.0, scales=self.scales)
        return {"total": self.weight * mmd, "mmd": mmd}


# ----------------------------------------------------------------------------------------------
# Factory
# ----------------------------------------------------------------------------------------------

REGULARIZERS: dict[str, type[LatentRegularizer]] = {
    cls.name: cls for cls in (GMMRegularizer, VAERegularizer, CVVAERegularizer, RAERegularizer, WAERegularizer)
}
"""Name -> class, for the names of ``molks.model.names.REGULARIZER_NAMES`` (in its order)."""


def _lookup(name: str) -> type[LatentRegularizer]:
    if name not in REGULARIZER_NAMES:
        raise RegularizerError(f"unknown regulariser {name!r}; valid names: {', '.join(REGULARIZER_NAMES)}")
    return REGULARIZERS[name]


def regularizer_options(name: str) -> dict[str, tuple[Any, str]]:
    """Option -> (default, description) for the regulariser ``name`` (for CLI help and configs)."""
    cls = _lookup(name)
    params = inspect.signature(cls.__init__).parameters
    return {opt: (params[opt].default, doc) for opt, doc in cls.option_docs.items()}


# What each option accepts (names mean the same in every regulariser that has them): a predicate
# and the phrase for the error. Checked before anything is built, so that a typo in a training
# option is reported before a run directory is written.
_OPTION_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n_components": int_rule(1, MAX_COMPONENTS),
    "sigma": (lambda v: is_number(v) and v > 0, "a finite number > 0"),
    "radius": (lambda v: v is None or (is_number(v) and v >= 0), "null or a finite number >= 0"),
    "seed": int_rule(0, MAX_SEED),
    "n_weight_batches": int_rule(1, 100_000),  # estimated on every load: 10**9 would never load
    "latent_noise": (lambda v: is_number(v) and v >= 0, "a finite number >= 0 (and below sigma)"),
    "projections": (lambda v: is_int(v) and 0 <= v <= 4096, "an integer from 0 to 4096"),
    "beta": (lambda v: is_number(v) and v >= 0, "a finite number >= 0"),
    "encoder_std": (lambda v: is_number(v) and v > 0, "a finite number > 0"),
    "decoder_weight_decay": (lambda v: is_number(v) and v >= 0, "a finite number >= 0"),
    "weight": (lambda v: is_number(v) and v >= 0, "a finite number >= 0"),
    "scales": (
        lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(is_number(s) and s > 0 for s in v),
        "a non-empty list of finite numbers > 0",
    ),
}


def check_regularizer_options(name: str, options: dict[str, Any]) -> None:
    """Raise :class:`RegularizerError` for an unknown regulariser, an unknown option or a bad value."""
    cls = _lookup(name)
    unknown = sorted(set(options) - set(cls.option_docs))
    if unknown:
        raise RegularizerError(
            f"unknown option(s) {unknown} for regulariser {name!r}; accepted: {', '.join(cls.option_docs) or 'none'}"
        )
    for option, value in options.items():
        accepts, phrase = _OPTION_RULES.get(option, (lambda v: True, ""))
        if not accepts(value):
            raise RegularizerError(f"regulariser {name!r}: option {option} must be {phrase}, got {value!r}")


def make_regularizer(name: str, latent_dim: int, batch_size: int, **options: Any) -> LatentRegularizer:
    """Build the regulariser ``name`` (one of gmm, vae, cv-vae, rae, wae).

    ``batch_size`` is the training batch size (the GMM weights are estimated for it; checked >= 2 for
    all, since every batch loss needs two codes). ``options`` are those of ``regularizer_options(name)``;
    an unknown option is an error naming the accepted ones. ``reg.config`` records everything needed to
    rebuild it.
    """
    cls = _lookup(name)
    check_regularizer_options(name, options)
    if not (is_int(batch_size) and 2 <= batch_size <= MAX_BATCH_SIZE):  # the weights are estimated on batches of it
        raise RegularizerError(f"batch_size must be an integer from 2 to {MAX_BATCH_SIZE:,}, got {batch_size!r}")
    if cls is GMMRegularizer:
        reg: LatentRegularizer = cls(latent_dim, batch_size, **options)
    else:
        reg = cls(latent_dim, **options)
    reg.config.setdefault("batch_size", int(batch_size))
    return reg
