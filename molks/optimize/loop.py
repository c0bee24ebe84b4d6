"""The latent-space Bayesian optimisation loop, resumable after every iteration.

    encode the pool and score it -> fit a GP -> propose q codes (qLogEI) -> decode each (a beam
    search of 8 by default) -> score -> append -> refit ... for ``iterations`` rounds.

Everything an iteration needs is derived from (seed, iteration) and the state saved after the
previous one (every evaluated code and value, the trust region: :mod:`molks.optimize.state`), so a
killed run resumed with ``resume=True`` writes exactly the ``candidates.csv`` an uninterrupted run
writes.

The loop works in values to maximise only: the target's scores become values once, through
:meth:`~molks.optimize.targets.Target.objective`, as they are scored. After every iteration it
saves ``state.safetensors`` and has :mod:`molks.optimize.report` render the report from it
(``candidates.csv``, ``summary.json``, ``best_molecules.png``, ``best_score.png``).

With two or three targets (``target=["logp", "qed", "sa"]``) the same loop optimises them
together (:mod:`molks.optimize.multiobjective`): values are [N, M], a GP per objective, qLogNEHVI
proposals, and the hypervolume above a reference point fixed from the starting pool (saved in the
state) takes the place of the best score; the report adds the Pareto front
(:mod:`molks.optimize.report`).

The trust region restarts after a round that brought few new oracle calls, or when it collapses
(:mod:`molks.optimize.acquisition`); each restart is saved with the region and in the iteration's
record. Every row of the state holds the oracle call that scored it (``call``, 1-based, the order
PMO's metric reads; None for a repeat or an invalid proposal).

Invalid proposals (not decodable, or not an item of the model's domain, e.g. not a molecule RDKit
reads) are kept in the GP's data with the worst value of the starting pool (as the Grammar VAE
protocol does), so the GP learns to avoid regions that do not decode; targets with an
``invalid_score`` use that instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from molks.api import LatentModel
from molks.checks import MAX_BATCH_SIZE, check_beam_width, check_int, check_seed
from molks.decoding import DEFAULT_BEAM_WIDTH
from molks.domain import MOLECULES, TEXT, Domain
from molks.errors import InputError, file_access
from molks.files import file_sha256, folder_lock, foreign_entries
from molks.optimize.acquisition import (
    AcquisitionConfig,
    TrustRegion,
    bounding_box,
    propose,
    restart_center,
)
from molks.optimize.guard import (
    DEFAULT_TIMEOUT,
    POOL_CALL_SIZE,
    Scores,
    TargetRunner,
    open_target,
)
from molks.optimize.multiobjective import (
    REFERENCE_RULE,
    Objectives,
    fit_surrogates,
    hypervolume,
    open_objectives,
    propose_pareto,
    reference_point,
)
from molks.optimize.oracle import Batch, OracleLedger
from molks.optimize.report import write_report
from molks.optimize.state import (
    STATE_FILE,
    ObjectivesRecord,
    OptimizationState,
    PoolRecord,
    RunIdentity,
    RunMeta,
    comparable_settings,
    derive_call_indices,
)
from molks.optimize.surrogate import (
    SurrogateConfig,
    choose_surrogate,
    fit_surrogate,
    heldout_metrics,
)
from molks.optimize.targets import Target, Terms
from molks.progress import progress_bar, showing
from molks.runs import RunDir

__all__ = ["STATE_FILE", "OptimizeConfig", "OptimizeError", "default_pool_file", "file_sha256", "optimize", "read_pool"]

logger = logging.getLogger("molks.optimize")

STALL_ITERATIONS = 10
"""With a budget: rounds in a row that score nothing new (every proposal invalid or seen) that end a run."""


class OptimizeError(InputError):
    """The optimisation cannot start or resume (bad settings, empty pool, mismatched state)."""


@dataclass(frozen=True)
class OptimizeConfig:
    """Settings of one optimisation run.

    iterations: rounds of fit -> propose -> decode -> score (the published budget: 5 x 50).
    beam_width: K >= 1 decodes each proposal with the beam search of width K
        (``LatentModel.decode(beam_width=K)``: the valid candidate whose code is nearest the
        proposal); default :data:`~molks.decoding.DEFAULT_BEAM_WIDTH` (8). 0 decodes as the Grammar
        VAE protocol does: greedily plus ``decodings`` sampled decodings, the most frequent valid
        string kept. The beam is the default because, over 10 seeds of 5 x 50 logP proposals with
        the shipped model, it scored as well as greedy + 100 sampled decodings (mean best 4.77 vs
        4.72, top-3 5.25 / 5.20 / 5.07 vs 5.20 / 5.18 / 4.82; 90% valid vs 100%) and decoded an
        iteration 11x faster (1.5 s vs 17.3 s). Runs saved before it was the default resume with
        ``beam_width=0`` (``--beam-width 0``).
    decodings: with ``beam_width=0``, the sampled decodings per proposal on top of the greedy one
        (the published protocol uses 500; 100 keeps an iteration within a minute on a 2-core CPU);
        unused otherwise.
    pool_size: the starting pool is subsampled (with ``seed``) to at most this many strings.
    heldout: also report held-out RMSE / log-likelihood of the GP kinds (10% split) at the start;
        always done when ``surrogate.kind == "auto"``, which then picks the kind.
    processes: workers for scoring the pool (None: all cores).
    threads: torch threads while the loop runs (restored after; None: leave as is). One is the
        fastest for these matrix sizes on a 2-core CPU, and 4-8x faster than two when other
        processes share the cores. Floating-point sums depend on it, so a resumed run equals an
        uninterrupted one bit for bit only with the same number of threads.
    target_timeout: seconds one call of a user target may take before its worker process is killed
        and the strings of that call are scored as failed (:mod:`molks.optimize.guard`).
    budget: the most oracle calls (None: no cap), counted as PMO counts them
        (:mod:`molks.optimize.oracle`): every distinct item scored, the starting pool's included; a
        repeat and an invalid proposal are free. The run stops when the budget is spent (or after
        ``iterations`` rounds, or after ``STALL_ITERATIONS`` rounds in a row that call nothing new).
        Like ``iterations`` it may be raised on resume.
    """

    iterations: int = 5
    decodings: int = 100
    beam_width: int = DEFAULT_BEAM_WIDTH
    pool_size: int = 2000
    seed: int = 0
    top_k: int = 10
    heldout: bool = False
    processes: int | None = None
    threads: int | None = 1
    target_timeout: float = DEFAULT_TIMEOUT
    budget: int | None = None
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)

    def __post_init__(self) -> None:
        for name in ("iterations", "pool_size", "top_k"):
            if int(getattr(self, name)) < 1:
                raise OptimizeError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.decodings < 0:
            raise OptimizeError(f"decodings must be >= 0, got {self.decodings}")
        if self.beam_width < 0:
            raise OptimizeError(f"beam_width must be >= 0 (0: sampled decodings), got {self.beam_width}")
        if self.beam_width:  # the bounds of molks.checks, checked before the pool is read
            check_beam_width(self.beam_width)
        check_int(self.decodings, "decodings", 0, MAX_BATCH_SIZE)  # one batch of decodings per proposal
        check_seed(self.seed)
        if self.threads is not None and self.threads < 1:
            raise OptimizeError(f"threads must be at least 1 (or None), got {self.threads}")
        if self.budget is not None and self.budget < 1:
            raise OptimizeError(f"budget must be at least 1 oracle call (or None), got {self.budget}")
        if not 0 < self.target_timeout < float("inf"):
            raise OptimizeError(f"target_timeout must be a positive number of seconds, got {self.target_timeout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share (everything but the number of iterations and workers,
        the budget, and how long the optimisers work: ``molks.optimize.state.EFFORT_SETTINGS``)."""
        d = self.to_dict()
        del d["iterations"], d["processes"], d["threads"], d["target_timeout"], d["budget"]
        d["acquisition"] = self.acquisition.identity()  # without the restart settings when restarts are off
        if d["beam_width"] == 0:
            del d["beam_width"]  # as runs saved before the option existed: they resume with beam_width=0
        return comparable_settings(d)


