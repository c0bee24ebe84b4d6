"""Progress bars on stderr, shown only when asked for and stderr is a terminal."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

__all__ = ["progress_bar"]


def progress_bar(total: int | None, description: str, enabled: bool, **options: Any) -> tqdm:
    """A tqdm bar (a context manager with ``update``); a silent one when disabled or not on a terminal."""
    return tqdm(
        total=total,
        desc=description,
        file=sys.stderr,
        disable=not (enabled and sys.stderr.isatty()),
        leave=False,
        **options,
    )
