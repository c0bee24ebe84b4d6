"""Grammar API: sizes, masks, derive errors, pickling, parallel parse_many."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from molks.grammar import DerivationError, Grammar, GrammarError, ParseError, TokenizeError

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "moses_sample.smi"


@pytest.fixture(scope="module")
def smiles() -> Grammar:
    return Grammar.load("smiles")


@pytest.mark.parametrize("name", ["smiles", "arithmetic"])
def test_sizes_and_indices(name: str) -> None:
    g = Grammar.load(name)
    assert g.n_productions == len(g.productions) == len(g.lhs) == len(g.rhs_nonterminals)
    assert g.padding_index == g.n_productions and g.n_outputs == g.n_productions + 1
    assert g.start == 0 and g.nonterminals[0] == g.cfg.start().symbol()
    for p, production in enumerate(g.productions):
        assert g.nonterminals[g.lhs[p]] == production.lhs().symbol()
        assert [g.nonterminals[a] for a in g.rhs_nonterminals[p]] == [
            s.symbol() for s in production.rhs() if not isinstance(s, str)
        ]
    assert len(g.content_hash) == 64 and g.content_hash == Grammar(g.text).content_hash


@pytest.mark.parametrize("name", ["smiles", "arithmetic"])
def test_masks(name: str) -> None:
    g = Grammar.load(name)
    masks = g.masks()
    n_nonterminals = len(g.nonterminals)
    assert masks.dtype == torch.bool
    assert masks.shape == (n_nonterminals + 1, g.n_outputs)
    for a in range(n_nonterminals):
        allowed = {p for p in range(g.n_productions) if g.lhs[p] == a}
        assert set(torch.nonzero(masks[a]).flatten().tolist()) == allowed
        assert allowed  # every nonterminal of the bundled grammars has a production
    assert torch.nonzero(masks[-1]).flatten().tolist() == [g.padding_index]
    # Every production is allowed under exactly one nonterminal; padding only on the empty stack.
    assert masks[:, : g.n_productions].sum(0).tolist() == [1] * g.n_productions


def test_derive_rejects_bad_sequences(smiles: Grammar) -> None:
    ids = smiles.parse("CCO")
    with pytest.raises(DerivationError, match="incomplete"):
        smiles.derive(ids[:-1])
    with pytest.raises(DerivationError, match="after the derivation is complete") as info:
        smiles.derive(ids + [ids[-1]])
    assert info.value.position == len(ids)
    with pytest.raises(DerivationError, match="does not expand") as info:
        smiles.derive([ids[0], ids[0]])
    assert info.value.position == 1
    with pytest.raises(DerivationError, match="padding at step 1"):
        smiles.derive([ids[0], smiles.padding_index])
    with pytest.raises(DerivationError, match="index 999"):
        smiles.derive([999])
    with pytest.raises(DerivationError, match="index -1"):
        smiles.derive([-1])
    assert smiles.derive(torch.tensor(ids + [smiles.padding_index] * 3)) == "CCO"


def test_grammar_pickles_by_text(smiles: Grammar) -> None:
    clone = pickle.loads(pickle.dumps(smiles))
    assert clone.content_hash == smiles.content_hash and clone.path == smiles.path
    assert clone.parse("c1ccccc1O") == smiles.parse("c1ccccc1O")


def test_parse_many_in_two_processes_equals_serial(smiles: Grammar) -> None:
    molecules = SAMPLE.read_text(encoding="utf-8").split()[:600]
    bad = {5: "CC(C", 77: "CX", 300: "C[U]", 599: ""}
    texts = list(molecules)
    for i, text in bad.items():
        texts[i] = text
    serial = smiles.parse_many(texts, processes=1)
    finished: list[int] = []
    parallel = smiles.parse_many(texts, processes=2, chunksize=50, progress=finished.append)
    assert sum(finished) == len(texts) and len(finished) == len(texts) // 50
    assert len(parallel) == len(serial) == len(texts)
    for i, (a, b) in enumerate(zip(serial, parallel)):
        if i in bad:
            assert isinstance(a, GrammarError) and isinstance(b, GrammarError)
            assert type(a) is type(b) and str(a) == str(b) and a.position == b.position
        else:
            assert a == b == smiles.parse(texts[i])
    assert isinstance(parallel[5], ParseError) and isinstance(parallel[77], TokenizeError)
    assert "'U'" in str(parallel[300])
