"""The latent-space Bayesian optimisation loop, resumable after every iteration.

    encode the pool and score it -> fit a GP -> propose q codes (qLogEI) -> decode each robustly
    -> score -> append -> refit ... for ``iterations`` rounds.

Everything an iteration needs is derived from (seed, iteration) and the state saved after the
previous one (every evaluated code and value, the trust region), so a killed run resumed with
``resume=True`` writes exactly the ``candidates.csv`` an uninterrupted run writes.

Files in ``out_dir``, all rewritten atomically after every iteration:

- ``state.safetensors``  codes, values and bookkeeping; the source of truth for resuming
- ``candidates.csv``     every evaluated code: iteration (0 = the starting pool), latent
  columns z0.., string, valid, score, and for ``logp`` its terms (logp, sa, cycle)
- ``summary.json``       top-k proposals, fraction valid, average valid score, seconds per
  iteration and phase, the settings, held-out GP metrics when computed
- ``best_molecules.png`` RDKit grid of the best proposals with their scores (expressions:
  the same as a text table)
- ``best_score.png``     best score found against the number of evaluated proposals

Invalid proposals (not decodable, or not a molecule RDKit reads) are kept in the GP's data
with the worst value of the starting pool (as the Grammar VAE protocol does), so the GP learns
to avoid regions that do not decode; targets with an ``invalid_score`` use that instead.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from molks.api import LatentModel
from molks.errors import MolksError, file_access
from molks.files import atomic_write, atomic_write_bytes, atomic_write_text, file_sha256
from molks.grammar import GrammarError
from molks.optimize.acquisition import AcquisitionConfig, TrustRegion, bounding_box, propose
from molks.optimize.surrogate import SurrogateConfig, choose_surrogate, fit_surrogate, heldout_metrics
from molks.optimize.targets import Target, check_target, get_target, penalized_logp_terms, score_many
from molks.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["OptimizeConfig", "OptimizeError", "default_pool_file", "file_sha256", "optimize", "read_pool", "STATE_FILE"]

STATE_FILE = "state.safetensors"
STATE_VERSION = 1
LOGP_TERMS = ("logp", "sa", "cycle")
logger = logging.getLogger("molks.optimize")


class OptimizeError(MolksError, ValueError):
    """The optimisation cannot start or resume (bad settings, empty pool, mismatched state)."""


@dataclass(frozen=True)
class OptimizeConfig:
    """Settings of one optimisation run.

    iterations: rounds of fit -> propose -> decode -> score (the published budget: 5 x 50).
    decodings: sampled decodings per proposal on top of the greedy one (the published protocol
        uses 500; 100 keeps an iteration within a minute on a 2-core CPU).
    pool_size: the starting pool is subsampled (with ``seed``) to at most this many strings.
    heldout: also report held-out RMSE / log-likelihood of the GP kinds (10% split) at the start;
        always done when ``surrogate.kind == "auto"``, which then picks the kind.
    processes: workers for scoring the pool (None: all cores).
    threads: torch threads while the loop runs (restored after; None: leave as is). One is the
        fastest for these matrix sizes on a 2-core CPU, and 4-8x faster than two when other
        processes share the cores. Floating-point sums depend on it, so a resumed run equals an
        uninterrupted one bit for bit only with the same number of threads.
    """

    iterations: int = 5
    decodings: int = 100
    pool_size: int = 2000
    seed: int = 0
    top_k: int = 10
    heldout: bool = False
    processes: int | None = None
    threads: int | None = 1
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)

    def __post_init__(self) -> None:
        for name in ("iterations", "pool_size", "top_k"):
            if int(getattr(self, name)) < 1:
                raise OptimizeError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.decodings < 0:
            raise OptimizeError(f"decodings must be >= 0, got {self.decodings}")
        if self.threads is not None and self.threads < 1:
            raise OptimizeError(f"threads must be at least 1 (or None), got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share (everything but the number of iterations and workers)."""
        d = self.to_dict()
        del d["iterations"], d["processes"], d["threads"]
        return d


# ---------------------------------------------------------------- reading and scoring


