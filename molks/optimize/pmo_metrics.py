"""PMO's metric: the area under the curve of the top-10 average against oracle calls.

>>> round(top_auc([0.5] * 10 + [1.0] * 90, budget=100), 3)     # 100 calls, the top-10 1.0 from call 100
0.5
>>> top_curve([0.25, 0.75], budget=300)                       # stopped after 2 calls: carried to the budget
[(0, 0.0), (2, 0.5), (300, 0.5)]

The definition followed is PMO's own code, ``top_auc`` of ``mol-opt`` (``main/optimizer.py``; the
same function in ``molopt/base.py``), which produced the published numbers
(:mod:`molks.optimize.pmo_published`):

- the oracle calls in the order they were made, each with its score (one call per distinct
  molecule scored; repeats and invalid SMILES are not calls);
- the curve starts at (0 calls, 0); every ``freq`` (100) calls it records the mean of the
  ``top_n`` (10) best scores among the calls so far (the mean of all of them while there are fewer
  than 10), and after the last call it records that mean at the number of calls made;
- the area under that piecewise-linear curve (the trapezoid rule between recorded points) is divided
  by the budget;
- a run that stopped before its budget (``finish``: PMO's ``finish=True`` of the final log) has its
  last value carried flat to the budget, as PMO does; with ``finish=False`` the area ends at the
  last call (PMO's intermediate logs).

Two cases PMO does not meet, decided here: a trace longer than the budget is cut at the budget (PMO's
oracle never answers past it), and a call without a score (a target that failed on it, or returned
nothing) counts as a call but not among the top scores; before any call has a score the value is 0.

:func:`oracle_trace` reads the trace from a saved optimisation state
(:mod:`molks.optimize.state`), the way :class:`~molks.optimize.oracle.OracleLedger` counted it, so
the AUC of a resumed run is the AUC of an uninterrupted one.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from molks.errors import InputError
from molks.optimize.state import OptimizationState

__all__ = ["FREQ", "TOP_N", "PmoMetricError", "oracle_trace", "run_metrics", "top_auc", "top_curve", "top_mean"]

FREQ = 100
"""Calls between two points of the top-10 curve (PMO's ``freq_log``)."""
TOP_N = 10
"""How many of the best scores are averaged (PMO's ``top_n`` for "AUC top-10")."""


class PmoMetricError(InputError):
    """A trace or a saved run the metric cannot be computed from (bad budget, inconsistent state)."""


def top_mean(scores: Sequence[float | None], top_n: int = TOP_N) -> float:
    """The mean of the ``top_n`` highest scores (all of them if fewer; None are left out; 0.0 if none)."""
    best = heapq.nlargest(top_n, (s for s in scores if s is not None))
    return sum(best) / len(best) if best else 0.0


def top_curve(
    scores: Sequence[float | None], budget: int, *, top_n: int = TOP_N, freq: int = FREQ, finish: bool = True
) -> list[tuple[int, float]]:
    """The points (calls, top-``top_n`` mean) of PMO's curve for ``scores`` in call order (see the
    module's docstring): (0, 0), every ``freq`` calls, the last call, and (``budget``, last value) when
    ``finish`` and the run stopped early."""
    if budget < 1 or freq < 1 or top_n < 1:
        raise PmoMetricError(f"budget, freq and top_n must be at least 1, got {budget}, {freq}, {top_n}")
    calls = list(scores[:budget])
    points = [(0, 0.0)]
    best: list[float] = []  # a min-heap of the top_n best scores so far
    for n, score in enumerate(calls, start=1):
        if score is not None:
            if len(best) < top_n:
                heapq.heappush(best, score)
            elif score > best[0]:
                heapq.heapreplace(best, score)
        if n % freq == 0 or n == len(calls):
            points.append((n, sum(best) / len(best) if best else 0.0))
    if finish and len(calls) < budget:
        points.append((budget, points[-1][1]))
    return points


def top_auc(
    scores: Sequence[float | None], budget: int, *, top_n: int = TOP_N, freq: int = FREQ, finish: bool = True
) -> float:
    """PMO's AUC top-``top_n``: the trapezoid area under :func:`top_curve`, divided by ``budget``."""
    points = top_curve(scores, budget, top_n=top_n, freq=freq, finish=finish)
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(points))
    return area / budget


