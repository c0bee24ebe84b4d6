"""Scoring the items of a file with a target (what ``molks score`` prints).

>>> from molks.optimize.scorefile import score_items
>>> first, second = score_items([(1, "CCO"), (2, "C1CC")], "qed")
>>> first.line, first.text, round(first.score, 3), second.score, second.reason
(1, 'CCO', 0.407, None, "'C1CC' is not a valid SMILES (RDKit: unclosed ring for input: 'C1CC')")

Every target ``molks optimize`` accepts: the built-in ones (molecules, except ``expression``, whose
items are arithmetic expressions) and ``package.module:function`` (run in a worker process with a
timeout, as the optimiser runs it: :mod:`molks.optimize.guard`). An item a built-in target cannot
score (not a valid SMILES, not a sentence of the grammar) gets no score and a reason; a user target
says None for what it cannot score, and a call of it that fails gives its items no score, with the
reason of the failure (3 failed calls in a row stop the scoring with a :class:`TargetError`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache

from molks.domain import MOLECULES, Domain, ItemError, Text
from molks.optimize.guard import (
    DEFAULT_TIMEOUT,
    POOL_CALL_SIZE,
    TargetRunner,
    open_target,
)
from molks.optimize.targets import BUILTIN_TARGETS

__all__ = ["CHUNK", "ItemScore", "item_domain", "score_items"]

CHUNK = 1000
"""Items scored at a time (their lines are printed before the next are scored)."""

_TEXT_TARGETS = {"expression": "arithmetic"}  # built-in targets whose items are sentences of a grammar


@dataclass(frozen=True)
class ItemScore:
    """One item's result: its line, the text, its score (None: none) and why it has none."""

    line: int
    text: str
    score: float | None
    reason: str | None


@cache
def _text_domain(grammar: str) -> Text:
    from molks.grammar import Grammar

    return Text(Grammar.load(grammar))


def item_domain(target: str) -> Domain | None:
    """The items a built-in target scores (None for a user target: it decides what it can score)."""
    if target in _TEXT_TARGETS:
        return _text_domain(_TEXT_TARGETS[target])
    return MOLECULES if target in BUILTIN_TARGETS else None


def _why_invalid(domain: Domain | None, text: str) -> str:
    if domain is None:
        return "the target returned None (it cannot score this string)"
    if domain is MOLECULES:
        try:
            domain.prepare(text)
        except ItemError as err:
            return err.reason
    elif not domain.is_valid(text):
        return f"{text[:80]!r} is not a sentence of the target's grammar"
    return "the target returned None"


def score_items(
    items: Sequence[tuple[int, str]],
    target: str,
    processes: int | None = 1,
    timeout: float = DEFAULT_TIMEOUT,
) -> Iterator[ItemScore]:
    """The score of each ``(line, text)`` item, in order, CHUNK items at a time."""
    domain = item_domain(target)
    with open_target(target, timeout) as runner:
        for start in range(0, len(items), CHUNK):
            yield from _chunk(runner, domain, items[start : start + CHUNK], processes)


def _chunk(runner: TargetRunner, domain: Domain | None, items: Sequence[tuple[int, str]], processes: int | None) -> Iterator[ItemScore]:
    texts = [text for _, text in items]
    scores = runner.score(texts, processes, call_size=POOL_CALL_SIZE)
    for (line, text), terms, failure in zip(items, scores.terms, scores.failures):
        if terms is not None:
            yield ItemScore(line, text, float(terms["score"]), None)
        else:
            yield ItemScore(line, text, None, failure if failure is not None else _why_invalid(domain, text))
    if runner.exhausted:
        raise runner.stopping_error(scores.failed_calls[-1])
