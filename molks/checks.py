"""Predicates and bounds for checking option values before anything runs or is allocated.

Every count a user gives (batch size, beam width, samples, seed, latent size, mixture components,
sequence length, layer sizes, worker processes) has one bound here, used alike by the command line
and the Python API, so that a typo (``--beam-width 1000000``, ``--latent-dim 10**9``) is one line
naming the option instead of an allocator's traceback minutes later.

Kept free of heavy imports: the command line checks options before it imports torch.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from molks.errors import InputError

__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_BEAM_WIDTH",
    "MAX_COMPONENTS",
    "MAX_EVALUATION_ITEMS",
    "MAX_LATENT_DIM",
    "MAX_LAYERS",
    "MAX_LAYER_SIZE",
    "MAX_SAMPLED_DECODINGS",
    "MAX_SAMPLES",
    "MAX_SEED",
    "MAX_SEQUENCE_LENGTH",
    "MAX_WORKERS",
    "OptionError",
    "check_batch_size",
    "check_beam_width",
    "check_int",
    "check_sample_count",
    "check_seed",
    "int_rule",
    "is_int",
    "is_number",
    "option_name",
]

# The bounds: far above any real use, far below what exhausts a machine's memory.
MAX_BATCH_SIZE = 65_536
"""Items encoded, decoded or trained on per batch."""
MAX_BEAM_WIDTH = 1_024
"""Beams per code (the default is 8; a width of 10**6 needs gigabytes for a single code)."""
MAX_SAMPLES = 1_000_000_000
"""Samples drawn in one call (``molks sample`` streams them, so any count up to this fits in memory)."""
MAX_SEED = 2**32 - 1
"""The largest seed: scikit-learn's (the ex-post GMM) and NumPy's legacy generators take 32 bits, and
training derives per-epoch torch seeds from it that must stay within 64 bits."""
MAX_LATENT_DIM = 4_096
"""Latent size D (the published models use 56)."""
MAX_COMPONENTS = 1_024
"""Components of a Gaussian mixture (the KS loss evaluates batch x D x K terms each step)."""
MAX_SEQUENCE_LENGTH = 10_000
"""Productions in one derivation (a 3,000-character SMILES, the longest molks reads, needs fewer)."""
MAX_LAYER_SIZE = 16_384
"""Units of one network layer (dense, GRU, convolution channels or kernel)."""
MAX_LAYERS = 64
"""Stacked layers of one network part."""
MAX_EVALUATION_ITEMS = 10_000_000
"""Held-out items or samples one evaluation decodes and keeps in memory (the MOSES protocol takes 30,000
samples; unlike ``molks sample``, an evaluation holds all of them to compare them)."""
MAX_SAMPLED_DECODINGS = 1_000
"""Sampled decodings of each held-out code (the Grammar VAE's protocol decodes each input 1,000 times:
10 encodings x 100 decodings)."""
MAX_WORKERS = 1_024
"""Worker processes (``--processes``) or threads (``--threads``) of one command."""


class OptionError(InputError):
    """An option's value is outside what molks accepts (the wrong type, or beyond its bound)."""


def option_name(name: str, flag: str | None = None) -> str:
    """How a setting is named in errors: its Python name and its command-line spelling (``flag``
    where that is not ``--`` + the name with dashes)."""
    return f"{name} ({flag or '--' + name.replace('_', '-')})"


def check_int(value: Any, name: str, minimum: int, maximum: int) -> int:
    """``value`` if it is an integer from ``minimum`` to ``maximum``; else an :class:`OptionError`
    naming ``name`` both as the Python API and the command line spell it."""
    accepts, phrase = int_rule(minimum, maximum)
    if not accepts(value):
        raise OptionError(f"{option_name(name)} must be {phrase}, got {value!r}")
    return int(value)


def check_batch_size(value: Any) -> int:
    """Items per batch of encoding or decoding (``--batch-size``)."""
    return check_int(value, "batch_size", 1, MAX_BATCH_SIZE)


def check_beam_width(value: Any) -> int:
    """Beams per decoded code (``--beam-width``; 1 is greedy)."""
    return check_int(value, "beam_width", 1, MAX_BEAM_WIDTH)


def check_sample_count(value: Any, name: str = "n") -> int:
    """How many points to draw (``--n``, ``--n-samples``)."""
    return check_int(value, name, 1, MAX_SAMPLES)


def check_seed(value: Any) -> int:
    """A seed (``--seed``)."""
    return check_int(value, "seed", 0, MAX_SEED)


def int_rule(minimum: int, maximum: int) -> tuple[Any, str]:
    """(predicate, phrase) of an integer from ``minimum`` to ``maximum``, for the rule tables of
    training and regulariser options."""
    return (lambda v: is_int(v) and minimum <= v <= maximum), f"an integer from {minimum:,} to {maximum:,}"


def is_int(value: Any) -> bool:
    """An integer, not a bool (``True`` is an int to Python, never to a user)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number, not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
