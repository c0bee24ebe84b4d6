"""The report of an optimisation run, rendered from its saved state alone.

>>> from molks.optimize.report import render_report
>>> summary = render_report("optimize-out")     # rewrites the four files below from state.safetensors

Files written (atomically) in the run's folder:

- ``candidates.csv``     every evaluated code: iteration (0 = the starting pool), call (the oracle
  call, 1-based in the order made, that scored its item; empty for a repeat of an item scored
  before and an invalid proposal), latent columns z0.., string, valid, score, and the target's
  other score terms (``logp``: logp, sa, cycle);
  where the target failed on some strings, a last column ``failure`` says why
- ``summary.json``       top-k proposals, fraction valid, average valid score, seconds per
  iteration and phase, the settings, held-out GP metrics when computed
- ``best_molecules.png`` the best proposals with their scores, drawn by the run's domain
  (:mod:`molks.domain`): structures for molecules, a text table for expressions
- ``best_score.png``     best score found against the number of evaluated proposals

"Best" is always the highest value of the state (a value to maximise); the numbers shown are the
target's scores, in its own direction.

A run of several targets (:mod:`molks.optimize.multiobjective`) has no single best; its report is
``candidates.csv`` (a column per target instead of ``score``), ``summary.json`` (the reference
point, the hypervolume per iteration, the Pareto front), and

- ``pareto.csv``         one row per non-dominated item of everything scored (pool included):
  smiles (string for text), each target's score, the iteration that found it
- ``pareto.png``         every scored item by its scores (a panel per pair of targets), the front highlighted
- ``hypervolume.csv``    per iteration (0 = the pool) the oracle calls so far and the hypervolume
- ``hypervolume.png``    the hypervolume against the oracle calls
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from molks.domain import Domain, domain_named
from molks.drawing import DrawingError, draw_text_table, figure, save_figure
from molks.files import atomic_write_text
from molks.optimize.multiobjective import PARETO_CHUNK, pareto_mask
from molks.optimize.state import STATE_FILE, ObjectivesRecord, OptimizationState

__all__ = [
    "BEST_SHOWN",
    "candidates_csv",
    "pareto_front",
    "plot_best_score",
    "render_report",
    "summary",
    "write_report",
]

BEST_SHOWN = 12  # proposals drawn in best_molecules.png


def render_report(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``out_dir``'s ``state.safetensors`` and (re)write its report; returns the summary."""
    out = Path(out_dir)
    state = OptimizationState.load(out / STATE_FILE)
    return write_report(out, state)


def write_report(out: Path, state: OptimizationState) -> dict[str, Any]:
    """Write candidates.csv, summary.json, best_score.png and best_molecules.png (several targets:
    the Pareto files instead of the last two); returns the summary."""
    if state.objectives is not None:
        return _write_pareto_report(out, state)
    atomic_write_text(out / "candidates.csv", candidates_csv(state))
    result = summary(state)
    atomic_write_text(out / "summary.json", json.dumps(result, indent=2) + "\n")
    plot_best_score(out / "best_score.png", state)
    _draw_best(out / "best_molecules.png", result["top"][:BEST_SHOWN], _domain(state))
    return result


def summary(state: OptimizationState) -> dict[str, Any]:
    """What summary.json holds (its keys and their order are the file's format)."""
    settings = _settings(state)
    target, maximize = state.meta.identity.target, state.meta.identity.maximize
    proposals = [r for r in state.rows if r["iteration"] > 0]
    valid = [r for r in proposals if r["valid"]]
    domain = _domain(state)
    terms = state.term_names()
    top: dict[str, dict[str, Any]] = {}
    for r in state.ranked(pool=False):  # one molecule written two ways is listed once, at its best
        key = domain.canonical(r["string"]) or r["string"]
        top.setdefault(key, {"string": r["string"], "score": r["score"], "iteration": r["iteration"],
                             **{k: r[k] for k in terms if k in r}})  # fmt: skip
    best_pool = state.best(pool=True)
    return {
        "target": target,
        "maximize": maximize,
        "iterations_completed": state.meta.completed,
        "oracle_calls": state.meta.oracle_calls,  # distinct items scored, the pool's included (PMO's count)
        "proposals": len(proposals),
        "valid_proposals": len(valid),
        "fraction_valid": len(valid) / len(proposals) if proposals else None,
        "average_valid_score": float(np.mean([r["score"] for r in valid])) if valid else None,
        "top": list(top.values())[: settings["top_k"]],
        "best_pool_score": None if best_pool is None else best_pool["score"],
        **_run_record(state, settings),
        "note": _decoding_note(settings),
    }


