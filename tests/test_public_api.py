"""The public API (molks.__all__) and LatentModel.encode's two ways with bad items."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import molks


def test_every_public_name_resolves() -> None:
    for name in molks.__all__:
        assert getattr(molks, name) is not None, name
    assert set(molks.__all__) <= set(dir(molks))
    with pytest.raises(AttributeError, match="no attribute 'encodable'"):
        molks.encodable  # noqa: B018


def test_encode_skips_bad_items_and_says_why(tiny_run: Path, moses_smiles: list[str]) -> None:
    model = molks.load(tiny_run)
    texts = [moses_smiles[0], "C1CC", moses_smiles[1], "Xx"]
    codes, kept, failures = model.encode(texts, errors="skip")
    assert kept == [0, 2]
    assert [index for index, _ in failures] == [1, 3]
    assert all(reason for _, reason in failures)
    assert codes.shape == (2, model.latent_dim)
    torch.testing.assert_close(codes, model.encode([texts[0], texts[2]]))
    with pytest.raises(molks.GrammarError, match="item 1"):
        model.encode(texts)
    with pytest.raises(ValueError, match="errors must be"):
        model.encode(texts, errors="ignore")  # type: ignore[call-overload]
    empty = model.encode(["C1CC"], errors="skip")
    assert isinstance(empty, molks.Encoding) and empty.codes.shape == (0, model.latent_dim) and empty.kept == []
