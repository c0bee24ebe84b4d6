"""The report of a lead optimisation (:mod:`molks.optimize.lead`), rendered from its per-molecule results.

Files written (atomically) in the run's folder:

- ``leads.csv``      one row per starting molecule done, in input order: ``start``, ``best`` (empty for
  a failure), ``similarity`` (of best to start), ``improvement`` (0 for a failure), ``success`` (1/0),
  then ``start_score``, ``best_score``, ``scored`` (oracle calls), ``reason`` (why a failure failed)
- ``candidates.csv`` every distinct molecule scored: ``start_index``, ``start``, ``round``, ``smiles``,
  ``score``, ``similarity``, ``feasible`` (similarity >= the threshold); where the target failed on
  some molecules, a last column ``failure`` says why
- ``pairs.png``      start -> best of the largest improvements (drawn when the run ends)
- ``summary.json``   success rate, improvement mean +- sd over all molecules (failures as 0) and over
  the successes, the molecules not encoded with their reasons, the target's failed calls (how many,
  the last reason), the protocol and the settings

The standard deviations are population ones (numpy's default, ddof=0).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from molks.drawing import DrawingError, draw_molecules
from molks.files import atomic_write_text

if TYPE_CHECKING:
    from molks.optimize.lead import LeadConfig
    from molks.optimize.targets import Target

__all__ = ["LEADS_COLUMNS", "PAIRS_SHOWN", "candidates_csv", "lead_summary", "leads_csv", "write_lead_report"]

LEADS_COLUMNS = ("start", "best", "similarity", "improvement", "success", "start_score", "best_score", "scored", "reason")
PAIRS_SHOWN = 12  # start -> best pairs drawn in pairs.png


def write_lead_report(
    out: Path,
    starts: Sequence[str],
    records: dict[int, dict[str, Any]],
    target: Target,
    config: LeadConfig,
    source: str = "",
    *,
    draw: bool = True,
) -> dict[str, Any]:
    """Write leads.csv and summary.json (and, with ``draw``, candidates.csv and pairs.png) from the
    results done so far (``records``: index -> result); returns the summary."""
    ordered = [records[i] for i in sorted(records)]
    atomic_write_text(out / "leads.csv", leads_csv(ordered))
    result = lead_summary(len(starts), ordered, target, config, source)
    if draw:
        atomic_write_text(out / "candidates.csv", candidates_csv(ordered))
        result["pairs_png"] = _draw_pairs(out / "pairs.png", ordered)
    atomic_write_text(out / "summary.json", json.dumps(result, indent=2) + "\n")
    return result


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def leads_csv(records: Sequence[dict[str, Any]]) -> str:
    """leads.csv: the per-molecule table (``records`` in input order)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LEADS_COLUMNS)
    for r in records:
        writer.writerow([
            r["start"], r["best"], _number(r["similarity"]), _number(r["improvement"]), int(r["success"]),
            _number(r["start_score"]), _number(r["best_score"]), r["scored"], r["reason"],
        ])  # fmt: skip
    return buffer.getvalue()


def candidates_csv(records: Sequence[dict[str, Any]]) -> str:
    """candidates.csv: every distinct molecule scored, per starting molecule in the order found."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    failures = any("failure" in c for r in records for c in r["candidates"])  # a last column, where the target failed
    writer.writerow(["start_index", "start", "round", "smiles", "score", "similarity", "feasible",
                     *(["failure"] if failures else [])])  # fmt: skip
    for r in records:
        for c in r["candidates"]:
            writer.writerow([r["index"], r["start"], c["round"], c["smiles"], _number(c["score"]), _number(c["similarity"]),
                             int(c["feasible"]), *([c.get("failure", "")] if failures else [])])  # fmt: skip
    return buffer.getvalue()


def _mean_sd(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "sd": None}
    return {"mean": float(np.mean(values)), "sd": float(np.std(values))}


def lead_summary(
    n: int, records: Sequence[dict[str, Any]], target: Target, config: LeadConfig, source: str = ""
) -> dict[str, Any]:
    """What summary.json holds. Rates and means are over the molecules done (all ``n`` at the end)."""
    successes = [r for r in records if r["success"]]
    not_encoded = [{"index": r["index"], "start": r["start"], "reason": r["reason"]}
                   for r in records if r["reason"].startswith("not encoded")]  # fmt: skip
    done = len(records)
    failed_calls = [reason for r in records for reason in r.get("target_failures", [])]  # none in runs saved before
    return {
        "protocol": (
            f"target {target.name!r}; Tanimoto similarity of {config.fingerprint} fingerprints (radius 2) >= "
            f"{config.min_similarity}; success: a decoded molecule other than the start, similar enough and "
            f"better; improvement: its objective minus the start's, 0 for a failure; at most {config.budget} "
            f"distinct molecules scored per start"
        ),
        "source": source,
        "target": target.name,
        "maximize": target.maximize,
        "min_similarity": config.min_similarity,
        "fingerprint": config.fingerprint,
        "budget": config.budget,
        "molecules": n,
        "done": done,
        "encoded": done - len(not_encoded),
        "successes": len(successes),
        "success_rate": len(successes) / done if done else None,
        "improvement_all": _mean_sd([r["improvement"] for r in records]),
        "improvement_successes": _mean_sd([r["improvement"] for r in successes]),
        "similarity_successes": _mean_sd([r["similarity"] for r in successes]),
        "scored_mean": float(np.mean([r["scored"] for r in records])) if records else None,
        "seconds": float(sum(r["seconds"] for r in records)),
        "not_encoded": not_encoded,
        "target_failures": {"calls": len(failed_calls), "last": failed_calls[-1] if failed_calls else None},
        "settings": {"target": target.name, **config.to_dict()},
    }


def _draw_pairs(path: Path, records: Sequence[dict[str, Any]]) -> str | None:
    """pairs.png: start -> best for the largest improvements, two pairs a row; None when no success."""
    best = sorted((r for r in records if r["success"]), key=lambda r: -r["improvement"])[:PAIRS_SHOWN]
    smiles: list[str] = []
    legends: list[str] = []
    for r in best:
        smiles += [r["start"], r["best"]]
        legends += [f"{r['index'] + 1}: start {r['start_score']:.2f}", f"+{r['improvement']:.2f}, sim {r['similarity']:.2f}"]
    if not smiles:
        return None
    try:
        draw_molecules(smiles, path, legends, per_row=4, size=250, max_molecules=None)
    except DrawingError:
        return None
    return path.name
