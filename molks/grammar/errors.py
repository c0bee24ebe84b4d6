"""Errors raised while reading grammars and turning text into derivations."""

from __future__ import annotations

from molks.errors import InputError


class GrammarError(InputError):
    """A grammar file is unusable, or a text or derivation does not fit the grammar.

    ``position`` is the character offset in the input text (or the index in a
    derivation) where the problem was found, when there is one; ``item`` the index of the text in a
    list of them (``str(err)`` then starts with ``"item N: "``), and ``reason`` the message without it.
    """

    def __init__(self, message: str, *, position: int | None = None, item: int | None = None) -> None:
        super().__init__(message, item=item)
        self.position = position


class NotTextError(GrammarError, TypeError):
    """An item given to be parsed or encoded is not a string (None, a number): a failure of that
    item, reported as any other (a TypeError too, as Python reports a wrong type)."""


class TokenizeError(GrammarError):
    """A piece of text is not a token of the grammar."""


class ParseError(GrammarError):
    """A token sequence is not a sentence of the grammar."""


class AmbiguityError(ParseError):
    """A sentence has more parses than nltk will enumerate, so nltk's first tree (the derivation
    molks gives for ambiguous sentences) cannot be found."""


class DerivationError(GrammarError):
    """A production sequence is not a complete leftmost derivation."""
