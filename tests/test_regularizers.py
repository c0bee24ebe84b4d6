"""Latent regularisers: the method's KS / CV losses, their weights, the baselines and the factory."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from molks.model.prior import GaussianMixturePrior
from molks.model.regularizers import (
    REGULARIZERS,
    CVVAERegularizer,
    ExPostGMM,
    GMMRegularizer,
    RAERegularizer,
    RegularizerError,
    VAERegularizer,
    cv_loss,
    estimate_loss_weights,
    expected_ks_loss,
    fit_ex_post_gmm,
    fit_ex_post_kde,
    ks_loss,
    make_regularizer,
    mmd_imq,
    regularizer_options,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mean_loss(loss, prior, n: int, transform=lambda z: z, batches: int = 40) -> float:  # type: ignore[no-untyped-def]
    """Mean of loss(transform(prior batch of n), prior) over ``batches`` seeded batches."""
    gen = _gen(11)
    return sum(float(loss(transform(prior.sample(n, generator=gen)), prior)) for _ in range(batches)) / batches


# --- KS / CV definitions -----------------------------------------------------------------------


def test_ks_and_cv_match_hand_computed_values() -> None:
    standard = GaussianMixturePrior(torch.zeros(1, 1), sigma=1.0)
    # Empirical CDF i/N at the sorted values: 0 and +inf-ish sit exactly at Phi = 1/2 and 1.
    assert float(ks_loss(torch.tensor([[10.0], [0.0]]), standard)) == pytest.approx(0.0, abs=1e-12)
    # (1/2 - 0)^2 + (1 - 1/2)^2, averaged over N = 2.
    assert float(ks_loss(torch.tensor([[0.0], [-10.0]]), standard)) == pytest.approx(0.25)
    # Covariance divides by N: Sigma_hat = diag(1, 0) against I -> one entry off by 1, over d^2 = 4.
    standard_2d = GaussianMixturePrior(torch.zeros(1, 2), sigma=1.0)
    assert float(cv_loss(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), standard_2d)) == pytest.approx(0.25)
    with pytest.raises(RegularizerError, match="at least 2"):
        cv_loss(torch.zeros(1, 2), standard_2d)
    with pytest.raises(RegularizerError, match=r"\[N, 2\]"):
        ks_loss(torch.zeros(3, 3), standard_2d)


# --- KS / CV on true prior samples -------------------------------------------------------------


@pytest.mark.parametrize(
    "prior",
    [
        GaussianMixturePrior.with_default_centres(dim=3, n_components=1),
        GaussianMixturePrior.with_default_centres(dim=2, n_components=4, sigma=0.5),
        GaussianMixturePrior.with_default_centres(dim=2, n_components=7, sigma=1.0, seed=3),
    ],
)
def test_ks_weight_matches_exact_expectation(prior: GaussianMixturePrior) -> None:
    # E[L_KS] on true samples does not depend on the prior: Beta order statistics give it exactly.
    lam_ks, lam_cv = estimate_loss_weights(prior, batch_size=64, n_batches=400, generator=_gen(0))
    assert 1.0 / lam_ks == pytest.approx(expected_ks_loss(64), rel=0.1)
    assert lam_cv > 0
    assert expected_ks_loss(64) == pytest.approx(1 / (6 * 64), rel=0.05)


def test_cv_weight_matches_wishart_expectation() -> None:
    # Standard normal prior: N * Sigma_hat is Wishart(I, N - 1), so
    # E[L_CV] = ((2N - 1) + (d - 1)(N - 1)) / (d N^2).
    d, n = 3, 50
    prior = GaussianMixturePrior.with_default_centres(dim=d, n_components=1)
    _, lam_cv = estimate_loss_weights(prior, batch_size=n, n_batches=400, generator=_gen(1))
    assert 1.0 / lam_cv == pytest.approx(((2 * n - 1) + (d - 1) * (n - 1)) / (d * n**2), rel=0.1)


def test_losses_grow_on_shifted_scaled_rotated_samples() -> None:
    prior = GaussianMixturePrior(torch.tensor([[3.0, 0.0], [-3.0, 0.0]]), sigma=1.0)
    n = 200
    lam_ks, lam_cv = estimate_loss_weights(prior, n, n_batches=100, generator=_gen(2))
    ks_ref, cv_ref = 1 / lam_ks, 1 / lam_cv
    assert _mean_loss(ks_loss, prior, n) == pytest.approx(ks_ref, rel=0.3)
    assert _mean_loss(cv_loss, prior, n) == pytest.approx(cv_ref, rel=0.3)

    c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
    rotation = torch.tensor([[c, -s], [s, c]])
    shifted = lambda z: z + 1.0  # noqa: E731
    scaled = lambda z: 2.0 * z  # noqa: E731
    rotated = lambda z: z @ rotation.T  # noqa: E731

    assert _mean_loss(ks_loss, prior, n, shifted) > 20 * ks_ref
    assert _mean_loss(ks_loss, prior, n, scaled) > 20 * ks_ref
    assert _mean_loss(ks_loss, prior, n, rotated) > 20 * ks_ref
    assert _mean_loss(cv_loss, prior, n, scaled) > 100 * cv_ref
    assert _mean_loss(cv_loss, prior, n, rotated) > 100 * cv_ref
    # The covariance term is blind to a shift (that is KS's job).
    z = prior.sample(n, generator=_gen(3))
    assert float(cv_loss(z + 1.0, prior)) == pytest.approx(float(cv_loss(z, prior)), rel=1e-4)


def test_cv_separates_what_ks_cannot() -> None:
    # Centres on the diagonal vs the anti-diagonal: identical marginals, opposite correlation.
    r, n = 2.0, 200
    diagonal = GaussianMixturePrior(torch.tensor([[r, r], [-r, -r]]), sigma=1.0)
    anti = GaussianMixturePrior(torch.tensor([[r, -r], [-r, r]]), sigma=1.0)
    gen = _gen(4)
    ks_same, ks_other, cv_same, cv_other = 0.0, 0.0, 0.0, 0.0
    for _ in range(20):
        z_same, z_other = diagonal.sample(n, generator=gen), anti.sample(n, generator=gen)
        ks_same += float(ks_loss(z_same, diagonal))
        ks_other += float(ks_loss(z_other, diagonal))
        cv_same += float(cv_loss(z_same, diagonal))
        cv_other += float(cv_loss(z_other, diagonal))
    assert 0.5 < ks_other / ks_same < 2.0
    assert ks_other / 20 < 2 * expected_ks_loss(n)
    assert cv_other > 100 * cv_same


# --- gradients ---------------------------------------------------------------------------------


def test_losses_have_correct_gradients() -> None:
    prior = GaussianMixturePrior(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.5, 0.0]], dtype=torch.float64), 0.8)
    z = torch.randn(12, 3, generator=_gen(5), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: ks_loss(x, prior), (z,))
    assert torch.autograd.gradcheck(lambda x: cv_loss(x, prior), (z,))


def test_gmm_loss_gradients_flow_through_an_encoder_and_fit_the_prior() -> None:
    torch.manual_seed(0)
    n = 256
    reg = GMMRegularizer(latent_dim=2, batch_size=n, n_components=2, sigma=1.0, radius=2.0, n_weight_batches=64)
    x = torch.randn(n, 4, generator=_gen(6))
    encoder = torch.nn.Linear(4, 2)
    with torch.no_grad():
        encoder.weight.mul_(3.0)
        encoder.bias.fill_(2.0)
    z = reg.latent(encoder(x))
    start = reg.loss(z)
    start["total"].backward()
    start = {k: v.detach() for k, v in start.items()}
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0
    assert torch.isfinite(encoder.weight.grad).all()

    optimizer = torch.optim.Adam(encoder.parameters(), lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        reg.loss(encoder(x))["total"].backward()
        optimizer.step()
    with torch.no_grad():
        end = reg.loss(encoder(x))
    # A linear map of a Gaussian cannot become bimodal, but it must get far closer than it started.
    assert float(end["total"]) < 0.05 * float(start["total"])
    assert float(end["cv"]) < 0.1 * float(start["cv"])


# --- factory and baselines ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gmm", "vae", "cv-vae", "rae", "wae"])
def test_factory_builds_every_regularizer(name: str) -> None:
    torch.manual_seed(1)
    d, b = 4, 32
    options = {"n_weight_batches": 16} if name == "gmm" else {}
    reg = make_regularizer(name, latent_dim=d, batch_size=b, **options)
    assert reg.name == name and reg.config["name"] == name and reg.config["batch_size"] == b
    mean = torch.randn(b, d, requires_grad=True)
    logvar = torch.randn(b, d).mul(0.1).requires_grad_(True) if reg.encoder_outputs == 2 else None
    z = reg.latent(mean, logvar)
    terms = reg.loss(z, mean, logvar)
    assert "total" in terms and len(terms) >= 2
    for value in terms.values():
        assert value.ndim == 0 and torch.isfinite(value)
    terms["total"].backward()
    assert mean.grad is not None and mean.grad.abs().sum() > 0
    if logvar is not None:
        assert logvar.grad is not None and logvar.grad.abs().sum() > 0
    if name == "rae":
        with pytest.raises(RegularizerError, match="fit_ex_post"):
            reg.sample_prior(3)
        reg.fit_ex_post(torch.randn(200, d), n_components=2)
    samples = reg.sample_prior(5, generator=_gen(0))
    assert samples.shape == (5, d) and torch.isfinite(samples).all()
    # Every option has a description and a default.
    for option, (default, doc) in regularizer_options(name).items():
        assert doc and default is not inspect.Parameter.empty


def test_factory_rejects_bad_names_and_options() -> None:
    with pytest.raises(RegularizerError) as err:
        make_regularizer("gvae", latent_dim=2, batch_size=8)
    for valid in REGULARIZERS:
        assert valid in str(err.value)
    with pytest.raises(RegularizerError, match="beta"):
        make_regularizer("vae", latent_dim=2, batch_size=8, sigma=1.0)
    with pytest.raises(RegularizerError, match="batch_size"):
        make_regularizer("vae", latent_dim=2, batch_size=1)


def test_encoder_heads_are_checked() -> None:
    vae = make_regularizer("vae", 3, 8)
    with pytest.raises(RegularizerError, match="logvar"):
        vae.latent(torch.zeros(2, 3))
    rae = make_regularizer("rae", 3, 8)
    with pytest.raises(RegularizerError, match="mean-only"):
        rae.latent(torch.zeros(2, 3), torch.zeros(2, 3))


def test_vae_kl_is_zero_at_the_prior_and_matches_torch() -> None:
    reg = VAERegularizer(latent_dim=5)
    zeros = torch.zeros(7, 5)
    assert float(reg.loss(zeros, zeros, zeros)["kl"]) == 0.0
    mean, logvar = torch.randn(7, 5, generator=_gen(1)), torch.randn(7, 5, generator=_gen(2))
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(5), torch.ones(5))
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert torch.allclose(reg.loss(mean, mean, logvar)["kl"], expected, atol=1e-5)
    # Reparameterisation: sampled while training, the mean in eval mode.
    z = reg.latent(torch.zeros(4000, 5), torch.full((4000, 5), math.log(4.0)), training=True)
    assert z.std().item() == pytest.approx(2.0, rel=0.05)
    assert torch.equal(reg.eval().latent(mean, logvar), mean)


def test_vae_free_bits_leave_small_kl_unpenalised() -> None:
    # Dimension 0 carries 2 nats, dimensions 1-3 carry 0.045 each: with 0.5 free bits only the
    # first is penalised as it is; the others cost the floor and get no gradient towards collapse.
    mean = torch.zeros(4, 4)
    mean[:, 0] = 2.0
    mean[:, 1:] = 0.3
    logvar = torch.zeros(4, 4, requires_grad=True)
    reg = VAERegularizer(latent_dim=4, free_bits=0.5)
    terms = reg.loss(mean, mean, logvar)
    assert float(terms["kl"]) == pytest.approx(2.0 + 3 * 0.045)
    assert float(terms["total"]) == pytest.approx(2.0 + 3 * 0.5)
    mean.requires_grad_(True)
    reg.loss(mean, mean, logvar)["total"].backward()
    assert mean.grad is not None and torch.all(mean.grad[:, 1:] == 0) and torch.all(mean.grad[:, 0] > 0)
    assert float(VAERegularizer(latent_dim=4).loss(mean, mean, logvar)["total"]) == pytest.approx(2.0 + 3 * 0.045)
    with pytest.raises(RegularizerError, match="free_bits"):
        VAERegularizer(latent_dim=4, free_bits=-1.0)


def test_cv_vae_uses_its_constant_variance() -> None:
    reg = CVVAERegularizer(latent_dim=3, encoder_std=0.3)
    mean = torch.ones(5000, 3)
    z = reg.train().latent(mean)
    assert (z - mean).std().item() == pytest.approx(0.3, rel=0.05)
    assert torch.equal(reg.eval().latent(mean), mean)
    assert float(reg.loss(z, mean)["kl"]) == pytest.approx(0.5 * 3)
    assert float(reg.logvar) == pytest.approx(2 * math.log(0.3))


def test_wae_mmd_is_smaller_for_prior_samples() -> None:
    reg = make_regularizer("wae", latent_dim=4, batch_size=128)
    torch.manual_seed(2)
    prior_like = sum(float(reg.loss(torch.randn(128, 4))["mmd"]) for _ in range(10)) / 10
    shifted = sum(float(reg.loss(torch.randn(128, 4) + 1.0)["mmd"]) for _ in range(10)) / 10
    assert shifted > 10 * abs(prior_like)
    x = torch.randn(64, 4, generator=_gen(3))
    assert float(mmd_imq(x, x + 2.0)) > float(mmd_imq(x, torch.randn(64, 4, generator=_gen(4))))


def test_rae_l2_and_decoder_weight_decay() -> None:
    reg = RAERegularizer(latent_dim=2, beta=0.5, decoder_weight_decay=1e-5)
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    terms = reg.loss(z)
    assert float(terms["l2"]) == pytest.approx(12.5) and float(terms["total"]) == pytest.approx(6.25)
    assert reg.decoder_weight_decay == 1e-5


# --- ex-post GMM -------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance", ["full", "diag", "tied", "spherical"])
def test_ex_post_gmm_samples_follow_the_codes(covariance: str) -> None:
    gen = _gen(7)
    codes = torch.cat([torch.randn(300, 3, generator=gen) * 0.5 + 4.0, torch.randn(300, 3, generator=gen) - 2.0])
    gmm = fit_ex_post_gmm(codes, n_components=2, covariance=covariance, seed=0)
    samples = gmm.sample(4000, generator=_gen(8))
    assert torch.allclose(samples.mean(0), codes.mean(0), atol=0.15)
    assert torch.allclose(samples.std(0), codes.std(0), rtol=0.1)
    assert torch.allclose(gmm.weights, torch.full((2,), 0.5), atol=0.02)


def test_ex_post_gmm_round_trips_through_safetensors_and_state_dict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    codes = torch.randn(200, 3, generator=_gen(9)) * 2.0 + 1.0
    rae = RAERegularizer(latent_dim=3)
    rae.fit_ex_post(codes, n_components=3)
    path = tmp_path / "ex_post.safetensors"
    save_file(rae.ex_post.to_tensors(), str(path))
    restored = ExPostGMM.from_tensors(load_file(str(path)))
    assert torch.equal(restored.sample(10, generator=_gen(1)), rae.ex_post.sample(10, generator=_gen(1)))
    # A fresh RAE picks the ex-post GMM up from a state_dict.
    fresh = RAERegularizer(latent_dim=3)
    fresh.load_state_dict(rae.state_dict())
    assert torch.equal(fresh.sample_prior(10, generator=_gen(2)), rae.sample_prior(10, generator=_gen(2)))
    assert torch.allclose(fresh.ex_post.log_prob(codes), rae.ex_post.log_prob(codes))


def test_ex_post_gmm_rejects_bad_input() -> None:
    with pytest.raises(RegularizerError, match="covariance"):
        fit_ex_post_gmm(torch.randn(20, 2), covariance="banded")
    with pytest.raises(RegularizerError, match="codes"):
        fit_ex_post_gmm(torch.randn(5, 2), n_components=10)


def test_ex_post_kde_draws_a_code_plus_kernel_noise_and_has_the_kernel_density() -> None:
    codes = torch.tensor([[0.0, 0.0], [10.0, -10.0], [-10.0, 10.0]])
    kde = fit_ex_post_kde(codes, bandwidth=0.5)
    assert kde.shared_covariance and kde.scale_tril.shape == (1, 2, 2) and kde.n_components == 3
    samples = kde.sample(6000, generator=_gen(3))
    nearest = torch.cdist(samples, codes).argmin(dim=1)
    assert torch.allclose(torch.bincount(nearest, minlength=3).float() / 6000, torch.full((3,), 1 / 3), atol=0.03)
    offsets = samples - codes[nearest]
    assert torch.allclose(offsets.std(0), torch.full((2,), 0.5), rtol=0.05) and offsets.mean(0).abs().max() < 0.03
    # The density of an equal-weight mixture of N(code, 0.25 I), written out.
    z = torch.tensor([[0.3, -0.2], [9.0, -9.5]])
    by_hand = torch.logsumexp(
        torch.distributions.Normal(codes.unsqueeze(0), 0.5).log_prob(z.unsqueeze(1)).sum(-1) - math.log(3), dim=1
    )
    assert torch.allclose(kde.log_prob(z), by_hand, atol=1e-5)
    # Stored as an ex-post GMM is: the same tensors come back.
    restored = ExPostGMM.from_tensors(kde.to_tensors())
    assert torch.equal(restored.sample(5, generator=_gen(4)), kde.sample(5, generator=_gen(4)))


@pytest.mark.parametrize("bandwidth", [0.0, -1.0, float("nan"), float("inf")])
def test_ex_post_kde_rejects_bad_bandwidths_and_codes(bandwidth: float) -> None:
    with pytest.raises(RegularizerError, match="bandwidth"):
        fit_ex_post_kde(torch.randn(4, 2), bandwidth)
    with pytest.raises(RegularizerError, match="codes"):
        fit_ex_post_kde(torch.tensor([[0.0, float("nan")]]), 0.5)
    with pytest.raises(RegularizerError, match="scale_tril"):
        ExPostGMM(torch.ones(3) / 3, torch.zeros(3, 2), torch.eye(2).expand(2, 2, 2).clone())  # neither K nor 1


# --- GMM regulariser state ---------------------------------------------------------------------


def test_gmm_weights_and_prior_survive_state_dict_round_trip() -> None:
    original = GMMRegularizer(latent_dim=3, batch_size=32, n_components=4, sigma=0.7, n_weight_batches=32, seed=1)
    other = GMMRegularizer(latent_dim=3, batch_size=128, n_components=4, sigma=1.0, n_weight_batches=8, seed=2)
    assert not torch.equal(original.lambda_ks, other.lambda_ks)
    state = original.state_dict()
    assert {"lambda_ks", "lambda_cv", "prior.means", "prior.sigma"} <= set(state)
    other.load_state_dict(state)
    for key, value in state.items():
        assert torch.equal(other.state_dict()[key], value)
    z = torch.randn(32, 3, generator=_gen(3))
    assert torch.equal(other.loss(z)["total"], original.loss(z)["total"])


def test_gmm_sample_prior_by_component() -> None:
    reg = GMMRegularizer(latent_dim=3, batch_size=16, n_components=5, sigma=0.5, n_weight_batches=4)
    assert reg.n_prior_components == 5
    for k in range(5):
        z = reg.sample_prior(2000, component=k, generator=_gen(k))
        assert torch.allclose(z.mean(0), reg.prior.means[k], atol=0.05)
    with pytest.raises(RegularizerError, match="component"):
        reg.sample_prior(3, component=5)
    with pytest.raises(RegularizerError, match="single-component"):
        make_regularizer("vae", 3, 8).sample_prior(3, component=1)


# ----------------------------------------------------------------------------------------------
# Levers for sample quality: noise on the decoder's codes, and the sliced KS
# ----------------------------------------------------------------------------------------------


def test_latent_noise_makes_code_plus_noise_distributed_as_the_prior() -> None:
    from molks.model.regularizers import sliced_ks_loss

    reg = GMMRegularizer(8, 512, n_components=4, sigma=1.0, latent_noise=0.6)
    inner = reg.code_prior
    assert math.isclose(float(inner.sigma), 0.8, rel_tol=1e-6)
    assert torch.equal(inner.means, reg.prior.means)
    # Codes that match the inner mixture, plus the training noise, are samples of the prior: their
    # KS and CV to the prior are those of true prior samples; the codes alone are far from it.
    codes = inner.sample(4096, generator=_gen(1))
    noisy = reg.train().latent(codes)
    assert float(ks_loss(noisy, reg.prior)) < 2 * expected_ks_loss(4096)
    assert float(ks_loss(codes, reg.prior)) > 5 * expected_ks_loss(4096)
    assert float(cv_loss(noisy, reg.prior)) < 0.2 * float(cv_loss(codes, reg.prior))
    # The loss scores the noise-free codes against the inner mixture; evaluation gives the code itself.
    assert float(reg.loss(noisy, codes)["ks"]) < 2 * expected_ks_loss(4096)
    assert torch.equal(reg.eval().latent(codes), codes)
    # Sampling is from the prior itself.
    assert torch.equal(reg.sample_prior(5, generator=_gen(2)), reg.prior.sample(5, generator=_gen(2)))
    assert float(sliced_ks_loss(noisy, reg.prior, 16, generator=_gen(3))) < 3 * expected_ks_loss(4096)


def test_latent_noise_must_stay_below_sigma() -> None:
    with pytest.raises(RegularizerError, match="below sigma"):
        make_regularizer("gmm", 4, 64, sigma=0.5, latent_noise=0.5)
    with pytest.raises(RegularizerError, match="latent_noise"):
        make_regularizer("gmm", 4, 64, latent_noise=-0.1)


def test_sliced_ks_sees_a_joint_that_the_marginals_miss() -> None:
    from molks.model.regularizers import sliced_ks_loss

    prior = GaussianMixturePrior(torch.zeros(1, 6), 1.0)
    good = prior.sample(2048, generator=_gen(4))
    # Every marginal is N(0, 1), but all dimensions are one and the same number: a line, not a cloud.
    line = good[:, :1].repeat(1, 6)
    assert float(ks_loss(line, prior)) < 2 * expected_ks_loss(2048)
    sliced_good = float(sliced_ks_loss(good, prior, 64, generator=_gen(5)))
    sliced_line = float(sliced_ks_loss(line, prior, 64, generator=_gen(5)))
    assert sliced_good < 2 * expected_ks_loss(2048)
    assert sliced_line > 10 * sliced_good


def test_projections_add_the_sliced_term_and_keep_gradients() -> None:
    reg = make_regularizer("gmm", 6, 64, n_components=3, projections=8)
    z = torch.randn(64, 6, requires_grad=True)
    terms = reg.loss(z)
    assert set(terms) == {"total", "ks", "cv", "sks"}
    expected = reg.lambda_ks * terms["ks"] + reg.lambda_cv * terms["cv"] + reg.lambda_ks * terms["sks"]
    assert torch.allclose(terms["total"], expected)
    terms["total"].backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    with pytest.raises(RegularizerError, match="projections"):
        make_regularizer("gmm", 6, 64, projections=-1)