# ---------------------------------------------------------------- reading and scoring


def default_pool_file(run_dir: str | os.PathLike[str]) -> Path:
    """Where an optimisation starts from when no pool is named: the run's training molecules
    (``train.smi.gz``) or, for a run shipped without them (``moses``), its held-out ones."""
    pool = RunDir(run_dir).pool_file()
    if pool is None:
        raise OptimizeError(f"{run_dir} holds neither train.smi.gz nor validation.smi: name a pool (--pool FILE)")
    return pool


def read_pool(path: str | os.PathLike[str], molecular: Domain | bool, column: str | None = None) -> list[str]:
    """Strings of a pool file (.smi/.txt/.csv/.tsv, optionally .gz) read as items of the model's
    domain (pass ``model.domain``): SMILES, or one expression per line. A bool still says which:
    True for SMILES, False for lines of text."""
    domain = molecular if isinstance(molecular, Domain) else MOLECULES if molecular else TEXT
    return [text for _, text in domain.read_items(path, column)]


def _encoded(model: LatentModel, texts: list[str]) -> tuple[list[str], torch.Tensor, list[tuple[int, str]]]:
    """(texts that encode, their codes [M, D] float64, (index, reason) of each dropped one)."""
    codes, kept, failures = model.encode(texts, errors="skip")
    return [texts[i] for i in kept], codes.double(), failures


