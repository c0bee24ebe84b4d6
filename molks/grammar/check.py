"""Checking a grammar against data: coverage, ambiguity, unused symbols, LL(1) conflicts.

>>> from molks.grammar import Grammar
>>> from molks.grammar.check import check_grammar
>>> report = check_grammar(Grammar.load("arithmetic"), ["x + 1", "x +", "sin( x )"])
>>> report.n_parsed, report.failures[0].line
(2, 2)
"""

from __future__ import annotations

import errno
import gzip
import itertools
import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nltk

from molks.dataset.errors import DatasetError
from molks.dataset.io import TABLE_DELIMITERS, load_texts
from molks.errors import MissingFileError
from molks.grammar.analysis import (
    END,
    Production,
    cyclic_nonterminals,
    ll1_table,
    unproductive_nonterminals,
    unreachable_nonterminals,
)
from molks.grammar.cfg import Grammar, worker_crash_error
from molks.grammar.errors import AmbiguityError, GrammarError
from molks.grammar.general import chart_parser
from molks.workers import BrokenProcessPool, map_in_workers

__all__ = ["Conflict", "GrammarReport", "LineNote", "check_grammar", "read_lines"]

_CHUNK = 5000
_PARALLEL_MIN = 100_000  # below this, starting worker processes costs more than it saves (~100k items/s serial)


@dataclass(frozen=True)
class LineNote:
    """One item of the data: its 1-based line number, its text and what was found."""

    line: int
    text: str
    note: str


@dataclass(frozen=True)
class Conflict:
    """LL(1) conflicts: with ``nonterminal`` on top and any of ``lookaheads`` next, all ``productions`` fit."""

    nonterminal: str
    lookaheads: list[str]
    productions: list[str]


@dataclass
class GrammarReport:
    """What :func:`check_grammar` found; ``format()`` for people, ``to_dict()`` for JSON."""

    grammar: str
    path: str | None
    parser_kind: str
    n_productions: int
    n_nonterminals: int
    n_terminals: int
    n_items: int
    n_parsed: int
    failures: list[LineNote]  # the first few, in file order
    ambiguity_method: str
    n_ambiguity_checked: int
    ambiguous: list[LineNote]  # every ambiguous item found in the sample
    unreachable: list[str]
    unproductive: list[str]
    n_ll1_conflicts: int  # (nonterminal, lookahead) pairs with more than one production
    ll1_conflicts: list[Conflict] = field(default_factory=list)  # grouped by productions; the first few
    longest: LineNote | None = None  # the item with the longest derivation
    longest_length: int = 0  # its number of productions
    cycles: list[str] = field(default_factory=list)  # derivations A =>+ A ("S -> S"): infinitely many parses

    @property
    def n_failed(self) -> int:
        return self.n_items - self.n_parsed

    @property
    def coverage(self) -> float:
        return self.n_parsed / self.n_items if self.n_items else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["n_failed"] = self.n_failed
        out["coverage"] = self.coverage
        return out

    def format(self) -> str:
        lines = [
            f"grammar {self.grammar} ({self.path}): {self.n_productions} productions, "
            f"{self.n_nonterminals} nonterminals, {self.n_terminals} terminals, parser {self.parser_kind}",
            f"coverage: {self.n_parsed:,} of {self.n_items:,} items tokenize and parse ({100 * self.coverage:.3f}%)",
        ]
        if self.failures:
            shown = len(self.failures)
            lines.append(f"  {self.n_failed:,} fail; the first {shown}:" if self.n_failed > shown else f"  {self.n_failed:,} fail:")
            lines += [f"    line {f.line}: {f.text!r}: {f.note}" for f in self.failures]
        lines.append(f"ambiguity: {self.ambiguity_method}")
        if self.n_ambiguity_checked:
            lines.append(f"  {len(self.ambiguous)} of {self.n_ambiguity_checked} sampled items have more than one parse")
            lines += [f"    line {a.line}: {a.text!r}{_note(a)}" for a in self.ambiguous[:10]]
        lines.append(f"unreachable nonterminals: {', '.join(self.unreachable) or 'none'}")
        lines.append(f"unproductive nonterminals: {', '.join(self.unproductive) or 'none'}")
        if self.n_ll1_conflicts:
            lines.append(f"LL(1) conflicts: {self.n_ll1_conflicts} (nonterminal, next token) pairs, grouped:")
            for c in self.ll1_conflicts:
                shown = ", ".join(c.lookaheads[:8]) + (", ..." if len(c.lookaheads) > 8 else "")
                lines.append(f"    {c.nonterminal} with next {shown}: {' | '.join(c.productions)}")
        else:
            lines.append("LL(1) conflicts: none (the grammar is LL(1))")
        if self.longest is not None:
            lines.append(
                f"longest derivation: {self.longest_length} productions, line {self.longest.line}: {self.longest.text!r}"
            )
        return "\n".join(lines)


