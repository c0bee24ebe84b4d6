"""What to train, and the one entry that trains it from a data file.

>>> from molks.training.spec import TrainConfig, TrainingSpec, train_from_file
>>> spec = TrainingSpec(regularizer="gmm", preset="fast", train=TrainConfig(epochs=10, batch_size=128))
>>> run = train_from_file("smiles.txt", spec, out="runs/smiles-gmm")      # doctest: +SKIP

``molks train``, ``molks demo``, the benchmarks and the test fixtures all build their runs through
:func:`train_from_file`, so a run means the same thing whoever started it. The batch size the GMM
loss weights are estimated for is the training batch size (``spec.train.batch_size``), derived
here once, never given twice.

This module imports no torch at import time: the command line reads its defaults from these
dataclasses without paying for torch before it parses options.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from molks.checks import MAX_BATCH_SIZE, MAX_LATENT_DIM, MAX_SEED, check_int, int_rule, is_int, is_number
from molks.devices import check_device_name, resolve_device
from molks.training.errors import TrainingError

if TYPE_CHECKING:
    from molks.grammar import Grammar
    from molks.model.autoencoder import ModelConfig

__all__ = [
    "CHARACTERS",
    "GMM_DEFAULTS",
    "TrainConfig",
    "TrainingError",
    "TrainingSpec",
    "default_run_dir",
    "train_from_file",
]

CHARACTERS = "characters"
"""The grammar name of the character-level baseline: one production per character of the data."""

GMM_DEFAULTS: dict[str, Any] = {"n_components": 10, "sigma": 1.0}
"""The GMM prior the method trains with unless told otherwise (K = 10, as in the authors' configurations)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. ``batch_size`` is global (split over processes when distributed)."""

    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    patience: int = 5
    lr_patience: int = 2
    lr_factor: float = 0.5
    clip_grad_norm: float = 5.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    checkpoint_minutes: float = 10.0
    """Also save a checkpoint inside an epoch every this many minutes (0: after every batch), so
    that a killed run loses at most that much; ``--resume`` continues from the batch it reached."""

    def __post_init__(self) -> None:
        # Checked here, before train() writes anything, so that a typo never leaves a run folder.
        for name, (accepts, phrase) in _TRAIN_RULES.items():
            value = getattr(self, name)
            if not accepts(value):
                raise TrainingError(f"{name} (--{name.replace('_', '-')}) must be {phrase}, got {value!r}")
        check_device_name(self.device)


# Field -> (predicate, what it must be). batch_size >= 2: every batch loss needs two codes.
_TRAIN_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "batch_size": int_rule(2, MAX_BATCH_SIZE),
    "learning_rate": (lambda v: is_number(v) and v > 0, "a finite number > 0"),
    "weight_decay": (lambda v: is_number(v) and v >= 0, "a finite number >= 0"),
    "val_fraction": (lambda v: is_number(v) and 0 < v < 1, "a number between 0 and 1 (exclusive)"),
    "patience": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "lr_patience": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
    "lr_factor": (lambda v: is_number(v) and 0 < v < 1, "a number between 0 and 1 (exclusive)"),
    "clip_grad_norm": (lambda v: is_number(v) and v >= 0, "a finite number >= 0 (0: no clipping)"),
    "seed": int_rule(0, MAX_SEED),
    "amp": (lambda v: isinstance(v, bool), "true or false"),
    "checkpoint_minutes": (lambda v: is_number(v) and v >= 0, "a finite number >= 0 (0: after every batch)"),
}

@dataclass(frozen=True)
class TrainingSpec:
    """Everything ``molks train`` takes besides the data file and the run directory.

    grammar: a grammar name (``smiles``, ``arithmetic``), a ``.cfg`` path, or ``characters`` (the
        character-level baseline: a token grammar built from the data's characters).
    regularizer: ``gmm`` (the method) or a baseline (``vae``, ``cv-vae``, ``rae``, ``wae``);
        ``regularizer_options`` its options (for gmm, :data:`GMM_DEFAULTS` fill what is not given).
    preset: the network (``molks.model.networks.PRESETS``); ``latent_dim``, ``encoder``,
        ``decoder`` and ``feedback_dropout`` override its parts.
    lambda_rec: weight of the reconstruction loss.
    train: the optimisation; its batch size is also the one the GMM loss weights are estimated for.
    """

    grammar: str = "smiles"
    regularizer: str = "gmm"
    preset: str = "fast"
    latent_dim: int | None = None
    encoder: str | None = None
    decoder: str = "autoregressive"
    feedback_dropout: float = 0.0
    regularizer_options: Mapping[str, Any] = field(default_factory=dict)
    lambda_rec: float = 1.0
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        from molks.model.regularizers import check_regularizer_options

        # Every option is checked before minutes of data loading and before anything is written.
        if not (is_number(self.lambda_rec) and self.lambda_rec >= 0):  # negative: training would maximise it
            raise TrainingError(f"must be a finite number >= 0, got {self.lambda_rec}", option="--lambda-rec")
        if self.latent_dim is not None:  # the network checks it too, but only after the data is loaded
            check_int(self.latent_dim, "latent_dim", 1, MAX_LATENT_DIM)
        check_regularizer_options(self.regularizer, self.options)

    @property
    def options(self) -> dict[str, Any]:
        """The regulariser's options, with the GMM defaults filled in for ``gmm``."""
        defaults = GMM_DEFAULTS if self.regularizer == "gmm" else {}
        return {**defaults, **self.regularizer_options}

    def model_config(self, grammar: Grammar, max_length: int, kind: str) -> ModelConfig:
        """The model for data of ``kind`` ("molecules" or "expressions") parsed by ``grammar`` into
        sequences of ``max_length`` steps."""
        from molks.model.autoencoder import ModelConfig
        from molks.model.networks import network_config

        network = network_config(self.preset, kind, grammar.n_outputs, max_length, self.latent_dim, self.decoder,
                                 self.feedback_dropout, self.encoder)  # fmt: skip
        return ModelConfig(
            network=network,
            regularizer=self.regularizer,
            batch_size=self.train.batch_size,
            regularizer_options=self.options,
            lambda_rec=self.lambda_rec,
            grammar_hash=grammar.content_hash,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "regularizer_options": dict(self.regularizer_options)}