def _too_few(n_pool: int, dropped: list[tuple[int, str]], scores: Scores, kept: int) -> OptimizeError:
    """The error for a pool with fewer than 3 usable strings, saying what happened to the others."""
    parts = []
    if dropped:
        first = dropped[0][1]
        parts.append(f"{len(dropped)} do not fit the model (they do not parse or exceed its length; the first: {first})")
    unscored = scores.why_unscored()
    if unscored:
        parts.append(unscored)
    why = "; ".join(parts) or "the pool is too small"
    return OptimizeError(f"only {kept} of {n_pool} pool strings could be encoded and scored, need at least 3: {why}")


# ---------------------------------------------------------------- the loop


def optimize(
    model: LatentModel,
    pool: Sequence[str],
    out_dir: str | os.PathLike[str],
    target: Target | str | TargetRunner | Sequence[Target | str] | Objectives = "logp",
    config: OptimizeConfig = OptimizeConfig(),
    *,
    resume: bool = False,
    pool_source: str = "",
    pool_sha256: str | None = None,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) latent-space BO of ``target`` from ``pool``; returns the summary written to summary.json.

    ``pool``: the starting strings (subsampled to ``config.pool_size`` with ``config.seed``).
    ``resume``: continue the run in ``out_dir`` from its last completed iteration (the settings
    must match; ``config.iterations`` may be larger than before). Without it an existing run in
    ``out_dir`` is an error. ``pool_sha256``: the SHA-256 of the pool's file, recorded when the run
    starts and compared on ``resume`` (a resumed run keeps its pool, so another file is refused).

    ``target``: a built-in name, ``"package.module:function"`` (run in a worker process, see
    :mod:`molks.optimize.guard`), a :class:`Target`, or a runner from
    :func:`~molks.optimize.guard.open_target` (left open for the caller to close); a list or tuple
    of 2 or 3 of those names or targets (or :class:`~molks.optimize.multiobjective.Objectives`)
    optimises them together (see the module's docstring).
    """
    before = torch.get_num_threads()
    if isinstance(target, (TargetRunner, Objectives)):
        runner: TargetRunner | Objectives = target
    elif isinstance(target, (list, tuple)):
        runner = open_objectives(target, config.target_timeout)
    else:
        runner = open_target(target, config.target_timeout)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        _check_out_folder(Path(out_dir))  # before the lock writes its file there
        with folder_lock(out_dir, "optimise"):  # held for the whole run: a second process is refused
            return _optimize(
                model, pool, Path(out_dir), runner, config, resume, (pool_source, pool_sha256), progress, log or logger.info
            )
    finally:
        torch.set_num_threads(before)
        if runner is not target:
            runner.close()


def _optimize(
    model: LatentModel,
    pool: Sequence[str],
    out: Path,
    runner: TargetRunner | Objectives,
    config: OptimizeConfig,
    resume: bool,
    pool_file: tuple[str, str | None],
    progress: bool | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    target = runner.target
    pool_source, pool_sha256 = pool_file
    if isinstance(runner, Objectives) and config.surrogate.kind == "auto":
        raise OptimizeError("surrogate 'auto' picks one GP kind for one target; with several targets choose exact or variational")
    _check_out_folder(out)  # again, under the lock
    state_path = out / STATE_FILE
    model_file = model.run_dir / "model.safetensors"
    identity = RunIdentity(
        target=target.name,
        maximize=target.maximize,
        model_sha256=file_sha256(model_file) if model_file.is_file() else None,
        config=config.identity(),
    )
    if state_path.exists():
        if not resume:
            raise OptimizeError(f"{out} already holds an optimisation run; pass --resume to continue it or choose another --out")
        state = OptimizationState.load(state_path)
        if state.meta.identity != identity:
            diff = "; ".join(_differences(state.meta.identity.to_json(), identity.to_json()))
            if "restarts" not in state.meta.identity.config.get("acquisition", {}) and config.acquisition.restarts:
                diff += " (a run started before trust-region restarts existed resumes with them off: --no-restarts)"
            if "beam_width" not in state.meta.identity.config and config.beam_width:
                diff += " (a run started with sampled decodings, the default before, resumes with them: --beam-width 0)"
            raise OptimizeError(f"--resume: {out} was started with other settings: {diff}; use another --out")
        _check_same_pool(out, state.meta.pool, pool_source, pool_sha256)
        runner.check([r["string"] for r in state.rows if r["iteration"] == 0 and r["string"]])
        if state.meta.domain is None:  # a state saved before the domain was
            state.meta.domain = model.domain.name
        if not all("call" in row for row in state.rows):  # saved before rows had their call: derived once, then kept
            state.rows = [_with_call(row, call) for row, call in zip(state.rows, derive_call_indices(state.rows, state.meta))]
        log(f"resuming {out} after iteration {state.meta.completed}")
    else:
        runner.check([pool] if isinstance(pool, str) else pool)  # a broken target: found before encoding
        state = _start(model, pool, runner, config, identity, pool_file, log)
        with file_access(out, "cannot create the output directory"):
            out.mkdir(parents=True, exist_ok=True)
    # The settings of this call (more iterations, other workers on resume): the report shows them.
    state.meta.settings = {"target": target.name, **config.to_dict()}
    summary = _publish(out, state)

    ledger = OracleLedger.from_rows(state.rows, model.domain.canonical, config.budget, state.meta.oracle_calls)
    state.meta.oracle_calls = ledger.calls
    if config.budget is None:
        bar = _progress(config.iterations, state.meta.completed, progress)
    else:
        bar = _progress(config.budget, min(ledger.calls, config.budget), progress, unit="call")
    with contextlib.ExitStack() as stack:
        if bar is not None:
            from tqdm.contrib.logging import logging_redirect_tqdm

            stack.enter_context(logging_redirect_tqdm())  # log lines above the bar, not through it
            stack.callback(bar.close)
        while state.meta.completed < config.iterations and not ledger.spent and not _stalled(state, config):
            _iterate(state, model, runner, config, state.meta.completed + 1, ledger)
            summary = _publish(out, state)
            _report_iteration(state.meta.iterations[-1], config, bar, log)
            if runner.exhausted:  # saved first: --resume continues once the target is mended
                last = state.meta.iterations[-1]["target_failures"][-1]
                raise runner.stopping_error(last, f"the run stopped after iteration {state.meta.completed}, saved in {out}")
    if ledger.spent:
        log(f"budget spent: {ledger.calls} oracle calls of {config.budget} after iteration {state.meta.completed}")
    elif _stalled(state, config):
        log(f"stopped after {STALL_ITERATIONS} iterations in a row without a new item to score "
            f"({ledger.calls} oracle calls of {config.budget})")
    return summary


def _stalled(state: OptimizationState, config: OptimizeConfig) -> bool:
    """With a budget: whether the last ``STALL_ITERATIONS`` rounds all scored nothing new."""
    last = state.meta.iterations[-STALL_ITERATIONS:]
    if config.budget is None or len(last) < STALL_ITERATIONS:
        return False
    return not any(it.get("oracle_calls", 1) for it in last)  # a round of an older state: unknown, so not stalled


def _differences(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``"NAME was SAVED, now NOW"`` for every setting that differs, nested ones by dotted name
    (``config.acquisition.q was 50, now 20``), so that a refused --resume names the option."""
    found = []
    for key in sorted(set(saved) | set(now)):
        old, new = saved.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            found.append(f"{prefix}{key} was {old!r}, now {new!r}")
    return found


def _check_out_folder(out: Path) -> None:
    """Refuse an output folder that holds files but no optimisation run: the run would write its
    candidates.csv and summary.json over them."""
    if os.path.lexists(out):
        with file_access(out, "cannot use as the output directory"):
            os.stat(out)  # a symbolic-link loop or a dangling link: one line
        if not out.is_dir():
            raise OptimizeError(f"--out {out}: exists and is not a directory")
    foreign = [] if (out / STATE_FILE).exists() else foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OptimizeError(
            f"{out} is not empty and holds no optimisation run ({shown}); a run writes candidates.csv and "
            "summary.json there, so choose a new or empty --out"
        )


def _publish(out: Path, state: OptimizationState) -> dict[str, Any]:
    """Save the state, then render the report from it; returns the summary."""
    state.save(out / STATE_FILE)
    return write_report(out, state)


def _check_same_pool(out: Path, saved: PoolRecord, source: str, sha256: str | None) -> None:
    """Refuse a resume from another pool file: the run would silently go on with its old pool."""
    old = saved.file_sha256
    if sha256 and old and sha256 != old:
        raise OptimizeError(
            f"--resume: {out} was started from the pool {saved.source or '?'} (sha256 {old[:12]}...), "
            f"not {source or 'this pool'} (sha256 {sha256[:12]}...); leave out --pool or choose another --out"
        )


def _report_iteration(last: dict[str, Any], config: OptimizeConfig, bar: Any, log: Callable[[str], None]) -> None:
    """One log line (and the progress bar's step) for the iteration just finished."""
    seconds = last["seconds"]
    best = f"best {_fmt(last['best_so_far'])}" if "hypervolume" not in last else f"hypervolume {last['hypervolume']:.4g}"
    if bar is not None:
        bar.update(1 if config.budget is None else last["oracle_calls"])
        bar.set_postfix_str(f"{best}, valid {last['valid']}/{last['proposals']}")
    where = (f"{last['iteration']}/{config.iterations}" if config.budget is None
             else f"{last['iteration']} (oracle calls {last['oracle_calls_total']}/{config.budget})")
    log(
        f"iteration {where}: valid {last['valid']}/{last['proposals']}, "
        f"{best}, {seconds['total']:.1f} s (fit {seconds['fit']:.1f}, propose {seconds['propose']:.1f}, "
        f"decode {seconds['decode']:.1f}, score {seconds['score']:.1f})"
    )
    restart = last.get("restart")
    if restart:
        where_to = "the best point" if restart["center"] is None else f"row {restart['center']} ({restart['center_string']})"
        log(f"iteration {last['iteration']}: trust region restarted ({restart['reason']}: {restart['new_calls']} new oracle "
            f"calls of {restart['proposals']} proposals, length {restart['length']:.3g}), centred on {where_to}")
    if last.get("failed"):  # the target failed on some proposals: said, and the run goes on
        calls = last.get("target_failures") or []
        why = f"; {calls[-1]}" if calls else ""
        log(f"iteration {last['iteration']}: {last['failed']} proposals scored as failed ({last.get('failure_kinds')}){why}")


def _start(
    model: LatentModel,
    pool: Sequence[str],
    runner: TargetRunner | Objectives,
    config: OptimizeConfig,
    identity: RunIdentity,
    pool_file: tuple[str, str | None],
    log: Callable[[str], None],
) -> OptimizationState:
    """Iteration 0: subsample, encode and score the pool (``pool_file``: its source and the SHA-256
    of its file, recorded for a resume to compare)."""
    started = time.perf_counter()
    target = runner.target
    texts = [pool] if isinstance(pool, str) else list(pool)
    if not texts:
        raise OptimizeError("the starting pool is empty")
    if len(texts) > config.pool_size:
        pick = np.sort(np.random.default_rng(config.seed).choice(len(texts), config.pool_size, replace=False))
        texts = [texts[i] for i in pick]
    n_pool = len(texts)
    texts, Z, dropped = _encoded(model, texts)
    if dropped:
        log(f"{len(dropped)} pool strings do not parse or exceed the model's length and were left out")
    calls = len({model.domain.canonical(t) or t for t in texts})  # every distinct pool item is a call
    if config.budget is not None and calls > config.budget:
        raise OptimizeError(
            f"--budget {config.budget} is smaller than the starting pool: scoring its {calls} distinct strings "
            "takes that many oracle calls (they count, as in PMO); lower --pool-size or raise --budget"
        )
    scores = runner.score(texts, config.processes, call_size=POOL_CALL_SIZE)
    if runner.exhausted:  # nothing is written yet: the target is broken, not the pool
        raise runner.stopping_error(scores.failed_calls[-1], "when scoring the starting pool")
    scored = scores.terms
    values = _values(target, scored)
    keep = [i for i, v in enumerate(values) if scored[i] is not None and v is not None]
    if len(keep) < 3:
        raise _too_few(n_pool, dropped, scores, len(keep))
    if len(keep) < len(texts):
        log(f"{len(texts) - len(keep)} pool strings have no usable score and were left out: {scores.why_unscored()}")
    X = Z[keep]
    Y = torch.tensor([values[i] for i in keep], dtype=torch.float64)
    rows = [_row(0, texts[i], scored[i], call=call) for i, call in zip(keep, _pool_calls([texts[i] for i in keep], model))]
    if isinstance(target, Objectives):
        fill: float | list[float] = target.fill_values(Y)
    else:
        fill = float(Y.min()) if target.invalid_score is None else _values(target, [None])[0]
    box = bounding_box(X, config.acquisition.margin)
    objectives = None
    if isinstance(target, Objectives):
        ref = reference_point(Y)
        objectives = ObjectivesRecord(names=target.name, maximize=target.maximize, reference_point=ref.tolist(),
                                      reference_rule=REFERENCE_RULE, pool_hypervolume=hypervolume(Y, ref))  # fmt: skip
        log(f"reference point (values to maximise: {', '.join(target.name)}): "
            + ", ".join(f"{v:.4g}" for v in ref.tolist()) + f"; pool hypervolume {objectives.pool_hypervolume:.4g}")
    heldout: dict[str, Any] | None = None
    surrogate_kind = config.surrogate.kind
    if config.heldout and isinstance(target, Objectives):
        heldout = {name: heldout_metrics(X, Y[:, j], box, config.surrogate, seed=config.seed)
                   for j, name in enumerate(target.name)}  # fmt: skip
        for name, metrics in heldout.items():
            log(f"held-out GP metrics of {name} (10%): " + ", ".join(
                f"{k}: RMSE {m['rmse']:.3f}, LL {m['log_likelihood']:.3f}, {m['seconds']:.1f} s" for k, m in metrics.items()))
    elif config.heldout or config.surrogate.kind == "auto":
        metrics = heldout_metrics(X, Y, box, config.surrogate, seed=config.seed)
        heldout = metrics
        log("held-out GP metrics (10%): " + ", ".join(
            f"{k}: RMSE {m['rmse']:.3f}, LL {m['log_likelihood']:.3f}, {m['seconds']:.1f} s" for k, m in metrics.items()))
        if config.surrogate.kind == "auto":
            surrogate_kind = choose_surrogate(metrics)
            log(f"surrogate: {surrogate_kind} (higher held-out log-likelihood)")
    meta = RunMeta(
        identity=identity,
        molecular=model.domain.molecular,  # what states said before "domain"; kept for their readers
        domain=model.domain.name,
        objectives=objectives,
        pool=PoolRecord(source=pool_file[0], size=len(keep), sha256=hashlib.sha256("\n".join(texts).encode()).hexdigest(),
                        file_sha256=pool_file[1]),  # fmt: skip
        fill_value=fill,
        surrogate_kind=surrogate_kind,
        heldout=heldout,
        pool_seconds=time.perf_counter() - started,
        completed=0,
        oracle_calls=calls,
        trust_region=TrustRegion(config.acquisition.tr_length).to_dict(),
    )
    log(f"pool: {len(keep)} strings encoded and scored in {meta.pool_seconds:.1f} s")
    return OptimizationState(X, Y, box, rows, meta)


def _iterate(
    state: OptimizationState, model: LatentModel, runner: TargetRunner | Objectives, config: OptimizeConfig, iteration: int,
    ledger: OracleLedger,
) -> None:
    """One round: fit, propose, decode, score, append (state is updated in place). Items scored
    before take their earlier result (``ledger``); proposals over the budget are left out. Then the
    trust region is updated, and restarted after a round of few new oracle calls or when it
    collapsed (:mod:`molks.optimize.acquisition`)."""
    target = runner.target
    seed = config.seed * 1_000_003 + iteration
    acq = config.acquisition
    t0 = time.perf_counter()
    warm = state.gp if config.surrogate.warm_start else None
    multi = state.meta.objectives  # several targets: a GP each, qLogNEHVI, the hypervolume
    fit = fit_surrogate if multi is None else fit_surrogates
    surrogate = fit(
        state.X, state.Y, state.box, config.surrogate, seed=seed, kind=state.meta.surrogate_kind, warm_start=warm
    )
    state.gp = surrogate.hyperparameters()
    t1 = time.perf_counter()
    region = TrustRegion.from_dict(state.meta.trust_region)
    if multi is None:
        proposal = propose(surrogate.model, state.X, state.Y, state.box, acq, seed=seed, trust_region=region)
    else:
        ref = torch.tensor(multi.reference_point, dtype=torch.float64)
        proposal = propose_pareto(surrogate.model, state.X, state.Y, state.box, ref, acq, seed=seed, trust_region=region)
    t2 = time.perf_counter()
    if config.beam_width:
        strings = model.decode(proposal.X.float(), beam_width=config.beam_width)
    else:
        strings = model.decode_robust(proposal.X.float(), n_samples=config.decodings, seed=seed)
    t3 = time.perf_counter()
    valid = [s is not None and model.is_valid(s) for s in strings]
    batch = ledger.plan(strings, valid)
    calls_before = ledger.calls
    scores = runner.score(batch.to_score, 1) if batch.to_score else Scores()
    ledger.record(batch, scores.terms, scores.failures)
    scored, failures = batch.results(len(strings), scores.terms, scores.failures)
    kept = batch.kept(len(strings))  # all but the proposals over the budget: those were not evaluated
    calls = _batch_calls(batch, kept, calls_before)
    proposed = len(strings)
    strings, scored, failures = [strings[i] for i in kept], [scored[i] for i in kept], [failures[i] for i in kept]
    codes = proposal.X[kept].to(torch.float64)
    values = _values(target, scored)
    fill = state.meta.fill_value
    Y_new = torch.tensor([fill if v is None else v for v in values], dtype=torch.float64)
    t4 = time.perf_counter()

    if multi is None:  # better than the region's centre: the best point, or after a restart its local run's best
        best_before = float(state.Y[region.center_index(state.Y)])
        improved = bool(any(v is not None and v > best_before for v in values))
    else:  # the hypervolume of the valid values, before and with this batch
        valid_rows = torch.tensor([row["valid"] for row in state.rows], dtype=torch.bool)
        new = [v for v in values if v is not None]
        before = hypervolume(state.Y[valid_rows], ref)
        after = hypervolume(torch.cat([state.Y[valid_rows], torch.tensor(new, dtype=torch.float64).reshape(-1, state.Y.shape[1])]), ref)
        improved = after > before
    first_new = len(state.X)
    state.X = torch.cat([state.X, codes])
    state.Y = torch.cat([state.Y, Y_new])
    state.rows.extend(_row(iteration, s, r, f, c) for s, r, f, c in zip(strings, scored, failures, calls))
    restart = None
    if acq.region == "trust-region":
        region.history.append(region.length)
        collapsed = region.update(improved, acq)
        if multi is None:
            region.follow(state.Y, first_new)
        restart = _restart(state, region, acq, iteration, proposal.bounds, collapsed, batch, proposed, multi is None)
    best = state.best(pool=False) if multi is None else None
    state.meta.trust_region = region.to_dict()
    state.meta.completed = iteration
    state.meta.oracle_calls = ledger.calls
    state.meta.iterations.append({
        "iteration": iteration,
        "proposals": len(strings),
        "valid": sum(r is not None for r in scored),
        "improved": improved,
        "best_so_far": None if best is None else best["score"],
        **({} if multi is None else {"hypervolume": after}),
        "acq_value": proposal.acq_value,
        "region_volume_fraction": float(((proposal.bounds[1] - proposal.bounds[0]) / (state.box[1] - state.box[0])).log().sum().exp()),
        "failed": sum(f is not None for f in failures),
        "failure_kinds": ", ".join(f"{n} {kind}" for kind, n in scores.kinds.items()),
        "target_failures": scores.failed_calls,
        "oracle_calls": len(batch.to_score),
        "oracle_calls_total": ledger.calls,
        "repeats": len(batch.cached) + len(batch.waiting) - len(batch.to_score),
        "over_budget": len(batch.over_budget),
        "restart": restart,
        "surrogate": {"kind": surrogate.kind, "n_points": surrogate.n_points, "n_fit": surrogate.n_fit},
        "seconds": {"fit": t1 - t0, "propose": t2 - t1, "decode": t3 - t2, "score": t4 - t3, "total": t4 - t0},
    })  # fmt: skip


def _restart(
    state: OptimizationState, region: TrustRegion, acq: AcquisitionConfig, iteration: int, bounds: torch.Tensor,
    collapsed: bool, batch: Batch, proposed: int, recentre: bool,
) -> dict[str, Any] | None:
    """Restart ``region`` (abandoning ``bounds`` [2, D], the region of this round) when restarts are on
    and this round made fewer new oracle calls than ``acq.restart_yield`` of its ``proposed``
    proposals (those the budget left unscored aside), or the region collapsed; returns the restart's
    record (None: no restart). ``recentre``: move the centre (one target); several targets keep
    their region's centre rule (the point of largest hypervolume contribution) and only reset the length."""
    if not acq.restarts:
        return None
    eligible = proposed - len(batch.over_budget)
    new = len(batch.to_score)
    low_yield = eligible > 0 and new < acq.restart_yield * eligible
    if not (low_yield or collapsed):
        return None
    reason = "collapsed" if collapsed else "low-yield"
    if collapsed and low_yield:
        reason = "collapsed, low-yield"
    center = None
    if recentre:
        valid = torch.tensor([bool(row["valid"]) for row in state.rows], dtype=torch.bool)
        center = restart_center(state.X, state.Y, valid, [*region.abandoned(), bounds.to(torch.float64)])
    record = region.restart(acq, iteration=iteration, reason=reason, bounds=bounds, center=center, n_rows=len(state.X))
    return {**record, "new_calls": new, "proposals": eligible,
            "center_string": None if center is None else state.rows[center]["string"]}  # fmt: skip


def _batch_calls(batch: Batch, kept: Sequence[int], before: int) -> list[int | None]:
    """Per kept proposal, the oracle call that scored it (1-based, ``before`` calls made earlier):
    the first proposal of each new item sent to the target; None for the rest (cached, a repeat in
    the batch, invalid)."""
    first: dict[int, int] = {}  # index into to_score -> its first proposal
    for i, j in batch.waiting.items():
        first.setdefault(j, i)
    call_of = {i: before + j + 1 for j, i in first.items()}
    return [call_of.get(i) for i in kept]


def _pool_calls(texts: Sequence[str], model: LatentModel) -> list[int | None]:
    """Per pool row, its oracle call (1-based): the first row of each distinct item (canonical form)
    in the pool's order, as the ledger and :func:`~molks.optimize.state.derive_call_indices` count."""
    seen: set[str] = set()
    calls: list[int | None] = []
    for text in texts:
        key = model.domain.canonical(text) or text
        calls.append(None if key in seen else len(seen) + 1)
        seen.add(key)
    return calls


def _with_call(row: dict[str, Any], call: int | None) -> dict[str, Any]:
    """``row`` with its oracle call after ``valid``, where rows written since calls were indexed hold it."""
    head = {k: row[k] for k in ("iteration", "string", "valid") if k in row}
    return {**head, "call": call, **{k: v for k, v in row.items() if k not in head and k != "call"}}


def _values(target: Target | Objectives, scored: Sequence[Terms | None]) -> list[Any]:
    """Values to maximise of scored texts (None: left out): the one place scores become values
    (for several targets a list per text, one value per target)."""
    if isinstance(target, Objectives):
        return target.values(scored)
    return target.objective([None if terms is None else terms["score"] for terms in scored])


def _row(
    iteration: int, text: str | None, terms: Terms | None, failure: str | None = None, call: int | None = None
) -> dict[str, Any]:
    """A row of the state: iteration, string, valid (whether it scored), the oracle call that scored it
    (1-based; None: a repeat, invalid, or not scored), then its score terms; and where the target
    failed on it, ``failure``: why."""
    row = {"iteration": iteration, "string": text if text is not None else "", "valid": terms is not None, "call": call,
           **(terms or {})}  # fmt: skip
    if failure is not None:
        row["failure"] = failure
    return row


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _progress(total: int, done: int, enabled: bool | None, unit: str = "iter") -> Any:
    """The bar of iterations (or oracle calls), or None where none shows (no terminal, disabled, nothing left to do)."""
    if done >= total or not showing(enabled):
        return None
    return progress_bar(total, "optimize", enabled, initial=done, unit=unit)
