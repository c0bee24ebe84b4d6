"""Benchmark: the exact GP's hyperparameter fit -- held-out accuracy and seconds against its settings.

    python benchmarks/surrogate_fit.py STATE.safetensors [STATE ...] [--max-fit 500 300] [--maxiter 200 50]

Each STATE is a ``molks optimize`` state (``<out>/state.safetensors``, e.g. of ``benchmarks/bo_logp.py``'s
seeds): its codes and values, the starting pool and every proposal, are the data a BO iteration fits
on. For every (max_fit, maxiter) pair the GP is fitted cold on a random 90% of them
(:func:`molks.optimize.surrogate.heldout_metrics`, seeded by the state's position in the list) and
scored on the other 10%: RMSE, mean log-likelihood, and the fit's wall seconds. Prints the command,
one row per state and setting, and the mean of each setting over the states.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import statistics
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("states", nargs="+", type=Path, help="molks optimize state files")
    p.add_argument("--max-fit", type=int, nargs="+", default=[500, 300], help="points the hyperparameters are fitted on")
    p.add_argument("--maxiter", type=int, nargs="+", default=[200, 50], help="L-BFGS iterations of the fit")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from molks.optimize.state import OptimizationState
    from molks.optimize.surrogate import SurrogateConfig, heldout_metrics

    torch.set_num_threads(args.threads)
    print("command: python benchmarks/surrogate_fit.py " + shlex.join(sys.argv[1:] if argv is None else argv), flush=True)
    print("\n| state | points | max_fit | maxiter | RMSE | log-lik. | fit s |\n|---|---|---|---|---|---|---|")
    by_setting: dict[tuple[int, int], list[dict[str, float]]] = {}
    for seed, path in enumerate(args.states):
        state = OptimizationState.load(path)
        Y = state.Y.reshape(len(state.Y), -1)[:, :1]
        for max_fit, maxiter in itertools.product(args.max_fit, args.maxiter):
            config = SurrogateConfig(max_fit=max_fit, maxiter=maxiter)
            m = heldout_metrics(state.X, Y, state.box, config, kinds=("exact",), seed=seed)["exact"]
            by_setting.setdefault((max_fit, maxiter), []).append(m)
            print(f"| {path.parent.name} | {len(state.X)} | {max_fit} | {maxiter} | {m['rmse']:.3f} | "
                  f"{m['log_likelihood']:.3f} | {m['seconds']:.1f} |", flush=True)
    print("\nmean over the states:\n\n| max_fit | maxiter | RMSE | log-lik. | fit s |\n|---|---|---|---|---|")
    for (max_fit, maxiter), rows in by_setting.items():
        mean = {k: statistics.fmean(r[k] for r in rows) for k in ("rmse", "log_likelihood", "seconds")}
        print(f"| {max_fit} | {maxiter} | {mean['rmse']:.3f} | {mean['log_likelihood']:.3f} | {mean['seconds']:.1f} |")


if __name__ == "__main__":
    main()
