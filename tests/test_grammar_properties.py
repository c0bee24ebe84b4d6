"""Property tests: parse and derive are inverse on random sentences of each grammar.

Sentences come from random leftmost derivations with a length budget. For the bundled
(unambiguous) grammars parse(derive(ids)) == ids; for ambiguous toy grammars the parse
must be nltk's first tree, and derive(parse(s)) == s always.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from molks.dataset.expressions import random_derivation
from molks.grammar import Grammar
from molks.grammar.general import chart_parser

_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SMILES = Grammar.load("smiles")
ARITHMETIC = Grammar.load("arithmetic")
AMBIGUOUS = {
    "sum": Grammar("E -> E '+' E | 'a'\n", name="sum"),
    "dangling_else": Grammar("S -> 'if' S | 'if' S 'else' S | 'x'\n", name="dangling_else"),
    "nullable": Grammar("S -> A A 'x' | S S\nA -> | 'b'\n", name="nullable"),
}


@given(rng=st.randoms(use_true_random=False), budget=st.integers(5, 200))
@_SETTINGS
def test_smiles_random_derivations_round_trip(rng: random.Random, budget: int) -> None:
    ids = random_derivation(SMILES, rng, budget)
    assert len(ids) <= budget
    text = SMILES.derive(ids)
    assert SMILES.parse(text) == ids
    assert SMILES.derive(SMILES.parse(text)) == text


@given(rng=st.randoms(use_true_random=False), budget=st.integers(2, 60))
@_SETTINGS
def test_arithmetic_random_derivations_round_trip(rng: random.Random, budget: int) -> None:
    ids = random_derivation(ARITHMETIC, rng, budget)
    text = ARITHMETIC.derive(ids)
    assert ARITHMETIC.parse(text) == ids
    assert ARITHMETIC.derive(ARITHMETIC.parse(text)) == text


@pytest.mark.parametrize("name", sorted(AMBIGUOUS))
def test_toy_grammars_are_earley(name: str) -> None:
    assert AMBIGUOUS[name].parser_kind == "earley"


@pytest.mark.parametrize("name", sorted(AMBIGUOUS))
@given(rng=st.randoms(use_true_random=False), budget=st.integers(3, 14))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_ambiguous_grammar_parse_is_nltk_first_tree(name: str, rng: random.Random, budget: int) -> None:
    g = AMBIGUOUS[name]
    ids = random_derivation(g, rng, budget)
    text = g.derive(ids)
    parsed = g.parse(text)
    index = {production: i for i, production in enumerate(g.productions)}
    first_tree = next(iter(chart_parser(g.cfg).parse(g.tokenize(text))))
    assert parsed == [index[p] for p in first_tree.productions()]
    assert g.derive(parsed) == text
    # The parse is a leftmost derivation in its own right: parsing its text again is stable.
    assert g.parse(g.derive(parsed)) == parsed
