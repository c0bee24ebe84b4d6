"""The end-to-end demo behind ``molks demo``: model -> evaluation -> logP optimisation -> report.

>>> from molks.demo import run_demo
>>> report_dir = run_demo("runs/demo")          # doctest: +SKIP
>>> sorted(p.name for p in report_dir.iterdir())  # doctest: +SKIP
['.molks-demo', 'best_molecules.png', 'best_score.png', 'optimize', 'report.json', 'samples.png']

Steps (each prints a progress line):

1. the model: the shipped ``moses`` (default), any run directory, or, with ``train=True``,
   a small GMM model trained here on a subset of the embedded MOSES sample;
2. :func:`molks.evaluation.evaluate`: reconstruction of held-out molecules, validity /
   uniqueness / novelty of prior samples, KS/CV distance to the prior; ``samples.png``;
3. :func:`molks.optimize.loop.optimize`: latent-space BO of penalised logP for two iterations,
   starting from the model's training molecules (held-out ones for a model shipped without
   them, as ``molks optimize`` does; files in ``optimize/``);
4. ``report.json``: the metrics, the optimisation summary, the equivalent ``molks`` commands,
   and notes on anything that came out empty (a model whose samples are all invalid gives a
   report that says so, not a crash); ``best_molecules.png`` and ``best_score.png`` are copied
   next to it.

``quick=True`` shrinks every step (for tests and CI: well under a minute on 2 CPU cores);
the default settings take a few minutes, and ``train=True`` adds the training time (about
5-10 minutes for 2 epochs on 10,000 molecules on 2 cores).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from molks.data_files import embedded_data_file
from molks.decoding import DEFAULT_BEAM_WIDTH
from molks.errors import InputError, file_access
from molks.models import DEFAULT_MODEL
from molks.files import atomic_write_text

if TYPE_CHECKING:
    from molks.api import LatentModel

__all__ = ["DEMO_MARKER", "DemoError", "DemoSettings", "FULL", "QUICK", "REPORT_FILES", "run_demo", "with_overrides"]

DEMO_MARKER = ".molks-demo"  # written first, so a later demo may replace this directory's contents
REPORT_FILES = ("report.json", "samples.png", "best_molecules.png", "best_score.png")
# Everything a demo writes; only these are removed when a demo directory is reused.
_OWNED = (*REPORT_FILES, "optimize", "model", "train_data.smi", "held_out.smi")


class DemoError(InputError):
    """The demo cannot run (output directory in use by something else, a model that is not molecular, ...)."""


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo's steps.

    n_samples: prior (and ex-post) samples decoded by the evaluation.
    held_out: held-out molecules reconstructed (None: the run's whole validation set; 500 keep the
        beam search's share of the demo under a minute).
    iterations / q / beam_width / pool_size: the optimisation (rounds, proposals per round, the
        beam search width that decodes each proposal, starting molecules); ``beam_width`` is
        ``molks optimize``'s default, :data:`~molks.decoding.DEFAULT_BEAM_WIDTH` (0: greedily plus
        ``OptimizeConfig``'s default number of sampled decodings, the Grammar VAE protocol).
    train_size / epochs / batch_size / tiny_network: training with ``train=True``
        (``tiny_network``: a network of a few thousand weights instead of the fast preset).
    """

    n_samples: int = 300
    held_out: int | None = 500
    iterations: int = 2
    q: int = 20
    beam_width: int = DEFAULT_BEAM_WIDTH
    pool_size: int = 1000
    train_size: int = 10_000
    epochs: int = 2
    batch_size: int = 128
    tiny_network: bool = False


