"""``molks train`` end to end through typer's CliRunner, on a small real file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import molks
from molks.cli import app
from molks.cli.train import Decoder, Encoder, Preset, Regularizer
from molks.model.names import DECODERS, ENCODERS, PRESET_NAMES, REGULARIZER_NAMES

from conftest import ROOT

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


def test_the_train_choices_are_the_names_the_library_takes() -> None:
    from molks.model.networks import KINDS, PRESETS, make_decoder, make_encoder, network_config
    from molks.model.regularizers import REGULARIZERS, make_regularizer

    assert [m.value for m in Preset] == list(PRESET_NAMES) == list(PRESETS)
    assert [m.value for m in Regularizer] == list(REGULARIZER_NAMES) == list(REGULARIZERS)
    assert [m.value for m in Encoder] == list(ENCODERS)
    assert [m.value for m in Decoder] == list(DECODERS)
    # Each name the command line offers is one the library builds.
    for preset in PRESET_NAMES:
        for kind in KINDS:
            assert network_config(preset, kind, n_outputs=12, max_length=40).latent_dim >= 1
    encoders = {type(make_encoder(network_config("tiny", "molecules", 12, 40, encoder=e))) for e in ENCODERS}
    decoders = {type(make_decoder(network_config("tiny", "molecules", 12, 40, decoder=d))) for d in DECODERS}
    assert len(encoders) == len(ENCODERS) and len(decoders) == len(DECODERS)  # a network of its own each
    for name in REGULARIZER_NAMES:
        assert make_regularizer(name, latent_dim=2, batch_size=8).name == name


def test_the_command_line_builds_its_options_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from molks.cli import app\n"
        "for args in (['--help'], ['train', '--help'], ['sample', '--help'], ['evaluate', '--help']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "False", result.stdout + result.stderr


def test_train_takes_a_regulariser_whose_name_is_not_an_identifier(tmp_path: Path) -> None:
    data = tmp_path / "small.smi"
    data.write_text("CCO\n")
    # cv-vae reaches the library as spelt; an option it does not take is refused before training.
    result = runner.invoke(app, ["train", str(data), "--regularizer", "cv-vae", "--option", "sigma=2",
                                 "--out", str(tmp_path / "r")])  # fmt: skip
    assert result.exit_code == 2 and "regulariser 'cv-vae'" in result.output, result.output
    assert not (tmp_path / "r").exists()
