"""A run directory: the one object that knows its layout and reads and writes its files.

>>> run = RunDir("runs/moses-gmm")
>>> run.exists(), run.weights, run.validation_texts()[:2]   # doctest: +SKIP

Layout (written by :func:`molks.training.trainer.train`, read by ``molks.load``, evaluation,
optimisation and the demo):

- ``config.json``        model and training configuration, the grammar's hash, the data
- ``grammar.cfg``        the grammar the production indices refer to
- ``model.safetensors``  the best weights (with ``weights.sha256`` beside them)
- ``checkpoints/last.safetensors``  weights + optimiser + state after the last finished epoch
  (with ``checkpoints/last.sha256``, checked on ``--resume``)
- ``metrics.csv``, ``loss_curves.png``  per-epoch loss terms
- ``train.smi.gz``, ``validation.smi``  the split (a shipped model may lack the training list)
- ``ex_post_gmm.safetensors``  a GMM fitted on the training codes after training (``ex_post_gmm.sha256``)
- ``ex_post_kde.safetensors``  a kernel density on the codes of held-out molecules, the sampler
  ``molks sample`` uses when a run has one (``ex_post_kde.sha256``; ``molks kde``)
- ``.molks.lock``  locked while a process trains here (:func:`molks.files.folder_lock`)

Every write is atomic (:mod:`molks.files`); every unreadable file is a :class:`CheckpointError`
naming it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from molks.errors import file_access
from molks.files import LOCK_FILE, atomic_write_bytes, atomic_write_text
from molks.training.checkpoint import CheckpointError, load_checkpoint, save_weights, verify_weights

if TYPE_CHECKING:
    from molks.grammar import Grammar
    from molks.model.regularizers import ExPostGMM

__all__ = ["RunDir", "SHIPPED_MODELS"]

SHIPPED_MODELS = Path(__file__).resolve().parent / "models"
"""Where the models installed with molks live (``molks.load("moses")``)."""


class RunDir:
    """The files of one training run in ``path`` (nothing is read until asked)."""

    CONFIG = "config.json"
    GRAMMAR = "grammar.cfg"
    WEIGHTS = "model.safetensors"
    CHECKPOINT = "checkpoints/last.safetensors"
    METRICS = "metrics.csv"
    LOSS_CURVES = "loss_curves.png"
    TRAIN = "train.smi.gz"
    VALIDATION = "validation.smi"
    EX_POST = "ex_post_gmm.safetensors"
    KDE = "ex_post_kde.safetensors"
    # What a run holds before its first epoch ends; a checkpoint means it really started.
    START_FILES = (CONFIG, GRAMMAR, VALIDATION, TRAIN)

    @classmethod
    def resolve(cls, name_or_path: str | os.PathLike[str]) -> RunDir:
        """The run at ``name_or_path``, or the shipped model of that name when no such path exists;
        a :class:`CheckpointError` listing the shipped models when neither holds a run."""
        path = Path(name_or_path)
        if not path.exists() and (SHIPPED_MODELS / str(name_or_path)).is_dir():
            path = SHIPPED_MODELS / str(name_or_path)
        run = cls(path)
        if not run.exists():
            shipped = sorted(p.name for p in SHIPPED_MODELS.iterdir() if p.is_dir()) if SHIPPED_MODELS.is_dir() else []
            raise CheckpointError(f"{path}: not a molks run directory (no config.json); shipped models: {shipped}")
        return run

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.config_file = self.path / self.CONFIG
        self.weights = self.path / self.WEIGHTS
        self.checkpoint = self.path / self.CHECKPOINT
        self.ex_post_file = self.path / self.EX_POST
        self.kde_file = self.path / self.KDE

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def is_shipped(self) -> bool:
        """Whether this is a model shipped inside the molks package (read-only for commands)."""
        return self.path.resolve().parent == SHIPPED_MODELS

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ state
    def exists(self) -> bool:
        """Whether a run has been started here (its ``config.json`` exists)."""
        return self.config_file.is_file()

    def started_training(self) -> bool:
        """Whether an epoch has been saved (a checkpoint folder exists)."""
        return self.checkpoint.parent.exists()

    # ------------------------------------------------------------------ configuration and grammar

    def read_config(self) -> dict[str, Any]:
        """The parsed ``config.json``; a missing or unreadable file is a CheckpointError naming it."""
        if not self.config_file.is_file():
            raise CheckpointError("not a molks run directory (no config.json)", path=self.path)
        try:
            doc = json.loads(self.config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CheckpointError(f"unreadable run configuration ({err})", path=self.config_file) from None
        if not isinstance(doc, dict):
            raise CheckpointError("unreadable run configuration (not a JSON object)", path=self.config_file)
        return doc

    def write_config(self, doc: dict[str, Any]) -> None:
        atomic_write_text(self.config_file, json.dumps(doc, indent=2) + "\n")

    def read_grammar(self, doc: dict[str, Any] | None = None) -> Grammar:
        """The run's grammar (named as when it was trained), checked against the hash in the config."""
        from molks.grammar import Grammar

        doc = self.read_config() if doc is None else doc
        try:
            info = doc["grammar"]
            grammar = Grammar.load(self.path / info.get("file", self.GRAMMAR))
        except (KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(f"unreadable run configuration (grammar: {err})", path=self.config_file) from None
        grammar.name = info.get("name", grammar.name)
        expected = (doc.get("model") or {}).get("grammar_hash") or info.get("hash")  # the model's, which it checks
        if expected and grammar.content_hash != expected:
            raise CheckpointError(f"{self.GRAMMAR} does not match the grammar the model was trained with", path=self.path)
        return grammar

    def write_grammar(self, grammar: Grammar) -> None:
        atomic_write_text(self.path / self.GRAMMAR, grammar.text)

    # ------------------------------------------------------------------ the split

    def write_split(self, train_texts: Sequence[str], validation_texts: Sequence[str]) -> None:
        """``train.smi.gz`` (gzip without a timestamp: the same split gives the same bytes) and
        ``validation.smi``, one item per line."""
        atomic_write_text(self.path / self.VALIDATION, "".join(f"{t}\n" for t in validation_texts))
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
            gz.write("".join(f"{t}\n" for t in train_texts).encode("utf-8"))
        atomic_write_bytes(self.path / self.TRAIN, buffer.getvalue())

    def train_texts(self) -> list[str] | None:
        """The training items (``train.smi.gz``), or None for a run without them (shipped models)."""
        path = self.path / self.TRAIN
        if not path.is_file():
            return None
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                return [line.rstrip("\n") for line in f if line.strip()]
        except (OSError, EOFError, UnicodeDecodeError) as err:
            raise CheckpointError(f"unreadable ({err})", path=path) from None

    def validation_texts(self) -> list[str] | None:
        """The held-out items (``validation.smi``), or None when the run has none."""
        path = self.path / self.VALIDATION
        if not path.is_file():
            return None
        try:
            return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise CheckpointError(f"unreadable ({err})", path=path) from None

    def pool_file(self) -> Path | None:
        """Where an optimisation starts when no pool is named: the training items, or, for a run
        shipped without them, the held-out ones; None when there are neither."""
        for name in (self.TRAIN, self.VALIDATION):
            if (self.path / name).is_file():
                return self.path / name
        return None

    # ------------------------------------------------------------------ metrics

    def write_metrics(self, history: Sequence[dict[str, float]]) -> None:
        """``metrics.csv`` (one row per epoch) and ``loss_curves.png`` (each term, train and validation)."""
        columns = list(dict.fromkeys(k for row in history for k in row))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.path / self.METRICS, out.getvalue())
        self._plot_losses(history)

    def read_metrics(self) -> list[dict[str, float]]:
        """The rows of ``metrics.csv`` as numbers ([] when there is no file yet)."""
        path = self.path / self.METRICS
        if not path.is_file():
            return []
        with file_access(path, "cannot read"), open(path, encoding="utf-8", newline="") as f:
            try:
                return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
            except ValueError as err:
                raise CheckpointError(f"unreadable ({err})", path=path) from None

    def _plot_losses(self, history: Sequence[dict[str, float]]) -> None:
        from molks.drawing import figure, save_figure

        terms = [k[len("train_") :] for k in history[0] if k.startswith("train_")]
        fig = figure(3.2 * len(terms), 3)
        axes = fig.subplots(1, len(terms), squeeze=False)
        epochs = [row["epoch"] for row in history]
        for ax, term in zip(axes[0], terms):
            ax.plot(epochs, [row[f"train_{term}"] for row in history], label="train")
            ax.plot(epochs, [row.get(f"val_{term}", float("nan")) for row in history], label="validation")
            ax.set_title(term)
            ax.set_xlabel("epoch")
            if term != "total" and all(row[f"train_{term}"] > 0 for row in history):
                ax.set_yscale("log")
        axes[0][0].legend()
        fig.tight_layout()
        save_figure(fig, self.path / self.LOSS_CURVES)

    # ------------------------------------------------------------------ ex-post GMM

    def read_ex_post(self) -> ExPostGMM | None:
        """The GMM fitted on the training codes after training, or None when the run has none."""
        density = self._read_density(self.ex_post_file, "an ex-post GMM")
        return None if density is None else density[0]

    def write_ex_post(self, gmm: ExPostGMM, n_codes: int) -> None:
        save_weights(self.ex_post_file, gmm.to_tensors(), {"kind": "ex-post-gmm", "n_codes": n_codes})

    def read_kde(self) -> tuple[ExPostGMM, dict[str, Any]] | None:
        """The kernel density on held-out codes (:func:`molks.model.regularizers.fit_ex_post_kde`) and
        its record (bandwidth, n_codes, the molecules' source), or None when the run has none."""
        density = self._read_density(self.kde_file, "a kernel density")
        if density is not None and density[0].scale_tril.shape[0] != 1:
            raise CheckpointError("not a kernel density (one covariance per component)", path=self.kde_file)
        return density

    def write_kde(self, kde: ExPostGMM, bandwidth: float, source: str) -> None:
        meta = {"kind": "ex-post-kde", "n_codes": kde.n_components, "bandwidth": bandwidth, "codes_of": source}
        save_weights(self.kde_file, kde.to_tensors(), meta)

    def _read_density(self, path: Path, what: str) -> tuple[ExPostGMM, dict[str, Any]] | None:
        """(the mixture in ``path``, its metadata), or None when there is no such file."""
        from molks.model.regularizers import ExPostGMM

        if not path.is_file():
            return None
        tensors, meta, _ = load_checkpoint(path, finite=False)  # ExPostGMM says which value is wrong
        verify_weights(path)  # changed since written (its .sha256 record): refused
        try:
            return ExPostGMM.from_tensors(tensors), meta
        except (KeyError, RuntimeError, ValueError) as err:  # RegularizerError is a ValueError
            raise CheckpointError(f"not {what} ({err})", path=path) from None

    # ------------------------------------------------------------------ cleanup

    def remove_start_files(self, keep_folder: bool = False) -> None:
        """Remove what a run writes before its first epoch (and its lock file), and the folder if that
        leaves it empty, unless ``keep_folder`` (so that a corrected command is not refused with
        "already holds a run", and a folder the user made stays)."""
        for name in (*self.START_FILES, LOCK_FILE):
            (self.path / name).unlink(missing_ok=True)
        if keep_folder:
            return
        try:
            self.path.rmdir()
        except OSError:  # not empty: something else is in there, keep it
            pass