FULL = DemoSettings()
QUICK = DemoSettings(
    n_samples=50, held_out=200, iterations=2, q=5, beam_width=DEFAULT_BEAM_WIDTH, pool_size=200,
    train_size=400, epochs=1, batch_size=32, tiny_network=True,
)  # fmt: skip


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_demo(
    out_dir: str | os.PathLike[str] = "runs/demo",
    *,
    model: str = DEFAULT_MODEL,
    train: bool = False,
    quick: bool = False,
    settings: DemoSettings | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool | None = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Run the demo and return the report directory (``out_dir``) holding ``report.json``.

    model: a shipped model name or a run directory (ignored with ``train=True``).
    train: train a small model on the embedded MOSES sample instead of loading one.
    quick: the :data:`QUICK` sizes instead of :data:`FULL`; ``settings`` overrides both.
    progress: progress bars for training and optimisation (None: when stderr is a terminal).
    log: where progress lines go (default: stderr).
    """
    log = log or _stderr
    settings = settings or (QUICK if quick else FULL)
    out = Path(out_dir)
    _check_out(out)
    started = time.perf_counter()
    notes: list[str] = []
    commands: dict[str, str] = {}
    seconds: dict[str, float] = {}

    # 1. The model: one that cannot be loaded, or does not model molecules, ends the demo before it writes.
    t = time.perf_counter()
    if train:
        _prepare(out)
        log(f"[1/4] training a small model on {settings.train_size} molecules of the embedded MOSES sample "
            f"({settings.epochs} epoch{'s' * (settings.epochs != 1)})")
        latent, training, commands["train"] = _train(out, settings, seed, device, progress, log)
        model_info = {"source": "trained", "model": str(latent.run_dir), "training": training}
    else:
        log(f"[1/4] loading model {model}")
        import molks

        latent = molks.load(model, device=device)
        if not latent.is_molecular:
            raise DemoError(f"the demo optimises logP of molecules, but {model} models {latent.grammar.name} strings")
        _prepare(out)
        shipped = not Path(model).exists()
        model_info = {"source": "shipped" if shipped else "run directory", "model": model, "training": None}
    model_ref = str(latent.run_dir) if train else model
    model_info.update(_describe(latent))
    seconds["model"] = time.perf_counter() - t
    log(f"      {latent!r}")

    # 2. Evaluation.
    t = time.perf_counter()
    log(f"[2/4] evaluating: reconstruction of held-out molecules, {settings.n_samples} samples ({latent.default_source})")
    evaluation, commands["evaluate"] = _evaluate(latent, model_ref, out, settings, seed)
    seconds["evaluation"] = time.perf_counter() - t
    log(f"      greedy decoding: reconstruction {_percent(evaluation['reconstruction'])}, sample validity "
        f"{_percent(evaluation['prior_validity'])}")
    log(f"      beam search ({evaluation['beam_width']}): reconstruction {_percent(evaluation['reconstruction_beam'])}, "
        f"sample validity {_percent(evaluation['prior_beam_validity'])}, uniqueness "
        f"{_percent(evaluation['prior_beam_uniqueness'])}, novelty {_percent(evaluation['prior_beam_novelty'])} "
        f"({seconds['evaluation']:.0f} s)")
    if evaluation["png"] is None:
        notes.append(f"none of the {settings.n_samples} samples decoded to a valid molecule, so there is "
                     "no samples.png; a model trained longer samples valid molecules more often")

    # 3. Optimisation.
    t = time.perf_counter()
    log(f"[3/4] optimising penalised logP: {settings.iterations} iterations of {settings.q} proposals, "
        f"{_decoding(settings.beam_width)}, from {settings.pool_size} starting molecules")
    summary, commands["optimize"] = _optimize(latent, model_ref, out, settings, seed, progress, log)
    seconds["optimization"] = time.perf_counter() - t
    optimization = _optimization_report(summary)
    for name in ("best_molecules.png", "best_score.png"):
        shutil.copyfile(out / "optimize" / name, out / name)
    if not summary["valid_proposals"]:
        notes.append(f"none of the {summary['proposals']} proposals decoded to a valid molecule; "
                     "best_molecules.png says so instead of showing molecules")
    log(f"      {summary['valid_proposals']}/{summary['proposals']} valid proposals, best "
        f"{_number(optimization['best_score'])} (best starting molecule {_number(summary['best_pool_score'])}) "
        f"({seconds['optimization']:.0f} s)")

    # 4. The report.
    seconds["total"] = time.perf_counter() - started
    commands["demo"] = _demo_command(out, model, train, quick, settings, seed)
    from molks import __version__

    report = {
        "kind": "molks-demo",
        "molks_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "seed": seed,
        "settings": asdict(settings),
        "model": model_info,
        "evaluation": evaluation,
        "optimization": optimization,
        "files": {
            "samples": "samples.png" if evaluation["png"] is not None else None,
            "best_molecules": "best_molecules.png",
            "best_score": "best_score.png",
            "optimization_dir": "optimize",
        },
        "commands": commands,
        "notes": notes,
        "seconds": seconds,
    }
    _write_json(out / "report.json", report)
    log(f"[4/4] report written to {out} ({seconds['total']:.0f} s in all)")
    return out


# ---------------------------------------------------------------- steps


def _check_out(out: Path) -> None:
    """Refuse ``out`` unless it is missing, empty or an earlier demo's directory (writes nothing)."""
    if os.path.lexists(out):
        with file_access(out, "cannot use as the report directory"):
            os.stat(out)  # a symbolic-link loop or a dangling link: one line
    if out.exists() and not out.is_dir():
        raise DemoError(f"{out} exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / DEMO_MARKER).is_file():
        raise DemoError(f"{out} is not empty and was not written by molks demo; choose another --out")


def _prepare(out: Path) -> Path:
    """Create ``out`` or reuse an earlier demo's directory (checked by :func:`_check_out`)."""
    _check_out(out)
    if out.is_dir() and any(out.iterdir()):
        for name in _OWNED:  # a rerun replaces only what an earlier demo wrote
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    with file_access(out, "cannot create the report directory"):
        out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / DEMO_MARKER, "written by molks demo; a rerun of molks demo may replace this directory's files\n")
    return out


def _embedded_moses() -> Path:
    return embedded_data_file("moses-sample")


def _smiles(path: Path) -> list[str]:
    """The SMILES of a molecule file, read as every molks command reads one."""
    from molks.dataset.io import load_texts

    return [text for _, text in load_texts(path)]


def _train(
    out: Path, settings: DemoSettings, seed: int, device: str, progress: bool | None, log: Callable[[str], None]
) -> tuple[LatentModel, dict[str, Any], str]:
    """Train a GMM model on a seeded subset of the embedded MOSES sample into ``out/model``."""
    import numpy as np

    import molks
    from molks.runs import RunDir
    from molks.training.spec import TrainConfig, TrainingSpec, train_from_file

    texts = _smiles(_embedded_moses())
    n = min(settings.train_size, len(texts))
    pick = np.sort(np.random.default_rng(seed).choice(len(texts), n, replace=False))
    subset = out / "train_data.smi"
    atomic_write_text(subset, "".join(f"{texts[i]}\n" for i in pick))

    preset = "tiny" if settings.tiny_network else "fast"  # tiny: trains in seconds (and decodes poorly)
    spec = TrainingSpec(preset=preset, train=TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size,
                                                         seed=seed, device=device))  # fmt: skip
    run = out / "model"
    started = time.perf_counter()
    # One process: worker processes would need the caller to guard its entry point (forkserver).
    train_from_file(subset, spec, run, processes=1, use_cache=False, progress=progress,
                    log=lambda message: log(f"      {message}"))  # fmt: skip
    training = {
        "molecules": RunDir(run).read_config()["data"]["n_items"],
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "network": f"{preset} preset",
        "seconds": time.perf_counter() - started,
    }
    command = ["molks", "train", str(subset), "--preset", preset, "--epochs", str(settings.epochs), "--batch-size",
               str(settings.batch_size), "--seed", str(seed), "--out", str(run)]  # fmt: skip
    text = shlex.join(command)
    return molks.load(run, device=device), training, text


