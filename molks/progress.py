"""Progress of long work on stderr: the one progress helper of molks.

A bar (tqdm) where someone watches -- a terminal or a notebook -- and, for jobs without one
(``nohup``, CI logs), :class:`Heartbeat` lets a job print one plain line every so often instead
of a bar that nobody sees or that floods a log file.
"""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["Heartbeat", "progress_bar", "showing"]


def showing(enabled: bool | None) -> bool:
    """Whether a bar is shown: never when ``enabled`` is False, else on a terminal or in a notebook."""
    return enabled is not False and (sys.stderr.isatty() or "ipykernel" in sys.modules)


def progress_bar(total: int | None, description: str, enabled: bool | None = True, **options: Any) -> Any:
    """A tqdm bar (a context manager with ``update``/``set_postfix``), silent unless :func:`showing`."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, file=sys.stderr, disable=not showing(enabled), leave=False, **options)


class Heartbeat:
    """``due()`` is true at most once every ``seconds`` (first after ``seconds``): when to print a line."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last = time.perf_counter()

    def due(self) -> bool:
        now = time.perf_counter()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True
