"""Checkpoints: model and optimiser tensors in one safetensors file, written atomically.

A checkpoint is a single ``.safetensors`` file -- weights under ``model.``, optimiser
state under ``optim.`` -- whose metadata holds a JSON document (epoch, scheduler,
early-stopping state, metric history). Writing goes to a temporary file in the
same folder and ends with a rename (:func:`molks.files.atomic_write`), so a killed process leaves
either the old checkpoint or the new one, never half of one. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from molks.errors import InputError
from molks.checksums import ChecksumError, verify_checksum
from molks.files import atomic_write, atomic_write_bytes, atomic_write_text, file_sha256

__all__ = [
    "CheckpointError",
    "WEIGHTS_RECORD",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "checksum_record",
    "load_checkpoint",
    "save_checkpoint",
    "save_weights",
    "verify_weights",
]


class CheckpointError(InputError):
    """A checkpoint file is missing, corrupt, or belongs to another model."""


def save_checkpoint(
    path: Path,
    model_state: dict[str, torch.Tensor],
    meta: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
) -> None:
    """Save weights, optional optimiser state and JSON-able ``meta`` to ``path`` atomically."""
    _write_checkpoint(path, _checkpoint_bytes(path, model_state, meta, optimizer_state))


def save_weights(
    path: Path, model_state: dict[str, torch.Tensor], meta: dict[str, Any], optimizer_state: dict[str, Any] | None = None
) -> None:
    """:func:`save_checkpoint` with the file's SHA-256 recorded beside it (``sha256sum`` format; see
    :func:`checksum_record`: ``weights.sha256`` for a run's ``model.safetensors``), which
    :func:`verify_weights` compares when the file is loaded.

    A process killed at any point leaves a record that accepts the file on disk: while the new
    file is being written, the record lists both the old file's hash and the new one.
    """
    path = Path(path)
    data = _checkpoint_bytes(path, model_state, meta, optimizer_state)
    new = hashlib.sha256(data).hexdigest()
    record = checksum_record(path)
    old = file_sha256(path) if path.is_file() else None
    if old is not None and old != new:
        _write_record(record, path.name, [old, new])
    _write_checkpoint(path, data)
    _write_record(record, path.name, [new])


def verify_weights(path: Path) -> None:
    """Refuse a file altered on disk since it was written: ``path``'s SHA-256 must be one that its
    record (:func:`checksum_record`) holds (see :func:`save_weights`). Files without a record (written
    before records existed, or shipped without one) are not checked. Raises :class:`CheckpointError`
    naming the file."""
    try:
        verify_checksum(path, "the weights", record=checksum_record(Path(path)))
    except ChecksumError as err:
        raise CheckpointError(str(err)) from None


WEIGHTS_RECORD = "weights.sha256"
"""The file beside a run's ``model.safetensors`` that records its SHA-256 (written by :func:`save_weights`)."""


def checksum_record(path: Path) -> Path:
    """Where :func:`save_weights` records the SHA-256 of ``path``: ``weights.sha256`` beside a run's
    ``model.safetensors`` (the name runs have always had), ``NAME.sha256`` beside any other
    ``NAME.safetensors`` (``checkpoints/last.sha256``, ``ex_post_gmm.sha256``)."""
    path = Path(path)
    return path.with_name(WEIGHTS_RECORD if path.name == "model.safetensors" else f"{path.stem}.sha256")


def _checkpoint_bytes(
    path: Path, model_state: dict[str, torch.Tensor], meta: dict[str, Any], optimizer_state: dict[str, Any] | None
) -> bytes:
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model_state.items()}
    meta = dict(meta)
    if optimizer_state is not None:
        for index, state in optimizer_state["state"].items():
            for name, value in state.items():
                tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).contiguous().cpu()
        meta["optimizer_param_groups"] = optimizer_state["param_groups"]
    try:
        return save(tensors, metadata={"molks": json.dumps(meta)})
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: cannot write the checkpoint ({err})") from None


def _write_checkpoint(path: Path, data: bytes) -> None:
    try:
        atomic_write_bytes(path, data)
    except (SafetensorError, OSError) as err:  # a full disk surfaces as either
        raise CheckpointError(f"{path}: cannot write the checkpoint ({err})") from None


def _write_record(record: Path, name: str, digests: list[str]) -> None:
    try:
        atomic_write_text(record, "".join(f"{digest}  {name}\n" for digest in digests))
    except OSError as err:
        raise CheckpointError(f"{record}: cannot write the weights' SHA-256 ({err})") from None


def load_checkpoint(
    path: Path, device: str | torch.device = "cpu", *, finite: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any] | None]:
    """(model state, meta, optimiser state or None) from a file written by :func:`save_checkpoint`.

    ``finite``: refuse a file whose floating-point tensors hold NaN or infinity (bytes damaged
    on disk, or weights saved after training diverged), which would decode garbage silently."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw_meta = (f.metadata() or {}).get("molks")
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt or not a molks checkpoint ({err})") from None
    if raw_meta is None:
        raise CheckpointError(f"{path}: not a molks checkpoint (no molks metadata)")
    try:
        meta = json.loads(raw_meta)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({err})") from None
    if finite:
        damaged = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if damaged:
            raise CheckpointError(
                f"{path}: holds NaN or infinite values (in {', '.join(damaged[:3])}{' ...' if len(damaged) > 3 else ''}): "
                "damaged on disk, or saved after training diverged"
            )
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    optimizer_state = None
    if "optimizer_param_groups" in meta:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        optimizer_state = {"state": state, "param_groups": meta.pop("optimizer_param_groups")}
    return model_state, meta, optimizer_state
