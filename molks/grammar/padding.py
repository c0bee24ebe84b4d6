"""Production sequences padded into the ``[N, L]`` array the models take.

Below the API and the training entry point, which both pad (encoding texts, the character-level
baseline's data), so neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from molks.grammar.errors import GrammarError

__all__ = ["pad_sequences"]


def pad_sequences(sequences: Sequence[Sequence[int]], length: int, padding_index: int) -> np.ndarray:
    """Production sequences -> one int64 array [N, length], each row padded with ``padding_index``
    after its derivation; a sequence longer than ``length`` is a GrammarError naming its index."""
    out = np.full((len(sequences), length), padding_index, dtype=np.int64)
    for i, seq in enumerate(sequences):
        if len(seq) > length:
            raise GrammarError(f"its derivation needs {len(seq)} productions; the model allows at most {length}", item=i)
        out[i, : len(seq)] = seq
    return out
