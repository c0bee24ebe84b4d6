"""The latent-space prior: a Gaussian mixture with equal weights and a shared isotropic sigma.

p(z) = (1/K) sum_k N(z; mu_k, sigma^2 I), z in R^d. The means are a registered buffer [K, d]
and sigma a 0-d buffer, so both move with ``.to(device/dtype)`` and are saved in ``state_dict``.

Centre placement (``default_centres``), deterministic so a model can be rebuilt from
(dim, n_components, sigma, radius, seed) alone:

* K = 1: the origin, i.e. the prior is N(0, sigma^2 I), the VAE prior.
* 2 <= K <= 2d: +radius e_1, -radius e_1, +radius e_2, -radius e_2, ... (signed coordinate axes,
  in that order). Distinct centres are at least radius*sqrt(2) apart (2*radius for K = 2), no seed
  is involved, each centre lies on one axis so the layout is easy to read off (and to plot), and for
  even K the centres' mean is the origin and the mixture covariance is diagonal.
* K > 2d (more components than signed axes), d >= 2: points on the sphere of that radius, spread out
  rather than clumped as plain random points can be in low dimension: greedy farthest-point
  selection from seeded uniform candidates, then a fixed number of projected gradient steps on the
  sphere that minimise the repulsion energy sum 1/|c_i - c_j|^2 (on a circle this reaches the even
  spacing). Reproducible from ``seed``; cost O(K^2 d) per step, meant for K up to a few hundred.
* K > 2 in d = 1 (the "sphere" is two points): evenly spaced on [-radius, radius].

The default radius, ``3*sqrt(2)*sigma``, puts neighbouring axis centres 6 sigma apart: the
separation the authors' public code enforces between prior means (it rescales its centres until
the minimum pairwise distance is 6 with sigma = 1), so components barely overlap.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from molks.errors import InputError

__all__ = ["GaussianMixturePrior", "PriorError", "default_centres", "default_radius"]


class PriorError(InputError):
    """A prior was built or queried with invalid arguments (bad shapes, sigma <= 0, ...)."""


def default_radius(sigma: float) -> float:
    """Default centre radius: 3*sqrt(2)*sigma, so neighbouring axis centres are 6 sigma apart."""
    return 3.0 * math.sqrt(2.0) * float(sigma)


def default_centres(
    dim: int,
    n_components: int,
    radius: float,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Deterministic component means [K, d]; see the module docstring for the rule and why.

    ``seed`` only matters when K > 2d (points on the sphere); the axis placement ignores it.
    """
    if dim < 1:
        raise PriorError(f"dim must be >= 1, got {dim}")
    if n_components < 1:
        raise PriorError(f"n_components must be >= 1, got {n_components}")
    if not math.isfinite(radius) or radius < 0:
        raise PriorError(f"radius must be a finite number >= 0, got {radius}")
    if n_components == 1:
        return torch.zeros(1, dim, dtype=dtype)
    if n_components <= 2 * dim:
        means = torch.zeros(n_components, dim, dtype=torch.float64)
        for k in range(n_components):
            means[k, k // 2] = radius if k % 2 == 0 else -radius
        return means.to(dtype)
    if dim == 1:
        return torch.linspace(-radius, radius, n_components, dtype=torch.float64).unsqueeze(1).to(dtype)
    return (radius * _spread_on_sphere(dim, n_components, seed)).to(dtype)


def _spread_on_sphere(dim: int, n: int, seed: int, steps: int = 200) -> Tensor:
    """n well-separated unit vectors [n, dim] (float64): farthest-point selection, then repulsion."""
    gen = torch.Generator().manual_seed(int(seed))
    candidates = torch.randn(max(64 * n, 1024), dim, generator=gen, dtype=torch.float64)
    candidates = candidates / candidates.norm(dim=1, keepdim=True).clamp_min(1e-12)
    chosen = [0]
    min_dist = (candidates - candidates[0]).norm(dim=1)
    for _ in range(n - 1):
        nxt = int(torch.argmax(min_dist))
        chosen.append(nxt)
        min_dist = torch.minimum(min_dist, (candidates - candidates[nxt]).norm(dim=1))
    x = candidates[chosen]
    # Greedy selection only guarantees half the best minimum spacing: relax with a repulsion energy,
    # projected on the sphere, with a step that shrinks linearly to zero (deterministic, no tuning).
    eye = torch.eye(n, dtype=torch.float64)
    for t in range(steps):
        diff = x.unsqueeze(1) - x.unsqueeze(0)  # [n, n, dim]
        inv_d2 = 1.0 / (diff.square().sum(-1) + eye) - eye
        grad = -2.0 * (inv_d2.square().unsqueeze(-1) * diff).sum(1)  # d/dx_i of sum_{i<j} 1/|x_i-x_j|^2
        grad = grad - (grad * x).sum(1, keepdim=True) * x  # tangent part
        step = 0.1 / math.sqrt(n) * (1.0 - t / steps) / grad.norm(dim=1).max().clamp_min(1e-12)
        x = x - step * grad
        x = x / x.norm(dim=1, keepdim=True)
    return x


class GaussianMixturePrior(nn.Module):
    """Equal-weight GMM with shared isotropic standard deviation.

    Args:
        means: [K, d] component means (copied into a buffer).
        sigma: shared standard deviation (> 0) of every component in every dimension.
    """

    means: Tensor
    sigma: Tensor

    def __init__(self, means: Tensor, sigma: float = 1.0) -> None:
        super().__init__()
        means = torch.as_tensor(means)
        if means.ndim != 2 or means.shape[0] < 1 or means.shape[1] < 1:
            raise PriorError(f"means must have shape [K, d] with K, d >= 1, got {tuple(means.shape)}")
        if not means.is_floating_point():
            means = means.to(torch.get_default_dtype())
        if not torch.isfinite(means).all():
            raise PriorError("means must be finite")
        sigma = float(sigma)
        if not math.isfinite(sigma) or sigma <= 0:
            raise PriorError(f"sigma must be a finite number > 0, got {sigma}")
        self.register_buffer("means", means.detach().clone())
        self.register_buffer("sigma", torch.tensor(sigma, dtype=means.dtype))

    @classmethod
    def with_default_centres(
        cls,
        dim: int,
        n_components: int = 1,
        sigma: float = 1.0,
        radius: float | None = None,
        seed: int = 0,
    ) -> "GaussianMixturePrior":
        """Prior with centres from ``default_centres``; radius None -> ``default_radius(sigma)``."""
        if radius is None:
            radius = default_radius(sigma)
        return cls(default_centres(dim, n_components, radius, seed), sigma)

    @property
    def dim(self) -> int:
        """d, the latent dimension."""
        return int(self.means.shape[1])

    @property
    def n_components(self) -> int:
        """K, the number of mixture components."""
        return int(self.means.shape[0])

    def extra_repr(self) -> str:
        return f"n_components={self.n_components}, dim={self.dim}, sigma={float(self.sigma):.4g}"

    def _check_z(self, z: Tensor) -> None:
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise PriorError(f"z must have shape [N, {self.dim}], got {tuple(z.shape)}")

    def sample(self, n: int, component: int | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Draw n points [n, d]; ``component`` = k draws from component k only.

        A ``generator`` must live on the same device as the buffers.
        """
        if n < 0:
            raise PriorError(f"n must be >= 0, got {n}")
        device, dtype = self.means.device, self.means.dtype
        if component is None:
            idx = torch.randint(self.n_components, (n,), generator=generator, device=device)
        else:
            if not 0 <= int(component) < self.n_components:
                raise PriorError(f"component must be in [0, {self.n_components}), got {component}")
            idx = torch.full((n,), int(component), dtype=torch.long, device=device)
        noise = torch.randn(n, self.dim, generator=generator, device=device, dtype=dtype)
        return self.means[idx] + self.sigma * noise

    def marginal_cdf(self, z: Tensor) -> Tensor:
        """Per-dimension marginal CDFs [N, d]: F_j(t) = (1/K) sum_k Phi((t - mu_kj) / sigma)."""
        self._check_z(z)
        means = self.means.to(z.dtype)
        # [N, 1, d] - [1, K, d] -> [N, K, d], averaged over components.
        return torch.special.ndtr((z.unsqueeze(1) - means.unsqueeze(0)) / self.sigma.to(z.dtype)).mean(dim=1)

    def covariance(self) -> Tensor:
        """Mixture covariance [d, d] by the law of total variance: sigma^2 I + (1/K) sum_k c_k c_k^T,
        with c_k = mu_k - mean_k(mu_k)."""
        centred = self.means - self.means.mean(dim=0, keepdim=True)
        between = centred.T @ centred / self.n_components
        return self.sigma**2 * torch.eye(self.dim, dtype=self.means.dtype, device=self.means.device) + between

    def component_log_prob(self, z: Tensor) -> Tensor:
        """log N(z_n; mu_k, sigma^2 I) for every point and component, [N, K]."""
        self._check_z(z)
        means = self.means.to(z.dtype)
        sigma = self.sigma.to(z.dtype)
        # Explicit differences rather than cdist: exact in float32 and smooth at zero distance.
        sq = (z.unsqueeze(1) - means.unsqueeze(0)).square().sum(dim=-1)
        return -0.5 * sq / sigma**2 - self.dim * (torch.log(sigma) + 0.5 * math.log(2 * math.pi))

    def log_prob(self, z: Tensor) -> Tensor:
        """Mixture log density [N]."""
        return torch.logsumexp(self.component_log_prob(z), dim=1) - math.log(self.n_components)

    def component_of(self, z: Tensor) -> Tensor:
        """Index [N] (long) of the most likely component (equal weights, shared sigma: the nearest mean)."""
        self._check_z(z)
        sq = (z.unsqueeze(1) - self.means.to(z.dtype).unsqueeze(0)).square().sum(dim=-1)
        return sq.argmin(dim=1)