def candidates_csv(state: OptimizationState) -> str:
    """candidates.csv: one line per evaluated code, in the order evaluated."""
    extra = state.term_names()
    scores = extra if state.objectives is not None else ["score", *extra]  # several targets: a column each
    failures = any("failure" in row for row in state.rows)  # a last column, where the target failed on some
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["iteration", "call", *(f"z{j}" for j in range(state.X.shape[1])), "string", "valid", *scores,
                     *(["failure"] if failures else [])])  # fmt: skip
    for x, row, call in zip(state.X.tolist(), state.rows, state.call_indices()):
        writer.writerow([
            row["iteration"], "" if call is None else call, *(f"{v:.8g}" for v in x), row["string"], int(row["valid"]),
            *("" if row.get(k) is None else repr(float(row[k])) for k in scores),
            *([row.get("failure", "")] if failures else []),
        ])  # fmt: skip
    return buffer.getvalue()


def plot_best_score(path: Path, state: OptimizationState) -> None:
    """The score of the best valid proposal so far against the number of evaluated proposals, with
    the best of the starting pool as a line."""
    values = state.Y.tolist()
    xs: list[int] = []
    ys: list[float] = []
    best: tuple[float, float] | None = None  # (value, its score)
    proposals = (i for i, row in enumerate(state.rows) if row["iteration"] > 0)
    for n, i in enumerate(proposals, start=1):
        if state.rows[i]["valid"] and (best is None or values[i] > best[0]):
            best = (values[i], state.rows[i]["score"])
        if best is not None:
            xs.append(n)
            ys.append(best[1])
    fig = figure(5, 3.5)
    ax = fig.subplots()
    if xs:
        ax.step(xs, ys, where="post", label="best proposal")
    best_pool = state.best(pool=True)
    if best_pool is not None:
        ax.axhline(best_pool["score"], color="grey", linestyle="--", label="best in pool")
    ax.set_xlabel("evaluated proposals")
    identity = state.meta.identity
    ax.set_ylabel(f"{identity.target} score" + ("" if identity.maximize else " (lower is better)"))
    ax.legend(loc="best")
    fig.tight_layout()
    save_figure(fig, path)


def _draw_best(path: Path, top: list[dict[str, Any]], domain: Domain) -> None:
    strings = [item["string"] for item in top]
    try:
        domain.draw(strings, path, [f"{item['score']:.3f}" for item in top], legend_name="score", max_items=BEST_SHOWN,
                    per_row=4, size=250)
    except DrawingError:  # nothing valid to draw yet
        draw_text_table(["no valid proposals yet"], path)


def _domain(state: OptimizationState) -> Domain:
    """The run's domain, from the state alone (:meth:`~molks.optimize.state.RunMeta.domain_name`).

    Text items are compared as written: the grammar is not in the state, and decodings of one
    grammar are spelled one way.
    """
    return domain_named(state.meta.domain_name())


def _settings(state: OptimizationState) -> dict[str, Any]:
    """The run's settings ({"target", **OptimizeConfig.to_dict()}); a state written before they were
    saved has its identity's, the iterations it completed, and no record of its workers (None)."""
    saved = state.meta.settings
    if saved is not None:
        return saved
    identity = state.meta.identity
    return {"target": identity.target, "iterations": state.meta.completed, **identity.config,
            "processes": None, "threads": None}  # fmt: skip


# ---------------------------------------------------------------- several targets


