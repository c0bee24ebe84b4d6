"""molks: grammar autoencoders with a Gaussian-mixture latent space, and Bayesian optimisation in it.

>>> import molks
>>> g = molks.Grammar.load("smiles")
>>> m = molks.load("moses")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from molks.errors import MolksError  # torch-free: the base of every molks exception

__all__ = ["Grammar", "GrammarError", "LatentModel", "MolksError", "load"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from molks.api import LatentModel, load
    from molks.grammar import Grammar, GrammarError

# Imported on first use: worker processes that only parse must not pay for torch.
_LAZY = {"Grammar": "molks.grammar", "GrammarError": "molks.grammar", "LatentModel": "molks.api", "load": "molks.api"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'molks' has no attribute {name!r}")
