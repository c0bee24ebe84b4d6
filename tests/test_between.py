"""The sampler between neighbouring codes (molks.model.between)."""

from __future__ import annotations

import pytest
import torch

import molks
from molks.model.between import BETWEEN_RANGE, BetweenCodes, between_noise
from molks.model.regularizers import DEFAULT_KDE_BANDWIDTH, make_regularizer


def test_neighbours_are_the_nearest_other_codes() -> None:
    codes = torch.randn(3000, 4, generator=torch.Generator().manual_seed(0))  # more than one 2,048-row chunk
    sampler = BetweenCodes(codes, noise=0.0, neighbours=3)
    distances = ((codes[:, None] - codes[None]) ** 2).sum(-1)
    distances.fill_diagonal_(float("inf"))
    expected = distances.topk(3, largest=False).indices
    assert torch.equal(sampler.neighbours.sort(dim=1).values, expected.sort(dim=1).values)


def test_noiseless_draws_lie_between_a_code_and_one_of_its_neighbours() -> None:
    # Codes on a line at 0, 1, 3, 7, 15: each point's nearest other code is known by hand.
    codes = torch.tensor([[0.0], [1.0], [3.0], [7.0], [15.0]])
    sampler = BetweenCodes(codes, noise=0.0, neighbours=1)
    assert sampler.neighbours.flatten().tolist() == [1, 0, 1, 2, 3]
    z = sampler.sample(2000, generator=torch.Generator().manual_seed(1)).flatten()
    low, high = BETWEEN_RANGE
    segments = [(0.0, 1.0), (1.0, 0.0), (3.0, 1.0), (7.0, 3.0), (15.0, 7.0)]
    on_a_segment = torch.zeros(len(z), dtype=torch.bool)
    for start, end in segments:
        t = (z - start) / (end - start)
        on_a_segment |= (t >= low - 1e-6) & (t <= high + 1e-6)
    assert on_a_segment.all()
    assert not torch.isin(z, codes.flatten()).any()  # never on a code itself
    first = z[(z > 0) & (z < 1)]  # code 0's and code 1's draws: t spreads over the whole range
    assert first.min() < low + 0.01 and first.max() > high - 0.01


def test_noise_has_the_given_sd_and_a_seed_repeats_the_draw() -> None:
    codes = torch.zeros(50, 8)  # all codes at the origin: a draw is the noise alone
    sampler = BetweenCodes(codes, noise=0.5)
    z = sampler.sample(20000, generator=torch.Generator().manual_seed(2))
    assert z.shape == (20000, 8) and z.dtype == torch.float32
    assert abs(z.std().item() - 0.5) < 0.01 and abs(z.mean().item()) < 0.01
    again = sampler.sample(20000, generator=torch.Generator().manual_seed(2))
    assert torch.equal(z, again)
    assert sampler.sample(0).shape == (0, 8)


def test_bad_codes_and_settings_are_refused() -> None:
    with pytest.raises(molks.MolksError, match="N >= 2"):
        BetweenCodes(torch.zeros(1, 3), noise=0.1)
    with pytest.raises(molks.MolksError, match="NaN"):
        BetweenCodes(torch.tensor([[0.0], [float("nan")]]), noise=0.1)
    for noise in (-1.0, float("inf")):
        with pytest.raises(molks.MolksError, match="noise"):
            BetweenCodes(torch.zeros(3, 2), noise=noise)
    with pytest.raises(molks.MolksError, match="neighbours"):
        BetweenCodes(torch.zeros(3, 2), noise=0.1, neighbours=0)
    assert BetweenCodes(torch.zeros(3, 2), noise=0.1, neighbours=5).k == 2  # as many as there are others


def test_the_noise_follows_the_decoders_training_noise() -> None:
    with_noise = make_regularizer("gmm", 4, 8, latent_noise=0.5)
    assert between_noise(with_noise) == 0.5
    assert between_noise(make_regularizer("gmm", 4, 8)) == DEFAULT_KDE_BANDWIDTH


def test_the_shipped_model_samples_between_its_held_out_codes_by_default() -> None:
    model = molks.load("moses")
    assert model.default_source == "between" and model.between is not None
    assert model.between.noise == 0.5 and len(model.between.codes) == model.kde.n_components
    z, smiles = model.sample(40, seed=0, beam_width=1)
    assert torch.equal(z, model.sample_latent(40, source="between", seed=0))
    valid = [s for s in smiles if s is not None and model.is_valid(s)]
    assert len(valid) >= 28  # 90% valid at 5,000 draws (RESULTS); 40 draws: well above 70%
