"""Benchmark: the hypervolume of a multi-objective run against other ways of spending its budget.

    python benchmarks/multiobjective.py MO_RUN [--single RUN ...] [--random FILE]

MO_RUN is a finished ``molks optimize --target A --target B [--target C]`` run. Every other set of
molecules is scored with the same targets and measured against MO_RUN's reference point, on top
of MO_RUN's starting pool, with as many new molecules as MO_RUN evaluated proposals:

- ``--single RUN``: a single-objective run from the same pool (same --pool-size, --seed, --pool):
  its proposals, in the order evaluated;
- ``--random FILE``: strings of a file, one a line (e.g. ``molks sample RUN --n N`` of the prior).

Prints the seconds each of MO_RUN's iterations took (GP fit, proposal, whole iteration), then one
line per set: the hypervolume, the valid new molecules, and those on the Pareto front.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import torch

from molks.optimize.multiobjective import hypervolume, open_objectives, pareto_mask


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "candidates.csv", newline="") as f:
        return list(csv.DictReader(f))


def print_seconds(label: str, summary: dict[str, Any]) -> None:
    """One line of a run's seconds per iteration: GP fit, proposal and the whole iteration, each as a
    list over the iterations and their mean (decoding and scoring are the rest)."""
    iterations = summary.get("iterations") or []
    if not iterations:
        print(f"{label}: no iteration timed")
        return
    parts = []
    for key in ("fit", "propose", "total"):
        values = [float(it["seconds"][key]) for it in iterations]
        parts.append(f"{key} {sum(values) / len(values):.1f} ({', '.join(f'{v:.1f}' for v in values)})")
    settings = summary.get("settings", {}).get("acquisition", {})
    shown = ", ".join(f"{k} {settings[k]}" for k in ("q", "strategy", "num_restarts", "raw_samples", "maxiter") if k in settings)
    print(f"{label}: seconds per iteration: " + "; ".join(parts) + (f"  [{shown}]" if shown else ""))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mo_run", type=Path)
    p.add_argument("--single", type=Path, nargs="*", default=[])
    p.add_argument("--random", type=Path)
    args = p.parse_args(argv)
    summary = json.loads((args.mo_run / "summary.json").read_text())
    names = summary["targets"]
    ref = torch.tensor(summary["reference_point_values"], dtype=torch.float64)
    rows = _rows(args.mo_run)
    pool = [r for r in rows if r["iteration"] == "0" and r["valid"] == "1"]
    budget = sum(r["iteration"] != "0" for r in rows)  # evaluated proposals, invalid ones included
    with open_objectives(names) as objectives:
        pool_values = objectives.values([{n: float(r[n]) for n in names} for r in pool])
        Y_pool = torch.tensor(pool_values, dtype=torch.float64)

        def measure(label: str, strings: list[str | None]) -> None:
            strings = strings[:budget]
            texts = [s for s in strings if s]
            values = [v for v in objectives.values(objectives.score(texts).terms) if v is not None]
            new = torch.tensor(values, dtype=torch.float64).reshape(-1, len(names))
            Y = torch.cat([Y_pool, new])
            on_front = int(pareto_mask(Y)[len(Y_pool):].sum())
            print(f"{label:<28} hypervolume {hypervolume(Y, ref):.4f}  valid new {len(new)}/{len(strings)}  on the front {on_front}")

        print(f"targets {', '.join(names)}; reference point (values to maximise) {[round(v, 4) for v in ref.tolist()]}; "
              f"pool {len(pool)} molecules, hypervolume {hypervolume(Y_pool, ref):.4f}; {budget} new molecules each")
        print_seconds(f"qLogNEHVI ({args.mo_run.name})", summary)
        measure(f"qLogNEHVI ({args.mo_run.name})", [r["string"] for r in rows if r["iteration"] != "0"])
        for run in args.single:
            if {r["string"] for r in _rows(run) if r["iteration"] == "0"} != {r["string"] for r in rows if r["iteration"] == "0"}:
                print(f"warning: {run} started from another pool (use the same --pool, --pool-size and --seed)")
            measure(f"single ({run.name})", [r["string"] for r in _rows(run) if r["iteration"] != "0"])
            print_seconds(f"  single ({run.name})", json.loads((run / "summary.json").read_text()))
        if args.random is not None:
            measure(f"random prior ({args.random.name})", args.random.read_text().splitlines())


if __name__ == "__main__":
    main()
