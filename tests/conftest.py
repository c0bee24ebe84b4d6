"""Shared fixtures: small real data and a tiny model trained for real (seconds on 2 CPU cores)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# Tests run in parallel workers (pytest -n 2 on 2 cores): one intra-op thread each, or OpenMP
# threads oversubscribe the cores and every tensor operation slows down by orders of magnitude.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
MOSES_SAMPLE = ROOT / "data" / "moses_sample.smi"


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Caches (parsed datasets, prepared metric references) go to a folder of this test session,
    never into the user's ~/.cache."""
    patch = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("molks-cache")
    patch.setenv("MOLKS_CACHE_DIR", str(folder))
    yield folder
    patch.undo()


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
    """Train the ``tiny`` preset for real through molks's one training entry; returns the run directory.

    The texts are written to a file beside the run (the entry trains from files, as users do)."""
    from molks.files import atomic_write_text
    from molks.training.spec import TrainConfig, TrainingSpec, train_from_file

    data = run_dir.parent / f"{run_dir.name}-data.{'smi' if grammar_name == 'smiles' else 'txt'}"
    atomic_write_text(data, "".join(f"{t}\n" for t in texts))  # atomic: DDP ranks write it at once
    spec = TrainingSpec(
        grammar=grammar_name, regularizer=regularizer, preset="tiny", decoder=decoder,
        train=TrainConfig(**{"batch_size": 32, "epochs": epochs, "seed": 0, **train_options}),  # type: ignore[arg-type]
    )  # fmt: skip
    return train_from_file(data, spec, run_dir, resume=resume, processes=1, use_cache=False, progress=False,
                           log=lambda _: None)  # fmt: skip


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module's tests: their GP matrices are tiny, and a second thread only
    adds OpenMP overhead (much more on a busy CPU). Use with ``pytest.mark.usefixtures``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
