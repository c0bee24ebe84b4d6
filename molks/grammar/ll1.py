"""A table-driven LL(1) parser that expands whole chains of productions per token.

For an LL(1) grammar the productions applied between two tokens depend only on
the symbol on top of the stack and the next token. We precompute, for every
(top symbol, token) pair, the productions emitted until that token is matched
(or the top symbol vanishes through empty productions) and what is left to
push. Parsing is then a few list operations per token -- this is what makes
the bundled SMILES grammar parse hundreds of times faster than a chart parser.
"""

from __future__ import annotations

from collections.abc import Sequence

from molks.grammar.analysis import END, LL1Table, Production
from molks.grammar.errors import GrammarError, ParseError, TokenizeError

# (productions emitted, symbols to push (bottom first), whether the lookahead token was consumed)
_Chain = tuple[tuple[int, ...], tuple[int, ...], bool]


class LL1Parser:
    """Parses token lists of an LL(1) grammar into leftmost-derivation production indices."""

    def __init__(
        self,
        n_nonterminals: int,
        productions: Sequence[Production],
        table: LL1Table,
        terminals: Sequence[str],
        symbol_names: Sequence[str],
    ) -> None:
        if not table.is_ll1:
            raise GrammarError("the grammar is not LL(1); use a general parser")
        self._n_nonterminals = n_nonterminals
        self._productions = productions
        self._table = table.table
        self._symbol_names = symbol_names
        n_symbols = n_nonterminals + len(terminals)
        # One row per token: row[symbol] is the chain to run with that symbol on top.
        self._rows: dict[str, list[_Chain | None]] = {}
        for j, terminal in enumerate(terminals):
            t = n_nonterminals + j
            row: list[_Chain | None] = [self._chain(a, t) for a in range(n_nonterminals)]
            row.extend(((), (), True) if s == t else None for s in range(n_nonterminals, n_symbols))
            self._rows[terminal] = row
        self._end_row: list[_Chain | None] = [self._chain(a, END) for a in range(n_nonterminals)]
        self._end_row.extend(None for _ in range(n_nonterminals, n_symbols))

    def _chain(self, top: int, lookahead: int) -> _Chain | None:
        """Expand ``top`` with ``lookahead`` until the lookahead is matched or ``top`` derives nothing more."""
        stack = [top]
        emitted: list[int] = []
        while stack:
            symbol = stack.pop()
            if symbol >= self._n_nonterminals:
                if symbol != lookahead:
                    return None
                return tuple(emitted), tuple(stack), True
            index = self._table[symbol].get(lookahead)
            if index is None:
                return None
            emitted.append(index)
            if len(emitted) > 100_000:
                raise GrammarError(f"the grammar loops when expanding {self._symbol_names[top]!r}")
            stack.extend(reversed(self._productions[index][1]))
        return tuple(emitted), (), False

    def parse(self, tokens: Sequence[str]) -> list[int]:
        """Production indices of the leftmost derivation of ``tokens``.

        Raises :class:`ParseError` whose ``position`` is the index of the offending token.
        """
        rows = self._rows
        out: list[int] = []
        stack = [0]
        for position, token in enumerate(tokens):
            row = rows.get(token)
            if row is None:
                raise TokenizeError(f"token {token!r} is not a terminal of the grammar", position=position)
            while True:
                if not stack:
                    raise ParseError(
                        f"unexpected token {token!r} at token {position}: the sentence is already complete",
                        position=position,
                    )
                top = stack.pop()
                chain = row[top]
                if chain is None:
                    raise ParseError(self._unexpected(top, token, position), position=position)
                emitted, push, consumed = chain
                if emitted:
                    out += emitted
                if push:
                    stack += push
                if consumed:
                    break
        end_row = self._end_row
        while stack:
            top = stack.pop()
            chain = end_row[top]
            if chain is None:
                raise ParseError(
                    f"the sentence ends early: expected {self._expected(top)}", position=len(tokens)
                )
            out += chain[0]
            stack += chain[1]
        return out

    def _expected(self, top: int) -> str:
        if top >= self._n_nonterminals:
            return repr(self._symbol_names[top])
        options = sorted(
            "end of input" if t == END else repr(self._symbol_names[t]) for t in self._table[top]
        )
        if not options:  # no token can begin it: the grammar is at fault, not the sentence
            return (
                f"{self._symbol_names[top]}, but {self._symbol_names[top]} derives no string of terminals "
                "(an unproductive nonterminal: no derivation from it ever ends); fix the grammar"
            )
        if len(options) > 12:
            options = options[:12] + ["..."]
        return f"{self._symbol_names[top]} (one of {', '.join(options)})"

    def _unexpected(self, top: int, token: str, position: int) -> str:
        return f"unexpected token {token!r} at token {position}: expected {self._expected(top)}"