def check_grammar(
    grammar: Grammar,
    lines: Sequence[str],
    *,
    line_numbers: Sequence[int] | None = None,
    sample: int = 200,
    max_failures: int = 10,
    max_conflicts: int = 10,
    seed: int = 0,
    processes: int = 1,
) -> GrammarReport:
    """Check ``grammar`` against data items ``lines``.

    Every item is tokenized and parsed (in ``processes`` worker processes when > 1 and there are
    at least 100,000 items). Ambiguity is looked for on ``sample`` parsed items (seeded) with
    nltk's ChartParser, counting up to two trees -- unless the grammar is LL(1) or LALR(1),
    which are unambiguous by construction.
    ``line_numbers`` (default 1, 2, ...) name the items in the report.
    """
    if line_numbers is None:
        line_numbers = range(1, len(lines) + 1)
    if len(line_numbers) != len(lines):
        raise ValueError(f"{len(line_numbers)} line numbers for {len(lines)} items")

    lengths = _parse_lengths(grammar, lines, processes)
    failures: list[LineNote] = []
    parsed: list[int] = []
    too_ambiguous: list[int] = []  # sentences of the language whose parses nltk will not enumerate
    for i, result in enumerate(lengths):
        if result == _TOO_AMBIGUOUS:
            too_ambiguous.append(i)
        elif isinstance(result, str):
            if len(failures) < max_failures:
                failures.append(LineNote(line_numbers[i], lines[i], result))
        else:
            parsed.append(i)
    longest, longest_length = None, 0
    if parsed:
        i = max(parsed, key=lambda j: lengths[j])
        longest_length = int(lengths[i])
        longest = LineNote(line_numbers[i], lines[i], f"{longest_length} productions")

    n_nonterminals = len(grammar.nonterminals)
    encoded = _encoded_productions(grammar)
    useless = unreachable_nonterminals(n_nonterminals, encoded) | unproductive_nonterminals(n_nonterminals, encoded)
    cycles = [" -> ".join(grammar.nonterminals[a] for a in cycle)
              for cycle in cyclic_nonterminals(n_nonterminals, encoded) if cycle[0] not in useless]  # fmt: skip
    if cycles:  # a parser generator may accept these (lark does): the construction promises nothing
        method = (f"ambiguous: {'; '.join(cycles)} is a cycle of derivations, so every sentence derived "
                  "through it has infinitely many parses")  # fmt: skip
        checked: list[int] = []
        ambiguous: list[LineNote] = []
    elif grammar.parser_kind in ("ll1", "lalr"):
        name = "LL(1)" if grammar.parser_kind == "ll1" else "LALR(1)"
        method = f"none by construction: the grammar is {name}, so every sentence has exactly one parse"
        checked = []
        ambiguous = []
    else:
        method = f"nltk ChartParser, up to 2 trees, on {min(sample, len(parsed))} parsed items (seed {seed})"
        checked = sorted(random.Random(seed).sample(parsed, min(sample, len(parsed))))
        chart = chart_parser(grammar.cfg)
        ambiguous = []
        for i in checked:
            if _more_than_one_parse(chart, grammar.tokenize(lines[i])):
                ambiguous.append(LineNote(line_numbers[i], lines[i], "more than one parse"))
    if too_ambiguous:  # found while parsing: reported on top of the sample
        method += f", and {len(too_ambiguous)} items with more parses than nltk will enumerate"
        ambiguous += [LineNote(line_numbers[i], lines[i], _TOO_AMBIGUOUS_NOTE) for i in too_ambiguous]
    parsed += too_ambiguous  # they are sentences of the language: covered, just not one derivation

    table = ll1_table(n_nonterminals, encoded)
    symbols = grammar.nonterminals + grammar.terminals
    grouped: dict[tuple[int, tuple[int, ...]], list[str]] = {}
    for a, t, options in table.conflicts:
        grouped.setdefault((a, options), []).append("end of input" if t == END else repr(symbols[t]))
    conflicts = [
        Conflict(grammar.nonterminals[a], lookaheads, [str(grammar.productions[p]) for p in options])
        for (a, options), lookaheads in itertools.islice(grouped.items(), max_conflicts)
    ]
    return GrammarReport(
        grammar=grammar.name,
        path=str(grammar.path) if grammar.path else None,
        parser_kind=grammar.parser_kind,
        n_productions=grammar.n_productions,
        n_nonterminals=n_nonterminals,
        n_terminals=len(grammar.terminals),
        n_items=len(lines),
        n_parsed=len(parsed),
        failures=failures,
        ambiguity_method=method,
        n_ambiguity_checked=len(checked) + len(too_ambiguous),
        ambiguous=ambiguous,
        unreachable=[grammar.nonterminals[a] for a in sorted(unreachable_nonterminals(n_nonterminals, encoded))],
        unproductive=[grammar.nonterminals[a] for a in sorted(unproductive_nonterminals(n_nonterminals, encoded))],
        n_ll1_conflicts=len(table.conflicts),
        ll1_conflicts=conflicts,
        longest=longest,
        longest_length=longest_length,
        cycles=cycles,
    )


