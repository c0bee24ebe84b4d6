"""The PMO benchmark (Gao et al., "Sample Efficiency Matters", NeurIPS 2022) of a model: every
objective with every seed at one oracle budget, resumable run by run.

>>> import molks
>>> from molks.optimize.loop import OptimizeConfig, default_pool_file, read_pool
>>> from molks.optimize.pmo_benchmark import run_pmo
>>> model = molks.load("moses")
>>> pool = read_pool(default_pool_file(model.run_dir), model.domain)
>>> result = run_pmo(model, pool, "pmo-out", ["qed", "median1"], seeds=2,
...                  config=OptimizeConfig(budget=1000, pool_size=500, iterations=1_000_000))

For each task (a PMO objective, :mod:`molks.optimize.pmo`) and seed k = 0 .. seeds-1, in that
order, :func:`molks.optimize.loop.optimize` runs with ``config`` (its seed set to k) into
``<out>/<task>/seed<k>/`` until the budget is spent (or the loop stops: no new molecule for
``STALL_ITERATIONS`` rounds). A finished run's numbers (:func:`molks.optimize.pmo_metrics.run_metrics`,
computed from its saved state) are written to ``<out>/<task>/seed<k>.json``; then the report
(:mod:`molks.optimize.pmo_report`) is rewritten from all of them.

Resumable: ``pmo.json`` records what the benchmark is (model, budget, settings, pool); with
``resume=True`` a run with its record is skipped, a run killed part way is resumed
(``optimize(resume=True)``, which continues it exactly), and the others start. More tasks or seeds
may be asked on resume; other settings are refused. The starting pool is every run's; its molecules
count as oracle calls first, as PMO counts the initial molecules of a method.

The three PMO objectives scored by downloaded classifiers (drd2, gsk3b, jnk3,
:data:`~molks.optimize.pmo.NOT_RDKIT_ONLY`) cannot be run, and the report says so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from molks.api import LatentModel
from molks.checks import check_int
from molks.errors import InputError, file_access
from molks.files import atomic_write_text, file_sha256, folder_lock, foreign_entries
from molks.optimize.loop import OptimizeConfig, optimize
from molks.optimize.pmo import NOT_RDKIT_ONLY, PMO_OBJECTIVES
from molks.optimize.pmo_metrics import run_metrics
from molks.optimize.pmo_report import write_pmo_report
from molks.optimize.state import STATE_FILE, OptimizationState, comparable_settings
from molks.progress import progress_bar, showing

__all__ = ["BENCHMARK_FILE", "DEFAULT_CONFIG", "MAX_SEEDS", "PmoBenchmarkError", "check_benchmark", "check_tasks", "read_records", "run_pmo"]

logger = logging.getLogger("molks.benchmark")

BENCHMARK_FILE = "pmo.json"
"""What a benchmark folder is: its identity (model, budget, settings, pool) and the tasks and seeds asked."""
MAX_SEEDS = 1_000
DEFAULT_CONFIG = OptimizeConfig(budget=10_000, pool_size=1000, iterations=1_000_000)
"""PMO's budget of 10,000 oracle calls, 1,000 of them the starting pool, rounds until the budget is spent
(proposals decoded as :class:`OptimizeConfig` decodes them by default: a beam search of 8)."""


class PmoBenchmarkError(InputError):
    """The benchmark cannot start or resume (an unknown task, a budget below the pool, other settings)."""


def check_tasks(tasks: Sequence[str]) -> list[str]:
    """The tasks named (order kept, repeats dropped), each one of the 20 PMO objectives molks scores;
    otherwise a :class:`PmoBenchmarkError` naming the task and why."""
    names = list(dict.fromkeys(t.strip() for t in tasks if t.strip()))
    if not names:
        raise PmoBenchmarkError("no task named; choose among " + ", ".join(PMO_OBJECTIVES))
    for name in names:
        if name in NOT_RDKIT_ONLY:
            raise PmoBenchmarkError(f"task {name!r} cannot be run: {NOT_RDKIT_ONLY[name]}")
        if name not in PMO_OBJECTIVES:
            raise PmoBenchmarkError(f"unknown task {name!r}; the PMO objectives molks runs: " + ", ".join(PMO_OBJECTIVES))
    return names


def check_benchmark(tasks: Sequence[str], seeds: int, config: OptimizeConfig) -> tuple[list[str], int]:
    """The tasks (:func:`check_tasks`) and the number of seeds, once the settings are known to make a
    benchmark: a budget, above the pool's size; otherwise a :class:`PmoBenchmarkError` naming the option."""
    names = check_tasks(tasks)
    n_seeds = check_int(seeds, "seeds", 1, MAX_SEEDS)
    if config.budget is None:
        raise PmoBenchmarkError("the PMO benchmark needs an oracle budget (--budget; PMO's is 10,000)")
    if config.pool_size >= config.budget:
        raise PmoBenchmarkError(
            f"--pool-size {config.pool_size} leaves no oracle calls of --budget {config.budget} for the optimisation "
            "(the pool's molecules are calls); lower --pool-size or raise --budget"
        )
    return names, n_seeds


