"""The random sentence generator and the embedded expression dataset."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from molks.dataset import generate_sentences, random_derivation
from molks.grammar import Grammar

ROOT = Path(__file__).resolve().parents[1]
ARITHMETIC = Grammar.load("arithmetic")


@pytest.mark.parametrize("max_productions", [2, 5, 15, 40])
def test_derivations_respect_the_limit_and_parse_back(max_productions: int) -> None:
    rng = random.Random(max_productions)
    lengths = set()
    for _ in range(300):
        ids = random_derivation(ARITHMETIC, rng, max_productions)
        assert len(ids) <= max_productions
        assert ARITHMETIC.parse(ARITHMETIC.derive(ids)) == ids  # complete, and the parse recovers it
        lengths.add(len(ids))
    assert max(lengths) > max_productions // 2  # the budget is used, not just the shortest derivations


def test_sentences_are_distinct_seeded_and_within_the_limit() -> None:
    sentences = generate_sentences(ARITHMETIC, 500, 15, seed=3)
    assert len(sentences) == len(set(sentences)) == 500
    assert all(len(ARITHMETIC.parse(s)) <= 15 for s in sentences)
    assert all(ARITHMETIC.derive(ARITHMETIC.parse(s)) == s for s in sentences)
    assert generate_sentences(ARITHMETIC, 500, 15, seed=3) == sentences
    assert generate_sentences(ARITHMETIC, 500, 15, seed=4) != sentences


def test_small_language_is_exhausted_or_refused() -> None:
    # Within 2 productions the only sentences are S -> T -> x | 1 | 2 | 3.
    assert sorted(generate_sentences(ARITHMETIC, 4, 2, seed=0)) == ["1", "2", "3", "x"]
    with pytest.raises(ValueError, match="found only 4 distinct sentences"):
        generate_sentences(ARITHMETIC, 5, 2, seed=0)
    with pytest.raises(ValueError, match="no derivation of at most 1 productions"):
        generate_sentences(ARITHMETIC, 1, 1, seed=0)


def test_works_for_the_smiles_grammar() -> None:
    smiles = Grammar.load("smiles")
    for s in generate_sentences(smiles, 50, 30, seed=0):
        assert len(smiles.parse(s)) <= 30


def test_embedded_expression_dataset_is_reproducible() -> None:
    lines = (ROOT / "data" / "expressions.txt").read_text(encoding="utf-8").splitlines()
    assert lines == generate_sentences(ARITHMETIC, 5000, 15, seed=0)
