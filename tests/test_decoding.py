"""Beam-search decoding through the public API, on a tiny model trained for real (``tiny_run``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import molks
from molks.evaluation import canonical_smiles


@pytest.fixture(scope="module")
def model(tiny_run: Path) -> molks.LatentModel:
    return molks.load(tiny_run)


def test_beam_decoding_returns_the_input_whenever_the_beam_finds_it(moses_smiles: list[str]) -> None:
    # The encoder maps the input back to exactly its code, so no other candidate of the beam can
    # be nearer: finding the input means returning it. On the shipped model, which reconstructs.
    shipped = molks.load("moses")
    texts = moses_smiles[-40:]
    codes = shipped.encode(texts)
    beams = shipped.decode_beams(codes, beam_width=4)
    chosen = shipped.decode(codes, beam_width=4)
    found = 0
    for text, candidates, result in zip(texts, beams, chosen):
        target = canonical_smiles(text)
        if any(canonical_smiles(c) == target for c, _ in candidates if c is not None):
            found += 1
            assert canonical_smiles(result) == target
        assert result is None or result in [c for c, _ in candidates]
    greedy = sum(canonical_smiles(g) == canonical_smiles(t) for g, t in zip(shipped.decode(codes), texts))
    assert found >= greedy >= 1  # greedy decoding's result is always a candidate


def test_beam_decoding_picks_the_valid_candidate_nearest_the_code(model: molks.LatentModel) -> None:
    z = model.sample_latent(40, seed=3)
    beams = model.decode_beams(z, beam_width=5)
    chosen = model.decode(z, beam_width=5)
    greedy = model.decode(z)
    for point, candidates, result, first in zip(z, beams, chosen, greedy):
        scores = [s for _, s in candidates]
        complete = [c for c, _ in candidates if c is not None]
        assert scores[: len(complete)] == sorted(scores[: len(complete)], reverse=True)  # complete first, likeliest first
        valid = [c for c in complete if model.is_valid(c)]
        if not valid:
            assert result == (complete[0] if complete else None)  # no valid one: the likeliest complete one
            continue
        assert result in valid
        distances = {c: float(((model.encode([c]) - point) ** 2).sum()) for c in valid}
        assert distances[result] == pytest.approx(min(distances.values()), abs=1e-4)
        if first is not None and model.is_valid(first):
            assert first in complete  # a valid greedy decoding is never lost


def test_beam_width_one_and_sampling_are_what_they_were(model: molks.LatentModel) -> None:
    z = model.sample_latent(12, seed=4)
    assert model.decode(z, beam_width=1) == model.decode(z)
    assert model.sample(12, seed=4, beam_width=1)[1] == model.decode(z)
    with pytest.raises(ValueError, match="deterministic"):
        model.decode(z, temperature=1.0, beam_width=4)
    with pytest.raises(ValueError, match="beam_width"):
        model.decode_beams(z, beam_width=0)
    with pytest.raises(ValueError, match="latent points"):
        model.decode_beams(torch.zeros(2, model.latent_dim + 1))
