"""Tokenizers: text -> the grammar's terminals.

Two kinds: a SMILES tokenizer that knows SMILES' lexical rules (two-letter
organic atoms, bracket atoms split into isotope, element, chirality, hydrogen
count, charge and class, ``%nn`` ring closures), and a generic longest-match
tokenizer over a grammar's terminal strings (used for expressions and any
user grammar). Both return ``list[str]`` and raise :class:`TokenizeError`
naming the offending text and its character position.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from molks.grammar.errors import TokenizeError

__all__ = ["smiles_tokenize", "TerminalTokenizer", "ELEMENTS"]

ELEMENTS = frozenset(
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
    "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy "
    "Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf "
    "Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og".split()
)
_AROMATIC_BRACKET = frozenset("b c n o p s se as te".split())

# Outside brackets every token is one of these; a bracket atom is taken whole and split below.
_SMILES_TOKEN = re.compile(r"\[[^\[\]]*\]|Cl|Br|%\d\d|[BCNOPSFIbcnops*]|\d|[=#\-/\\:$().]")
_BRACKET = re.compile(
    r"(?P<isotope>\d*)(?P<element>[A-Z][a-z]?|se|as|te|[bcnops]|\*)"
    r"(?P<chiral>@@|@)?(?P<hcount>H\d?)?(?P<charge>[+-]\d*)?(?P<cls>:\d+)?"
)


def smiles_tokenize(smiles: str) -> list[str]:
    """Split a SMILES string into tokens.

    >>> smiles_tokenize("C[C@@H](Cl)c1ccccc1%12")
    ['C', '[', 'C', '@@', 'H', ']', '(', 'Cl', ')', 'c', '1', 'c', 'c', 'c', 'c', 'c', '1', '%12']
    """
    pieces = _SMILES_TOKEN.findall(smiles)
    if sum(map(len, pieces)) != len(smiles):
        _raise_at_first_gap(smiles, _SMILES_TOKEN, "SMILES")
    if "[" not in smiles:
        return pieces
    tokens: list[str] = []
    offset = 0
    for piece in pieces:
        if piece[0] == "[":
            tokens.extend(_bracket_tokens(piece, offset))
        else:
            tokens.append(piece)
        offset += len(piece)
    return tokens


@lru_cache(maxsize=65536)
def _bracket_parts(atom: str) -> tuple[str, ...] | None:
    match = _BRACKET.fullmatch(atom[1:-1])
    if match is None:
        return None
    element = match["element"]
    if element not in ELEMENTS and element not in _AROMATIC_BRACKET and element != "*":
        # "[Ch]" and the like: a one-letter element followed by a lower-case letter is not SMILES.
        return None
    parts: list[str] = ["["]
    parts.extend(match["isotope"])
    parts.append(element)
    if match["chiral"]:
        parts.append(match["chiral"])
    if match["hcount"]:
        parts.extend(match["hcount"])
    if match["charge"]:
        parts.extend(match["charge"])
    if match["cls"]:
        parts.extend(match["cls"])
    parts.append("]")
    return tuple(parts)


def _bracket_tokens(atom: str, offset: int) -> tuple[str, ...]:
    parts = _bracket_parts(atom)
    if parts is None:
        raise TokenizeError(
            f"bracket atom {atom!r} at position {offset} is not [isotope]element[chirality][H count][charge][:class]",
            position=offset,
        )
    return parts


def _raise_at_first_gap(text: str, pattern: re.Pattern[str], what: str) -> None:
    position = 0
    for match in pattern.finditer(text):
        if match.start() != position:
            break
        position = match.end()
    bad = text[position]
    if bad == "[":
        reason = "an unclosed bracket atom"
    elif bad == "]":
        reason = "a ']' without its '['"
    else:
        reason = f"character {bad!r}, which is not a {what} token"
    raise TokenizeError(f"{what} {text!r} has {reason} at position {position}", position=position)


class TerminalTokenizer:
    """Longest-match tokenizer over a set of terminal strings; whitespace separates tokens and is dropped."""

    def __init__(self, terminals: Iterable[str]) -> None:
        ordered = sorted({t for t in terminals if t and not t.isspace()}, key=len, reverse=True)
        if not ordered:
            raise TokenizeError("the grammar has no non-empty terminals to tokenize with")
        self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def __call__(self, text: str) -> list[str]:
        tokens: list[str] = []
        offset = 0
        for chunk in text.split():
            pieces = self._pattern.findall(chunk)
            if sum(map(len, pieces)) != len(chunk):
                start = text.index(chunk, offset)
                try:
                    _raise_at_first_gap(chunk, self._pattern, "grammar")
                except TokenizeError as err:
                    pos = start + (err.position or 0)
                    raise TokenizeError(
                        f"{text!r} has {text[pos]!r} at position {pos}, which starts no terminal of the grammar",
                        position=pos,
                    ) from None
            tokens.extend(pieces)
            offset = text.index(chunk, offset) + len(chunk)
        return tokens
