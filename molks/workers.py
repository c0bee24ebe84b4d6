"""Worker pools that notice a dead worker instead of waiting for it forever.

``multiprocessing.Pool`` replaces a worker killed by a signal (RDKit segfaulting on a hostile
molecule, the kernel's OOM killer) and then waits forever for the task that worker held.
``concurrent.futures.ProcessPoolExecutor`` raises ``BrokenProcessPool`` instead, which the callers
turn into an error naming the item: :func:`first_crash` finds it by running the tasks again one at
a time in a single worker.

Workers start with ``forkserver`` by default (no fork after torch has started threads), so functions
and initialisers must be module-level functions of importable modules; ``method=None`` takes
Python's default start method.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

__all__ = ["BrokenProcessPool", "crashing_item", "first_crash", "map_in_workers"]

T = TypeVar("T")
R = TypeVar("R")


def _executor(
    processes: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...], method: str | None
) -> ProcessPoolExecutor:
    context = multiprocessing.get_context(method)
    return ProcessPoolExecutor(processes, mp_context=context, initializer=initializer, initargs=initargs)


def map_in_workers(
    function: Callable[[T], R],
    tasks: Sequence[T],
    processes: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    method: str | None = "forkserver",
) -> Iterator[R]:
    """``function(task)`` for every task in ``processes`` workers, yielded in order.

    Raises ``BrokenProcessPool`` when a worker dies. Closing the generator early cancels the
    tasks not yet started and does not wait for the running ones.
    """
    pool = _executor(processes, initializer, initargs, method)
    try:
        futures = [pool.submit(function, task) for task in tasks]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def first_crash(
    function: Callable[[T], Any],
    tasks: Sequence[T],
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    method: str | None = "forkserver",
) -> int | None:
    """Index of the first task that kills the worker running it (tasks run one at a time in one
    worker, so the culprit is exact); None if none does."""
    pool = _executor(1, initializer, initargs, method)
    try:
        for index, task in enumerate(tasks):
            try:
                pool.submit(function, task).result()
            except BrokenProcessPool:
                return index
            except Exception:  # an ordinary error is the caller's business, not a crash
                continue
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return None



def crashing_item(
    function: Callable[[Sequence[T]], Any],
    chunks: Sequence[Sequence[T]],
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    method: str | None = "forkserver",
) -> tuple[int, int] | None:
    """(chunk index, item index) of the first item that kills a worker running ``function`` on
    chunks: whole chunks first, then the culprit chunk one item at a time; None if none does."""
    where = first_crash(function, chunks, initializer, initargs, method)
    if where is None:
        return None
    chunk = chunks[where]
    index = first_crash(function, [chunk[i : i + 1] for i in range(len(chunk))], initializer, initargs, method)
    return None if index is None else (where, index)
