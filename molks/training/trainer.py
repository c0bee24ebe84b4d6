"""Training: seeded, resumable, optionally distributed.

``train(run_dir, sequences, texts, grammar, model_config, train_config)`` trains an
:class:`~molks.model.autoencoder.Autoencoder` and leaves in ``run_dir``:

- ``config.json``      the model and training configuration, the grammar's hash, the data
- ``grammar.cfg``      the grammar the production indices refer to
- ``model.safetensors`` the best weights (lowest validation loss), what ``molks.load`` reads
- ``checkpoints/last.safetensors`` weights + optimiser + state after the last finished epoch,
  or, every ``checkpoint_minutes`` inside an epoch, after the last batch reached
- ``metrics.csv``, ``loss_curves.png``  per-epoch loss terms
- ``train.smi.gz``, ``validation.smi``  the split, for evaluation (novelty, reconstruction)
- ``ex_post_gmm.safetensors``  a GMM fitted on the training codes after training
- ``ex_post_kde.safetensors``  a kernel density on the validation codes after training (the default sampler)

Every epoch starts from seeds derived from (seed, epoch), and a checkpoint taken inside an
epoch also holds the batch reached, the running sums and the random state, so a run killed and
resumed with ``resume=True`` continues exactly as an uninterrupted run would (on one process;
distributed processes all resume from rank 0's random state).

Under ``torchrun`` each process takes an equal shard of every global batch; the
codes are gathered across processes before the regulariser so that KS/CV see the
global batch, which makes distributed training agree with a single process.
"""

from __future__ import annotations

import base64
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from molks.devices import resolve_device
from molks.domain import domain_for_grammar
from molks.errors import file_access
from molks.files import file_sha256, folder_lock, foreign_entries
from molks.grammar import Grammar
from molks.model.autoencoder import Autoencoder, ModelConfig
from molks.model.regularizers import KDE_CODES, fit_ex_post_gmm, fit_ex_post_kde, kde_bandwidth
from molks.progress import Heartbeat, progress_bar, showing
from molks.runs import RunDir
from molks.training.checkpoint import CheckpointError, load_checkpoint, save_weights, verify_weights
from molks.training.errors import TrainingError
from molks.training.run_state import RunState

if TYPE_CHECKING:
    from molks.training.spec import TrainConfig

