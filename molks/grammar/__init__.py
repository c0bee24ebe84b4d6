"""Grammars: text <-> production-rule sequences of a context-free grammar.

>>> from molks.grammar import Grammar
>>> g = Grammar.load("arithmetic")
>>> g.derive(g.parse("x * sin( x ) + 3"))
'x * sin( x ) + 3'
"""

from molks.grammar.cfg import BUNDLED_GRAMMARS, Grammar
from molks.grammar.errors import AmbiguityError, DerivationError, GrammarError, NotTextError, ParseError, TokenizeError
from molks.grammar.padding import pad_sequences
from molks.grammar.tokenize import smiles_tokenize

__all__ = [
    "AmbiguityError",
    "BUNDLED_GRAMMARS",
    "DerivationError",
    "Grammar",
    "GrammarError",
    "NotTextError",
    "ParseError",
    "TokenizeError",
    "pad_sequences",
    "smiles_tokenize",
]
