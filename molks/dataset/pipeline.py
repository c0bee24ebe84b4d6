"""Dataset file -> :class:`ParsedDataset`: read, check molecules with RDKit, parse, cache.

The slow part on real data is RDKit (about 0.1 ms a molecule), so items are processed in chunks
by a pool of worker processes (the ``forkserver`` context, as :meth:`Grammar.parse_many` uses),
each doing RDKit + tokenize + parse for its chunk in one pass.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from molks.dataset.cache import cache_key, default_cache_dir, read_cache, write_cache
from molks.dataset.errors import DatasetError
from molks.dataset.io import read_bytes, texts_from_bytes
from molks.dataset.parsed import Failure, ParsedDataset, ids_dtype
from molks.progress import progress_bar
from molks.domain import domain_for_grammar
from molks.grammar import AmbiguityError, Grammar, GrammarError, TokenizeError
from molks.workers import BrokenProcessPool, crashing_item, map_in_workers

__all__ = ["load_dataset", "parse_items"]

# Below this many items a worker pool costs more (process start-up, imports) than it saves.
_INLINE_BELOW = 2000
_MAX_CHUNK = 2000
_MIN_CHUNK = 100


def load_dataset(
    path: str | os.PathLike[str],
    grammar: Grammar | str,
    *,
    column: str | None = None,
    canonicalize: bool = True,
    strict: bool = False,
    max_length: int | None = None,
    processes: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: bool = True,
    isolate: bool = False,
) -> ParsedDataset:
    """Read, check and parse every item of a dataset file (see :func:`molks.dataset.load_texts` for formats).

    For molecules (the domain of a grammar with the SMILES tokenizer, see
    :func:`molks.domain.domain_for_grammar`) every item goes through RDKit first: unreadable
    molecules are rejected with RDKit's reason, and the rest are rewritten as canonical SMILES
    unless ``canonicalize=False``. Other grammars (e.g. arithmetic) skip RDKit and take whole lines. Items that fail (empty, invalid SMILES, a token outside the grammar, no
    parse, a derivation longer than ``max_length``) are skipped and listed in ``failures``;
    ``strict=True`` raises a :class:`DatasetError` naming the first one's line instead.

    ``processes``: worker processes (default: every core; small files are done in this process).
    ``isolate``: RDKit reads the items in worker processes even for ``processes=1`` or a small file,
    so that a crash in it on a hostile SMILES is an error naming the line instead of the end of this
    process (the commands do so; a script that sets it must guard its entry point with
    ``if __name__ == "__main__":``, as workers start with ``forkserver``).
    Workers are started with ``forkserver``, so a script calling this must guard its entry point
    with ``if __name__ == "__main__":``, as for any multiprocessing code. The result is cached in
    ``cache_dir`` (default ``$MOLKS_CACHE_DIR`` or ``~/.cache/molks``), keyed by the file's
    content, the grammar's content and the options; ``use_cache=False`` neither reads nor writes
    it. ``progress`` shows a progress bar on stderr when stderr is a terminal.

    Raises :class:`DatasetError` if the file is unusable or no item at all can be parsed.
    """
    started = time.perf_counter()
    path = Path(path)
    if isinstance(grammar, str):
        grammar = Grammar.load(grammar)
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    domain = domain_for_grammar(grammar)
    molecules = domain.molecular
    options = {
        "column": column,
        "canonicalize": bool(canonicalize and molecules),
        "rdkit": molecules,
        "whole_lines": domain.whole_lines,
        "max_length": max_length,
    }
    data = read_bytes(path)
    file_sha256 = hashlib.sha256(data).hexdigest()
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = cache_key(
        file_sha256=file_sha256,
        grammar_hash=grammar.content_hash,
        rdkit_version=_rdkit_version() if molecules else None,
        **options,
    )
    if use_cache:
        cached = read_cache(cache_root, key, path)
        if cached is not None:
            if strict and cached.failures:
                first = cached.failures[0]
                raise DatasetError(path, first.reason, line=first.line)
            cached.seconds = time.perf_counter() - started
            return cached

    items = texts_from_bytes(path, data, column, whole_lines=domain.whole_lines)
    del data
    texts, ids, lengths, lines, failures = parse_items(
        items,
        grammar,
        molecules=molecules,
        canonicalize=options["canonicalize"],
        max_length=max_length,
        processes=processes,
        progress=progress,
        stop_on_failure=strict,
        description=path.name,
        isolate=isolate and molecules,
    )
    if strict and failures:
        raise DatasetError(path, failures[0].reason, line=failures[0].line)
    if not texts:
        first = failures[0]
        raise DatasetError(
            path, f"none of its {len(items)} items could be used; the first, line {first.line}, failed: {first.reason}"
        )
    dataset = ParsedDataset(
        texts=texts,
        ids=ids,
        lengths=lengths,
        line_numbers=lines,
        failures=failures,
        grammar_hash=grammar.content_hash,
        grammar_name=grammar.name,
        padding_index=grammar.padding_index,
        source=path,
        file_sha256=file_sha256,
        options=options,
        n_items=len(items),
    )
    if use_cache:
        write_cache(cache_root, key, dataset)
    dataset.seconds = time.perf_counter() - started
    return dataset


@dataclass
class _Chunk:
    """What one worker returns for one chunk of items."""

    texts: list[str]
    ids: np.ndarray  # [sum(lengths)]
    lengths: np.ndarray  # [n_parsed] int32
    lines: np.ndarray  # [n_parsed] int64
    failures: list[Failure]


def parse_items(
    items: Sequence[tuple[int, str]],
    grammar: Grammar,
    *,
    molecules: bool,
    canonicalize: bool = True,
    max_length: int | None = None,
    processes: int | None = None,
    progress: bool = True,
    stop_on_failure: bool = False,
    chunksize: int | None = None,
    description: str = "parsing",
    isolate: bool = False,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, list[Failure]]:
    """Check (RDKit, when ``molecules``) and parse ``(line, text)`` items.

    Returns ``(texts, ids, lengths, line_numbers, failures)`` with ``ids`` flat as in
    :class:`ParsedDataset`. With ``stop_on_failure`` it returns as soon as a chunk holds a
    failure (the first failure in line order is then ``failures[0]``). ``isolate``: work in worker
    processes even for one process or a few items (see :func:`load_dataset`).
    """
    processes = processes or os.cpu_count() or 1
    if chunksize is None:
        chunksize = min(_MAX_CHUNK, max(_MIN_CHUNK, math.ceil(len(items) / (4 * processes))))
    chunks = [items[i : i + chunksize] for i in range(0, len(items), chunksize)]
    settings = (grammar, molecules, canonicalize, max_length)
    results: list[_Chunk] = []
    # closing(): stopping early must shut the worker pool down now, not whenever the generator is collected.
    running = closing(_run_chunks(chunks, settings, processes, inline=len(items) < _INLINE_BELOW, isolate=isolate,
                                  description=description))
    bar = progress_bar(len(items), description, progress, unit=" items", unit_scale=True)
    with bar, running as chunk_results:
        for chunk in chunk_results:
            results.append(chunk)
            bar.update(len(chunk.texts) + len(chunk.failures))
            if stop_on_failure and chunk.failures:
                break
    dtype = ids_dtype(grammar.n_outputs)
    texts = [text for chunk in results for text in chunk.texts]
    ids = np.concatenate([c.ids for c in results]) if results else np.zeros(0, dtype=dtype)
    lengths = np.concatenate([c.lengths for c in results]) if results else np.zeros(0, dtype=np.int32)
    lines = np.concatenate([c.lines for c in results]) if results else np.zeros(0, dtype=np.int64)
    failures = [f for chunk in results for f in chunk.failures]
    return texts, ids.astype(dtype, copy=False), lengths, lines, failures


# (grammar, molecules, canonicalize, max_length): what every worker needs, sent once.
_Settings = tuple[Grammar, bool, bool, "int | None"]


def _run_chunks(
    chunks: list[Sequence[tuple[int, str]]], settings: _Settings, processes: int, *, inline: bool, description: str,
    isolate: bool = False,
) -> Iterator[_Chunk]:
    if not isolate and (inline or processes == 1 or len(chunks) <= 1):
        from molks.dataset.molecules import quiet_rdkit

        with quiet_rdkit():
            for chunk in chunks:
                yield _process_chunk_with(settings, chunk)
        return
    done = 0
    try:
        for result in map_in_workers(_process_chunk, chunks, min(processes, len(chunks)), _init_worker, (settings,)):
            done += 1
            yield result
    except BrokenProcessPool:
        raise _crash_error(chunks[done:], settings, description) from None


def _crash_error(unfinished: list[Sequence[tuple[int, str]]], settings: _Settings, description: str) -> DatasetError:
    """The error naming the item that killed a worker, found by running the unfinished chunks again
    in one worker (whole chunks first, then the culprit chunk item by item)."""
    found = crashing_item(_process_chunk, unfinished, _init_worker, (settings,))
    if found is None:
        return DatasetError(description, "a worker process died while parsing (out of memory?); try --processes 1")
    line, text = unfinished[found[0]][found[1]]
    shown = text if len(text) <= 60 else f"{text[:60]}... ({len(text):,} characters)"
    return DatasetError(description, f"this item killed a worker process (a crash in RDKit or the parser): {shown!r}", line=line)


def _process_chunk_with(settings: _Settings, chunk: Sequence[tuple[int, str]]) -> _Chunk:
    grammar, molecules, canonicalize, max_length = settings
    if molecules:
        from molks.dataset.molecules import MoleculeError, check_smiles, too_long
    texts: list[str] = []
    ids: list[int] = []
    lengths: list[int] = []
    lines: list[int] = []
    failures: list[Failure] = []
    for line, text in chunk:
        if not text:
            failures.append(Failure(line, "empty: no text in this item"))
            continue
        if molecules:
            reason = too_long(text)
            if reason is not None:  # before RDKit, which hangs or crashes on such strings
                failures.append(Failure(line, f"too long: {reason}"))
                continue
            try:
                text = check_smiles(text, canonicalize=canonicalize)
            except MoleculeError as err:
                failures.append(Failure(line, f"invalid SMILES: {err}"))
                continue
        try:
            derivation = grammar.parse(text)
        except TokenizeError as err:
            failures.append(Failure(line, f"token outside the grammar: {err}"))
            continue
        except AmbiguityError as err:  # skipped with its reason, not the whole dataset
            failures.append(Failure(line, f"ambiguous: {err}"))
            continue
        except GrammarError as err:
            failures.append(Failure(line, f"does not parse: {err}"))
            continue
        if max_length is not None and len(derivation) > max_length:
            failures.append(
                Failure(line, f"longer than max_length: {len(derivation)} productions > max_length {max_length}")
            )
            continue
        texts.append(text)
        ids.extend(derivation)
        lengths.append(len(derivation))
        lines.append(line)
    return _Chunk(
        texts=texts,
        ids=np.asarray(ids, dtype=ids_dtype(grammar.n_outputs)),
        lengths=np.asarray(lengths, dtype=np.int32),
        lines=np.asarray(lines, dtype=np.int64),
        failures=failures,
    )


_worker_settings: _Settings | None = None


def _init_worker(settings: _Settings) -> None:
    global _worker_settings
    _worker_settings = settings
    if settings[1]:
        from molks.dataset.molecules import silence_rdkit

        silence_rdkit()


def _process_chunk(chunk: Sequence[tuple[int, str]]) -> _Chunk:
    assert _worker_settings is not None
    return _process_chunk_with(_worker_settings, chunk)


def _rdkit_version() -> str:
    import rdkit

    return str(rdkit.__version__)
