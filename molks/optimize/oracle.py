"""Oracle calls as PMO counts them: every distinct item scored is one call, a repeat is free.

An optimisation keeps an :class:`OracleLedger`: what the target has said of each item it scored
(by the item's canonical form, so two spellings of one molecule are one item) and how many calls
have been made. A proposal whose item was scored before takes the earlier result without calling
the target; a new item is scored while the budget (``--budget``) lasts, and the proposals beyond it
are not evaluated at all (PMO's oracle stops answering there too). Invalid proposals (not an item
of the model's domain) cost nothing, as an invalid SMILES costs nothing in PMO.

The ledger is rebuilt from a saved state's rows (:meth:`OracleLedger.from_rows`), and the number of
calls is saved in the state's meta, so a resumed run counts exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from molks.optimize.targets import Terms

__all__ = ["Batch", "OracleLedger"]

_NOT_TERMS = ("iteration", "string", "valid", "call", "failure")


@dataclass
class Batch:
    """What the ledger decided for a batch of proposals.

    ``to_score``: the new items to send to the target, each once (their first spelling).
    ``cached``: proposal index -> the terms an earlier call gave its item (None: scored None).
    ``waiting``: proposal index -> index into ``to_score`` whose result it takes.
    ``over_budget``: indices of the proposals left unscored because the budget ran out.
    """

    to_score: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    cached: dict[int, Terms | None] = field(default_factory=dict)
    waiting: dict[int, int] = field(default_factory=dict)
    over_budget: list[int] = field(default_factory=list)

    def results(
        self, n: int, terms: Sequence[Terms | None], failures: Sequence[str | None]
    ) -> tuple[list[Terms | None], list[str | None]]:
        """Per proposal (``n`` of them) its terms and failure, from the results of ``to_score``."""
        scored: list[Terms | None] = [None] * n
        failed: list[str | None] = [None] * n
        for i, result in self.cached.items():
            scored[i] = result
        for i, j in self.waiting.items():
            scored[i], failed[i] = terms[j], failures[j]
        return scored, failed

    def kept(self, n: int) -> list[int]:
        """Indices of the proposals evaluated (all but those over the budget), in order."""
        over = set(self.over_budget)
        return [i for i in range(n) if i not in over]


@dataclass
class OracleLedger:
    """Items scored so far (canonical form -> terms, None where the target returned None) and calls made."""

    canonical: Callable[[str], str | None]
    budget: int | None = None
    calls: int = 0
    known: dict[str, Terms | None] = field(default_factory=dict)

    @classmethod
    def from_rows(
        cls, rows: Sequence[dict[str, Any]], canonical: Callable[[str], str | None], budget: int | None, calls: int | None
    ) -> OracleLedger:
        """The ledger of a state's rows: every row scored without failure is a known result.
        ``calls``: the count saved with the state (None for states saved before it was: the number
        of distinct items known)."""
        ledger = cls(canonical, budget)
        for row in rows:
            if "failure" in row or not row.get("string"):
                continue
            key = canonical(row["string"])
            if key is None or key in ledger.known:
                continue
            ledger.known[key] = {k: v for k, v in row.items() if k not in _NOT_TERMS} if row["valid"] else None
        ledger.calls = len(ledger.known) if calls is None else int(calls)
        return ledger

    @property
    def left(self) -> int | None:
        """Calls left (None: no budget)."""
        return None if self.budget is None else max(self.budget - self.calls, 0)

    @property
    def spent(self) -> bool:
        """Whether the budget is used up."""
        return self.budget is not None and self.calls >= self.budget

    def plan(self, strings: Sequence[str | None], valid: Sequence[bool]) -> Batch:
        """Sort the proposals: invalid ones (nothing to do), known items (cached), new items to score
        (each once, while the budget lasts) and the rest (over the budget)."""
        batch = Batch()
        first: dict[str, int] = {}
        left = self.left
        for i, (text, ok) in enumerate(zip(strings, valid)):
            if not ok or text is None:
                continue
            key = self.canonical(text)
            if key is None:  # valid by the model's check, but no canonical form: scored as itself
                key = text
            if key in self.known:
                batch.cached[i] = self.known[key]
            elif key in first:
                batch.waiting[i] = first[key]
            elif left is not None and len(batch.to_score) >= left:
                batch.over_budget.append(i)
            else:
                first[key] = len(batch.to_score)
                batch.waiting[i] = first[key]
                batch.to_score.append(text)
                batch.keys.append(key)
        return batch

    def record(self, batch: Batch, terms: Sequence[Terms | None], failures: Sequence[str | None]) -> None:
        """Count the calls of ``batch`` and remember its results (a failed call is counted but not
        remembered: the item may be scored again later)."""
        self.calls += len(batch.to_score)
        for key, result, failure in zip(batch.keys, terms, failures):
            if failure is None:
                self.known[key] = result