def default_pool_file(run_dir: str | os.PathLike[str]) -> Path:
    """Where an optimisation starts from when no pool is named: the run's training molecules
    (``train.smi.gz``) or, for a run shipped without them (``moses``), its held-out ones."""
    run = Path(run_dir)
    for name in ("train.smi.gz", "validation.smi"):
        if (run / name).is_file():
            return run / name
    raise OptimizeError(f"{run} holds neither train.smi.gz nor validation.smi: name a pool (--pool FILE)")


def read_pool(path: str | os.PathLike[str], molecular: bool, column: str | None = None) -> list[str]:
    """Strings of a pool file (.smi/.txt/.csv/.tsv, optionally .gz): SMILES, or one expression per line."""
    from molks.dataset.io import load_texts

    return [text for _, text in load_texts(path, column=column, whole_lines=not molecular)]


def _logp_terms_batch(smiles: list[str]) -> list[dict[str, float] | None]:
    return [None if t is None else dict(t) for t in map(penalized_logp_terms, smiles)]


def _score_rows(target: Target, texts: list[str], processes: int | None) -> list[dict[str, float] | None]:
    """{"score", and for logp its terms} per text (None: invalid), in parallel for large batches."""
    if target.name == "logp":
        # score_many's process pool maps any picklable list -> list function; the terms include the score.
        return score_many(Target("logp-terms", _logp_terms_batch), texts, processes)  # type: ignore[arg-type]
    return [None if s is None else {"score": s} for s in score_many(target, texts, processes)]


def _encodable(model: LatentModel, texts: list[str]) -> tuple[list[str], torch.Tensor, int]:
    """(texts that encode, their codes [M, D] float64, number dropped)."""
    try:
        return texts, model.encode(texts).double(), 0
    except GrammarError:
        pass
    keep = []
    for text in texts:  # slow path: find the items the grammar or the model's length limit rejects
        try:
            model.sequences([text])
        except GrammarError:
            continue
        keep.append(text)
    return keep, (model.encode(keep).double() if keep else torch.empty(0, model.latent_dim, dtype=torch.float64)), len(texts) - len(keep)


# ---------------------------------------------------------------- state


@dataclass
class _State:
    """Everything evaluated so far; rows align with X and Y."""

    X: torch.Tensor  # [N, D] float64 codes
    Y: torch.Tensor  # [N] float64 values to maximise (invalid: fill value)
    box: torch.Tensor  # [2, D] bounding box of the pool's codes
    rows: list[dict[str, Any]]  # iteration, string, valid, score, terms
    meta: dict[str, Any]  # identity, completed, fill, trust region, timings, held-out metrics
    gp: dict[str, torch.Tensor] = field(default_factory=dict)  # last fit's hyperparameters (warm start)

    def save(self, path: Path) -> None:
        tensors = {"X": self.X, "Y": self.Y, "box": self.box, **{f"gp.{k}": v for k, v in self.gp.items()}}
        save_checkpoint(path, tensors, {**self.meta, "rows": self.rows})

    @classmethod
    def load(cls, path: Path) -> _State:
        tensors, meta, _ = load_checkpoint(path)
        try:
            rows = meta.pop("rows")
            gp = {k[len("gp."):]: v for k, v in tensors.items() if k.startswith("gp.")}
            state = cls(tensors["X"], tensors["Y"], tensors["box"], rows, meta, gp)
        except KeyError as err:
            raise CheckpointError(f"{path}: not an optimisation state (missing {err})") from None
        if meta.get("version") != STATE_VERSION or len(rows) != len(state.X) or len(state.Y) != len(state.X):
            raise CheckpointError(f"{path}: inconsistent or unsupported optimisation state")
        return state


# ---------------------------------------------------------------- the loop


