"""The report of an optimisation run, rendered from its saved state alone.

>>> from molks.optimize.report import render_report
>>> summary = render_report("optimize-out")     # rewrites the four files below from state.safetensors

Files written (atomically) in the run's folder:

- ``candidates.csv``     every evaluated code: iteration (0 = the starting pool), latent columns
  z0.., string, valid, score, and the target's other score terms (``logp``: logp, sa, cycle);
  where the target failed on some strings, a last column ``failure`` says why
- ``summary.json``       top-k proposals, fraction valid, average valid score, seconds per
  iteration and phase, the settings, held-out GP metrics when computed
- ``best_molecules.png`` the best proposals with their scores, drawn by the run's domain
  (:mod:`molks.domain`): structures for molecules, a text table for expressions
- ``best_score.png``     best score found against the number of evaluated proposals

"Best" is always the highest value of the state (a value to maximise); the numbers shown are the
target's scores, in its own direction.
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
from molks.optimize.state import STATE_FILE, OptimizationState

__all__ = ["BEST_SHOWN", "candidates_csv", "plot_best_score", "render_report", "summary", "write_report"]

BEST_SHOWN = 12  # proposals drawn in best_molecules.png


def render_report(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``out_dir``'s ``state.safetensors`` and (re)write its report; returns the summary."""
    out = Path(out_dir)
    state = OptimizationState.load(out / STATE_FILE)
    return write_report(out, state)


def write_report(out: Path, state: OptimizationState) -> dict[str, Any]:
    """Write candidates.csv, summary.json, best_score.png and best_molecules.png; returns the summary."""
    atomic_write_text(out / "candidates.csv", candidates_csv(state))
    result = summary(state)
    atomic_write_text(out / "summary.json", json.dumps(result, indent=2) + "\n")
    plot_best_score(out / "best_score.png", state)
    _draw_best(out / "best_molecules.png", result["top"][:BEST_SHOWN], _domain(state))
    return result


def summary(state: OptimizationState) -> dict[str, Any]:
    """What summary.json holds (its keys and their order are the file's format)."""
    settings = _settings(state)
    target, maximize = state.meta["identity"]["target"], state.meta["identity"]["maximize"]
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
    iterations = state.meta["iterations"]
    region = settings["acquisition"]["region"]
    return {
        "target": target,
        "maximize": maximize,
        "iterations_completed": state.meta["completed"],
        "oracle_calls": state.meta.get("oracle_calls"),  # distinct items scored, the pool's included (PMO's count)
        "proposals": len(proposals),
        "valid_proposals": len(valid),
        "fraction_valid": len(valid) / len(proposals) if proposals else None,
        "average_valid_score": float(np.mean([r["score"] for r in valid])) if valid else None,
        "top": list(top.values())[: settings["top_k"]],
        "best_pool_score": None if best_pool is None else best_pool["score"],
        "pool": state.meta["pool"],
        "surrogate_kind": state.meta["surrogate_kind"],
        "heldout_metrics": state.meta["heldout"],
        "seconds_pool": state.meta["pool_seconds"],
        "seconds_per_iteration": [it["seconds"]["total"] for it in iterations],
        "iterations": iterations,
        "trust_region": state.meta["trust_region"] if region == "trust-region" else None,
        "settings": settings,
        "note": (f"each proposal decoded by a beam search of width {settings['beam_width']}, the valid candidate whose code is nearest kept"
                 if settings.get("beam_width") else
                 f"each proposal decoded greedily plus {settings['decodings']} sampled decodings, the most frequent valid string kept"),
    }


def candidates_csv(state: OptimizationState) -> str:
    """candidates.csv: one line per evaluated code, in the order evaluated."""
    extra = state.term_names()
    failures = any("failure" in row for row in state.rows)  # a last column, where the target failed on some
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["iteration", *(f"z{j}" for j in range(state.X.shape[1])), "string", "valid", "score", *extra,
                     *(["failure"] if failures else [])])  # fmt: skip
    for x, row in zip(state.X.tolist(), state.rows):
        writer.writerow([
            row["iteration"], *(f"{v:.8g}" for v in x), row["string"], int(row["valid"]),
            *("" if row.get(k) is None else repr(float(row[k])) for k in ("score", *extra)),
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
    identity = state.meta["identity"]
    ax.set_ylabel(f"{identity['target']} score" + ("" if identity["maximize"] else " (lower is better)"))
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
    """The run's domain, from the state alone (states written before "domain" say "molecular").

    Text items are compared as written: the grammar is not in the state, and decodings of one
    grammar are spelled one way.
    """
    name = state.meta.get("domain") or ("molecules" if state.meta.get("molecular") else "text")
    return domain_named(name)


def _settings(state: OptimizationState) -> dict[str, Any]:
    """The run's settings ({"target", **OptimizeConfig.to_dict()}); a state written before they were
    saved has its identity's, the iterations it completed, and no record of its workers (None)."""
    saved = state.meta.get("settings")
    if saved is not None:
        return saved
    identity = state.meta["identity"]
    return {"target": identity["target"], "iterations": state.meta["completed"], **identity["config"],
            "processes": None, "threads": None}  # fmt: skip
