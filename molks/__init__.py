"""molks: grammar autoencoders with a Gaussian-mixture latent space, and Bayesian optimisation in it.

>>> import molks
>>> m = molks.load("moses")                                  # the shipped model
>>> z = m.encode(["CCO", "c1ccccc1"])                        # [2, D]
>>> codes, kept, failures = m.encode(smiles, errors="skip")  # bad items reported, not raised
>>> m.decode(z), m.sample(5)

The public API -- the names below are the ones molks keeps stable:

=====================================  ==========================================================
``load(name_or_path, device)``         a trained run directory or a shipped model -> LatentModel
``LatentModel``                        encode, decode, decode_robust, sample, is_valid, domain
``Encoding``                           what ``encode(texts, errors="skip")`` returns
``Grammar``, ``GrammarError``          context-free grammars: load, parse, derive
``TrainingSpec``, ``TrainConfig``      what to train (network, regulariser, optimisation)
``train_from_file(path, spec, out)``   the one way runs are trained (CLI, demo, benchmarks, tests)
``RunDir``                             a run directory's files (config, split, weights, metrics)
``evaluate(model, ...)``               reconstruction, prior samples, FCD and the MOSES metrics
``MolksError``                         the base of every error molks raises for bad input;
``InputError``, ``UnsupportedError``   its kinds: wrong input; a request this machine cannot do
=====================================  ==========================================================

Latent-space Bayesian optimisation is :func:`molks.optimize.loop.optimize` (``molks optimize``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from molks.errors import InputError, MolksError, UnsupportedError  # torch-free: the error base and its kinds

__all__ = [
    "Encoding",
    "Grammar",
    "GrammarError",
    "InputError",
    "LatentModel",
    "MolksError",
    "RunDir",
    "TrainConfig",
    "TrainingSpec",
    "UnsupportedError",
    "evaluate",
    "load",
    "train_from_file",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from molks.api import Encoding, LatentModel, load
    from molks.evaluation import evaluate
    from molks.grammar import Grammar, GrammarError
    from molks.runs import RunDir
    from molks.training.spec import TrainConfig, TrainingSpec, train_from_file

# Imported on first use: worker processes that only parse must not pay for torch.
_LAZY = {
    "Encoding": "molks.api",
    "Grammar": "molks.grammar",
    "GrammarError": "molks.grammar",
    "LatentModel": "molks.api",
    "RunDir": "molks.runs",
    "TrainConfig": "molks.training.spec",
    "TrainingSpec": "molks.training.spec",
    "evaluate": "molks.evaluation",
    "load": "molks.api",
    "train_from_file": "molks.training.spec",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'molks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