def optimize(
    model: LatentModel,
    pool: Sequence[str],
    out_dir: str | os.PathLike[str],
    target: Target | str = "logp",
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
    """
    before = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _optimize(
            model, pool, Path(out_dir), target, config, resume, (pool_source, pool_sha256), progress, log or logger.info
        )
    finally:
        torch.set_num_threads(before)


def _optimize(
    model: LatentModel,
    pool: Sequence[str],
    out: Path,
    target: Target | str,
    config: OptimizeConfig,
    resume: bool,
    pool_file: tuple[str, str | None],
    progress: bool | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    target = get_target(target) if isinstance(target, str) else target
    pool_source, pool_sha256 = pool_file
    state_path = out / STATE_FILE
    model_file = model.run_dir / "model.safetensors"
    identity = {
        "target": target.name,
        "maximize": target.maximize,
        "model_sha256": file_sha256(model_file) if model_file.is_file() else None,
        "config": config.identity(),
    }
    if state_path.exists():
        if not resume:
            raise OptimizeError(f"{out} already holds an optimisation run; pass --resume to continue it or choose another --out")
        state = _State.load(state_path)
        if state.meta["identity"] != identity:
            saved = state.meta["identity"]
            diff = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
            raise OptimizeError(f"--resume: {out} was started with different {', '.join(diff)}; use another --out")
        _check_same_pool(out, state.meta["pool"], pool_source, pool_sha256)
        check_target(target, [r["string"] for r in state.rows if r["iteration"] == 0 and r["string"]])
        log(f"resuming {out} after iteration {state.meta['completed']}")
    else:
        check_target(target, [pool] if isinstance(pool, str) else pool)  # a broken target: found before encoding
        state = _start(model, pool, target, config, identity, pool_source, log)
        state.meta["pool"]["file_sha256"] = pool_sha256
        with file_access(out, "cannot create the output directory"):
            out.mkdir(parents=True, exist_ok=True)
        state.save(state_path)
        _write_outputs(out, state, model, target, config)

    if state.meta["completed"] >= config.iterations:
        _write_outputs(out, state, model, target, config)  # a resume with nothing left to do: refresh the files
    bar = _progress(config.iterations, state.meta["completed"], progress)
    with contextlib.ExitStack() as stack:
        if bar is not None:
            from tqdm.contrib.logging import logging_redirect_tqdm

            stack.enter_context(logging_redirect_tqdm())  # log lines above the bar, not through it
            stack.callback(bar.close)
        _run_iterations(state, state_path, out, model, target, config, bar, log)
    return _summary(state, target, config)


def _check_same_pool(out: Path, saved: dict[str, Any], source: str, sha256: str | None) -> None:
    """Refuse a resume from another pool file: the run would silently go on with its old pool."""
    old = saved.get("file_sha256")
    if sha256 and old and sha256 != old:
        raise OptimizeError(
            f"--resume: {out} was started from the pool {saved.get('source') or '?'} (sha256 {old[:12]}...), "
            f"not {source or 'this pool'} (sha256 {sha256[:12]}...); leave out --pool or choose another --out"
        )


def _run_iterations(
    state: _State,
    state_path: Path,
    out: Path,
    model: LatentModel,
    target: Target,
    config: OptimizeConfig,
    bar: Any,
    log: Callable[[str], None],
) -> None:
    while state.meta["completed"] < config.iterations:
        iteration = state.meta["completed"] + 1
        _iterate(state, model, target, config, iteration)
        state.save(state_path)
        _write_outputs(out, state, model, target, config)
        last = state.meta["iterations"][-1]
        message = (
            f"iteration {iteration}/{config.iterations}: valid {last['valid']}/{last['proposals']}, "
            f"best {_fmt(last['best_so_far'])}, {last['seconds']['total']:.1f} s "
            f"(fit {last['seconds']['fit']:.1f}, propose {last['seconds']['propose']:.1f}, "
            f"decode {last['seconds']['decode']:.1f}, score {last['seconds']['score']:.1f})"
        )
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"best {_fmt(last['best_so_far'])}, valid {last['valid']}/{last['proposals']}")
        log(message)


def _start(
    model: LatentModel,
    pool: Sequence[str],
    target: Target,
    config: OptimizeConfig,
    identity: dict[str, Any],
    pool_source: str,
    log: Callable[[str], None],
) -> _State:
    """Iteration 0: subsample, encode and score the pool."""
    started = time.perf_counter()
    texts = [pool] if isinstance(pool, str) else list(pool)
    if not texts:
        raise OptimizeError("the starting pool is empty")
    if len(texts) > config.pool_size:
        pick = np.sort(np.random.default_rng(config.seed).choice(len(texts), config.pool_size, replace=False))
        texts = [texts[i] for i in pick]
    texts, Z, dropped = _encodable(model, texts)
    if dropped:
        log(f"{dropped} pool strings do not parse or exceed the model's length and were left out")
    scored = _score_rows(target, texts, config.processes)
    values = target.objective([None if r is None else r["score"] for r in scored])
    keep = [i for i, (r, v) in enumerate(zip(scored, values)) if r is not None and v is not None]
    if len(keep) < 3:
        raise OptimizeError(f"only {len(keep)} pool strings could be encoded and scored; need at least 3")
    if len(keep) < len(texts):
        log(f"{len(texts) - len(keep)} pool strings score as invalid and were left out")
    X = Z[keep]
    Y = torch.tensor([values[i] for i in keep], dtype=torch.float64)
    rows = [_row(0, texts[i], True, scored[i]) for i in keep]
    fill = float(Y.min()) if target.invalid_score is None else float(target.objective([None])[0])
    box = bounding_box(X, config.acquisition.margin)
    meta: dict[str, Any] = {
        "version": STATE_VERSION,
        "identity": identity,
        "molecular": model.is_molecular,
        "completed": 0,
        "fill_value": fill,
        "pool": {"source": pool_source, "size": len(keep), "sha256": hashlib.sha256("\n".join(texts).encode()).hexdigest()},
        "surrogate_kind": config.surrogate.kind,
        "trust_region": TrustRegion(config.acquisition.tr_length).to_dict(),
        "iterations": [],
        "pool_seconds": 0.0,
        "heldout": None,
    }
    if config.heldout or config.surrogate.kind == "auto":
        metrics = heldout_metrics(X, Y, box, config.surrogate, seed=config.seed)
        meta["heldout"] = metrics
        log("held-out GP metrics (10%): " + ", ".join(
            f"{k}: RMSE {m['rmse']:.3f}, LL {m['log_likelihood']:.3f}, {m['seconds']:.1f} s" for k, m in metrics.items()))
        if config.surrogate.kind == "auto":
            meta["surrogate_kind"] = choose_surrogate(metrics)
            log(f"surrogate: {meta['surrogate_kind']} (higher held-out log-likelihood)")
    meta["pool_seconds"] = time.perf_counter() - started
    log(f"pool: {len(keep)} strings encoded and scored in {meta['pool_seconds']:.1f} s")
    return _State(X, Y, box, rows, meta)


def _iterate(state: _State, model: LatentModel, target: Target, config: OptimizeConfig, iteration: int) -> None:
    """One round: fit, propose, decode, score, append (state is updated in place)."""
    seed = config.seed * 1_000_003 + iteration
    acq = config.acquisition
    t0 = time.perf_counter()
    warm = state.gp if config.surrogate.warm_start else None
    surrogate = fit_surrogate(
        state.X, state.Y, state.box, config.surrogate, seed=seed, kind=state.meta["surrogate_kind"], warm_start=warm
    )
    state.gp = surrogate.hyperparameters()
    t1 = time.perf_counter()
    region = TrustRegion.from_dict(state.meta["trust_region"])
    proposal = propose(surrogate.model, state.X, state.Y, state.box, acq, seed=seed, trust_region=region)
    t2 = time.perf_counter()
    with _quiet_rdkit():  # RDKit would log every unreadable sampled decoding
        strings = model.decode_robust(proposal.X.float(), n_samples=config.decodings, seed=seed)
        t3 = time.perf_counter()
        valid = [s is not None and model.is_valid(s) for s in strings]
    candidates = [s for s, ok in zip(strings, valid) if ok]
    scored_valid = iter(_score_rows(target, candidates, 1) if candidates else [])
    scored = [next(scored_valid) if ok else None for ok in valid]
    values = target.objective([None if r is None else r["score"] for r in scored])
    fill = state.meta["fill_value"]
    Y_new = torch.tensor([fill if v is None else v for v in values], dtype=torch.float64)
    t4 = time.perf_counter()

    best_before = float(state.Y.max())
    improved = bool(any(v is not None and v > best_before for v in values))
    if acq.region == "trust-region":
        region.history.append(region.length)
        region.update(improved, acq)
    state.X = torch.cat([state.X, proposal.X.to(torch.float64)])
    state.Y = torch.cat([state.Y, Y_new])
    state.rows.extend(_row(iteration, s, r is not None, r) for s, r in zip(strings, scored))
    valid_scores = [r["score"] for r in scored if r is not None]
    state.meta["trust_region"] = region.to_dict()
    state.meta["completed"] = iteration
    state.meta["iterations"].append({
        "iteration": iteration,
        "proposals": len(strings),
        "valid": len(valid_scores),
        "improved": improved,
        "best_so_far": _best_proposal_score(state.rows, target),
        "acq_value": proposal.acq_value,
        "region_volume_fraction": float(((proposal.bounds[1] - proposal.bounds[0]) / (state.box[1] - state.box[0])).log().sum().exp()),
        "surrogate": {"kind": surrogate.kind, "n_points": surrogate.n_points, "n_fit": surrogate.n_fit},
        "seconds": {"fit": t1 - t0, "propose": t2 - t1, "decode": t3 - t2, "score": t4 - t3, "total": t4 - t0},
    })


def _quiet_rdkit() -> Any:
    from rdkit import rdBase

    return rdBase.BlockLogs()


def _row(iteration: int, text: str | None, valid: bool, scored: dict[str, float] | None) -> dict[str, Any]:
    row: dict[str, Any] = {"iteration": iteration, "string": text if text is not None else "", "valid": valid}
    row.update(scored or {})
    return row


def _better(target: Target) -> Callable[[float, float], bool]:
    return (lambda a, b: a > b) if target.maximize else (lambda a, b: a < b)


def _best_proposal_score(rows: list[dict[str, Any]], target: Target) -> float | None:
    scores = [r["score"] for r in rows if r["iteration"] > 0 and r["valid"]]
    if not scores:
        return None
    return max(scores) if target.maximize else min(scores)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# ---------------------------------------------------------------- outputs


def _summary(state: _State, target: Target, config: OptimizeConfig) -> dict[str, Any]:
    proposals = [r for r in state.rows if r["iteration"] > 0]
    valid = [r for r in proposals if r["valid"]]
    sign = 1.0 if target.maximize else -1.0
    best: dict[str, dict[str, Any]] = {}
    key = _canonical_smiles if state.meta.get("molecular") else (lambda text: text)
    for r in sorted(valid, key=lambda r: (-sign * r["score"], r["iteration"])):
        best.setdefault(key(r["string"]), {"string": r["string"], "score": r["score"], "iteration": r["iteration"],
                                      **{k: r[k] for k in LOGP_TERMS if k in r}})
    pool_scores = [r["score"] for r in state.rows if r["iteration"] == 0]
    iterations = state.meta["iterations"]
    return {
        "target": target.name,
        "maximize": target.maximize,
        "iterations_completed": state.meta["completed"],
        "proposals": len(proposals),
        "valid_proposals": len(valid),
        "fraction_valid": len(valid) / len(proposals) if proposals else None,
        "average_valid_score": float(np.mean([r["score"] for r in valid])) if valid else None,
        "top": list(best.values())[: config.top_k],
        "best_pool_score": (max(pool_scores) if target.maximize else min(pool_scores)) if pool_scores else None,
        "pool": state.meta["pool"],
        "surrogate_kind": state.meta["surrogate_kind"],
        "heldout_metrics": state.meta["heldout"],
        "seconds_pool": state.meta["pool_seconds"],
        "seconds_per_iteration": [it["seconds"]["total"] for it in iterations],
        "iterations": iterations,
        "trust_region": state.meta["trust_region"] if config.acquisition.region == "trust-region" else None,
        "settings": {"target": target.name, **config.to_dict()},
        "note": f"each proposal decoded greedily plus {config.decodings} sampled decodings, the most frequent valid string kept",
    }


def _canonical_smiles(smiles: str) -> str:
    """RDKit's canonical form, so that one molecule written two ways is listed once."""
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    return smiles if mol is None else Chem.MolToSmiles(mol)


def _write_outputs(out: Path, state: _State, model: LatentModel, target: Target, config: OptimizeConfig) -> None:
    atomic_write_text(out / "candidates.csv", _candidates_csv(state, target))
    summary = _summary(state, target, config)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    _plot_best_score(out / "best_score.png", state, target)
    if model.is_molecular:
        _draw_molecules(out / "best_molecules.png", summary["top"][:12])
    else:
        _draw_text_table(out / "best_molecules.png", summary["top"][:12])


def _candidates_csv(state: _State, target: Target) -> str:
    dim = state.X.shape[1]
    extra = list(LOGP_TERMS) if target.name == "logp" else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["iteration", *(f"z{j}" for j in range(dim)), "string", "valid", "score", *extra])
    for x, row in zip(state.X.tolist(), state.rows):
        score = row.get("score")
        writer.writerow([
            row["iteration"], *(f"{v:.8g}" for v in x), row["string"], int(row["valid"]),
            "" if score is None else repr(float(score)), *("" if row.get(k) is None else repr(float(row[k])) for k in extra),
        ])
    return buffer.getvalue()


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure drawn with Agg, without pyplot: the global backend (a notebook's) stays as it is."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _save_figure(fig: Any, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


def _plot_best_score(path: Path, state: _State, target: Target) -> None:
    better = _better(target)
    xs, ys, best = [], [], None
    for n, row in enumerate((r for r in state.rows if r["iteration"] > 0), start=1):
        if row["valid"] and (best is None or better(row["score"], best)):
            best = row["score"]
        if best is not None:
            xs.append(n)
            ys.append(best)
    fig = _figure(5, 3.5)
    ax = fig.subplots()
    if xs:
        ax.step(xs, ys, where="post", label="best proposal")
    pool = [r["score"] for r in state.rows if r["iteration"] == 0]
    if pool:
        ax.axhline(max(pool) if target.maximize else min(pool), color="grey", linestyle="--", label="best in pool")
    ax.set_xlabel("evaluated proposals")
    ax.set_ylabel(f"{target.name} score" + ("" if target.maximize else " (lower is better)"))
    ax.legend(loc="best")
    fig.tight_layout()
    _save_figure(fig, path)


def _draw_molecules(path: Path, top: list[dict[str, Any]]) -> None:
    from rdkit import Chem, rdBase
    from rdkit.Chem.Draw import rdMolDraw2D

    mols, legends = [], []
    with rdBase.BlockLogs():
        for item in top:
            mol = Chem.MolFromSmiles(item["string"])
            if mol is not None:
                mols.append(mol)
                legends.append(f"{item['score']:.2f}")
    if not mols:
        _draw_text_table(path, [])
        return
    # The grid MolsToGridImage draws, via the drawer itself: in a notebook RDKit's IPython hooks
    # make MolsToGridImage return a display object instead of a PIL image.
    per_row, size = min(4, len(mols)), 250
    rows = (len(mols) + per_row - 1) // per_row
    drawer = rdMolDraw2D.MolDraw2DCairo(per_row * size, rows * size, size, size)
    drawer.DrawMolecules(mols, legends=legends)
    drawer.FinishDrawing()
    atomic_write_bytes(path, drawer.GetDrawingText())


def _draw_text_table(path: Path, top: list[dict[str, Any]]) -> None:
    lines = ["   score   string", *(f"{item['score']:8.3f}   {item['string']}" for item in top)]
    if not top:
        lines = ["no valid proposals yet"]
    fig = _figure(8, 0.35 * len(lines) + 0.6)
    fig.text(0.02, 0.98, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=10)
    _save_figure(fig, path)


def _progress(total: int, done: int, enabled: bool | None) -> Any:
    if enabled is False or done >= total:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="optimize", unit="iter", file=sys.stderr,
                disable=None if enabled is None else False)