def pareto_front(state: OptimizationState) -> list[dict[str, Any]]:
    """The non-dominated items of everything valid in a multi-objective state (pool included), each
    once (an item written two ways: its first row), best in the first target first: per item its
    string, each target's score and the iteration that found it."""
    names = _objectives(state).names
    domain = _domain(state)
    first: dict[str, int] = {}
    for i, row in enumerate(state.rows):
        if row["valid"]:
            first.setdefault(domain.canonical(row["string"]) or row["string"], i)
    kept = list(first.values())
    if not kept:
        return []
    Y = state.Y[kept]
    front = [kept[k] for k in np.flatnonzero(pareto_mask(Y).numpy())]
    front.sort(key=lambda i: (-float(state.Y[i, 0]), i))
    return [{"string": state.rows[i]["string"], **{n: state.rows[i][n] for n in names}, "iteration": state.rows[i]["iteration"]}
            for i in front]  # fmt: skip


def _hypervolumes(state: OptimizationState) -> list[dict[str, Any]]:
    """Per iteration (0: the pool) the oracle calls so far and the hypervolume of everything valid."""
    iterations = state.meta.iterations
    pool_calls = state.meta.oracle_calls if not iterations else (
        iterations[0]["oracle_calls_total"] - iterations[0]["oracle_calls"])
    rows = [{"iteration": 0, "oracle_calls": pool_calls, "hypervolume": _objectives(state).pool_hypervolume}]
    rows += [{"iteration": it["iteration"], "oracle_calls": it["oracle_calls_total"], "hypervolume": it["hypervolume"]}
             for it in iterations]  # fmt: skip
    return rows


def _write_pareto_report(out: Path, state: OptimizationState) -> dict[str, Any]:
    front = pareto_front(state)
    names = _objectives(state).names
    atomic_write_text(out / "candidates.csv", candidates_csv(state))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["smiles" if _domain(state).molecular else "string", *names, "iteration"])
    for item in front:
        writer.writerow([item["string"], *(repr(float(item[n])) for n in names), item["iteration"]])
    atomic_write_text(out / "pareto.csv", buffer.getvalue())
    curve = _hypervolumes(state)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["iteration", "oracle_calls", "hypervolume"])
    for point in curve:
        writer.writerow([point["iteration"], point["oracle_calls"], repr(float(point["hypervolume"]))])
    atomic_write_text(out / "hypervolume.csv", buffer.getvalue())
    result = _pareto_summary(state, front, curve)
    atomic_write_text(out / "summary.json", json.dumps(result, indent=2) + "\n")
    _plot_pareto(out / "pareto.png", state, front)
    _plot_hypervolume(out / "hypervolume.png", curve)
    return result


def _pareto_summary(state: OptimizationState, front: list[dict[str, Any]], curve: list[dict[str, Any]]) -> dict[str, Any]:
    """summary.json of a run of several targets (its keys and their order are the file's format)."""
    settings = _settings(state)
    objectives = _objectives(state)
    names, maximize = objectives.names, objectives.maximize
    proposals = [r for r in state.rows if r["iteration"] > 0]
    valid = [r for r in proposals if r["valid"]]
    ref = objectives.reference_point
    return {
        "targets": names,
        "maximize": maximize,
        "reference_point": {n: v if up else -v for n, v, up in zip(names, ref, maximize)},  # in each target's own direction
        "reference_point_values": ref,  # the values to maximise (minimised targets negated) the hypervolume is measured in
        "reference_rule": objectives.reference_rule,
        "hypervolume": curve[-1]["hypervolume"],
        "pool_hypervolume": objectives.pool_hypervolume,
        "hypervolume_per_iteration": [point["hypervolume"] for point in curve[1:]],
        "iterations_completed": state.meta.completed,
        "oracle_calls": state.meta.oracle_calls,  # distinct items scored (by every target), the pool's included
        "proposals": len(proposals),
        "valid_proposals": len(valid),
        "fraction_valid": len(valid) / len(proposals) if proposals else None,
        "pareto_size": len(front),
        "pareto_from_proposals": sum(item["iteration"] > 0 for item in front),
        "pareto_front": front,
        **_run_record(state, settings),
        "note": (f"a GP per target, batches of qLogNEHVI built in jointly optimised chunks of {PARETO_CHUNK} (strategy joint) "
                 "or one code at a time (sequential); "
                 "the hypervolume is of the values to maximise (minimised targets negated) above reference_point_values; "
                 + _decoding_note(settings)),
    }  # fmt: skip


