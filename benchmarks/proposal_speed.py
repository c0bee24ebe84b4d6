"""Benchmark: the proposal step of a BO iteration -- seconds and acquisition value against its settings.

    python benchmarks/proposal_speed.py STATE.safetensors [STATE ...] [--setting maxiter=100 maxiter=50,mc_samples=64 ...]

Each STATE is a ``molks optimize`` state (``<out>/state.safetensors``, e.g. of ``benchmarks/bo_logp.py``'s
seeds): its codes, values, trust region and last GP hyperparameters are what the next iteration
proposes from. For each state the exact GP is fitted once (warm-started, as the loop does), then
``molks.optimize.acquisition.propose`` runs once per setting (``AcquisitionConfig`` fields,
comma-separated, on top of the state's own settings; ``love=1``: the GP's predictive covariance by
gpytorch's LOVE, ``fast_pred_var``), with the same seed. Each batch is judged by
its joint qLogEI under one 1,024-sample QMC sampler shared by all settings, so the values compare
(higher is better). Prints the command, one row per state and setting, and each setting's mean.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shlex
import statistics
import sys
import time
from pathlib import Path


def parse_setting(text: str) -> dict[str, int | float]:
    """``"maxiter=50,mc_samples=64"`` -> {"maxiter": 50, "mc_samples": 64}; ``"default"`` -> {}."""
    if text == "default":
        return {}
    out: dict[str, int | float] = {}
    for part in text.split(","):
        name, value = part.split("=")
        out[name] = float(value) if "." in value else int(value)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("states", nargs="+", type=Path, help="molks optimize state files")
    p.add_argument("--setting", nargs="+", default=["default", "maxiter=50", "mc_samples=64", "maxiter=50,mc_samples=64"],
                   help="AcquisitionConfig overrides to compare ('default': the state's own)")  # fmt: skip
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import gpytorch
    import torch
    from botorch.acquisition.logei import qLogExpectedImprovement
    from botorch.sampling.normal import SobolQMCNormalSampler

    from molks.optimize.acquisition import AcquisitionConfig, TrustRegion, best_posterior_mean, propose
    from molks.optimize.state import OptimizationState
    from molks.optimize.surrogate import SurrogateConfig, fit_surrogate

    torch.set_num_threads(args.threads)
    print("command: python benchmarks/proposal_speed.py " + shlex.join(sys.argv[1:] if argv is None else argv), flush=True)
    print("\n| state | points | setting | seconds | judged qLogEI |\n|---|---|---|---|---|", flush=True)
    results: dict[str, list[tuple[float, float]]] = {}
    for path in args.states:
        state = OptimizationState.load(path)
        settings = state.meta.settings or {}
        acquisition = {k: v for k, v in settings.get("acquisition", {}).items() if k in AcquisitionConfig.__dataclass_fields__}
        base = AcquisitionConfig(**acquisition)
        surrogate = SurrogateConfig(**{k: v for k, v in settings.get("surrogate", {}).items()
                                       if k in SurrogateConfig.__dataclass_fields__})  # fmt: skip
        seed = int(settings.get("seed", 0)) * 1_000_003 + state.meta.completed + 1
        model = fit_surrogate(state.X, state.Y, state.box, surrogate, seed=seed, warm_start=state.gp).model
        region = TrustRegion.from_dict(state.meta.trust_region)
        for text in args.setting:
            overrides = parse_setting(text)
            love = bool(overrides.pop("love", 0))  # gpytorch's LOVE: a low-rank cache of the predictive covariance
            config = dataclasses.replace(base, **overrides)
            model.prediction_strategy = None  # every setting starts cold, as an iteration of the loop does
            started = time.perf_counter()
            # Not fast_pred_var(False) for the others: that context makes gpytorch rebuild the
            # training covariance's Cholesky at every call (2.4 s instead of 0.12 s, measured).
            with gpytorch.settings.fast_pred_var() if love else contextlib.nullcontext():
                proposal = propose(model, state.X, state.Y, state.box, config, seed=seed,
                                   trust_region=TrustRegion.from_dict(region.to_dict()))  # fmt: skip
            seconds = time.perf_counter() - started
            model.prediction_strategy = None  # the judge's posterior is exact, not LOVE's cache
            with gpytorch.settings.max_cholesky_size(10_000), torch.no_grad():  # as propose computes it
                judge = qLogExpectedImprovement(model, best_f=best_posterior_mean(model, state.X),
                                                sampler=SobolQMCNormalSampler(torch.Size([1024]), seed=12345))  # fmt: skip
                value = float(judge(proposal.X.unsqueeze(0)))
            results.setdefault(text, []).append((seconds, value))
            print(f"| {path.parent.name} | {len(state.X)} | {text} | {seconds:.1f} | {value:.3f} |", flush=True)
    print("\n| setting | mean seconds | mean judged qLogEI |\n|---|---|---|")
    for text, rows in results.items():
        print(f"| {text} | {statistics.mean(s for s, _ in rows):.1f} | {statistics.mean(v for _, v in rows):.3f} |")


if __name__ == "__main__":
    main()
