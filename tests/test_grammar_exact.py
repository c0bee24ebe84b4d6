"""The fast parsers give exactly nltk's parse, and derive() inverts parse() on real data.

nltk's ChartParser manages ~40 molecules/s, so the default run compares a spread of
600 molecules from the embedded MOSES sample; set MOLKS_NLTK_MOLECULES=20000 for all of it.
"""

from __future__ import annotations

import os
from pathlib import Path

import nltk
import pytest

from molks.dataset.expressions import generate_sentences
from molks.grammar import Grammar
from molks.grammar.general import chart_parser

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "moses_sample.smi"
N_MOLECULES = int(os.environ.get("MOLKS_NLTK_MOLECULES", "600"))
N_EXPRESSIONS = 2000


@pytest.fixture(scope="module")
def molecules() -> list[str]:
    lines = SAMPLE.read_text(encoding="utf-8").split()
    assert len(lines) == 20_000
    return lines


def nltk_first_tree(grammar: Grammar, parser: nltk.ChartParser, text: str) -> list[int]:
    index = {production: i for i, production in enumerate(grammar.productions)}
    tree = next(iter(parser.parse(grammar.tokenize(text))))
    return [index[p] for p in tree.productions()]


@pytest.mark.parametrize("half", [0, 1])  # two tests, so that `pytest -n 2` runs them side by side
def test_smiles_parse_equals_nltk_first_tree(molecules: list[str], half: int) -> None:
    g = Grammar.load("smiles")
    parser = chart_parser(g.cfg)
    step = max(1, len(molecules) // N_MOLECULES)
    spread = molecules[::step][:N_MOLECULES]
    assert len(spread) == min(N_MOLECULES, len(molecules))
    chosen = spread[half::2]
    mismatches = [s for s in chosen if g.parse(s) != nltk_first_tree(g, parser, s)]
    assert not mismatches, f"{len(mismatches)} molecules differ from nltk, e.g. {mismatches[:3]}"


def test_arithmetic_parse_equals_nltk_first_tree() -> None:
    g = Grammar.load("arithmetic")
    parser = chart_parser(g.cfg)
    sentences = generate_sentences(g, N_EXPRESSIONS, max_productions=15, seed=7)
    assert len(set(sentences)) == N_EXPRESSIONS
    mismatches = [s for s in sentences if g.parse(s) != nltk_first_tree(g, parser, s)]
    assert not mismatches, f"{len(mismatches)} expressions differ from nltk, e.g. {mismatches[:3]}"


def test_round_trip_whole_moses_sample(molecules: list[str]) -> None:
    g = Grammar.load("smiles")
    failures = []
    lengths = []
    for s in molecules:
        ids = g.parse(s)
        lengths.append(len(ids))
        if g.derive(ids) != s:
            failures.append(s)
    assert not failures, f"{len(failures)} molecules do not round-trip, e.g. {failures[:3]}"
    # Padding after the derivation is ignored.
    s = molecules[0]
    assert g.derive(g.parse(s) + [g.padding_index] * 10) == s
    assert max(lengths) < 150  # sanity: MOSES molecules need ~30-110 productions