def _describe(latent: LatentModel) -> dict[str, Any]:
    reg = latent.model.regularizer
    return {
        "run_dir": str(latent.run_dir),
        "regularizer": latent.model.config.regularizer,
        "latent_dim": latent.latent_dim,
        "prior_components": int(reg.n_prior_components),
        "max_length": latent.model.max_length,
    }


def _evaluate(
    latent: LatentModel, model_ref: str, out: Path, settings: DemoSettings, seed: int
) -> tuple[dict[str, Any], str]:
    from molks.evaluation import EvaluationSettings, evaluate
    from molks.runs import RunDir

    command = ["molks", "evaluate", model_ref, "--n-samples", str(settings.n_samples), "--seed", str(seed)]
    validation = RunDir(latent.run_dir).validation_texts()
    held_out = None
    if settings.held_out is not None or validation is None:
        # A subset of the run's held-out molecules, or, for a run without them, of the embedded sample.
        held_out = (validation if validation is not None else _smiles(_embedded_moses()))[: settings.held_out or 1000]
        path = out / "held_out.smi"
        atomic_write_text(path, "".join(f"{t}\n" for t in held_out))
        command += ["--data", str(path)]
    command += ["--png", str(out / "samples.png")]
    from rdkit import rdBase

    with rdBase.BlockLogs():  # RDKit would print a line for every invalid decoding
        result = evaluate(latent, held_out, settings=EvaluationSettings(n_samples=settings.n_samples, seed=seed, held_out=None),
                          png=out / "samples.png")  # fmt: skip
    if result["png"] is not None:
        result["png"] = "samples.png"
    return result, shlex.join(command)


