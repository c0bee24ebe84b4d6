"""The devices molks runs on: a ``--device`` name checked, then resolved to a torch device.

The one device resolver of molks: every command's ``--device``, :func:`molks.load` and training
go through :func:`resolve_device`. It sits below the API and the trainer, so loading a model for
inference never imports the trainer. Torch is imported on use: the command line checks a name
(:func:`check_device_name`) before it pays for torch.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from molks.errors import InputError, UnsupportedError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICE_HINT", "DeviceError", "DeviceUnavailableError", "check_device_name", "resolve_device"]

# The devices molks runs on; torch accepts many more names (meta, xla, ...) that would fail later.
_DEVICE_NAME = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")
DEVICE_HINT = "use auto, cpu, cuda or cuda:N"


class DeviceError(InputError):
    """A device name molks does not know, or (:class:`DeviceUnavailableError`) a device not present here."""


class DeviceUnavailableError(DeviceError, UnsupportedError):
    """A device molks knows that this machine does not have (``--device cuda`` without a GPU)."""


def check_device_name(name: object) -> str:
    """``name`` if it spells a device molks knows (whether or not it is present); else a one-line error."""
    if not isinstance(name, str) or not _DEVICE_NAME.fullmatch(name):
        raise DeviceError(f"--device {name!r}: not a device name; {DEVICE_HINT}")
    return name


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; a misspelt name or a missing GPU is a one-line error."""
    import torch

    if check_device_name(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"--device {name}: no CUDA GPU is available here; use --device cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceUnavailableError(f"--device {name}: only {torch.cuda.device_count()} CUDA GPU(s) here; {DEVICE_HINT}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(f"--device {name}: MPS is not available here; use --device cpu or auto")
    return device
