"""The character-level baseline (the paper's CVAE row) as a grammar.

A character model predicts one SMILES token per step and an end marker. That is
exactly a grammar model over the right-linear grammar ``S -> 'C' S | 'c' S | ... |``:
every production emits one token, the empty production ends the string, and
padding follows. So the character model reuses the grammar encoder, decoder and
decoding unchanged, with masks that only force padding after the end -- it is
free to write strings that are not SMILES, which is the point of the baseline.
"""

from __future__ import annotations

from collections.abc import Iterable

from molks.grammar import Grammar, GrammarError, smiles_tokenize

__all__ = ["character_grammar"]


def character_grammar(texts: Iterable[str], tokenizer: str = "smiles") -> Grammar:
    """The token grammar of a SMILES dataset: one production per token seen, plus the end.

    Tokens are SMILES tokens (``Cl``, ``Br``, bracket parts and ``%nn`` count as one
    character), in first-seen order, so the grammar is fixed by the data.
    """
    if tokenizer != "smiles":
        raise GrammarError(f"character models are built over SMILES tokens, not {tokenizer!r}")
    vocabulary: dict[str, None] = {}
    for text in texts:
        vocabulary.update(dict.fromkeys(smiles_tokenize(text)))
    if not vocabulary:
        raise GrammarError("cannot build a character vocabulary from no text")
    quoted = " | ".join(_quote(token) + " S" for token in vocabulary)
    text = (
        "# Character (SMILES token) grammar of a dataset: one token per step, then the end.\n"
        "# tokenizer: smiles\n# join: none\n"
        f"S -> {quoted} |\n"
    )
    return Grammar(text, name="characters")


def _quote(token: str) -> str:
    if "'" in token:
        raise GrammarError(f"token {token!r} cannot be quoted in an nltk grammar")
    return f"'{token}'"