def oracle_trace(state: OptimizationState, where: str | Path = "state") -> list[float | None]:
    """The score of every oracle call of a saved run, in the order made (None: a call without a score).

    The order is the rows' call indices (:meth:`~molks.optimize.state.OptimizationState.call_indices`:
    saved with each row since they were, derived for older states as
    :class:`~molks.optimize.oracle.OracleLedger` counts calls): the distinct items of the starting
    pool first (pool strings the target could not score are not rows of the state: their calls have
    no score), then per iteration each valid proposal whose item was not scored before, once; a
    repeat and an invalid proposal are not calls, and an item whose scoring failed may be called
    again later. The calls are checked against the counts the run saved (per iteration and in all)
    and must be numbered 1, 2, ... in row order; a mismatch is a :class:`PmoMetricError` naming ``where``.
    """
    rows = state.rows
    calls = state.call_indices()
    counted: dict[int, int] = {}
    scores: dict[int, float | None] = {}
    last = 0
    for row, call in zip(rows, calls):
        if call is None:
            continue
        if not isinstance(call, int) or call <= last:
            raise PmoMetricError(f"{where}: oracle call {call!r} of iteration {row['iteration']} does not follow call {last}; "
                                 "calls are numbered 1, 2, ... in the order of the rows")  # fmt: skip
        last = call
        iteration = int(row["iteration"])
        counted[iteration] = counted.get(iteration, 0) + 1
        scores[call] = row.get("score") if "failure" not in row and row["valid"] else None
    for iteration in sorted({int(row["iteration"]) for row in rows if int(row["iteration"]) > 0}):
        saved = _saved_calls(state.meta.iterations, iteration)
        if saved is not None and saved != counted.get(iteration, 0):
            raise PmoMetricError(
                f"{where}: iteration {iteration} saved {saved} oracle calls, its rows give {counted.get(iteration, 0)}; "
                "the state does not match how molks counts calls"
            )
    saved_total = state.meta.oracle_calls
    total = last if saved_total is None else int(saved_total)
    later = sum(n for iteration, n in counted.items() if iteration > 0)
    # The proposals' calls are the last ones: they end at the total (the pool's calls without a row come before).
    if last > total or (later and last != total):
        raise PmoMetricError(f"{where}: the run saved {saved_total} oracle calls, its rows give {last}")
    return [scores.get(call) for call in range(1, total + 1)]


def _saved_calls(iterations: list[dict[str, Any]], iteration: int) -> int | None:
    for it in iterations:
        if it.get("iteration") == iteration:
            calls = it.get("oracle_calls")
            return None if calls is None else int(calls)
    return None


def run_metrics(state: OptimizationState, budget: int, where: str | Path = "state") -> dict[str, Any]:
    """The numbers of one finished run: AUC top-10 (:func:`top_auc`, carried to ``budget``), the best
    score (top-1) and the top-10 mean at its end, oracle calls used, seconds (the loop's own timings
    saved in the state: the pool's and every iteration's) and seconds per call, and the curve."""
    trace = oracle_trace(state, where)
    seconds = state.meta.pool_seconds + sum(float(it["seconds"]["total"]) for it in state.meta.iterations)
    used = trace[:budget]
    scored = [s for s in used if s is not None]
    return {
        "auc_top10": top_auc(used, budget),
        "top1": max(scored) if scored else None,
        "top10_mean": top_mean(used) if scored else None,
        "oracle_calls": len(used),
        "iterations": state.meta.completed,
        "seconds": seconds,
        "seconds_per_call": seconds / len(used) if used else None,
        "curve": top_curve(used, budget),
    }