def _run_record(state: OptimizationState, settings: dict[str, Any]) -> dict[str, Any]:
    """The part of summary.json every run has, in the file's order: pool, GP, timings, iterations,
    trust region, settings."""
    iterations = state.meta.iterations
    return {
        "pool": state.meta.pool.to_json(),
        "surrogate_kind": state.meta.surrogate_kind,
        "heldout_metrics": state.meta.heldout,
        "seconds_pool": state.meta.pool_seconds,
        "seconds_per_iteration": [it["seconds"]["total"] for it in iterations],
        "iterations": iterations,
        "trust_region": state.meta.trust_region if settings["acquisition"]["region"] == "trust-region" else None,
        "settings": settings,
    }


def _decoding_note(settings: dict[str, Any]) -> str:
    if settings.get("beam_width"):
        return f"each proposal decoded by a beam search of width {settings['beam_width']}, the valid candidate whose code is nearest kept"
    return f"each proposal decoded greedily plus {settings['decodings']} sampled decodings, the most frequent valid string kept"


def _objectives(state: OptimizationState) -> ObjectivesRecord:
    """The targets of a run of several (the Pareto report is written for those only)."""
    if state.objectives is None:
        raise ValueError("a run of one target has no Pareto front; see its ranked proposals")
    return state.objectives


def _axis_label(name: str, maximize: bool) -> str:
    return name + ("" if maximize else " (lower is better)")


def _plot_pareto(path: Path, state: OptimizationState, front: list[dict[str, Any]]) -> None:
    """Every valid scored item by its scores, the pool grey and the proposals coloured by iteration,
    the Pareto front circled in red: one panel for two targets, one per pair for three."""
    objectives = _objectives(state)
    names, maximize = objectives.names, objectives.maximize
    rows = [r for r in state.rows if r["valid"]]
    pairs = [(a, b) for a in range(len(names)) for b in range(a + 1, len(names))]
    fig = figure(4.2 * len(pairs), 3.8)
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    pool = [r for r in rows if r["iteration"] == 0]
    found = [r for r in rows if r["iteration"] > 0]
    for ax, (a, b) in zip(axes, pairs):
        x, y = names[a], names[b]
        ax.scatter([r[x] for r in pool], [r[y] for r in pool], s=8, color="lightgrey", label="starting pool")
        if found:
            points = ax.scatter([r[x] for r in found], [r[y] for r in found], s=14, c=[r["iteration"] for r in found],
                                cmap="viridis", label="proposals")  # fmt: skip
            if ax is axes[-1]:
                ticks = sorted({r["iteration"] for r in found})
                fig.colorbar(points, ax=ax, label="iteration", ticks=ticks if len(ticks) <= 10 else None)
        ax.scatter([f[x] for f in front], [f[y] for f in front], s=40, facecolors="none", edgecolors="red",
                   linewidths=1.2, label="Pareto front")  # fmt: skip
        ax.set_xlabel(_axis_label(x, maximize[a]))
        ax.set_ylabel(_axis_label(y, maximize[b]))
    axes[0].legend(loc="best", fontsize="small")
    fig.tight_layout()
    save_figure(fig, path)


def _plot_hypervolume(path: Path, curve: list[dict[str, Any]]) -> None:
    """The hypervolume of everything scored against the oracle calls, the pool's as a line."""
    fig = figure(5, 3.5)
    ax = fig.subplots()
    ax.plot([p["oracle_calls"] for p in curve], [p["hypervolume"] for p in curve], marker="o", label="all scored")
    ax.axhline(curve[0]["hypervolume"], color="grey", linestyle="--", label="starting pool")
    ax.set_xlabel("oracle calls")
    ax.set_ylabel("hypervolume")
    ax.legend(loc="best")
    fig.tight_layout()
    save_figure(fig, path)
