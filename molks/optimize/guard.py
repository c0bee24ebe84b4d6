"""Scoring with a target whose code molks does not trust: nothing it does can end, fake or stall a run.

A user target (``--target package.module:function``) is imported and called in a separate worker
process (:class:`molks.isolation.IsolatedWorker`), each call with a timeout (``--target-timeout``).
What can go wrong, and what becomes of it:

- importing it fails in any way (an exception, ``sys.exit``, ``os._exit``, a signal, a hang): a
  :class:`~molks.optimize.targets.TargetError` naming the target, before anything is written;
- the first call (:meth:`TargetRunner.check`, two pool strings) fails in any way: the same;
- a later call raises, returns the wrong thing, exits, is killed by a signal or passes its timeout:
  the strings of that call are scored as failed with the reason (their rows say it, the log says
  it), the worker is restarted for the next call, and the run goes on; ``max_failed_calls`` failed
  calls in a row stop it with a ``TargetError`` naming the target (the loop saves its state first);
- a score that is not a finite number, or beyond ``±SCORE_LIMIT``: that string is scored as failed
  with the reason (a GP cannot fit 1e300 or inf), whatever the target.

Built-in targets are trusted and run in this process (in worker pools over a large pool, as
:func:`~molks.optimize.targets.score_terms_many` does); so do :class:`Target` objects given
through the API that are not user functions resolved by :func:`get_target` (a lambda cannot be
sent to another process), though their exceptions and scores are judged as above.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from molks.isolation import IsolatedWorker, WorkerFailure
from molks.optimize.targets import (
    BUILTIN_TARGETS,
    Target,
    TargetError,
    Terms,
    _CheckedScore,
    get_target,
    score_terms_many,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_FAILED_CALLS",
    "POOL_CALL_SIZE",
    "SCORE_LIMIT",
    "Scores",
    "TargetRunner",
    "open_target",
    "unusable_score",
]

DEFAULT_TIMEOUT = 60.0
"""Seconds one call of a user target may take (``--target-timeout``)."""
MAX_FAILED_CALLS = 3
"""Failed calls of a target in a row that stop a run."""
POOL_CALL_SIZE = 100
"""Most strings of the starting pool a user target gets in one call (each call has the timeout)."""
SCORE_LIMIT = 1e15
"""Largest magnitude of a usable score: beyond it (or not finite) a score is a failure, not data."""
_LIMIT = "±1e15"
_FAILED_CALLS = "in failed calls"


def unusable_score(value: float) -> str | None:
    """Why a score cannot go to the GP (``"NaN"``, ``"inf"``, ``"beyond ±1e15"``), or None if it can."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) > SCORE_LIMIT:
        return f"beyond {_LIMIT}"
    return None


@dataclass
class Scores:
    """The outcome of scoring N texts.

    terms: per text its score terms (``{"score": ..., ...}``), or None where it has no usable score.
    failures: per text why it has none when that is a failure (a failed call, an unusable score), or
        None (scored, or scored None by the target: not an item it can score).
    kinds: how many texts failed for which kind of reason (``"scored NaN"``, ``"in failed calls"``, ...).
    failed_calls: the reason of each failed call, in order.
    """

    terms: list[Terms | None] = field(default_factory=list)
    failures: list[str | None] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    failed_calls: list[str] = field(default_factory=list)

    def extend(self, terms: Sequence[Terms | None], failures: Sequence[str | None]) -> None:
        self.terms.extend(terms)
        self.failures.extend(failures)

    def why_unscored(self) -> str:
        """The texts without a usable score by reason, e.g. ``"3 scored None by the target, 2 NaN"``."""
        parts = []
        none = sum(t is None and f is None for t, f in zip(self.terms, self.failures))
        if none:
            parts.append(f"{none} scored None by the target")
        parts.extend(f"{n} {kind}" for kind, n in self.kinds.items())
        if self.failed_calls:
            parts.append(f"last failed call: {self.failed_calls[-1]}")
        return ", ".join(parts)


# ---------------------------------------------------------------- in the worker

_LOADED: Target | None = None


def _load(spec: str) -> bool:
    """(In the worker.) Import the target named ``spec``; returns whether it is maximised."""
    global _LOADED
    _LOADED = get_target(spec)
    return _LOADED.maximize


def _terms(texts: list[str]) -> list[Terms | None]:
    """(In the worker.) The loaded target's score terms of ``texts``."""
    assert _LOADED is not None
    return _LOADED.score_terms(texts)


# ---------------------------------------------------------------- in the run


def open_target(target: Target | str, timeout: float = DEFAULT_TIMEOUT, max_failed_calls: int = MAX_FAILED_CALLS) -> TargetRunner:
    """A :class:`TargetRunner` for a built-in name, ``"package.module:function"`` or a :class:`Target`.

    A user function is imported in its worker process now: whatever goes wrong is a
    :class:`TargetError` naming it (close the runner when done, or use it in a ``with``)."""
    if not timeout > 0 or math.isinf(timeout):
        raise TargetError(f"--target-timeout must be a positive number of seconds, got {timeout}")
    if isinstance(target, str):
        spec = target
        isolated = spec not in BUILTIN_TARGETS and ":" in spec
        if not isolated:
            target = get_target(spec)
    else:
        spec = target.name
        isolated = isinstance(target.score, _CheckedScore)  # a user function by name: it can be imported again
    runner = TargetRunner(target if isinstance(target, Target) else None, spec, timeout, max_failed_calls, isolated)
    if isolated:
        runner._start()
    return runner


