"""Fuzzing the way in (issue 12): random bytes and random SMILES-like strings through the tokenizer, the
parser and the dataset reader. Whatever comes in, the answer is a parse or a MolksError -- never another
exception, a crash or a hang."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from molks.dataset import load_dataset
from molks.errors import MolksError
from molks.grammar import Grammar

_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SMILES = Grammar.load("smiles")
ARITHMETIC = Grammar.load("arithmetic")

# What SMILES are made of (atoms, brackets, charges, bonds, ring closures, branches, dots), plus a few
# characters that come with them in real files (spaces, tabs, quotes, commas) and some that never should.
SMILES_ALPHABET = "CNOSPFIBrcnospClBr[]()=#$:/\\.-+@*H%0123456789 \t,\"'" + "\x00éΩ\u200b"

smiles_like = st.text(alphabet=SMILES_ALPHABET, max_size=60)
# Bracket atoms are where the tokenizer works hardest: "[" + element-ish + charge/H/chirality + "]".
bracket_atoms = st.builds(
    lambda head, body, tail: f"{head}[{body}]{tail}",
    st.text(alphabet="CNOc1(=", max_size=4),
    st.text(alphabet="CNOSPcnosHeLiNaMg@+-0123456789:", max_size=8),
    st.text(alphabet="CNOc1)=", max_size=4),
)


def parses_or_says_why(grammar: Grammar, text: str) -> None:
    """``text`` parses (and then derives back to itself), or the grammar says why in a MolksError."""
    try:
        ids = grammar.parse(text)
    except MolksError as err:
        assert str(err)  # a reason, in one line
        assert "\n" not in str(err).strip()
        return
    assert all(isinstance(i, int) and 0 <= i < grammar.n_productions for i in ids)
    assert grammar.parse(grammar.derive(ids)) == ids


@given(text=st.one_of(smiles_like, bracket_atoms))
@example(text="")
@example(text="[")
@example(text="C%")
@example(text="C%1")
@example(text="[NH4+]")
@example(text="c1ccccc1C(=O)O")
@_SETTINGS
def test_smiles_like_strings_parse_or_raise_a_molks_error(text: str) -> None:
    parses_or_says_why(SMILES, text)


@given(data=st.binary(max_size=80))
@example(data=b"\xff\xfe")
@example(data=b"\x00C")
@_SETTINGS
def test_random_bytes_parse_or_raise_a_molks_error(data: bytes) -> None:
    for text in (data.decode("utf-8", errors="surrogateescape"), data.decode("latin-1")):
        parses_or_says_why(SMILES, text)
        parses_or_says_why(ARITHMETIC, text)


@given(text=st.text(alphabet="x123+-*/()sinexp .", max_size=40))
@_SETTINGS
def test_expression_like_strings_parse_or_raise_a_molks_error(text: str) -> None:
    parses_or_says_why(ARITHMETIC, text)


@pytest.fixture(scope="module")
def folder() -> Path:
    with tempfile.TemporaryDirectory(prefix="molks-fuzz-") as name:
        yield Path(name)


FILE_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


def loads_or_says_why(path: Path, data: bytes, grammar: Grammar) -> None:
    """A file of ``data`` loads (every item accounted for) or ends in a MolksError naming the file."""
    path.write_bytes(data)
    try:
        dataset = load_dataset(path, grammar, processes=1, use_cache=False, progress=False)
    except MolksError as err:
        assert path.name in str(err), str(err)
        return
    assert len(dataset) >= 1


@given(data=st.binary(max_size=200))
@example(data=b"")
@example(data=b"\x1f\x8b\x08garbage")
@example(data=b"smiles\n")
@FILE_SETTINGS
def test_random_bytes_as_a_dataset_file(folder: Path, data: bytes) -> None:
    loads_or_says_why(folder / "random.smi", data, SMILES)


@given(lines=st.lists(st.one_of(smiles_like, bracket_atoms, st.sampled_from(["CCO", "c1ccccc1", "CC(=O)O"])), max_size=8))
@FILE_SETTINGS
def test_smiles_like_lines_as_a_dataset_file(folder: Path, lines: list[str]) -> None:
    data = "\n".join(lines).encode("utf-8", errors="surrogateescape")
    loads_or_says_why(folder / "lines.smi", data, SMILES)
    loads_or_says_why(folder / "table.csv", ("smiles\n" + data.decode("utf-8", errors="replace")).encode(), SMILES)
