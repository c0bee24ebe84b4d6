"""GaussianMixturePrior: centre placement, sampling, marginal CDFs, covariance, densities."""

from __future__ import annotations

import math

import pytest
import torch

from molks.model.prior import GaussianMixturePrior, PriorError, default_centres, default_radius


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_single_component_sits_at_origin() -> None:
    prior = GaussianMixturePrior.with_default_centres(dim=5, n_components=1, sigma=0.5)
    assert torch.equal(prior.means, torch.zeros(1, 5))
    assert torch.allclose(prior.covariance(), 0.25 * torch.eye(5))


def test_axis_centres_for_few_components() -> None:
    means = default_centres(dim=3, n_components=5, radius=2.0)
    expected = torch.tensor(
        [[2.0, 0, 0], [-2.0, 0, 0], [0, 2.0, 0], [0, -2.0, 0], [0, 0, 2.0]]
    )
    assert torch.equal(means, expected)
    # No seed involved for the axis placement.
    assert torch.equal(default_centres(3, 5, 2.0, seed=123), means)
    # Default radius: neighbouring axis centres exactly 6 sigma apart.
    prior = GaussianMixturePrior.with_default_centres(dim=4, n_components=4, sigma=0.5)
    dists = torch.pdist(prior.means)
    assert dists.min().item() == pytest.approx(6 * 0.5, rel=1e-6)
    assert default_radius(0.5) == pytest.approx(3 * math.sqrt(2) * 0.5)


def test_sphere_centres_for_many_components_are_spread_and_seeded() -> None:
    means = default_centres(dim=2, n_components=10, radius=3.0, seed=1)
    assert means.shape == (10, 2)
    assert torch.allclose(means.norm(dim=1), torch.full((10,), 3.0), atol=1e-5)
    # On a circle the repulsion reaches the even spacing 2 r sin(pi / K).
    even = 2 * 3.0 * math.sin(math.pi / 10)
    assert torch.pdist(means).min().item() > 0.95 * even
    assert torch.equal(default_centres(2, 10, 3.0, seed=1), means)
    assert not torch.equal(default_centres(2, 10, 3.0, seed=2), means)


def test_one_dimensional_many_components_are_evenly_spaced() -> None:
    assert torch.allclose(default_centres(dim=1, n_components=3, radius=2.0), torch.tensor([[-2.0], [0.0], [2.0]]))


def test_sample_component_lands_near_its_centre() -> None:
    prior = GaussianMixturePrior.with_default_centres(dim=3, n_components=6, sigma=0.7, radius=4.0)
    for k in range(prior.n_components):
        z = prior.sample(4000, component=k, generator=_gen(k))
        assert torch.allclose(z.mean(0), prior.means[k], atol=0.05)
        assert torch.allclose(z.std(0), torch.full((3,), 0.7), rtol=0.05)
        assert (prior.component_of(z) == k).float().mean() > 0.99


def test_sample_mixes_components_equally_and_is_reproducible() -> None:
    prior = GaussianMixturePrior.with_default_centres(dim=2, n_components=4, sigma=1.0)
    z = prior.sample(20000, generator=_gen(3))
    counts = torch.bincount(prior.component_of(z), minlength=4).float() / 20000
    assert torch.allclose(counts, torch.full((4,), 0.25), atol=0.02)
    assert torch.equal(prior.sample(50, generator=_gen(7)), prior.sample(50, generator=_gen(7)))


def test_marginal_cdf_matches_empirical_cdf() -> None:
    means = torch.tensor([[3.0, -1.0], [-2.0, 0.5], [0.0, 4.0]])
    prior = GaussianMixturePrior(means, sigma=0.8)
    z = prior.sample(40000, generator=_gen(0))
    grid = torch.linspace(-5, 6, 23)
    points = torch.stack([grid, grid], dim=1)  # [23, 2]
    cdf = prior.marginal_cdf(points)
    empirical = (z.unsqueeze(0) <= points.unsqueeze(1)).float().mean(1)  # [23, 2]
    assert cdf.shape == (23, 2)
    assert (cdf - empirical).abs().max() < 0.01
    # Monotone in t and within [0, 1].
    assert (cdf.diff(dim=0) >= 0).all() and (cdf >= 0).all() and (cdf <= 1).all()


def test_covariance_is_law_of_total_variance() -> None:
    # Three components: the mean of the centres is not the origin.
    means = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, -1.0], [-1.0, 1.0, 0.0]])
    prior = GaussianMixturePrior(means, sigma=0.6)
    z = prior.sample(200000, generator=_gen(1))
    centred = z - z.mean(0)
    empirical = centred.T @ centred / z.shape[0]
    assert torch.allclose(prior.covariance(), empirical, atol=0.03)
    assert torch.allclose(prior.covariance(), prior.covariance().T)


def test_log_prob_matches_torch_distributions() -> None:
    means = torch.tensor([[1.0, 2.0], [-3.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    prior = GaussianMixturePrior(means, sigma=1.3)
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=torch.full((3,), 1 / 3, dtype=torch.float64)),
        torch.distributions.Independent(torch.distributions.Normal(means, 1.3), 1),
    )
    z = torch.randn(50, 2, generator=_gen(2), dtype=torch.float64) * 3
    assert torch.allclose(prior.log_prob(z), reference.log_prob(z))
    comp = prior.component_log_prob(z).argmax(1)
    assert torch.equal(prior.component_of(z), comp)


def test_buffers_move_with_to_and_are_saved() -> None:
    prior = GaussianMixturePrior.with_default_centres(dim=3, n_components=2, sigma=0.5)
    assert set(prior.state_dict()) == {"means", "sigma"}
    double = prior.to(torch.float64)
    assert double.means.dtype == torch.float64 and double.sigma.dtype == torch.float64
    assert double.sample(4).dtype == torch.float64
    z = torch.randn(7, 3, dtype=torch.float64)
    assert double.marginal_cdf(z).dtype == torch.float64
    restored = GaussianMixturePrior(torch.zeros(2, 3), sigma=1.0)
    restored.load_state_dict(prior.state_dict())
    assert torch.equal(restored.means, prior.means) and float(restored.sigma) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "build",
    [
        lambda: GaussianMixturePrior(torch.zeros(3), sigma=1.0),
        lambda: GaussianMixturePrior(torch.zeros(2, 3), sigma=0.0),
        lambda: GaussianMixturePrior(torch.tensor([[float("nan"), 0.0]]), sigma=1.0),
        lambda: default_centres(0, 2, 1.0),
        lambda: default_centres(2, 0, 1.0),
    ],
)
def test_bad_construction_is_rejected(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PriorError):
        build()


def test_bad_queries_are_rejected() -> None:
    prior = GaussianMixturePrior.with_default_centres(dim=3, n_components=2)
    with pytest.raises(PriorError, match="component"):
        prior.sample(3, component=2)
    with pytest.raises(PriorError, match=r"\[N, 3\]"):
        prior.marginal_cdf(torch.zeros(4, 2))
    assert issubclass(PriorError, ValueError)