class TargetRunner:
    """Scores texts with a target (see the module's docstring); made by :func:`open_target`.

    ``target``: name, direction and invalid score (:meth:`Target.objective`); for an isolated target
    its ``score`` is not called here. ``failed_in_a_row``: failed calls since the last good one.
    """

    def __init__(self, target: Target | None, spec: str, timeout: float, max_failed_calls: int, isolated: bool) -> None:
        self.spec = spec
        self.timeout = timeout
        self.max_failed_calls = max_failed_calls
        self.isolated = isolated
        self.failed_in_a_row = 0
        # Preloaded in the forkserver (when this starts it): a worker restarted after a failure is ready at once.
        self._worker = IsolatedWorker(_load, (spec,), preload=(__name__,)) if isolated else None
        self.target = target if target is not None else Target(spec, _not_here, maximize=True)

    def _start(self) -> None:
        assert self._worker is not None
        module = self.spec.partition(":")[0]
        try:
            maximize = self._worker.start(self.timeout)
        except WorkerFailure as err:
            raise TargetError(f"target {self.spec!r}: importing module {module!r} failed: {err.reason}") from None
        self.target = Target(self.spec, _not_here, maximize=maximize, invalid_score=None)

    @property
    def trusted(self) -> bool:
        """Whether the target is a built-in one (its errors are bugs, not failures to survive)."""
        return not self.isolated and BUILTIN_TARGETS.get(self.target.name) is self.target

    def _call(self, texts: list[str]) -> list[Terms | None]:
        """One call of the target; raises TargetError (its reason) for any failure of it."""
        if self._worker is not None:
            try:
                terms = self._worker.call(_terms, texts, self.timeout)
            except WorkerFailure as err:
                reason = err.reason.replace("; its worker", " (--target-timeout); its worker")
                raise TargetError(f"target {self.spec!r} failed when scoring {len(texts)} strings: {reason}") from None
        else:
            try:
                terms = self.target.score_terms(texts)
            except TargetError:
                raise
            except Exception as err:
                raise TargetError(f"target {self.spec!r} raised {type(err).__name__}: {err}") from err
        if not isinstance(terms, list) or len(terms) != len(texts):
            raise TargetError(f"target {self.spec!r} gave no list of {len(texts)} scores")
        return terms

    def check(self, texts: Sequence[str], n: int = 2) -> None:
        """Call the target once on the first ``n`` strings of ``texts`` (skipped for built-in
        targets): any failure is a :class:`TargetError` before the optimisation starts."""
        if self.trusted:
            return
        sample = [t for t in texts if isinstance(t, str)][:n]
        if sample:
            self._call(sample)

    def score(self, texts: Sequence[str], processes: int | None = 1, call_size: int | None = None) -> Scores:
        """Score terms of ``texts``, in calls of at most ``call_size`` strings (None: one call).

        A failed call scores its strings as failed and counts towards ``failed_in_a_row``; after
        ``max_failed_calls`` in a row the rest are not scored (:attr:`exhausted`). Built-in targets
        are scored in ``processes`` worker processes where :func:`score_terms_many` finds it worth it."""
        texts = list(texts)
        result = Scores()
        if self.trusted:
            result.extend(score_terms_many(self.target, texts, processes), [None] * len(texts))
        else:
            size = call_size or max(len(texts), 1)
            for start in range(0, len(texts), size):
                chunk = texts[start : start + size]
                if self.exhausted:
                    result.extend([None] * len(chunk), ["not scored: the target failed too many calls in a row"] * len(chunk))
                    result.kinds[_FAILED_CALLS] += len(chunk)
                    continue
                try:
                    terms = self._call(chunk)
                except TargetError as err:
                    self.failed_in_a_row += 1
                    result.failed_calls.append(err.reason)
                    result.extend([None] * len(chunk), [err.reason] * len(chunk))
                    result.kinds[_FAILED_CALLS] += len(chunk)
                    continue
                self.failed_in_a_row = 0
                result.extend(terms, [None] * len(chunk))
        for i, terms in enumerate(result.terms):
            if terms is not None:
                why = unusable_score(terms["score"])
                if why is not None:
                    result.terms[i] = None
                    result.failures[i] = f"the target scored it {terms['score']!r}: not a finite number within {_LIMIT}"
                    result.kinds[f"scored {why}"] += 1
        return result

    @property
    def exhausted(self) -> bool:
        """Whether the target has failed ``max_failed_calls`` calls in a row."""
        return self.failed_in_a_row >= self.max_failed_calls

    def stopping_error(self, last_reason: str, where: str = "") -> TargetError:
        """The one-line error that stops a run after too many failed calls in a row."""
        return TargetError(
            f"target {self.spec!r} failed {self.failed_in_a_row} calls in a row, the last: {last_reason}"
            + (f"; {where}" if where else "")
        )

    def close(self) -> None:
        """End the worker process, if any."""
        if self._worker is not None:
            self._worker.close()

    def __enter__(self) -> TargetRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _not_here(texts: list[str]) -> list[float | None]:
    raise TargetError("an isolated target is called in its worker process, not here")