def _optimize(
    latent: LatentModel,
    model_ref: str,
    out: Path,
    settings: DemoSettings,
    seed: int,
    progress: bool | None,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], str]:
    from molks.optimize.acquisition import AcquisitionConfig
    from molks.optimize.loop import OptimizeConfig, optimize, read_pool
    from molks.runs import RunDir

    pool_path = RunDir(latent.run_dir).pool_file() or _embedded_moses()  # the pool `molks optimize` takes
    pool = read_pool(pool_path, molecular=True)
    config = OptimizeConfig(
        iterations=settings.iterations, beam_width=settings.beam_width, pool_size=settings.pool_size, seed=seed,
        acquisition=AcquisitionConfig(q=settings.q),
    )  # fmt: skip
    from rdkit import rdBase

    with rdBase.BlockLogs():
        summary = optimize(
            latent, pool, out / "optimize", "logp", config, pool_source=str(pool_path), progress=progress,
            log=lambda message: log(f"      {message}"),
        )  # fmt: skip
    command = [
        "molks", "optimize", "--model", model_ref, "--target", "logp", "--pool", str(pool_path),
        "--pool-size", str(settings.pool_size), "--iterations", str(settings.iterations), "--batch-size",
        str(settings.q), "--beam-width", str(settings.beam_width), "--seed", str(seed), "--out", str(out / "optimize"),
    ]  # fmt: skip
    return summary, shlex.join(command)


def _decoding(beam_width: int) -> str:
    """How the proposals are decoded, for the log line (as ``molks optimize`` decodes them)."""
    if beam_width:
        return "each decoded greedily" if beam_width == 1 else f"each decoded by a beam search of {beam_width}"
    from molks.optimize.loop import OptimizeConfig

    return f"each decoded greedily plus {OptimizeConfig().decodings} sampled decodings"


def _optimization_report(summary: dict[str, Any]) -> dict[str, Any]:
    """The parts of the optimisation summary a reader of the report wants (the rest is in optimize/summary.json)."""
    top = summary["top"]
    keys = (
        "target", "iterations_completed", "proposals", "valid_proposals", "fraction_valid",
        "average_valid_score", "best_pool_score", "surrogate_kind", "seconds_pool", "seconds_per_iteration",
    )  # fmt: skip
    report = {key: summary.get(key) for key in keys}
    report["best_score"] = top[0]["score"] if top else None
    report["best"] = top
    report["settings"] = summary.get("settings")
    return report


# ---------------------------------------------------------------- formatting

# DemoSettings fields that ``molks demo`` has an option for.
_OPTIONS = {"n_samples": "--n-samples", "iterations": "--iterations", "q": "--batch-size",
            "beam_width": "--beam-width", "epochs": "--epochs", "train_size": "--train-size"}  # fmt: skip


def _demo_command(out: Path, model: str, train: bool, quick: bool, settings: DemoSettings, seed: int) -> str:
    """The ``molks demo`` command line that reruns this demo (settings without an option are left out)."""
    words = ["molks", "demo", "--out", str(out)] + (["--train"] if train else ["--model", model])
    words += ["--quick"] if quick else []
    base = QUICK if quick else FULL
    for name, option in _OPTIONS.items():
        if getattr(settings, name) != getattr(base, name) and (train or name not in ("epochs", "train_size")):
            words += [option, str(getattr(settings, name))]
    words += [] if seed == 0 else ["--seed", str(seed)]
    return shlex.join(words)



def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(_finite(data), indent=2, allow_nan=False, default=str) + "\n")


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (strict JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def with_overrides(settings: DemoSettings, **overrides: Any) -> DemoSettings:
    """``settings`` with the non-None ``overrides`` applied (for command-line options)."""
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})
