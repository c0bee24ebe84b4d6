"""The result of parsing a dataset: texts and their derivations, stored compactly, plus what failed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Failure", "ParsedDataset", "REASONS", "ids_dtype"]

# Failure categories, in the order a text meets them.
REASONS = (
    "empty",
    "too long",
    "invalid SMILES",
    "token outside the grammar",
    "does not parse",
    "ambiguous",
    "longer than max_length",
)


class Failure(NamedTuple):
    """An item that was skipped: its 1-based line and why, as ``"<category>: <detail>"``."""

    line: int
    reason: str

    @property
    def category(self) -> str:
        """One of :data:`REASONS`."""
        return self.reason.split(": ", 1)[0]


def ids_dtype(n_outputs: int) -> type[np.signedinteger[Any]]:
    """The smallest signed integer type holding production indices ``0 .. n_outputs - 1``."""
    return np.int16 if n_outputs <= np.iinfo(np.int16).max else np.int32


@dataclass
class ParsedDataset:
    """Parsed items of a dataset file.

    ``ids`` holds every derivation back to back (flat ``[sum(lengths)]``, int16 or int32); item
    ``i``'s production indices are ``ids[offsets[i]:offsets[i + 1]]`` (:meth:`ids_of`), without
    padding. Use :meth:`padded` for the ``[N, L]`` array the models take.
    """

    texts: list[str]  # [N] the strings that were parsed (canonical SMILES unless switched off)
    ids: np.ndarray  # [sum(lengths)] production indices, flat
    lengths: np.ndarray  # [N] int32 derivation lengths
    line_numbers: np.ndarray  # [N] int64 1-based line of each item in the source file
    failures: list[Failure]  # skipped items, in line order
    grammar_hash: str  # Grammar.content_hash of the grammar used
    grammar_name: str
    padding_index: int  # Grammar.padding_index
    source: Path  # the file read
    file_sha256: str  # sha256 of the file's bytes
    options: dict[str, Any] = field(default_factory=dict)  # canonicalize, column, max_length, ...
    n_items: int = 0  # items read from the file: len(texts) + len(failures)
    cache_hit: bool = False  # True when this came from the on-disk cache
    seconds: float = 0.0  # time load_dataset took

    def __post_init__(self) -> None:
        if not (len(self.texts) == len(self.lengths) == len(self.line_numbers)):
            raise ValueError(
                f"inconsistent dataset: {len(self.texts)} texts, {len(self.lengths)} lengths, "
                f"{len(self.line_numbers)} line numbers"
            )
        if int(self.lengths.sum()) != self.ids.size:
            raise ValueError(
                f"inconsistent dataset: lengths sum to {int(self.lengths.sum())}, ids hold {self.ids.size}"
            )

    def __len__(self) -> int:
        return len(self.texts)

    @cached_property
    def offsets(self) -> np.ndarray:
        """``[N + 1]`` int64: item ``i`` is ``ids[offsets[i]:offsets[i + 1]]``."""
        offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=offsets[1:])
        return offsets

    @property
    def longest(self) -> int:
        """The longest derivation (0 for an empty dataset)."""
        return int(self.lengths.max()) if len(self.lengths) else 0

    def ids_of(self, index: int) -> np.ndarray:
        """Production indices of item ``index`` (a view, no padding)."""
        return self.ids[self.offsets[index] : self.offsets[index + 1]]

    def padded(self, max_length: int | None = None, dtype: type[np.integer[Any]] = np.int16) -> np.ndarray:
        """``[N, L]`` production indices, each row padded with ``padding_index`` after its derivation.

        ``L`` is ``max_length`` or, by default, the longest derivation. Defaults to int16 to save
        memory (MOSES: 1.58M x ~100); cast batches to int64 (``torch.long``) before indexing.
        Raises ValueError if a derivation is longer than ``max_length`` (it would be cut).
        """
        length = self.longest if max_length is None else max_length
        if length < self.longest:
            raise ValueError(
                f"max_length {length} is shorter than the longest derivation ({self.longest} productions); "
                "load the dataset with max_length to skip longer items"
            )
        if np.iinfo(dtype).max < self.padding_index:
            raise ValueError(f"{np.dtype(dtype).name} cannot hold padding index {self.padding_index}")
        out = np.full((len(self), length), self.padding_index, dtype=dtype)
        # Row-major order of the mask's True cells is exactly the flat order of ids.
        out[np.arange(length) < self.lengths[:, None]] = self.ids
        return out

    def select(self, indices: np.ndarray | list[int]) -> ParsedDataset:
        """A dataset of the items at ``indices`` (e.g. a train/validation split); failures are kept."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices]
        new_offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        # Position j of the new flat array, inside new item k, comes from old offset[indices[k]] + (j - new_offset[k]).
        shift = np.repeat(self.offsets[indices] - new_offsets[:-1], lengths)
        ids = self.ids[np.arange(int(new_offsets[-1]), dtype=np.int64) + shift]
        return ParsedDataset(
            texts=[self.texts[i] for i in indices],
            ids=ids,
            lengths=lengths,
            line_numbers=self.line_numbers[indices],
            failures=list(self.failures),
            grammar_hash=self.grammar_hash,
            grammar_name=self.grammar_name,
            padding_index=self.padding_index,
            source=self.source,
            file_sha256=self.file_sha256,
            options=dict(self.options),
            n_items=self.n_items,
            cache_hit=self.cache_hit,
            seconds=self.seconds,
        )

    def failure_counts(self) -> dict[str, int]:
        """How many items failed for each reason category (only categories that occurred)."""
        counts = Counter(f.category for f in self.failures)
        return {reason: counts[reason] for reason in (*REASONS, *sorted(set(counts) - set(REASONS))) if counts[reason]}

    def summary(self, n_failures: int = 10) -> dict[str, Any]:
        """A JSON-ready account: counts, failure reasons, the first ``n_failures`` failures, lengths, timing."""
        lengths = self.lengths
        return {
            "source": str(self.source),
            "file_sha256": self.file_sha256,
            "grammar": self.grammar_name,
            "grammar_hash": self.grammar_hash,
            "options": dict(self.options),
            "n_items": self.n_items,
            "n_parsed": len(self),
            "n_unique": len(set(self.texts)),
            "n_failed": len(self.failures),
            "failures_by_reason": self.failure_counts(),
            "first_failures": [{"line": f.line, "reason": f.reason} for f in self.failures[:n_failures]],
            "longest_derivation": self.longest,
            "mean_derivation": round(float(lengths.mean()), 3) if len(lengths) else 0.0,
            "cache_hit": self.cache_hit,
            "seconds": round(self.seconds, 3),
        }
