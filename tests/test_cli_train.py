"""``molks train`` end to end through typer's CliRunner, on a small real file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import molks
from molks.cli import app

runner = CliRunner()


def test_train_autoregressive_records_the_decoder_and_loads(tmp_path: Path, moses_smiles: list[str]) -> None:
    data = tmp_path / "small.smi"
    data.write_text("\n".join(moses_smiles[:96]) + "\n")
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "train", str(data), "--decoder", "autoregressive", "--epochs", "1", "--batch-size", "32",
        "--latent-dim", "8", "--components", "2", "--device", "cpu", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["network"]["decoder"] == "autoregressive"
    assert config["model"]["network"]["latent_dim"] == 8
    model = molks.load(out)
    texts = model.decode(model.sample_latent(4, seed=0))
    assert len(texts) == 4 and all(t is None or isinstance(t, str) for t in texts)


def test_train_rejects_an_unknown_decoder(tmp_path: Path) -> None:
    data = tmp_path / "small.smi"
    data.write_text("CCO\n")
    result = runner.invoke(app, ["train", str(data), "--decoder", "transformer", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "transformer" in result.output and not (tmp_path / "r").exists()
