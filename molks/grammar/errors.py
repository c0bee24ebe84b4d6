"""Errors raised while reading grammars and turning text into derivations."""

from __future__ import annotations


class GrammarError(ValueError):
    """A grammar file is unusable, or a text or derivation does not fit the grammar.

    ``position`` is the character offset in the input text (or the index in a
    derivation) where the problem was found, when there is one.
    """

    def __init__(self, message: str, *, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


class TokenizeError(GrammarError):
    """A piece of text is not a token of the grammar."""


class ParseError(GrammarError):
    """A token sequence is not a sentence of the grammar."""


class DerivationError(GrammarError):
    """A production sequence is not a complete leftmost derivation."""
