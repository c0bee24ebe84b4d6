"""Benchmark: trust-region restarts in a budgeted PMO run, with and without (issue 18).

    nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/pmo_restart.py [--model moses]
        [--target celecoxib_rediscovery] [--budget 2000] [--seed 0] [--iterations N] [--variants off,on]
        [--out runs/pmo-restart]
    python benchmarks/pmo_restart.py --report DIR [DIR ...]     # the same table from finished run folders

Runs ``molks.optimize.loop.optimize`` once per variant with the settings ``molks benchmark pmo``
uses by default (a pool of 1,000 of the model's molecules, 50 proposals a round, each decoded by
the beam search of 8, the exact GP, the trust region, one thread), ``off`` with ``restarts=False``
(the rule before restarts: the region stays at its smallest around the best point) and ``on`` with
the default restarts (``restart_yield`` 0.25). Each run stops when the budget is spent or after
``--iterations`` rounds (give both the same cap to compare equal numbers of rounds: a run without
restarts may spend its rounds on molecules already scored and never reach the budget).

Per run it prints the oracle calls of every round, the restarts (round and reason), the wall time
of the call and the loop's own seconds, the load average (``os.getloadavg``) at its start and end,
and PMO's metrics (:func:`molks.optimize.pmo_metrics.run_metrics`: AUC top-10 at the budget, a run
that stopped early carried flat to it as PMO does; top-1; top-10 mean; calls used). The two runs
are identical up to the first restart (everything before it is decided the same way).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="moses", help="a run directory or a shipped model name")
    p.add_argument("--target", default="celecoxib_rediscovery", help="a PMO objective")
    p.add_argument("--budget", type=int, default=2000, help="oracle calls per run, the pool's 1,000 included")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=1_000_000, help="rounds at most (the same for every variant)")
    p.add_argument("--variants", default="off,on", help="comma-separated: off (no restarts), on (restarts)")
    p.add_argument("--restart-yield", type=float, default=0.25)
    p.add_argument("--out", default="runs/pmo-restart", help="a folder per variant: <out>/restarts-<variant>")
    p.add_argument("--resume", action="store_true", help="continue the runs under --out")
    p.add_argument("--report", nargs="+", default=None, metavar="DIR", help="only print the table of these run folders")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import molks
    from molks.optimize.loop import default_pool_file, optimize, read_pool
    from molks.optimize.pmo_benchmark import DEFAULT_CONFIG

    model = molks.load(args.model)
    pool = read_pool(default_pool_file(model.run_dir), model.domain)
    results = []
    for variant in args.variants.split(","):
        if variant not in ("off", "on"):
            raise SystemExit(f"unknown variant {variant!r}: off or on")
        acquisition = replace(DEFAULT_CONFIG.acquisition, restarts=variant == "on", restart_yield=args.restart_yield)
        config = replace(DEFAULT_CONFIG, budget=args.budget, seed=args.seed, iterations=args.iterations,
                         acquisition=acquisition)  # fmt: skip
        out = Path(args.out) / f"restarts-{variant}"
        load_before = os.getloadavg()
        started = time.perf_counter()
        optimize(model, pool, out, args.target, config, resume=args.resume and out.exists(), progress=False,
                 log=lambda line: print(f"  [{variant}] {line}", file=sys.stderr, flush=True))  # fmt: skip
        wall = time.perf_counter() - started
        results.append(report(out, args.budget, {"variant": variant, "wall_seconds": wall,
                                                 "load_start": load_before, "load_end": os.getloadavg()}))  # fmt: skip
    return results


def report(out: Path, budget: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The numbers of one run folder: calls per round, restarts, seconds, PMO's metrics at ``budget``."""
    from molks.optimize.pmo_metrics import run_metrics
    from molks.optimize.state import STATE_FILE, OptimizationState

    state = OptimizationState.load(out / STATE_FILE)
    metrics = run_metrics(state, budget, out / STATE_FILE)
    iterations = state.meta.iterations
    return {
        "run": str(out),
        **(extra or {}),
        "rounds": len(iterations),
        "calls_per_round": [it["oracle_calls"] for it in iterations],
        "restarts": [(r["iteration"], r["reason"]) for r in state.meta.trust_region.get("restarts", [])],
        "loop_seconds": metrics["seconds"],
        "oracle_calls": metrics["oracle_calls"],
        "auc_top10": metrics["auc_top10"],
        "top1": metrics["top1"],
        "top10_mean": metrics["top10_mean"],
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print("$ " + shlex.join([sys.executable, *(sys.argv if argv is None else ["benchmarks/pmo_restart.py", *argv])]))
    results = [report(Path(d), args.budget) for d in args.report] if args.report else run(args)
    for r in results:
        print(json.dumps(r))
    print("\n| run | rounds | oracle calls | calls per round (last 8) | restarts | loop s | AUC top-10 | top-1 | top-10 mean |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.get('variant', r['run'])} | {r['rounds']} | {r['oracle_calls']} | {r['calls_per_round'][-8:]} | "
              f"{len(r['restarts'])} | {r['loop_seconds']:.0f} | {r['auc_top10']:.4f} | {r['top1']:.4f} | {r['top10_mean']:.4f} |")


if __name__ == "__main__":
    main()
