"""Random sentences of a grammar, e.g. the arithmetic-expression dataset.

A sentence comes from a random leftmost derivation: the leftmost nonterminal is expanded with a
production drawn uniformly from those that still let the whole derivation finish within
``max_productions`` (checked with :meth:`Grammar.min_derivation_lengths`), so no draw is ever
wasted on a derivation that cannot end. Sentences are therefore not uniform over the language:
each step's choices are.
"""

from __future__ import annotations

import random

from molks.dataset.errors import DatasetError
from molks.grammar import Grammar

__all__ = ["generate_sentences", "random_derivation"]


def random_derivation(grammar: Grammar, rng: random.Random, max_productions: int) -> list[int]:
    """Production indices of a random complete leftmost derivation of at most ``max_productions`` steps.

    Raises DatasetError (a ValueError) if the grammar has no derivation that short.
    """
    return _Sampler(grammar, max_productions).sample(rng)


class _Sampler:
    """The grammar's tables for drawing derivations, computed once for many draws."""

    def __init__(self, grammar: Grammar, max_productions: int) -> None:
        self.shortest = grammar.min_derivation_lengths()
        if self.shortest[grammar.start] > max_productions:
            raise DatasetError(
                None,
                f"grammar {grammar.name!r} has no derivation of at most {max_productions} productions "
                f"(the shortest has {self.shortest[grammar.start]})"
            )
        self.start = grammar.start
        self.max_productions = max_productions
        self.by_lhs: dict[int, list[int]] = {}
        for index, lhs in enumerate(grammar.lhs):
            self.by_lhs.setdefault(lhs, []).append(index)
        # Fewest productions a derivation needs once production p is chosen (inf: p can never finish).
        self.cost = [1 + sum(self.shortest[a] for a in rhs) for rhs in grammar.rhs_nonterminals]
        self.pushed = [tuple(reversed(rhs)) for rhs in grammar.rhs_nonterminals]

    def sample(self, rng: random.Random) -> list[int]:
        shortest, by_lhs, cost, pushed = self.shortest, self.by_lhs, self.cost, self.pushed
        ids: list[int] = []
        stack = [self.start]  # nonterminals still to expand, leftmost on top
        pending = shortest[self.start]  # fewest productions that finish everything on the stack
        while stack:
            top = stack.pop()
            pending -= shortest[top]
            room = self.max_productions - len(ids) - pending
            choice = rng.choice([p for p in by_lhs[top] if cost[p] <= room])
            ids.append(choice)
            stack.extend(pushed[choice])
            pending += cost[choice] - 1
        return ids


def generate_sentences(grammar: Grammar, n: int, max_productions: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences of ``grammar``, each derived in at most ``max_productions`` productions.

    Reproducible from ``seed``; in the order drawn. Sentences are the derived tokens joined with
    the grammar's separator (``grammar.derive(ids)``). Raises DatasetError (a ValueError) if ``n`` distinct
    sentences are not found (the language within the limit may be smaller than ``n``).
    """
    if n < 0:
        raise DatasetError(None, f"n must be non-negative, got {n}")
    rng = random.Random(seed)
    sampler = _Sampler(grammar, max_productions)
    found: dict[str, None] = {}  # insertion-ordered set
    budget = 50 * n + 1000  # repeated draws allowed before concluding the language is too small
    misses = 0
    while len(found) < n:
        sentence = grammar.derive(sampler.sample(rng))
        if sentence in found:
            misses += 1
            if misses > budget:
                raise DatasetError(
                    None,
                    f"found only {len(found)} distinct sentences of {grammar.name!r} with at most "
                    f"{max_productions} productions after {misses} repeated draws; "
                    "ask for fewer or allow more productions"
                )
            continue
        found[sentence] = None
    return list(found)