def default_run_dir(data: str | os.PathLike[str], regularizer: str) -> Path:
    """``runs/<data file name without extensions>-<regularizer>``."""
    return Path("runs") / f"{Path(data).name.split('.')[0]}-{regularizer}"


def fine_tuning_length(init_from: str | os.PathLike[str]) -> int | None:
    """The sequence length a fine-tuning of ``init_from`` must keep: its own where its weights'
    shapes depend on it (longer items are then skipped as too long), else None (the data's)."""
    from molks.model.networks import NetworkConfig
    from molks.runs import RunDir

    network = NetworkConfig.from_dict(RunDir.resolve(init_from).read_config()["model"]["network"])
    return None if network.length_free else network.max_length


def train_from_file(
    data: str | os.PathLike[str],
    spec: TrainingSpec,
    out: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
    init_from: str | os.PathLike[str] | None = None,
    column: str | None = None,
    canonicalize: bool = True,
    processes: int | None = None,
    use_cache: bool = True,
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Train ``spec`` on a data file (or an embedded dataset name: ``moses-sample``, ``expressions``)
    into ``out`` (default :func:`default_run_dir`); returns the run directory.

    Items the grammar cannot take are skipped and reported through ``log``; options, the device and
    the data are checked before anything is written, and a run folder this call created is removed
    again if training fails before its first epoch is saved. ``resume`` continues the run in
    ``out`` from its last finished epoch; ``init_from`` (a run or a shipped model's name) starts
    from its network weights (:func:`molks.training.trainer.initial_weights`). ``processes``/``use_cache`` are those of
    :func:`molks.dataset.load_dataset` (one process needs no ``__main__`` guard in the caller).
    """
    from molks.data_files import resolve_data_file
    from molks.dataset import load_dataset
    from molks.domain import domain_for_grammar
    from molks.grammar import Grammar
    from molks.runs import RunDir
    from molks.training.trainer import check_new_run_folder, train

    log = log or (lambda message: print(message, file=sys.stderr))
    resolve_device(spec.train.device)  # a missing GPU, before minutes of data loading
    path = resolve_data_file(data)
    run = RunDir(out if out is not None else default_run_dir(path, spec.regularizer))
    if not resume:  # a folder of the user's files: refused now, not after minutes of data loading
        check_new_run_folder(run.path)
    grammar = Grammar.load("smiles" if spec.grammar == CHARACTERS else spec.grammar)
    max_length = fine_tuning_length(init_from) if init_from else None
    dataset = load_dataset(path, grammar, column=column, canonicalize=canonicalize, processes=processes,
                           max_length=max_length, use_cache=use_cache, progress=progress is not False)  # fmt: skip
    summary = dataset.summary(n_failures=5)
    if summary["n_failed"]:
        log(f"skipped {summary['n_failed']} of {summary['n_items']} items: {summary['failures_by_reason']}")
    texts = dataset.texts
    if spec.grammar == CHARACTERS:
        grammar, sequences = _character_sequences(texts)
    else:
        sequences = dataset.padded(max_length)
    kind = "molecules" if domain_for_grammar(grammar).molecular else "expressions"
    model_config = spec.model_config(grammar, sequences.shape[1], kind)
    data_info = {"path": str(path), "sha256": dataset.file_sha256, "n_items": len(texts), "grammar": spec.grammar}
    log(f"training {spec.regularizer} ({spec.preset}) on {len(texts)} items of {path}, "
        f"sequences of {sequences.shape[1]} steps -> {run.path}")  # fmt: skip
    train(run.path, sequences, texts, grammar, model_config, spec.train, resume=resume, data_info=data_info,
          init_from=init_from, log=log, progress=progress)  # fmt: skip
    return run.path


def _character_sequences(texts: list[str]) -> tuple[Grammar, Any]:
    """The character-level baseline: a token grammar over the data's characters, and the padded sequences."""
    from molks.grammar import pad_sequences
    from molks.model.characters import character_grammar

    grammar = character_grammar(texts)
    ids = grammar.parse_many(texts)  # the texts parsed once already: no failures
    return grammar, pad_sequences(ids, max(map(len, ids)), grammar.padding_index)