__all__ = ["TrainingError", "resolve_device", "train"]


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded (train, validation) split of range(n); validation gets at least one item.

    Training indices are sorted (batches are drawn by a per-epoch permutation); validation
    indices stay in random order, because validation batches are taken in that order and KS/CV
    are batch statistics: a sorted file (the GVAE expressions are enumerated in order) would
    otherwise give unrepresentative validation batches.
    """
    if n < 2:
        raise TrainingError(f"need at least 2 sequences to train and validate, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, int(round(n * val_fraction))))
    return np.sort(order[n_val:]), order[:n_val]


def train(
    run_dir: str | os.PathLike[str],
    sequences: np.ndarray,
    texts: Sequence[str],
    grammar: Grammar,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    resume: bool = False,
    data_info: dict[str, Any] | None = None,
    init_from: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
    progress: bool | None = None,
) -> Path:
    """Train a model on padded production sequences [N, L]; returns the run directory.

    ``texts`` are the N strings the sequences come from (for the split files). ``resume``
    continues from ``checkpoints/last.safetensors``; without it an existing run is an error, and
    so is a folder holding anything else (the user's files are never written over).
    ``init_from`` (a run directory or a shipped model's name) starts the encoder and decoder from
    that run's best weights (fine-tuning): same network and grammar, any regulariser options.

    The run folder is locked for the whole call (:func:`molks.files.folder_lock`): a second
    process training into it is refused. A start that fails before its first checkpoint removes
    what it wrote, so that the corrected command is not refused with "already holds a run".
    """
    args = (sequences, texts, grammar, model_config, train_config)
    options = {"resume": resume, "data_info": data_info, "init_from": init_from, "log": log, "progress": progress}
    run = RunDir(run_dir)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun rank 0 holds the lock for every process
        return _train(run, *args, **options)
    if not resume:
        check_new_run_folder(run.path)  # before the lock creates the folder (checked again under it)
    existed = run.path.is_dir()
    with folder_lock(run.path, "train"):
        was_empty = not foreign_entries(run.path)  # under the lock: nothing else writes here now
        try:
            return _train(run, *args, **options)
        except BaseException:  # bad input, a bug or Ctrl-C: a folder that was empty gets empty again
            if was_empty and not resume and not run.started_training():
                run.remove_start_files(keep_folder=existed)
            raise


def check_new_run_folder(run_dir: str | os.PathLike[str]) -> None:
    """Refuse to start a new run in ``run_dir`` when it holds a run already, or anything else: a
    :class:`TrainingError` naming the folder (and what is in it) before anything is written."""
    run = RunDir(run_dir)
    if os.path.lexists(run.path):
        with file_access(run.path, "cannot use as the run directory"):
            os.stat(run.path)  # a symbolic-link loop or a dangling link: one line, not a traceback
    if run.exists():
        raise TrainingError(f"{run.path} already holds a run; pass --resume to continue it or choose another --out")
    if os.path.lexists(run.path) and not run.path.is_dir():
        raise TrainingError(f"{run.path}: exists and is not a directory; choose another --out")
    foreign = foreign_entries(run.path)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise TrainingError(
            f"{run.path} is not empty and holds no molks run ({shown}); a run writes files such as metrics.csv "
            "and validation.smi there, so choose a new or empty --out"
        )


def _train(
    run: RunDir,
    sequences: np.ndarray,
    texts: Sequence[str],
    grammar: Grammar,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    resume: bool,
    data_info: dict[str, Any] | None,
    init_from: str | os.PathLike[str] | None,
    log: Callable[[str], None] | None,
    progress: bool | None,
) -> Path:
    log = log or (lambda message: print(message, file=sys.stderr))
    world, rank = _distributed_setup(train_config)
    device = resolve_device(train_config.device) if world == 1 else _distributed_device(train_config, rank)
    _check_inputs(sequences, texts, model_config, train_config, world)
    config_doc = {
        "model": model_config.to_dict(),
        "train": asdict(train_config),
        "grammar": {"name": grammar.name, "hash": grammar.content_hash, "file": RunDir.GRAMMAR},
        "domain": domain_for_grammar(grammar).name,
        "data": data_info or {},
    }
    resuming = resume and run.checkpoint.exists()
    # A resumed run keeps the record of where its first epoch started: the named source may have
    # changed since (a shipped model replaced by this very run's weights).
    initial = initial_weights(init_from, model_config) if init_from is not None and not resuming else None
    if initial is not None:
        config_doc["init_from"] = initial[1]
    elif resuming and run.config_file.is_file() and "init_from" in (recorded := run.read_config()):
        config_doc["init_from"] = recorded["init_from"]
    split = _prepare_run_folder(run, config_doc, grammar, texts, train_config, resume, rank, world)

    torch.manual_seed(train_config.seed)
    model = Autoencoder(model_config, grammar).to(device)
    optimizer = make_optimizer(model, train_config)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=train_config.lr_factor, patience=train_config.lr_patience
    )
    if initial is not None:
        try:
            model.load_state_dict({**model.state_dict(), **initial[0]})
        except RuntimeError as err:  # e.g. a variational encoder's two heads against a deterministic one
            raise TrainingError(f"--init-from {init_from}: its weights do not fit this model ({err})") from None
        log(f"starting from the weights of {initial[1]['run']} (epoch {initial[1]['epoch']})")
    state, partial = _starting_state(run, model, optimizer, scheduler, resume, log)
    session = _Session.make(run, train_config, config_doc, (model, optimizer, scheduler), (sequences, *split),
                            device, (rank, world), log, progress)  # fmt: skip
    while state.epoch < train_config.epochs and not state.stopped:
        _train_epoch(session, state, partial)
        partial = None  # an epoch a mid-epoch checkpoint left unfinished: only the first
    if rank == 0:
        _fit_ex_post(run, model, session.train_data, device, train_config.seed)
        _fit_kde(run, model, session.val_data, device, train_config.seed)
    if world > 1:
        dist.barrier()
    return run.path


def _check_inputs(
    sequences: np.ndarray, texts: Sequence[str], model_config: ModelConfig, train_config: TrainConfig, world: int
) -> None:
    """Refuse sequences that do not fit the texts or the model, and a batch the processes cannot share."""
    if sequences.ndim != 2 or sequences.shape[0] != len(texts):
        raise TrainingError(f"sequences must be [N, L] with N = len(texts), got {sequences.shape} for {len(texts)} texts")
    if sequences.shape[1] != model_config.network.max_length:
        raise TrainingError(
            f"sequences have length {sequences.shape[1]} but the model expects {model_config.network.max_length}"
        )
    if train_config.batch_size % world:
        raise TrainingError(f"batch size {train_config.batch_size} is not divisible by {world} processes")


def _prepare_run_folder(
    run: RunDir, config_doc: dict[str, Any], grammar: Grammar, texts: Sequence[str], train_config: TrainConfig,
    resume: bool, rank: int, world: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Check the run folder (a run to resume, or a folder to start one in), write a new run's files
    (rank 0; config.json last) and return the (train, validation) split of the texts' indices."""
    if resume:
        _check_resumable(run, config_doc)
    else:
        check_new_run_folder(run.path)
    if rank == 0 and resume:
        run.write_config(config_doc)  # what differs is only what may (epochs, device, patience, ...)
    if world > 1:
        dist.barrier()  # every process has checked the run directory before rank 0 writes into it
    train_idx, val_idx = split_indices(len(texts), train_config.val_fraction, train_config.seed)
    if len(train_idx) < train_config.batch_size:
        raise TrainingError(
            f"only {len(train_idx)} training sequences for a batch size of {train_config.batch_size}; "
            "use a smaller --batch-size"
        )
    if rank == 0 and not resume:
        with file_access(run.path, "cannot create the run directory"):
            run.path.mkdir(parents=True, exist_ok=True)
        run.write_grammar(grammar)
        run.write_split([texts[i] for i in train_idx], [texts[i] for i in val_idx])
        run.write_config(config_doc)  # last: a config.json means the run's files are all there
    return train_idx, val_idx


def _starting_state(
    run: RunDir, model: Autoencoder, optimizer: torch.optim.Optimizer, scheduler: Any, resume: bool,
    log: Callable[[str], None],
) -> tuple[RunState, dict[str, Any] | None]:
    """(the run's state, how far its unfinished epoch got or None): a new run's, or with ``resume``
    the state of ``checkpoints/last.safetensors``, whose tensors are loaded into the model and optimiser."""
    checkpoint_path = run.checkpoint
    if not (resume and checkpoint_path.exists()):
        if resume:
            log(f"resuming {run.path}: no epoch was saved yet, so training starts at epoch 1")
        return RunState(), None
    model_state, meta, optim_state = load_checkpoint(checkpoint_path)  # NaN or infinite values: refused
    verify_weights(checkpoint_path)  # bytes changed since it was written: refused, not trained on
    if optim_state is None or not isinstance(meta.get("scheduler"), dict) or not isinstance(meta.get("state"), dict):
        raise CheckpointError(
            f"{checkpoint_path}: not a training checkpoint (it holds no optimiser, scheduler or epoch state: "
            "model weights only?); a run resumes only from the checkpoint molks train wrote there"
        )
    try:
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        scheduler.load_state_dict(meta["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{checkpoint_path}: does not fit this model ({err})") from None
    try:
        state, partial = RunState.from_meta(meta["state"])
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{checkpoint_path}: its epoch state is unreadable ({type(err).__name__}: {err}); a run "
                              "resumes only from the checkpoint molks train wrote there") from None  # fmt: skip
    log(f"resuming {run.path} after epoch {state.epoch}")
    return state, partial


@dataclass
class _Session:
    """What every epoch of one training call works with."""

    run: RunDir
    config: TrainConfig
    config_doc: dict[str, Any]
    model: Autoencoder
    ddp_model: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: Any  # ReduceLROnPlateau
    train_data: torch.Tensor
    val_data: torch.Tensor
    device: torch.device
    rank: int
    world: int
    log: Callable[[str], None]
    progress: bool | None

    @classmethod
    def make(
        cls, run: RunDir, config: TrainConfig, config_doc: dict[str, Any], trained: tuple[Autoencoder, Any, Any],
        data: tuple[np.ndarray, np.ndarray, np.ndarray], device: torch.device, ranks: tuple[int, int],
        log: Callable[[str], None], progress: bool | None,
    ) -> _Session:
        """``trained``: (model, optimiser, scheduler); ``data``: (sequences [N, L], train and validation indices)."""
        model, optimizer, scheduler = trained
        sequences, train_idx, val_idx = data
        rank, world = ranks
        data_tensor = torch.from_numpy(np.ascontiguousarray(sequences))  # kept compact (e.g. int16); batches become long
        ddp_model: torch.nn.Module = model
        if world > 1:
            ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        return cls(run, config, config_doc, model, ddp_model, optimizer, scheduler, data_tensor[torch.as_tensor(train_idx)],
                   data_tensor[torch.as_tensor(val_idx)], device, rank, world, log, progress)  # fmt: skip

    @property
    def gather(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return _gather_with_grad if self.world > 1 else None

    @property
    def use_amp(self) -> bool:
        return self.config.amp and self.device.type == "cuda"

    def save_checkpoint(self, state: RunState, partial: dict[str, Any] | None = None) -> None:
        """``checkpoints/last.safetensors`` (with its SHA-256 in ``checkpoints/last.sha256``, checked on --resume)."""
        meta = {"config": self.config_doc, "state": state.to_meta(partial), "scheduler": self.scheduler.state_dict()}
        save_weights(self.run.checkpoint, self.model.state_dict(), meta, self.optimizer.state_dict())


def _train_epoch(s: _Session, state: RunState, partial: dict[str, Any] | None) -> None:
    """Train the epoch after ``state.epoch`` (from where ``partial`` left it, if it is that epoch's),
    validate, and record it in ``state`` and the run folder."""
    epoch, config = state.epoch + 1, s.config
    started = time.perf_counter()
    torch.manual_seed(config.seed * 1_000_003 + epoch)  # reparameterisation noise of this epoch
    order = torch.randperm(len(s.train_data), generator=torch.Generator().manual_seed(config.seed * 7919 + epoch))
    n_batches = len(s.train_data) // config.batch_size  # drop the last, smaller batch (GMM weights are per size)
    sums: dict[str, float] = {}
    first = 0
    if partial is not None and partial["epoch"] == epoch:
        first, sums = partial["batches"], dict(partial["sums"])
        started -= partial["seconds"]
        set_random_state(partial["random"], s.device)
        s.log(f"resuming epoch {epoch} at batch {first + 1} of {n_batches}")
    _train_batches(s, state, epoch, order, (first, n_batches), sums, started)
    metrics = _epoch_metrics(s, epoch, n_batches, sums)
    val_loss = metrics["val_total"]
    s.scheduler.step(val_loss)
    row = {"epoch": epoch, **metrics, "lr": s.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started}
    improved = state.end_epoch(epoch, val_loss, config.patience, row)
    if s.rank == 0:
        if improved:
            save_weights(s.run.weights, s.model.state_dict(), {"config": s.config_doc, "epoch": epoch})
        s.save_checkpoint(state)
        s.run.write_metrics(state.history)
        s.log(epoch_summary(row, config.epochs) + (" (best)" if improved else "")
              + (" -- early stop" if state.stopped else ""))  # fmt: skip


def _train_batches(
    s: _Session, state: RunState, epoch: int, order: torch.Tensor, batches: tuple[int, int], sums: dict[str, float],
    started: float,
) -> None:
    """Train on batches ``batches`` = (first, n) of the epoch's ``order``, adding the loss terms to
    ``sums``, with a progress bar (or a line a minute), and a checkpoint every ``checkpoint_minutes``."""
    first, n_batches = batches
    config = s.config
    checkpoint_clock = Heartbeat(60 * config.checkpoint_minutes)
    s.model.train()
    shown = s.rank == 0 and showing(s.progress)
    bar = progress_bar(n_batches * config.batch_size, f"epoch {epoch}/{config.epochs}", shown,
                       unit="mol", unit_scale=True)  # fmt: skip
    # Without a terminal (nohup, CI) no bar shows: a line a minute says how far the epoch is.
    heartbeat = Heartbeat(PROGRESS_LINE_SECONDS) if s.rank == 0 and s.progress is not False and not shown else None
    bar.update(first * config.batch_size)
    try:
        for b in range(first, n_batches):
            batch = order[b * config.batch_size : (b + 1) * config.batch_size][s.rank :: s.world]
            x = s.train_data[batch].to(s.device, non_blocking=True).long()
            terms = train_step(s.ddp_model, x, s.optimizer, config.clip_grad_norm, s.use_amp, s.gather)
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            if not math.isfinite(sums["total"]):  # raised before any save: the last good checkpoint stays
                raise _diverged(s.run, epoch, b + 1, n_batches, float(terms["total"].detach()))
            bar.update(config.batch_size)
            if shown:
                bar.set_postfix_str(_running_terms(sums, b + 1), refresh=False)
            if heartbeat is not None and heartbeat.due():
                s.log(_progress_line(epoch, b + 1, n_batches, time.perf_counter() - started, config.batch_size, sums))
            if s.rank == 0 and b + 1 < n_batches and (config.checkpoint_minutes == 0 or checkpoint_clock.due()):
                if not _weights_finite(s.model):  # this step diverged; its loss shows only on the next batch
                    raise _diverged(s.run, epoch, b + 1, n_batches, math.nan, "")
                reached = {"epoch": epoch, "batches": b + 1, "sums": sums, "seconds": time.perf_counter() - started,
                           "random": random_state(s.device)}  # fmt: skip
                s.save_checkpoint(state, reached)
    finally:
        bar.close()


def _epoch_metrics(s: _Session, epoch: int, n_batches: int, sums: dict[str, float]) -> dict[str, float]:
    """The epoch's mean training loss terms and its validation ones (``train_*``, ``val_*``); every
    process gets rank 0's validation loss, so that all decide the same."""
    metrics = {f"train_{k}": v / max(n_batches, 1) for k, v in sums.items()}
    metrics.update({f"val_{k}": v for k, v in _evaluate(s.model, s.val_data, s.config.batch_size, s.device, s.use_amp).items()})
    val_loss = metrics["val_total"]
    if not math.isfinite(val_loss):  # finite training losses but weights that now give NaN: saved neither
        raise _diverged(s.run, epoch, n_batches, n_batches, val_loss, "validation ")
    if s.world > 1:
        value = torch.tensor([val_loss], device=s.device)
        dist.broadcast(value, 0)
        metrics["val_total"] = float(value)
    return metrics


def _weights_finite(model: torch.nn.Module) -> bool:
    return bool(torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all())  # one device sync


def _diverged(run: RunDir, epoch: int, batch: int, n_batches: int, loss: float, which: str = "") -> TrainingError:
    """The error that ends a diverging run: where it diverged, and what the run folder still holds."""
    if run.checkpoint.is_file():
        kept = f"the last good checkpoint ({run.checkpoint}) and best weights are kept"
    else:
        kept = "no epoch had been saved"
    return TrainingError(
        f"the {which}loss diverged ({loss}) at epoch {epoch}, batch {batch} of {n_batches}; {kept}; "
        "try a smaller --learning-rate"
    )


def initial_weights(init_from: str | os.PathLike[str], model_config: ModelConfig) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(encoder and decoder weights, a record of where they came from) of the run ``init_from``.

    The network and the grammar must be the ones of ``model_config``; the regulariser is not taken
    (its prior and loss weights come from the new options), so a run can be fine-tuned with other
    regulariser options or another regulariser of the same encoder shape.
    """
    source = RunDir.resolve(init_from)
    doc = source.read_config()
    try:
        source_config = ModelConfig.from_dict(doc["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{source.config_file}: unreadable run configuration ({err})") from None
    source_network = source_config.network
    if source_network.length_free:  # the same weights read and write sequences of any length
        source_network = replace(source_network, max_length=model_config.network.max_length)
    if source_network != model_config.network:
        raise TrainingError(f"--init-from {init_from}: its network differs from this run's "
                            f"({source_config.network.to_dict()} vs {model_config.network.to_dict()})")  # fmt: skip
    if source_config.grammar_hash != model_config.grammar_hash:
        raise TrainingError(f"--init-from {init_from}: it was trained with another grammar")
    state, meta, _ = load_checkpoint(source.weights)
    verify_weights(source.weights)
    networks = {k: v for k, v in state.items() if not k.startswith("regularizer.")}
    record = {"run": str(init_from), "weights_sha256": file_sha256(source.weights), "epoch": meta.get("epoch")}
    return networks, record


def random_state(device: torch.device) -> dict[str, str]:
    """torch's random state (the CPU's, and the device's on CUDA) as base64 text for a checkpoint's JSON."""
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return {name: base64.b64encode(state.numpy().tobytes()).decode("ascii") for name, state in states.items()}


def set_random_state(saved: dict[str, str], device: torch.device) -> None:
    """Restore what :func:`random_state` saved (a CUDA state only onto a CUDA device)."""
    def tensor(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    torch.set_rng_state(tensor(saved["cpu"]))
    if device.type == "cuda" and "cuda" in saved:
        torch.cuda.set_rng_state(tensor(saved["cuda"]), device)


def train_step(
    model: torch.nn.Module,
    x: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    clip_grad_norm: float = 5.0,
    amp: bool = False,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """One optimisation step on a batch x [B, L] (long, on the model's device); returns the loss
    terms. ``model`` is an Autoencoder or its DistributedDataParallel wrapper."""
    device_type = x.device.type
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=amp):
        terms = model(x, gather) if gather else model(x)
    optimizer.zero_grad(set_to_none=True)
    terms["total"].backward()
    if clip_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    optimizer.step()
    return terms


def make_optimizer(model: Autoencoder, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the model's parameters, with the regulariser's decoder weight decay (RAE)."""
    # RAE's decoder regularisation is L2 on the decoder weights: weight decay on that group only.
    decoder_decay = float(getattr(model.regularizer, "decoder_weight_decay", 0.0))
    decoder_params = list(model.decoder.parameters())
    decoder_ids = {id(p) for p in decoder_params}
    others = [p for p in model.parameters() if id(p) not in decoder_ids]
    return torch.optim.AdamW(
        [
            {"params": others, "weight_decay": config.weight_decay},
            {"params": decoder_params, "weight_decay": config.weight_decay + decoder_decay},
        ],
        lr=config.learning_rate,
    )


@torch.no_grad()
def _evaluate(model: Autoencoder, data: torch.Tensor, batch_size: int, device: torch.device, amp: bool) -> dict[str, float]:
    """Mean loss terms over validation batches of the training size (one batch if fewer)."""
    model.eval()
    size = min(batch_size, len(data))
    n_batches = max(1, len(data) // size)
    sums: dict[str, float] = {}
    for b in range(n_batches):
        x = data[b * size : (b + 1) * size].to(device).long()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            terms = model(x)
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + float(value)
    return {k: v / n_batches for k, v in sums.items()}


@torch.no_grad()
def encode_all(model: Autoencoder, data: torch.Tensor, device: torch.device, batch_size: int = 1024) -> torch.Tensor:
    """Deterministic codes [N, D] of sequences [N, L], on the CPU."""
    model.eval()
    return torch.cat(
        [model.encode(data[i : i + batch_size].to(device).long()).float().cpu() for i in range(0, len(data), batch_size)]
    )


def _fit_ex_post(run: RunDir, model: Autoencoder, train_data: torch.Tensor, device: torch.device, seed: int) -> None:
    """Fit the ex-post GMM (10 components, full covariance) on the best model's training codes."""
    best, _, _ = load_checkpoint(run.weights)
    model.load_state_dict(best)
    codes = encode_all(model, train_data, device)
    run.write_ex_post(fit_ex_post_gmm(codes, n_components=min(10, len(codes) // 2), seed=seed), n_codes=len(codes))


def _fit_kde(run: RunDir, model: Autoencoder, val_data: torch.Tensor, device: torch.device, seed: int) -> None:
    """The kernel density ``molks sample`` draws from by default, on the best model's codes of (at
    most ``KDE_CODES``) validation items: molecules it was not trained on, so that its samples are
    new ones (issue 17)."""
    keep = torch.randperm(len(val_data), generator=torch.Generator().manual_seed(seed))[:KDE_CODES].sort().values
    codes = encode_all(model, val_data[keep], device)  # model holds the best weights (_fit_ex_post)
    bandwidth = kde_bandwidth(model.regularizer)
    run.write_kde(fit_ex_post_kde(codes, bandwidth), bandwidth, source="validation split")


def _check_resumable(run: RunDir, config_doc: dict[str, Any]) -> None:
    if not run.exists():
        raise TrainingError(f"--resume: {run.path} holds no run to resume (no config.json)")
    trained = [name for name in (RunDir.WEIGHTS, RunDir.METRICS) if (run.path / name).is_file()]
    if trained and not run.checkpoint.is_file():
        # Starting over would silently overwrite the trained weights at the first epoch.
        raise TrainingError(
            f"--resume: {run.checkpoint} is missing, though the run has trained ({', '.join(trained)}), so it cannot "
            "continue; restore the checkpoint, or train from the start into another --out"
        )
    saved = run.read_config()
    if saved.get("grammar", {}).get("hash") != config_doc["grammar"]["hash"]:
        raise TrainingError(f"--resume: {run.path} was trained with a different grammar; use another --out")
    _check_same_data(run, saved.get("data") or {}, config_doc.get("data") or {})
    try:  # through ModelConfig, so that options added since the run began take their defaults
        saved_model = ModelConfig.from_dict(saved["model"]).to_dict()
    except (KeyError, TypeError, ValueError):
        saved_model = saved.get("model")
    if saved_model != config_doc["model"]:
        raise TrainingError(f"--resume: {run.path} was trained with a different model configuration; use another --out")
    free = ("epochs", "device", "patience", "checkpoint_minutes")  # options that may change between sessions
    changed = {k for k in config_doc["train"] if k not in free and saved["train"].get(k) != config_doc["train"][k]}
    if changed:
        raise TrainingError(f"--resume: training options {sorted(changed)} differ from the run in {run.path}")


def _check_same_data(run: RunDir, saved: dict[str, Any], given: dict[str, Any]) -> None:
    """Refuse to resume on other data: the split files and config.json would describe the old data."""
    old, new = saved.get("sha256"), given.get("sha256")
    if old and new and old != new:
        raise TrainingError(
            f"--resume: {run.path} was trained on {saved.get('path', '?')} (sha256 {old[:12]}..., "
            f"{saved.get('n_items', '?')} items), not on {given.get('path', '?')} (sha256 {new[:12]}..., "
            f"{given.get('n_items', '?')} items); resume with the same data or choose another --out"
        )


def _distributed_setup(config: TrainConfig) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 1, 0
    if not dist.is_initialized():
        backend = "nccl" if config.device != "cpu" and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return dist.get_world_size(), dist.get_rank()


def _distributed_device(config: TrainConfig, rank: int) -> torch.device:
    if config.device != "cpu" and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(t), dim=0)


PROGRESS_LINE_SECONDS = 60.0


def _running_terms(sums: dict[str, float], done: int) -> str:
    """The bar's postfix: the running mean reconstruction loss and greedy exact-reconstruction rate."""
    return f"rec {sums.get('rec', 0.0) / done:.3g}, exact {100 * sums.get('exact', 0.0) / done:.1f}%"


def _progress_line(epoch: int, done: int, total: int, seconds: float, batch_size: int, sums: dict[str, float]) -> str:
    """One line of progress within an epoch: batches, molecules/s, running loss terms, time left."""
    left = seconds / done * (total - done)
    return (
        f"epoch {epoch}: {done}/{total} batches, {done * batch_size / seconds:.0f} molecules/s, "
        f"{_running_terms(sums, done)}, {left / 60:.0f} min left in the epoch"
    )


def epoch_summary(row: dict[str, float], epochs: int) -> str:
    """One aligned line per epoch: each loss term for training and validation, the learning rate, the time.

    >>> epoch_summary({"epoch": 3, "train_total": 9.1, "train_rec": 8.68, "train_exact": 0.062,
    ...                "val_total": 8.0, "val_rec": 7.42, "val_exact": 0.108, "lr": 1e-3, "seconds": 1554}, 40)
    'epoch 3:  train rec   8.68  exact  6.2% | val rec   7.42  exact 10.8% | lr 0.001 | 25.9 min'
    """
    terms = [k[len("train_") :] for k in row if k.startswith("train_") and k != "train_total"]

    def value(term: str, v: float | None) -> str:
        if v is None:
            return "-"
        return f"{100 * v:4.1f}%" if term == "exact" else f"{v:6.3g}"

    def side(prefix: str) -> str:
        return "  ".join(f"{t} {value(t, row.get(f'{prefix}_{t}'))}" for t in terms)

    head = f"epoch {int(row['epoch'])}:".ljust(len(f"epoch {epochs}:"))
    return f"{head} train {side('train')} | val {side('val')} | lr {row['lr']:.3g} | {row['seconds'] / 60:.1f} min"
