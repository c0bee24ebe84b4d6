"""One worker process for code molks does not trust: whatever that code does -- raise, call
``sys.exit`` or ``os._exit``, segfault, hang -- the calling process goes on and is told what happened.

:mod:`molks.workers` maps trusted functions over many tasks in a pool and names the task that killed
a worker; this module keeps a single long-lived worker for a stream of calls to untrusted code (a
user's target function), each with a timeout:

>>> worker = IsolatedWorker(_echo_ready, ("hello",))      # doctest: +SKIP
>>> worker.start(timeout=60)                             # doctest: +SKIP
'hello'
>>> worker.call(len, [1, 2, 3], timeout=5)                 # doctest: +SKIP
3

:meth:`IsolatedWorker.call` returns what the function returned, re-raises an ``Exception`` it raised,
and raises :class:`WorkerFailure` (with the reason in words) when the worker exited, was killed by a
signal, raised ``SystemExit`` or another ``BaseException``, or did not answer within ``timeout``
(it is then killed). The next call starts a fresh worker, which runs the initializer again.

Workers start with ``forkserver``, as :mod:`molks.workers`'s do: functions and the initializer must
be module-level functions of importable modules (the worker gets the caller's ``sys.path``).
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from molks.errors import MolksError

__all__ = ["IsolatedWorker", "WorkerFailure", "describe_exit"]


class WorkerFailure(MolksError, RuntimeError):
    """A call to the isolated worker did not return: the reason says why (exit, signal, timeout)."""


def describe_exit(exitcode: int | None) -> str:
    """How a worker process ended, in words: ``"exited with code 3"``, ``"was killed by signal 11 (SIGSEGV)"``."""
    if exitcode is None:
        return "ended"
    if exitcode < 0:
        try:
            name = f" ({signal.Signals(-exitcode).name})"
        except ValueError:
            name = ""
        return f"was killed by signal {-exitcode}{name}"
    return f"exited with code {exitcode}"


def _serve(conn: Connection, initializer: Callable[..., Any], initargs: tuple[Any, ...]) -> None:
    """The worker's loop: run the initializer, answer its result, then answer ``(function, argument)``
    requests with ``("ok", result)`` or ``("raised", exception)`` until the pipe closes."""

    def answer(function: Callable[..., Any], *args: Any) -> None:
        try:
            message: tuple[str, Any] = ("ok", function(*args))
        except BaseException as err:  # noqa: BLE001 -- the caller decides; SystemExit included
            message = ("raised", err)
        try:
            conn.send(message)
        except Exception as err:  # the result or the exception does not pickle
            conn.send(("raised", RuntimeError(f"{type(message[1]).__name__} that cannot be sent back ({err})")))

    conn.send(("ok", "started"))  # the modules of the initializer are imported: now the caller's timeout counts
    answer(initializer, *initargs)
    while True:
        try:
            function, argument = conn.recv()
        except (EOFError, OSError):
            return
        answer(function, argument)


class IsolatedWorker:
    """A single worker process, started on first use and again after it fails.

    ``initializer(*initargs)`` runs first in every new worker (importing the untrusted code, say);
    :meth:`start` returns its result. ``startup_timeout``: seconds a new worker may take to start
    and import the initializer's module (trusted code on a busy machine) before the initializer's
    own timeout counts. ``method``: the multiprocessing start method. ``preload``: modules the
    forkserver imports when it starts (if it has not yet), so that every new worker has them at once.
    """

    def __init__(
        self,
        initializer: Callable[..., Any],
        initargs: tuple[Any, ...] = (),
        method: str = "forkserver",
        startup_timeout: float = 300.0,
        preload: Sequence[str] = (),
    ) -> None:
        self._initializer = initializer
        self._initargs = initargs
        self._startup_timeout = startup_timeout
        self._context = multiprocessing.get_context(method)
        if preload and method == "forkserver":
            self._context.set_forkserver_preload(["__main__", *preload])  # "__main__": Python's default
        self._process: Any = None
        self._conn: Connection | None = None

    @property
    def running(self) -> bool:
        """Whether a worker is started and alive."""
        return self._process is not None and self._process.is_alive()

    def start(self, timeout: float) -> Any:
        """Start a fresh worker (ending the current one) and return its initializer's result.

        Raises :class:`WorkerFailure` when it does not finish within ``timeout`` seconds (after the
        worker started) or ends the worker; re-raises an exception it raised (the worker is then ended too)."""
        self.close()
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(child, self._initializer, self._initargs), daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        try:
            self._answer(self._startup_timeout)
            return self._answer(timeout)
        except BaseException:
            self.close()
            raise

    def call(self, function: Callable[[Any], Any], argument: Any, timeout: float) -> Any:
        """``function(argument)`` in the worker (started first if needed, within the same ``timeout``).

        Raises :class:`WorkerFailure` when the worker ends, raises a ``BaseException`` that is not an
        ``Exception``, or gives no answer within ``timeout`` seconds (it is killed); re-raises an
        ``Exception`` the function raised (the worker stays)."""
        if not self.running:
            self.start(timeout)
        assert self._conn is not None
        try:
            self._conn.send((function, argument))
        except (OSError, ValueError) as err:  # the pipe broke: the worker is gone
            self.close()
            raise WorkerFailure(f"the worker process {describe_exit(self._exitcode())} ({err})") from None
        return self._answer(timeout)

    def _answer(self, timeout: float) -> Any:
        assert self._conn is not None and self._process is not None
        ready = wait([self._conn, self._process.sentinel], timeout)
        if not ready:
            self.close()
            raise WorkerFailure(f"gave no answer within {timeout:g} s; its worker process was killed")
        try:
            status, value = self._conn.recv() if self._conn in ready or self._conn.poll() else ("died", None)
        except (EOFError, OSError):
            status, value = "died", None
        if status == "died":
            exitcode = self._exitcode()
            self.close()
            raise WorkerFailure(f"the worker process {describe_exit(exitcode)}")
        if status == "raised" and not isinstance(value, Exception):
            self.close()
            reason = f"called sys.exit({value.code!r})" if isinstance(value, SystemExit) else f"raised {type(value).__name__}"
            raise WorkerFailure(reason)
        if status == "raised":
            raise value
        return value

    def _exitcode(self) -> int | None:
        if self._process is None:
            return None
        self._process.join(5)
        return self._process.exitcode

    def close(self) -> None:
        """End the worker (killed if it does not end on its own at once); safe to call twice."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(5)
            self._process = None

    def __enter__(self) -> IsolatedWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
