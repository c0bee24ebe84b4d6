"""Progress of long work on stderr: the one progress helper of molks.

A bar (tqdm) where someone watches -- a terminal or a notebook -- and, for jobs without one
(``nohup``, CI logs), :class:`Heartbeat` lets a job print one plain line every so often instead
of a bar that nobody sees or that floods a log file.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Heartbeat", "Stages", "progress_bar", "showing"]


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


class Stages:
    """The named stages of a long job, each timed, and shown as it runs.

    ``enabled`` True or None: a bar per stage where someone watches (:func:`showing`), else one
    line every ``every`` seconds through ``log`` (default: stderr) saying which stage runs and how
    far it got, from a background thread, so a stage that reports nothing still shows it is alive;
    False: silent. ``seconds``: wall seconds per stage name, in the order the stages ran.

    >>> stages = Stages("evaluate", enabled=False)
    >>> with stages.stage("decoding", total=3) as step:
    ...     step(3)
    >>> list(stages.seconds)
    ['decoding']
    """

    def __init__(self, job: str, enabled: bool | None = None, every: float = 60.0,
                 log: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.job, self.enabled, self.every = job, enabled, every
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
        """Time the stage ``name`` (of ``total`` steps, if known); yields ``step(n)``: n more done."""
        done = [0]
        started = time.perf_counter()
        bar = progress_bar(total, name, self.enabled) if showing(self.enabled) and total else None
        stop = threading.Event()
        ticker = None
        if self.enabled is not False and not showing(self.enabled):
            ticker = threading.Thread(target=self._tick, args=(name, total, done, started, stop), daemon=True)
            ticker.start()

        def step(n: int) -> None:
            done[0] += n
            if bar is not None:
                bar.update(n)

        try:
            yield step
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
            if bar is not None:
                bar.close()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def _tick(self, name: str, total: int | None, done: list[int], started: float, stop: threading.Event) -> None:
        while not stop.wait(self.every):
            so_far = f" {done[0]:,}/{total:,}" if total else ""
            self.log(f"{self.job}: {name}{so_far} ({time.perf_counter() - started:.0f} s)")
