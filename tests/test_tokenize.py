"""Tokenizers: SMILES lexical rules, the generic terminal tokenizer, and error positions."""

from __future__ import annotations

import pytest

from molks.grammar import Grammar, ParseError, TokenizeError, smiles_tokenize
from molks.grammar.tokenize import TerminalTokenizer


@pytest.fixture(scope="module")
def smiles() -> Grammar:
    return Grammar.load("smiles")


@pytest.fixture(scope="module")
def arithmetic() -> Grammar:
    return Grammar.load("arithmetic")


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("ClCBr", ["Cl", "C", "Br"]),
        ("CCl", ["C", "Cl"]),
        ("BrB", ["Br", "B"]),
        ("c1ccccc1", ["c", "1", "c", "c", "c", "c", "c", "1"]),
        ("C%12CC%12", ["C", "%12", "C", "C", "%12"]),
        ("C12CC1C2", ["C", "1", "2", "C", "C", "1", "C", "2"]),
        ("C=C#N", ["C", "=", "C", "#", "N"]),
        ("F/C=C\\F", ["F", "/", "C", "=", "C", "\\", "F"]),
        ("C$C.C:C", ["C", "$", "C", ".", "C", ":", "C"]),
        ("*C(=O)O", ["*", "C", "(", "=", "O", ")", "O"]),
        # Bracket atoms: isotope digits, element, chirality, H count, charge, class -- each its own tokens.
        ("[13C@@H2+:12]", ["[", "1", "3", "C", "@@", "H", "2", "+", ":", "1", "2", "]"]),
        ("[C@H]", ["[", "C", "@", "H", "]"]),
        ("[NH4+]", ["[", "N", "H", "4", "+", "]"]),
        ("[O-]", ["[", "O", "-", "]"]),
        ("[Fe+3]", ["[", "Fe", "+", "3", "]"]),
        ("[2H]", ["[", "2", "H", "]"]),
        ("[H]", ["[", "H", "]"]),
        ("[nH]", ["[", "n", "H", "]"]),
        ("[se]", ["[", "se", "]"]),
        ("[Se]", ["[", "Se", "]"]),
        ("[Cl-]", ["[", "Cl", "-", "]"]),
        ("[Na+].[Cl-]", ["[", "Na", "+", "]", ".", "[", "Cl", "-", "]"]),
        ("[Co][Cs][Sc]", ["[", "Co", "]", "[", "Cs", "]", "[", "Sc", "]"]),  # two-letter elements in brackets
        ("[CH2:7]", ["[", "C", "H", "2", ":", "7", "]"]),
        ("[*]", ["[", "*", "]"]),
    ],
)
def test_smiles_tokens(smiles: Grammar, text: str, tokens: list[str]) -> None:
    assert smiles_tokenize(text) == tokens
    assert smiles.tokenize(text) == tokens
    assert smiles.detokenize(tokens) == text


def test_outside_brackets_two_letters_are_two_atoms() -> None:
    # "Cs" outside brackets is carbon + aromatic sulphur, not caesium.
    assert smiles_tokenize("Cs") == ["C", "s"]
    assert smiles_tokenize("Cn") == ["C", "n"]


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("CX", 1, "'X'"),
        ("CC C", 2, "' '"),
        ("C[CH", 1, "unclosed bracket"),
        ("C]", 1, "']' without its '\\['"),
        ("CC[Xx]C", 2, r"\[Xx\]"),
        ("C[Ch]", 1, r"\[Ch\]"),
        ("C[CH2@]", 1, r"\[CH2@\]"),  # chirality after the H count: not SMILES
        ("CC%1", 2, "'%'"),
        ("CC[Fe++]", 2, r"\[Fe\+\+\]"),
    ],
)
def test_smiles_tokenize_errors_name_token_and_position(text: str, position: int, message: str) -> None:
    with pytest.raises(TokenizeError, match=message) as info:
        smiles_tokenize(text)
    assert info.value.position == position
    assert f"position {position}" in str(info.value)


def test_valid_element_outside_the_grammar_is_a_clear_error(smiles: Grammar) -> None:
    # Uranium is SMILES, so it tokenizes; smiles.cfg does not list it, so parsing names it
    # (as a TokenizeError: the token is outside the grammar) at its character offset.
    assert smiles.tokenize("ClC[U]C") == ["Cl", "C", "[", "U", "]", "C"]
    with pytest.raises(TokenizeError, match="'U' at position 4.*not a terminal of the grammar") as info:
        smiles.parse("ClC[U]C")
    assert info.value.position == 4


def test_token_outside_a_general_grammar_is_a_tokenize_error_too() -> None:
    # A SMILES-tokenized user grammar that is not LL(1) (left recursive: LALR) and knows only carbon.
    g = Grammar("# tokenizer: smiles\n# join: none\nchain -> chain 'C' | 'C'\n")
    assert g.parser_kind == "lalr" and g.parse("CCC") == [0, 0, 1]
    with pytest.raises(TokenizeError, match="'N' at position 2") as info:
        g.parse("CCN")
    assert info.value.position == 2


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("CC)C", 2, "unexpected token '\\)'"),  # character offsets, not token indices
        ("[NH4+]C)", 7, "'\\)'"),
        ("C[13C@@H2+:12]C(", 16, "ends early"),
        ("CC(C", 4, "ends early"),
        ("C=", 2, "ends early"),
        ("(C)", 0, "'\\('"),
        ("[Fe+10]", 5, "'0'"),  # one charge digit only in smiles.cfg
    ],
)
def test_smiles_parse_error_position_is_a_character_offset(
    smiles: Grammar, text: str, position: int, message: str
) -> None:
    with pytest.raises(ParseError, match=message) as info:
        smiles.parse(text)
    assert info.value.position == position
    assert f"position {position}" in str(info.value)


def test_terminal_tokenizer_longest_match_and_whitespace(arithmetic: Grammar) -> None:
    assert arithmetic.tokenize("x * sin( x ) + 3") == ["x", "*", "sin(", "x", ")", "+", "3"]
    assert arithmetic.tokenize("x*sin(x)+3") == ["x", "*", "sin(", "x", ")", "+", "3"]
    assert arithmetic.tokenize("  exp( 1 )\t/ 2 ") == ["exp(", "1", ")", "/", "2"]
    assert arithmetic.detokenize(["x", "*", "sin(", "x", ")"]) == "x * sin( x )"
    tokenize = TerminalTokenizer(["a", "ab", "abc", "b"])
    assert tokenize("abcab a b") == ["abc", "ab", "a", "b"]


@pytest.mark.parametrize(
    ("text", "position", "char"),
    [("x + y", 4, "y"), ("sin ( x )", 0, "s"), ("x +  1 & 2", 7, "&"), ("x*2+z", 4, "z")],
)
def test_terminal_tokenizer_errors(arithmetic: Grammar, text: str, position: int, char: str) -> None:
    with pytest.raises(TokenizeError, match=f"'{char}' at position {position}") as info:
        arithmetic.tokenize(text)
    assert info.value.position == position


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [("x +  + x", 5, "'\\+'"), ("x x", 2, "'x'"), ("( x", 3, "ends early"), ("x + sin( x", 10, "ends early")],
)
def test_arithmetic_parse_error_position_is_a_character_offset(
    arithmetic: Grammar, text: str, position: int, message: str
) -> None:
    with pytest.raises(ParseError, match=message) as info:
        arithmetic.parse(text)
    assert info.value.position == position
