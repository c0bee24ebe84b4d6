"""The report of a PMO benchmark (:mod:`molks.optimize.pmo_benchmark`), rendered from its per-run records.

Files written (atomically) in the benchmark's folder, after every run:

- ``results.json``  the settings, every finished run (task, seed, AUC top-10, top-1, top-10 mean at
  the end, oracle calls used, iterations, seconds, seconds per call, wall seconds; the curves are in
  the runs' records, ``<task>/seed<k>.json``), per task the mean
  and standard deviation over its seeds, the sum of the per-task means, and the objectives not run
  with the reason
- ``results.csv``   one row per finished run (the numbers of ``results.json`` without the curve)
- ``table.md``      the AUC top-10 per task beside the published rows
  (:mod:`molks.optimize.pmo_published`), with the sums over the same tasks
- ``<task>/top10_curve.png``  the top-10 mean against oracle calls, one line per seed

Standard deviations are population ones (numpy's default, ddof=0), as PMO reports them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from molks.drawing import figure, save_figure
from molks.files import atomic_write_text
from molks.optimize.pmo import NOT_RDKIT_ONLY, PMO_OBJECTIVES
from molks.optimize.pmo_published import (
    METHODS,
    PUBLISHED_AUC,
    PUBLISHED_BUDGET,
    PUBLISHED_SOURCE,
    PUBLISHED_SUM_20,
    PUBLISHED_SUM_23,
)

__all__ = ["CSV_COLUMNS", "markdown_table", "plot_curves", "results", "results_csv", "write_pmo_report"]

CSV_COLUMNS = (
    "task", "seed", "auc_top10", "top1", "top10_mean", "oracle_calls", "iterations", "seconds", "seconds_per_call",
    "wall_seconds",
)  # fmt: skip


def write_pmo_report(out: Path, settings: dict[str, Any], records: Sequence[dict[str, Any]], plot: Sequence[str] = ()) -> dict[str, Any]:
    """Write results.json, results.csv and table.md from the finished runs' ``records`` (and the curve
    PNG of each task in ``plot``); returns what results.json holds."""
    result = results(settings, records)
    atomic_write_text(out / "results.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "results.csv", results_csv(records))
    atomic_write_text(out / "table.md", markdown_table(result))
    for task in plot:
        plot_curves(out / task / "top10_curve.png", task, [r for r in records if r["task"] == task])
    return result


def results(settings: dict[str, Any], records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What results.json holds (its keys and their order are the file's format)."""
    tasks: dict[str, dict[str, Any]] = {}
    for task in settings["tasks"]:
        done = sorted((r for r in records if r["task"] == task), key=lambda r: r["seed"])
        aucs = [r["auc_top10"] for r in done]
        tasks[task] = {
            "seeds_done": [r["seed"] for r in done],
            "auc_top10_mean": float(np.mean(aucs)) if aucs else None,
            "auc_top10_std": float(np.std(aucs)) if aucs else None,
            "top1_mean": _mean([r["top1"] for r in done]),
            "top10_mean_mean": _mean([r["top10_mean"] for r in done]),
            "seconds_per_run_mean": _mean([r["seconds"] for r in done]),
        }
    with_results = [t for t, s in tasks.items() if s["auc_top10_mean"] is not None]
    return {
        "benchmark": "PMO (Gao et al., NeurIPS 2022): AUC of the top-10 mean against oracle calls",
        "settings": settings,
        "runs_done": len(records),
        "runs_total": len(settings["tasks"]) * len(settings["seeds"]),
        "tasks": tasks,
        "sum_auc_top10": sum(tasks[t]["auc_top10_mean"] for t in with_results) if with_results else None,
        "sum_over": with_results,
        "not_run": {name: reason for name, reason in NOT_RDKIT_ONLY.items()},
        "runs": [{k: v for k, v in r.items() if k != "curve"} for r in sorted(records, key=lambda r: (r["task"], r["seed"]))],
        "published_source": PUBLISHED_SOURCE,
    }


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def results_csv(records: Sequence[dict[str, Any]]) -> str:
    """results.csv: one line per finished run, by task then seed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in sorted(records, key=lambda r: (r["task"], r["seed"])):
        writer.writerow(["" if r.get(k) is None else r[k] for k in CSV_COLUMNS])
    return buffer.getvalue()


def markdown_table(result: dict[str, Any]) -> str:
    """table.md: molks's AUC top-10 per task (mean +- sd over its seeds) beside the published methods."""
    settings = result["settings"]
    budget = settings["budget"]
    ours = f"molks ({settings['model']})"
    lines = [
        f"# PMO AUC top-10: {ours}, {budget:,} oracle calls",
        "",
        (f"molks: mean +- sd (population) over the seeds done (their number in brackets), budget {budget:,} oracle "
         f"calls, pool of {settings['optimize']['pool_size']:,}, {settings['optimize']['acquisition']['q']} proposals a round."),
        f"Published: {PUBLISHED_SOURCE}.",
    ]
    if budget != PUBLISHED_BUDGET:
        lines.append(f"Not comparable: the published numbers are at {PUBLISHED_BUDGET:,} oracle calls, this run at {budget:,}.")
    lines += ["", "| objective | " + " | ".join([ours, *METHODS.values()]) + " |", "|---" * (len(METHODS) + 2) + "|"]
    for task in settings["tasks"]:
        stats = result["tasks"][task]
        cell = "-" if stats["auc_top10_mean"] is None else (
            f"{stats['auc_top10_mean']:.3f} +- {stats['auc_top10_std']:.3f} ({len(stats['seeds_done'])})")
        lines.append(f"| {task} | {cell} | " + " | ".join(f"{PUBLISHED_AUC[task][m]:.3f}" for m in METHODS) + " |")
    over = result["sum_over"]
    if over:
        if sorted(over) == sorted(PMO_OBJECTIVES):
            published = PUBLISHED_SUM_20  # the source's own sum (from its unrounded numbers)
        else:
            published = {m: sum(PUBLISHED_AUC[t][m] for t in over) for m in METHODS}
        lines.append(f"| **sum over the {len(over)} with results** | **{result['sum_auc_top10']:.3f}** | "
                     + " | ".join(f"**{published[m]:.3f}**" for m in METHODS) + " |")  # fmt: skip
    lines.append("| sum of all 23 (published) | - | " + " | ".join(f"{PUBLISHED_SUM_23[m]:.3f}" for m in METHODS) + " |")
    lines.append("")
    for name, reason in result["not_run"].items():
        lines.append(f"- {name}: not run: {reason}")
    return "\n".join(lines) + "\n"


def plot_curves(path: Path, task: str, records: Sequence[dict[str, Any]]) -> None:
    """The top-10 mean against oracle calls of each seed of ``task``, as the AUC integrates it."""
    fig = figure(5, 3.5)
    ax = fig.subplots()
    for r in sorted(records, key=lambda r: r["seed"]):
        xs, ys = zip(*r["curve"])
        ax.plot(xs, ys, label=f"seed {r['seed']} (AUC {r['auc_top10']:.3f})")
    ax.set_xlabel("oracle calls")
    ax.set_ylabel("top-10 mean score")
    ax.set_title(task)
    if records:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
