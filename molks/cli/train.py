"""``molks train``: a dataset file -> a trained run directory."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from molks.cli.common import fail_cleanly
from molks.data_files import resolve_data_file

__all__ = ["train_command"]


class Preset(str, Enum):
    fast = "fast"
    small = "small"
    paper = "paper"


class Regularizer(str, Enum):
    gmm = "gmm"
    vae = "vae"
    cv_vae = "cv-vae"
    rae = "rae"
    wae = "wae"


class Encoder(str, Enum):
    conv = "conv"
    gru = "gru"
    transformer = "transformer"


class Decoder(str, Enum):
    repeat = "repeat"
    autoregressive = "autoregressive"


@fail_cleanly
def train_command(
    data: Annotated[str, typer.Argument(help="Training file (.smi/.txt/.csv/.tsv, optionally .gz) or an embedded dataset: moses-sample, expressions.")],
    grammar: Annotated[str, typer.Option(help="smiles, arithmetic, characters (the character-level baseline) or a .cfg path.")] = "smiles",
    regularizer: Annotated[Regularizer, typer.Option(help="gmm (the method), or a baseline: vae, cv-vae, rae, wae.")] = Regularizer.gmm,
    preset: Annotated[Preset, typer.Option(help="Network: fast (GRU encoder and decoder, the best learner per CPU minute), small (the GVAE shapes, CPU-sized) or paper (the published architecture).")] = Preset.fast,
    latent_dim: Annotated[Optional[int], typer.Option(help="Latent size D (default: the preset's).")] = None,
    encoder: Annotated[Optional[Encoder], typer.Option(help="conv (GVAE's convolutions), gru (bidirectional GRU) or transformer (default: the preset's).")] = None,
    decoder: Annotated[Decoder, typer.Option(help="autoregressive (feeds the previous production back) or repeat (GVAE: the code repeated over time, the published architecture).")] = Decoder.autoregressive,
    feedback_dropout: Annotated[float, typer.Option(help="Autoregressive decoder: probability of hiding a fed-back production in training.")] = 0.0,
    components: Annotated[int, typer.Option(help="GMM prior components K (gmm only).")] = 10,
    sigma: Annotated[float, typer.Option(help="Shared standard deviation of the GMM components (gmm only).")] = 1.0,
    lambda_rec: Annotated[float, typer.Option(help="Weight of the reconstruction loss.")] = 1.0,
    option: Annotated[Optional[list[str]], typer.Option(help="Extra regulariser option KEY=VALUE (VALUE is JSON), repeatable.")] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping may end sooner).")] = 30,
    batch_size: Annotated[int, typer.Option(help="Global batch size.")] = 256,
    learning_rate: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-3,
    patience: Annotated[int, typer.Option(help="Epochs without validation improvement before stopping.")] = 5,
    column: Annotated[Optional[str], typer.Option(help="CSV/TSV column holding the strings.")] = None,
    canonicalize: Annotated[bool, typer.Option(help="Canonicalise SMILES with RDKit first.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the split, initialisation and batches.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<data>-<regularizer>).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last finished epoch.")] = False,
) -> None:
    """Train a grammar autoencoder with the KS/CV Gaussian-mixture regulariser (or a baseline)."""
    from molks.dataset import load_dataset
    from molks.grammar import Grammar
    from molks.model.autoencoder import ModelConfig
    from molks.model.characters import character_grammar
    from molks.model.networks import network_config
    from molks.training.trainer import TrainConfig, resolve_device, train

    # Every option is checked before minutes of data loading and before anything is written.
    train_config = TrainConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience, seed=seed, device=device
    )
    resolve_device(device)  # a missing GPU too
    options = _regularizer_options(regularizer, components, sigma, option)
    _check_lambda_rec(lambda_rec)
    path = resolve_data_file(data)
    base = Grammar.load("smiles" if grammar == "characters" else grammar)
    dataset = load_dataset(path, base, column=column, canonicalize=canonicalize)
    _report_failures(dataset)
    texts = dataset.texts
    if grammar == "characters":
        base = character_grammar(texts)
        sequences = _parse_all(base, texts)
    else:
        sequences = dataset.padded()
    kind = "molecules" if base.tokenizer_name == "smiles" else "expressions"
    model_config = ModelConfig(
        network=network_config(preset.value, kind, base.n_outputs, sequences.shape[1], latent_dim, decoder.value, feedback_dropout,
                                encoder.value if encoder else None),
        regularizer=regularizer.value,
        batch_size=batch_size,
        regularizer_options=options,
        lambda_rec=lambda_rec,
        grammar_hash=base.content_hash,
    )
    run = out or Path("runs") / f"{path.name.split('.')[0]}-{regularizer.value}"
    data_info = {"path": str(path), "sha256": dataset.file_sha256, "n_items": len(texts), "grammar": grammar}
    typer.echo(f"training {regularizer.value} ({preset.value}) on {len(texts)} items of {path}, sequences of {sequences.shape[1]} steps -> {run}", err=True)
    with _removed_if_start_fails(run):
        train(run, sequences, texts, base, model_config, train_config, resume=resume, data_info=data_info)
    typer.echo(str(run))


def _regularizer_options(regularizer: Regularizer, components: int, sigma: float, option: list[str] | None) -> dict[str, Any]:
    """The regulariser's options from --components, --sigma and --option, checked."""
    from molks.model.regularizers import check_regularizer_options

    options: dict[str, Any] = dict(_parse_option(o) for o in option or [])
    if regularizer is Regularizer.gmm:
        options = {"n_components": components, "sigma": sigma, **options}
    check_regularizer_options(regularizer.value, options)
    return options


def _check_lambda_rec(value: float) -> None:
    # Negative or NaN would make training maximise the reconstruction error.
    if not (math.isfinite(value) and value >= 0):
        from molks.training.trainer import TrainingError

        raise TrainingError(f"must be a finite number >= 0, got {value}", option="--lambda-rec")


# What train() writes before its first epoch; a checkpoint means the run really started.
_START_FILES = ("config.json", "grammar.cfg", "validation.smi", "train.smi.gz")


@contextmanager
def _removed_if_start_fails(run: Path) -> Iterator[None]:
    """Remove a run folder this command created if training fails before its first checkpoint,
    so that the corrected command is not refused with "already holds a run"."""
    existed = run.exists()
    try:
        yield
    except Exception:  # bad input or a bug: either way no epoch was saved
        if not existed and not (run / "checkpoints").exists():
            _remove_start_files(run)
        raise


def _remove_start_files(run: Path) -> None:
    for name in _START_FILES:
        (run / name).unlink(missing_ok=True)
    with suppress(OSError):  # not empty: something else is in there, keep it
        run.rmdir()


def _parse_all(grammar: Any, texts: list[str]) -> Any:
    from molks.api import pad_sequences

    ids = grammar.parse_many(texts)
    return pad_sequences(ids, max(map(len, ids)), grammar.padding_index)  # texts already parsed once: no failures


def _report_failures(dataset: Any) -> None:
    summary = dataset.summary(n_failures=5)
    if summary["n_failed"]:
        typer.echo(f"skipped {summary['n_failed']} of {summary['n_items']} items: {summary['failures_by_reason']}", err=True)


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        from molks.model.regularizers import RegularizerError

        raise RegularizerError("expected KEY=VALUE", option=f"--option {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value
