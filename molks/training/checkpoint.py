"""Checkpoints: model and optimiser tensors in one safetensors file, written atomically.

A checkpoint is a single ``.safetensors`` file -- weights under ``model.``, optimiser
state under ``optim.`` -- whose metadata holds a JSON document (epoch, scheduler,
early-stopping state, metric history). Writing goes to a temporary file in the
same folder and ends with a rename (:func:`molks.files.atomic_write`), so a killed process leaves
either the old checkpoint or the new one, never half of one. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from molks.errors import MolksError
from molks.files import atomic_write, atomic_write_bytes, atomic_write_text

__all__ = ["CheckpointError", "atomic_write", "atomic_write_bytes", "atomic_write_text", "load_checkpoint", "save_checkpoint"]


class CheckpointError(MolksError, ValueError):
    """A checkpoint file is missing, corrupt, or belongs to another model."""


def save_checkpoint(
    path: Path,
    model_state: dict[str, torch.Tensor],
    meta: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
) -> None:
    """Save weights, optional optimiser state and JSON-able ``meta`` to ``path`` atomically."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model_state.items()}
    meta = dict(meta)
    if optimizer_state is not None:
        for index, state in optimizer_state["state"].items():
            for name, value in state.items():
                tensors[f"optim.{index}.{name}"] = torch.as_tensor(value).contiguous().cpu()
        meta["optimizer_param_groups"] = optimizer_state["param_groups"]
    try:
        atomic_write_bytes(path, save(tensors, metadata={"molks": json.dumps(meta)}))
    except (SafetensorError, OSError) as err:  # a full disk surfaces as either
        raise CheckpointError(f"{path}: cannot write the checkpoint ({err})") from None


def load_checkpoint(
    path: Path, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any] | None]:
    """(model state, meta, optimiser state or None) from a file written by :func:`save_checkpoint`."""
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