def run_pmo(
    model: LatentModel,
    pool: Sequence[str],
    out_dir: str | os.PathLike[str],
    tasks: Sequence[str] = PMO_OBJECTIVES,
    seeds: int = 5,
    config: OptimizeConfig | None = None,
    *,
    resume: bool = False,
    model_name: str | None = None,
    pool_source: str = "",
    pool_sha256: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every (task, seed) not done yet; returns what ``results.json`` holds.

    ``config``: the settings of every run (default :data:`DEFAULT_CONFIG`); ``config.budget``
    (required) is the oracle budget and must exceed ``config.pool_size`` (the pool's calls count),
    and ``config.iterations`` should be large enough for the budget to end the runs. ``model_name``: how the model is named in the
    report (default: its folder's name; never an absolute path). ``pool_sha256``: of the pool's
    file, recorded and compared on ``resume``. ``progress``: a bar over runs (and the run's own);
    ``log``: one line per run (default: the ``molks.benchmark`` logger).
    """
    config = DEFAULT_CONFIG if config is None else config
    names, n_seeds = check_benchmark(tasks, seeds, config)
    if not model.domain.molecular:
        raise PmoBenchmarkError(f"the PMO objectives score molecules; {model.run_dir} works on {model.domain.name}")
    out = Path(out_dir)
    weights = model.run_dir / "model.safetensors"
    identity = {
        "model_sha256": file_sha256(weights) if weights.is_file() else None,
        "budget": config.budget,
        "config": comparable_settings({**{k: v for k, v in config.to_dict().items() if k not in ("seed", "processes", "threads", "target_timeout")},
                                       "acquisition": config.acquisition.identity()}),  # benchmarks begun before restarts: resumable with them off
    }
    settings = {
        "model": model_name or model.run_dir.name,
        "budget": config.budget,
        "tasks": names,
        "seeds": list(range(n_seeds)),
        "pool_source": pool_source,
        "optimize": {k: v for k, v in config.to_dict().items() if k != "seed"},
    }
    with folder_lock(out, "run a benchmark in"):
        return _run(model, list(pool), out, identity, settings, config, resume, pool_sha256, progress, log or logger.info)


def _run(
    model: LatentModel,
    pool: list[str],
    out: Path,
    identity: dict[str, Any],
    settings: dict[str, Any],
    config: OptimizeConfig,
    resume: bool,
    pool_sha256: str | None,
    progress: bool | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    _open(out, identity, settings, resume, pool_sha256)
    runs = [(task, seed) for task in settings["tasks"] for seed in settings["seeds"]]
    records = read_records(out, runs)
    if records:
        log(f"resuming {out}: {len(records)} of {len(runs)} runs done")
    result = write_pmo_report(out, settings, list(records.values()), plot=sorted({task for task, _ in records}))
    bar = progress_bar(len(runs), "pmo", progress, initial=len(records), unit="run") if showing(progress) else None
    with contextlib.ExitStack() as stack:
        if bar is not None:
            from tqdm.contrib.logging import logging_redirect_tqdm

            stack.enter_context(logging_redirect_tqdm())
            stack.callback(bar.close)
        for task, seed in runs:
            if (task, seed) in records:
                continue
            record = _one_run(model, pool, out, task, seed, config, pool_sha256, settings, progress)
            records[(task, seed)] = record
            result = write_pmo_report(out, settings, list(records.values()), plot=[task])
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{task} seed {seed}: AUC {record['auc_top10']:.3f}")
            log(f"{task} seed {seed}: AUC top-10 {record['auc_top10']:.3f}, top-1 {_fmt(record['top1'])}, "
                f"{record['oracle_calls']} oracle calls in {record['wall_seconds']:.0f} s "
                f"({len(records)}/{len(runs)} runs done)")  # fmt: skip
    return result


def _one_run(
    model: LatentModel, pool: list[str], out: Path, task: str, seed: int, config: OptimizeConfig,
    pool_sha256: str | None, settings: dict[str, Any], progress: bool | None,
) -> dict[str, Any]:  # fmt: skip
    """Run (or resume) one task with one seed to its end; save and return its record."""
    run_dir = out / task / f"seed{seed}"
    started = time.perf_counter()
    optimize(
        model, pool, run_dir, task, replace(config, seed=seed), resume=(run_dir / STATE_FILE).exists(),
        pool_source=settings["pool_source"], pool_sha256=pool_sha256, progress=progress,
    )  # fmt: skip
    wall = time.perf_counter() - started
    state = OptimizationState.load(run_dir / STATE_FILE)
    where = Path(task) / f"seed{seed}" / STATE_FILE
    record = {"task": task, "seed": seed, **run_metrics(state, settings["budget"], where), "wall_seconds": wall}
    atomic_write_text(_record_path(out, task, seed), json.dumps(record) + "\n")
    return record


def _open(out: Path, identity: dict[str, Any], settings: dict[str, Any], resume: bool, pool_sha256: str | None) -> None:
    """Start the benchmark folder (``pmo.json``), or check that ``resume`` continues the same benchmark."""
    path = out / BENCHMARK_FILE
    if path.exists():
        if not resume:
            raise PmoBenchmarkError(f"{out} already holds a PMO benchmark; pass --resume to continue it or choose another --out")
        with file_access(path, "cannot read"):
            try:
                saved = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise PmoBenchmarkError(f"{path}: not a benchmark record ({err})") from None
        if isinstance(saved.get("identity"), dict) and isinstance(saved["identity"].get("config"), dict):
            saved["identity"]["config"] = comparable_settings(saved["identity"]["config"])  # as begun before they were left out
        if saved.get("identity") != identity:
            diff = sorted(k for k in set(saved.get("identity", {})) | set(identity)
                          if saved.get("identity", {}).get(k) != identity.get(k))  # fmt: skip
            saved_config = saved.get("identity", {}).get("config")
            hint = ""
            if isinstance(saved_config, dict) and saved_config.get("beam_width") == 0 and identity["config"]["beam_width"]:
                hint = " (a benchmark started with sampled decodings, the default before, resumes with them: --beam-width 0)"
            raise PmoBenchmarkError(f"--resume: {out} was started with another {', '.join(diff)}{hint}; use another --out")
        old, new = saved.get("pool_sha256"), pool_sha256
        if old and new and old != new:
            raise PmoBenchmarkError(f"--resume: {out} was started from another pool file (sha256 {old[:12]}...); use another --out")
        pool_sha256 = old or new
    else:
        foreign = foreign_entries(out)
        if foreign:
            raise PmoBenchmarkError(
                f"{out} is not empty and holds no PMO benchmark ({', '.join(foreign[:5])}); choose a new or empty --out"
            )
    atomic_write_text(path, json.dumps({"identity": identity, "pool_sha256": pool_sha256, "settings": settings}, indent=2) + "\n")


def _record_path(out: Path, task: str, seed: int) -> Path:
    return out / task / f"seed{seed}.json"


def read_records(out_dir: str | os.PathLike[str], runs: Sequence[tuple[str, int]]) -> dict[tuple[str, int], dict[str, Any]]:
    """The records of the finished runs among ``runs`` (task, seed) in ``out_dir``."""
    records: dict[tuple[str, int], dict[str, Any]] = {}
    for task, seed in runs:
        path = _record_path(Path(out_dir), task, seed)
        if path.is_file():
            with file_access(path, "cannot read"):
                try:
                    records[(task, seed)] = json.loads(path.read_text())
                except json.JSONDecodeError as err:
                    raise PmoBenchmarkError(f"{path}: not a run record ({err}); delete it to redo that run") from None
    return records


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
