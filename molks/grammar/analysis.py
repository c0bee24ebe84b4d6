"""Static analysis of a context-free grammar: FIRST/FOLLOW sets, the LL(1) table,
unreachable and unproductive symbols.

Symbols are integers: nonterminals ``0 .. A-1`` (0 is the start symbol) and
terminals ``A .. A+T-1``; productions are ``(lhs, rhs)`` with ``rhs`` a tuple
of symbols. ``END`` (-1) marks the end of the input in lookahead sets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

END = -1

Production = tuple[int, tuple[int, ...]]


@dataclass(frozen=True)
class LL1Table:
    """``table[a][t]`` is the production to expand nonterminal ``a`` with when the next token is ``t``.

    ``conflicts`` lists ``(nonterminal, lookahead, productions)`` where more than one production fits;
    the grammar is LL(1) exactly when it is empty.
    """

    table: tuple[dict[int, int], ...]
    conflicts: tuple[tuple[int, int, tuple[int, ...]], ...]

    @property
    def is_ll1(self) -> bool:
        return not self.conflicts


def _derivable(productions: Sequence[Production], given: Callable[[int], bool]) -> set[int]:
    """The least set of nonterminals with a production whose right-hand side is all ``given``
    symbols or symbols of the set (a fixpoint, grown until nothing changes)."""
    found: set[int] = set()
    changed = True
    while changed:
        changed = False
        for lhs, rhs in productions:
            if lhs not in found and all(s in found or given(s) for s in rhs):
                found.add(lhs)
                changed = True
    return found


def nullable_set(n_nonterminals: int, productions: Sequence[Production]) -> set[int]:
    """Nonterminals that derive the empty string."""
    return _derivable(productions, lambda s: False)


def first_sets(n_nonterminals: int, productions: Sequence[Production], nullable: set[int]) -> list[set[int]]:
    """FIRST(a) for each nonterminal: the terminals that can begin a string derived from it."""
    first: list[set[int]] = [set() for _ in range(n_nonterminals)]
    changed = True
    while changed:
        changed = False
        for lhs, rhs in productions:
            before = len(first[lhs])
            first[lhs] |= first_of_string(rhs, n_nonterminals, first, nullable)
            changed |= len(first[lhs]) != before
    return first


def first_of_string(
    symbols: Sequence[int], n_nonterminals: int, first: list[set[int]], nullable: set[int]
) -> set[int]:
    """FIRST of a string of symbols (without END: nullability is checked separately)."""
    out: set[int] = set()
    for s in symbols:
        if s >= n_nonterminals:
            out.add(s)
            return out
        out |= first[s]
        if s not in nullable:
            return out
    return out


def follow_sets(
    n_nonterminals: int, productions: Sequence[Production], first: list[set[int]], nullable: set[int]
) -> list[set[int]]:
    """FOLLOW(a) for each nonterminal; END follows the start symbol."""
    follow: list[set[int]] = [set() for _ in range(n_nonterminals)]
    follow[0].add(END)
    changed = True
    while changed:
        changed = False
        for lhs, rhs in productions:
            for i, s in enumerate(rhs):
                if s >= n_nonterminals:
                    continue
                rest = rhs[i + 1 :]
                before = len(follow[s])
                follow[s] |= first_of_string(rest, n_nonterminals, first, nullable)
                if all(r < n_nonterminals and r in nullable for r in rest):
                    follow[s] |= follow[lhs]
                changed |= len(follow[s]) != before
    return follow


def ll1_table(n_nonterminals: int, productions: Sequence[Production]) -> LL1Table:
    """Build the LL(1) parse table, recording every conflict."""
    nullable = nullable_set(n_nonterminals, productions)
    first = first_sets(n_nonterminals, productions, nullable)
    follow = follow_sets(n_nonterminals, productions, first, nullable)
    candidates: list[dict[int, list[int]]] = [{} for _ in range(n_nonterminals)]
    for index, (lhs, rhs) in enumerate(productions):
        lookaheads = first_of_string(rhs, n_nonterminals, first, nullable)
        if all(s < n_nonterminals and s in nullable for s in rhs):
            lookaheads |= follow[lhs]
        for t in lookaheads:
            candidates[lhs].setdefault(t, []).append(index)
    table = tuple({t: options[0] for t, options in row.items()} for row in candidates)
    conflicts = tuple(
        (a, t, tuple(options))
        for a, row in enumerate(candidates)
        for t, options in sorted(row.items())
        if len(options) > 1
    )
    return LL1Table(table=table, conflicts=conflicts)


def unreachable_nonterminals(n_nonterminals: int, productions: Sequence[Production]) -> set[int]:
    """Nonterminals that no derivation from the start symbol uses."""
    reached = {0}
    frontier = [0]
    by_lhs: dict[int, list[tuple[int, ...]]] = {}
    for lhs, rhs in productions:
        by_lhs.setdefault(lhs, []).append(rhs)
    while frontier:
        a = frontier.pop()
        for rhs in by_lhs.get(a, ()):
            for s in rhs:
                if s < n_nonterminals and s not in reached:
                    reached.add(s)
                    frontier.append(s)
    return set(range(n_nonterminals)) - reached


def unproductive_nonterminals(n_nonterminals: int, productions: Sequence[Production]) -> set[int]:
    """Nonterminals that derive no finite string of terminals."""
    return set(range(n_nonterminals)) - _derivable(productions, lambda s: s >= n_nonterminals)


def shortest_derivation_lengths(n_nonterminals: int, productions: Sequence[Production]) -> list[float]:
    """For each nonterminal, the fewest productions a complete derivation from it needs (inf if none)."""
    best = [float("inf")] * n_nonterminals
    changed = True
    while changed:
        changed = False
        for lhs, rhs in productions:
            cost = 1 + sum(best[s] for s in rhs if s < n_nonterminals)
            if cost < best[lhs]:
                best[lhs] = cost
                changed = True
    return best


def cyclic_nonterminals(n_nonterminals: int, productions: Sequence[Production]) -> list[list[int]]:
    """Cycles of derivations ``A =>+ A`` (unit productions such as ``S -> S``, or productions whose
    other symbols all derive the empty string): each is a list of nonterminals ``[A, B, ..., A]``,
    one cycle per nonterminal that lies on one, found in index order.

    A grammar with such a cycle through a useful nonterminal is ambiguous: any sentence derived
    through ``A`` has infinitely many parses (go round the cycle any number of times).
    """
    nullable = nullable_set(n_nonterminals, productions)
    edges: dict[int, set[int]] = {}
    for lhs, rhs in productions:
        for i, s in enumerate(rhs):
            others = rhs[:i] + rhs[i + 1 :]
            if s < n_nonterminals and all(o < n_nonterminals and o in nullable for o in others):
                edges.setdefault(lhs, set()).add(s)
    cycles: list[list[int]] = []
    on_a_cycle: set[int] = set()
    for start in range(n_nonterminals):
        if start in on_a_cycle:
            continue
        path = _path_back(start, edges)
        if path is not None:
            cycles.append(path)
            on_a_cycle.update(path)
    return cycles


def _path_back(start: int, edges: dict[int, set[int]]) -> list[int] | None:
    """The shortest path ``start -> ... -> start`` along ``edges`` (breadth first), or None."""
    previous: dict[int, int] = {}
    frontier = [start]
    while frontier:
        following = []
        for a in frontier:
            for b in sorted(edges.get(a, ())):
                if b == start:
                    path = [a]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, start]
                if b not in previous:
                    previous[b] = a
                    following.append(b)
        frontier = following
    return None
