"""Shared fixtures: small real data and a tiny model trained for real (seconds on 2 CPU cores)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Tests run in parallel workers (pytest -n 2 on 2 cores): one intra-op thread each, or OpenMP
# threads oversubscribe the cores and every tensor operation slows down by orders of magnitude.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
MOSES_SAMPLE = ROOT / "data" / "moses_sample.smi"


@pytest.fixture(scope="session")
def moses_smiles() -> list[str]:
    """The embedded 20,000-molecule MOSES sample (canonical SMILES)."""
    return MOSES_SAMPLE.read_text().split()


def train_tiny(
    run_dir: Path,
    texts: list[str],
    grammar_name: str = "smiles",
    regularizer: str = "gmm",
    epochs: int = 2,
    resume: bool = False,
    decoder: str = "autoregressive",
    **train_options: object,
) -> Path:
    """Train a deliberately tiny model for real; returns its run directory."""
    from molks.api import pad_sequences
    from molks.grammar import Grammar
    from molks.model.autoencoder import ModelConfig
    from molks.model.networks import NetworkConfig
    from molks.training.trainer import TrainConfig, train

    grammar = Grammar.load(grammar_name)
    ids = [grammar.parse(t) for t in texts]
    length = max(map(len, ids))
    network = NetworkConfig(
        n_outputs=grammar.n_outputs, max_length=length, latent_dim=8, conv_channels=(8, 8), conv_kernels=(5, 5),
        dense_size=32, decoder_dense_size=16, gru_layers=1, gru_hidden=32, decoder=decoder,
    )
    options = {"batch_size": 32, "epochs": epochs, "seed": 0, **train_options}
    config = ModelConfig(network, regularizer, int(options["batch_size"]), grammar_hash=grammar.content_hash)
    return train(run_dir, pad_sequences(ids, length, grammar.padding_index), texts, grammar, config,
                 TrainConfig(**options), resume=resume, progress=False, log=lambda _: None)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, moses_smiles: list[str]) -> Path:
    """A tiny GMM model trained for 2 epochs on 320 molecules: real weights, poor decoding."""
    return train_tiny(tmp_path_factory.mktemp("tiny") / "run", moses_smiles[:320])


@pytest.fixture(scope="session")
def tiny_expression_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GMM model over the arithmetic grammar, trained on generated expressions."""
    texts = (ROOT / "data" / "expressions.txt").read_text().splitlines()[:320]
    return train_tiny(tmp_path_factory.mktemp("tiny-expr") / "run", texts, grammar_name="arithmetic")


__all__ = ["MOSES_SAMPLE", "ROOT", "train_tiny"]