def read_lines(path: str | os.PathLike[str], column: str | None = None) -> tuple[list[str], list[int]]:
    """Items of a data file and their 1-based line numbers; blank lines are skipped.

    ``.txt``: each whole stripped line (expressions contain spaces). ``.smi``/``.smiles``: the first
    whitespace-separated field (a name may follow the SMILES). ``.csv``/``.tsv``: the cells of
    ``column``, by default of the ``smiles``/``SMILES`` column or of the only column, below a header
    row, read as :func:`molks.dataset.load_texts` reads them (a table of several columns without
    a ``smiles`` column and without ``column`` is an error naming its columns); empty cells are
    skipped. Any of them may be gzipped (``.gz``).

    Raises :class:`~molks.errors.MissingFileError` (a FileNotFoundError) or
    :class:`~molks.dataset.DatasetError` (a ValueError), naming the file, when it cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "no such data file", errno=errno.ENOENT)
    name = path.name.lower()
    gzipped = name.endswith(".gz")
    kind = Path(name.removesuffix(".gz")).suffix
    if kind in TABLE_DELIMITERS:  # one reader of tables for every command
        pairs = [(number, item) for number, item in load_texts(path, column) if item]
        if not pairs:
            raise DatasetError(path, "the file holds no items")
        return [item for _, item in pairs], [number for number, _ in pairs]
    if column is not None:
        raise DatasetError(path, f"--column {column!r} applies only to .csv and .tsv files")
    try:
        raw = gzip.decompress(path.read_bytes()) if gzipped else path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DatasetError(path, f"cannot read the data file: {err}") from None

    items: list[str] = []
    numbers: list[int] = []
    first_field = kind in (".smi", ".smiles")
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line:
            items.append(line.split()[0] if first_field else line)
            numbers.append(number)
    if not items:
        raise DatasetError(path, "the file holds no items")
    return items, numbers


def _encoded_productions(grammar: Grammar) -> list[Production]:
    """The productions as integer symbols, the form :mod:`molks.grammar.analysis` takes."""
    symbol = {name: i for i, name in enumerate(grammar.nonterminals)}
    terminal = {name: len(symbol) + j for j, name in enumerate(grammar.terminals)}
    return [
        (
            grammar.lhs[p],
            tuple(symbol[s.symbol()] if isinstance(s, nltk.Nonterminal) else terminal[s] for s in production.rhs()),
        )
        for p, production in enumerate(grammar.productions)
    ]


def _parse_lengths(grammar: Grammar, lines: Sequence[str], processes: int) -> list[int | str]:
    """For each item, the length of its derivation or why it fails -- not the derivations, to keep memory small."""
    chunks = [lines[i : i + _CHUNK] for i in range(0, len(lines), _CHUNK)]
    if processes <= 1 or len(lines) < _PARALLEL_MIN:
        return [n for chunk in chunks for n in _lengths_with(grammar, chunk)]
    out: list[int | str] = []
    try:
        for result in map_in_workers(_lengths, chunks, min(processes, len(chunks)), _init_worker, (grammar,)):
            out.extend(result)
    except BrokenProcessPool:
        raise worker_crash_error(grammar, chunks[len(out) // _CHUNK :], len(out)) from None
    return out


def _note(item: LineNote) -> str:
    return "" if item.note == "more than one parse" else f": {item.note}"


# An item's entry in _parse_lengths when it has more parses than nltk will enumerate.
_TOO_AMBIGUOUS = -1
_TOO_AMBIGUOUS_NOTE = "more parse trees than nltk will enumerate (highly ambiguous)"


def _more_than_one_parse(chart: nltk.ChartParser, tokens: list[str]) -> bool:
    try:
        return sum(1 for _ in itertools.islice(chart.parse(tokens), 2)) > 1
    except ValueError:  # nltk refuses to extract trees past its budget: ambiguous beyond doubt
        return True


def _lengths_with(grammar: Grammar, lines: Sequence[str]) -> list[int | str]:
    out: list[int | str] = []
    for text in lines:
        try:
            out.append(len(grammar.parse(text)))
        except AmbiguityError:
            out.append(_TOO_AMBIGUOUS)
        except GrammarError as err:
            out.append(str(err))
    return out


_worker_grammar: Grammar | None = None


def _init_worker(grammar: Grammar) -> None:
    global _worker_grammar
    _worker_grammar = grammar


def _lengths(lines: Sequence[str]) -> list[int | str]:
    assert _worker_grammar is not None
    return _lengths_with(_worker_grammar, lines)
