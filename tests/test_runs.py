"""RunDir (a run directory's files) and the one training entry, train_from_file with a TrainingSpec."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from molks.runs import RunDir
from molks.training.checkpoint import CheckpointError
from molks.training.spec import TrainConfig, TrainingError, TrainingSpec, default_run_dir, train_from_file
from molks.training.trainer import epoch_summary


def test_split_round_trips_and_is_byte_stable(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_split(["CCO", "c1ccccc1"], ["CCN"])
    assert run.train_texts() == ["CCO", "c1ccccc1"]
    assert run.validation_texts() == ["CCN"]
    first = (run / RunDir.TRAIN).read_bytes()
    run.write_split(["CCO", "c1ccccc1"], ["CCN"])  # no timestamp in the gzip header: same bytes
    assert (run / RunDir.TRAIN).read_bytes() == first
    assert gzip.decompress(first).decode() == "CCO\nc1ccccc1\n"


def test_pool_file_prefers_training_items_then_held_out(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.pool_file() is None
    (tmp_path / "validation.smi").write_text("CCO\n")
    assert run.pool_file() == tmp_path / "validation.smi"
    run.write_split(["CCN"], ["CCO"])
    assert run.pool_file() == tmp_path / "train.smi.gz"


def test_unreadable_files_name_themselves(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with pytest.raises(CheckpointError, match="not a molks run directory"):
        run.read_config()
    run.config_file.write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: unreadable run configuration"):
        run.read_config()
    (tmp_path / "train.smi.gz").write_bytes(b"not gzip at all")
    with pytest.raises(CheckpointError, match=r"train\.smi\.gz: unreadable"):
        run.train_texts()
    run.ex_post_file.write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match="ex_post_gmm.safetensors"):
        run.read_ex_post()


def test_metrics_round_trip_with_a_plot(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    assert run.read_metrics() == []
    history = [{"epoch": 1, "train_total": 3.0, "train_rec": 2.5, "val_total": 2.9, "val_rec": 2.4, "lr": 1e-3, "seconds": 5.0}]
    run.write_metrics(history)
    assert run.read_metrics() == [{k: float(v) for k, v in history[0].items()}]
    assert (tmp_path / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_epoch_summaries_align_from_one_epoch_to_the_next() -> None:
    rows = [
        {"epoch": e, "train_total": t + 1, "train_rec": t, "train_exact": x, "val_total": t + 1, "val_rec": t,
         "val_exact": x, "lr": 1e-3, "seconds": 90.0}
        for e, t, x in ((9, 12.5, 0.031), (10, 8.02, 0.175))
    ]  # fmt: skip
    lines = [epoch_summary(row, epochs=40) for row in rows]
    assert lines[0].startswith("epoch 9: ") and lines[1].startswith("epoch 10:")
    assert [line.index("| val") for line in lines][0] == lines[1].index("| val")
    assert "exact 17.5%" in lines[1] and "lr 0.001" in lines[1] and "1.5 min" in lines[1]


def test_the_spec_derives_the_loss_weight_batch_size_and_fills_gmm_defaults(moses_smiles: list[str]) -> None:
    from molks.grammar import Grammar

    grammar = Grammar.load("smiles")
    spec = TrainingSpec(preset="tiny", train=TrainConfig(batch_size=48))
    config = spec.model_config(grammar, max_length=60, kind="molecules")
    assert config.batch_size == 48 == spec.train.batch_size
    assert config.regularizer_options == {"n_components": 10, "sigma": 1.0}
    assert TrainingSpec(regularizer="vae").options == {}
    with pytest.raises(TrainingError, match="lambda-rec"):
        TrainingSpec(lambda_rec=-1.0)
    with pytest.raises(ValueError, match="unknown option"):
        TrainingSpec(regularizer="gmm", regularizer_options={"n_componets": 3})


def test_train_from_file_writes_a_loadable_run_and_removes_a_failed_start(
    tmp_path: Path, moses_smiles: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import molks
    from molks.training import trainer

    data = tmp_path / "mols.smi"
    data.write_text("\n".join(moses_smiles[:80]) + "\nnot_a_smiles\n")
    logged: list[str] = []
    spec = TrainingSpec(preset="tiny", train=TrainConfig(epochs=1, batch_size=16, device="cpu"))
    run = train_from_file(data, spec, tmp_path / "run", processes=1, use_cache=False, progress=False, log=logged.append)
    assert any("skipped 1 of 81 items" in line for line in logged)
    doc = RunDir(run).read_config()
    assert doc["model"]["batch_size"] == doc["train"]["batch_size"] == 16
    assert doc["data"]["n_items"] == 80 and doc["data"]["path"] == str(data)
    assert molks.load(run).latent_dim == 8
    # A run that fails after writing its split but before its first epoch leaves no folder behind.
    def broken_optimizer(*args: object) -> None:
        assert (tmp_path / "failed" / "config.json").is_file()  # the start files were written
        raise RuntimeError("boom")

    monkeypatch.setattr(trainer, "make_optimizer", broken_optimizer)
    with pytest.raises(RuntimeError, match="boom"):
        train_from_file(data, spec, tmp_path / "failed", processes=1, use_cache=False, progress=False, log=logged.append)
    assert not (tmp_path / "failed").exists()
    monkeypatch.undo()
    # ...but never removes a run that already existed.
    shutil.copytree(run, tmp_path / "kept")
    with pytest.raises(TrainingError, match="already holds a run"):
        train_from_file(data, spec, tmp_path / "kept", processes=1, use_cache=False, progress=False, log=logged.append)
    assert json.loads((tmp_path / "kept" / "config.json").read_text()) == doc


def test_default_run_dir_names_the_data_and_regularizer() -> None:
    assert default_run_dir("data/moses-250k.smi.gz", "gmm") == Path("runs") / "moses-250k-gmm"
