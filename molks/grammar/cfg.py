"""The :class:`Grammar`: a context-free grammar read from an nltk ``.cfg`` file, with its
tokenizer, an exact fast parser, the inverse (derivation -> text) and the masks the
models need.

A production's index is its position in the file, i.e. in
``nltk.CFG.fromstring(text).productions()``; index ``n_productions`` is the padding
("no-op") production that fills a sequence after its derivation is complete.

A ``.cfg`` file may carry directives in its comments:

``# tokenizer: smiles``   split text with the SMILES tokenizer (default: ``terminals``,
                          longest match over the grammar's terminals, whitespace ignored)
``# join: none``          join derived tokens with nothing (default: ``space``)
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import nltk

from molks.grammar.analysis import Production, ll1_table, shortest_derivation_lengths
from molks.grammar.errors import AmbiguityError, DerivationError, GrammarError, NotTextError, ParseError, TokenizeError
from molks.grammar.general import GeneralParser
from molks.grammar.ll1 import LL1Parser
from molks.grammar.tokenize import TerminalTokenizer, smiles_tokenize
from molks.workers import BrokenProcessPool, crashing_item, map_in_workers

if TYPE_CHECKING:
    import torch

__all__ = ["Grammar", "BUNDLED_GRAMMARS"]

_BUNDLED_DIR = Path(__file__).resolve().parent.parent / "grammars"
if not _BUNDLED_DIR.is_dir():  # editable installs map the top-level grammars/ folder onto molks.grammars
    import molks.grammars as _bundled

    _BUNDLED_DIR = Path(_bundled.__file__).resolve().parent
BUNDLED_GRAMMARS = tuple(sorted(p.stem for p in _BUNDLED_DIR.glob("*.cfg")))
_DIRECTIVE = re.compile(r"^\s*#\s*(tokenizer|join)\s*:\s*(\S+)\s*$", re.MULTILINE)
_TOKENIZERS = ("smiles", "terminals")
_JOINS = {"none": "", "space": " "}


class Grammar:
    """A context-free grammar with an exact, fast parser.

    >>> g = Grammar.load("smiles")
    >>> ids = g.parse("CC(=O)O")
    >>> g.derive(ids)
    'CC(=O)O'
    """

    def __init__(self, text: str, *, path: Path | None = None, name: str | None = None) -> None:
        self.text = text
        self.path = path
        self.name = name or (path.stem if path else "grammar")
        where = str(path) if path else self.name
        try:
            self.cfg = nltk.CFG.fromstring(text)
        except ValueError as err:
            raise GrammarError(f"{where}: not an nltk context-free grammar: {err}") from None
        self.productions: list[nltk.grammar.Production] = list(self.cfg.productions())
        if not self.productions:
            raise GrammarError(f"{where}: the grammar has no productions")
        first_index: dict[nltk.grammar.Production, int] = {}
        for index, production in enumerate(self.productions):
            # A repeated production makes every sentence using it ambiguous (and lark refuses it).
            if production in first_index:
                raise GrammarError(
                    f"{where}: production {index} ({production}) is listed twice (first as {first_index[production]})"
                )
            first_index[production] = index

        directives = dict(_DIRECTIVE.findall(text))
        self.tokenizer_name = directives.get("tokenizer", "terminals")
        if self.tokenizer_name not in _TOKENIZERS:
            raise GrammarError(f"{where}: unknown tokenizer {self.tokenizer_name!r}; use one of {_TOKENIZERS}")
        join = directives.get("join", "space")
        if join not in _JOINS:
            raise GrammarError(f"{where}: unknown join {join!r}; use one of {tuple(_JOINS)}")
        self.separator = _JOINS[join]

        # Symbols as integers: nonterminals in order of first appearance (start first), then terminals.
        nonterminals: dict[nltk.Nonterminal, int] = {self.cfg.start(): 0}
        for p in self.productions:
            nonterminals.setdefault(p.lhs(), len(nonterminals))
        undefined = [
            s.symbol() for p in self.productions for s in p.rhs() if isinstance(s, nltk.Nonterminal) and s not in nonterminals
        ]
        if undefined:
            raise GrammarError(f"{where}: nonterminal {undefined[0]!r} is used but has no production")
        terminals: dict[str, int] = {}
        for p in self.productions:
            for s in p.rhs():
                if not isinstance(s, nltk.Nonterminal):
                    terminals.setdefault(s, len(nonterminals) + len(terminals))
        self.nonterminals: list[str] = [a.symbol() for a in nonterminals]
        self.terminals: list[str] = list(terminals)
        self.start = 0
        self._symbol_of = {**{a: i for a, i in nonterminals.items()}, **terminals}
        self._encoded: list[Production] = [
            (nonterminals[p.lhs()], tuple(self._symbol_of[s] for s in p.rhs())) for p in self.productions
        ]
        self.lhs: list[int] = [lhs for lhs, _ in self._encoded]
        self.rhs_nonterminals: list[tuple[int, ...]] = [
            tuple(s for s in rhs if s < len(nonterminals)) for _, rhs in self._encoded
        ]
        self._symbol_names = self.nonterminals + self.terminals
        self._rhs_reversed = [tuple(reversed(rhs)) for _, rhs in self._encoded]

        table = ll1_table(len(self.nonterminals), self._encoded)
        self.parser_kind: str
        if table.is_ll1:
            self._parser: LL1Parser | GeneralParser = LL1Parser(
                len(self.nonterminals), self._encoded, table, self.terminals, self._symbol_names
            )
            self.parser_kind = "ll1"
        else:
            self._parser = GeneralParser(len(self.nonterminals), self._encoded, self.terminals, self.cfg)
            self.parser_kind = self._parser.kind
        try:
            self._tokenize: Callable[[str], list[str]] = (
                smiles_tokenize if self.tokenizer_name == "smiles" else TerminalTokenizer(self.terminals)
            )
        except TokenizeError as err:
            raise GrammarError(f"{where}: {err}") from None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def load(cls, name_or_path: str | os.PathLike[str]) -> Grammar:
        """A bundled grammar by name (``"smiles"``, ``"arithmetic"``) or an nltk ``.cfg`` file."""
        candidate = Path(name_or_path)
        if str(name_or_path) in BUNDLED_GRAMMARS and not candidate.is_file():
            candidate = _BUNDLED_DIR / f"{name_or_path}.cfg"
        if not candidate.is_file():
            raise GrammarError(
                f"no grammar {str(name_or_path)!r}: not a bundled grammar {BUNDLED_GRAMMARS} nor a file"
            )
        try:
            text = candidate.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise GrammarError(f"{candidate}: cannot read the grammar: {err}") from None
        return cls(text, path=candidate.resolve(), name=candidate.stem)

    def __reduce__(self) -> tuple[Callable[..., Grammar], tuple[str, Path | None, str]]:
        # Rebuilt from its text in worker processes (parsers hold unpicklable lark objects).
        return _rebuild, (self.text, self.path, self.name)

    def __repr__(self) -> str:
        return f"Grammar({self.name!r}, productions={self.n_productions}, parser={self.parser_kind!r})"

    # -- sizes and hashes -------------------------------------------------------------------------

    @property
    def n_productions(self) -> int:
        return len(self.productions)

    @property
    def padding_index(self) -> int:
        return len(self.productions)

    @property
    def n_outputs(self) -> int:
        """One-hot width: every production plus padding."""
        return len(self.productions) + 1

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 of the grammar's text: what a trained model pins."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    # -- text <-> derivation ------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """The grammar's terminals making up ``text``; :class:`TokenizeError` names a bad token and its position."""
        return self._tokenize(text)

    def detokenize(self, tokens: Iterable[str]) -> str:
        return self.separator.join(tokens)

    def parse(self, text: str) -> list[int]:
        """Production indices of the leftmost derivation of ``text`` (no padding).

        Raises :class:`TokenizeError` or :class:`ParseError` with ``position`` the character offset,
        :class:`NotTextError` for an item that is not a string.
        """
        if not isinstance(text, str):
            raise not_text(text)
        tokens = self._tokenize(text)
        try:
            return self._parser.parse(tokens)
        except AmbiguityError as err:  # a property of the whole sentence: no position to report
            shown = text if len(text) <= 60 else f"{text[:60]}..."
            raise AmbiguityError(f"{shown!r} is {err}") from None
        except (ParseError, TokenizeError) as err:  # positions are token indices here: report characters
            position = _character_offset(text, tokens, err.position or 0)
            token = tokens[err.position] if err.position is not None and err.position < len(tokens) else None
            where = f"{token!r} at position {position}" if token is not None else f"the end (position {position})"
            what = "does not parse" if isinstance(err, ParseError) else "has a token outside the grammar"
            raise type(err)(f"{text!r} {what} at {where}: {err}", position=position) from None

    def parse_tokens(self, tokens: Sequence[str]) -> list[int]:
        """Like :meth:`parse` for already tokenized input; ``position`` of an error is a token index."""
        return self._parser.parse(tokens)

    def derive(self, ids: Iterable[int]) -> str:
        """The text a leftmost derivation produces; trailing padding is ignored.

        Raises :class:`DerivationError` if ``ids`` is not a complete derivation of the grammar.
        """
        return self.detokenize(self.derive_tokens(ids))

    def derive_tokens(self, ids: Iterable[int]) -> list[str]:
        n_nonterminals = len(self.nonterminals)
        padding = self.padding_index
        names = self._symbol_names
        lhs, rhs_reversed = self.lhs, self._rhs_reversed
        stack = [self.start]
        tokens: list[str] = []
        for step, index in enumerate(ids):
            index = int(index)
            while stack and stack[-1] >= n_nonterminals:
                tokens.append(names[stack.pop()])
            if not stack:
                if index == padding:
                    continue
                raise DerivationError(f"production {index} at step {step} comes after the derivation is complete", position=step)
            if not 0 <= index < padding:
                what = "padding" if index == padding else f"index {index} (the grammar has {padding})"
                raise DerivationError(
                    f"{what} at step {step} while {names[stack[-1]]!r} is still to be expanded", position=step
                )
            top = stack.pop()
            if lhs[index] != top:
                raise DerivationError(
                    f"production {index} ({self.productions[index]}) at step {step} does not expand {names[top]!r}",
                    position=step,
                )
            stack += rhs_reversed[index]
        while stack:
            symbol = stack.pop()
            if symbol < n_nonterminals:
                raise DerivationError(f"the derivation is incomplete: {names[symbol]!r} is never expanded")
            tokens.append(names[symbol])
        return tokens

    def parse_many(
        self,
        texts: Sequence[str],
        processes: int | None = None,
        *,
        chunksize: int = 2000,
        progress: Callable[[int], None] | None = None,
    ) -> list[list[int] | GrammarError]:
        """Parse many texts, in ``processes`` worker processes (default: every core).

        Returns one entry per text: its production indices, or the :class:`GrammarError` saying why it failed.
        ``progress`` is called with the number of texts finished after each chunk.
        """
        processes = processes or os.cpu_count() or 1
        chunks = [texts[i : i + chunksize] for i in range(0, len(texts), chunksize)]
        results: list[list[int] | GrammarError] = []
        if processes == 1 or len(chunks) <= 1:
            for chunk in chunks:
                results.extend(_parse_chunk_with(self, chunk))
                if progress:
                    progress(len(chunk))
            return results
        try:
            for chunk_results in map_in_workers(_parse_chunk, chunks, min(processes, len(chunks)), _init_worker, (self,)):
                results.extend(chunk_results)
                if progress:
                    progress(len(chunk_results))
        except BrokenProcessPool:
            raise worker_crash_error(self, chunks[len(results) // chunksize :], len(results) // chunksize * chunksize) from None
        return results

    # -- what the models need ---------------------------------------------------------------------

    def masks(self) -> torch.Tensor:
        """Allowed outputs per top-of-stack nonterminal: bool ``[n_nonterminals + 1, n_outputs]``.

        Row ``a`` allows the productions whose left-hand side is ``a``; the last row is the empty
        stack, which allows only padding.
        """
        import torch

        masks = torch.zeros(len(self.nonterminals) + 1, self.n_outputs, dtype=torch.bool)
        masks[torch.tensor(self.lhs), torch.arange(self.n_productions)] = True
        masks[-1, self.padding_index] = True
        return masks

    def min_derivation_lengths(self) -> list[float]:
        """Fewest productions a complete derivation from each nonterminal needs (inf: none exists)."""
        return shortest_derivation_lengths(len(self.nonterminals), self._encoded)


def _rebuild(text: str, path: Path | None, name: str) -> Grammar:
    return Grammar(text, path=path, name=name)


def _character_offset(text: str, tokens: Sequence[str], token_index: int) -> int:
    """Character offset in ``text`` of token ``token_index`` (tokens appear in order, maybe spaced)."""
    cursor = 0
    for token in tokens[:token_index]:
        cursor = text.index(token, cursor) + len(token)
    if token_index < len(tokens):
        return text.index(tokens[token_index], cursor)
    return len(text)


def worker_crash_error(grammar: Grammar, unfinished: Sequence[Sequence[str]], offset: int) -> GrammarError:
    """The error naming the text that killed a parsing worker (``offset``: index of the first unfinished text)."""
    found = crashing_item(_parse_chunk, unfinished, _init_worker, (grammar,))
    if found is None:
        return GrammarError("a worker process died while parsing (out of memory?); use one process")
    chunk, index = found
    text = unfinished[chunk][index]
    shown = text if len(text) <= 60 else f"{text[:60]}... ({len(text):,} characters)"
    position = offset + sum(len(c) for c in unfinished[:chunk]) + index
    return GrammarError(f"item {position}: {shown!r} killed a worker process while it was parsed")


def not_text(item: object) -> NotTextError:
    """The error of an item that is not a string (said briefly: it may be anything)."""
    shown = repr(item)
    return NotTextError(f"not a string but {type(item).__name__} {shown if len(shown) <= 40 else shown[:40] + '...'}")


def _parse_chunk_with(grammar: Grammar, texts: Sequence[str]) -> list[list[int] | GrammarError]:
    out: list[list[int] | GrammarError] = []
    for text in texts:
        try:
            out.append(grammar.parse(text))
        except GrammarError as err:
            out.append(err)
    return out


_worker_grammar: Grammar | None = None


def _init_worker(grammar: Grammar) -> None:
    global _worker_grammar
    _worker_grammar = grammar


def _parse_chunk(texts: Sequence[str]) -> list[list[int] | GrammarError]:
    assert _worker_grammar is not None
    return _parse_chunk_with(_worker_grammar, texts)
