"""Hostile but realistic input (issue 12): every case ends in one clear line with exit code 2, or
succeeds where it should; nothing is left half-written and nothing hangs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from molks.cli import app
from molks.files import atomic_write
from molks.workers import BrokenProcessPool, crashing_item, map_in_workers

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
MOLKS = ROOT / ".venv" / "bin" / "molks"
TINY = ["--epochs", "1", "--batch-size", "32", "--latent-dim", "8", "--components", "2", "--device", "cpu"]


def one_error_line(output: str) -> str:
    """The output's single error line (and assert there is exactly one, and no traceback)."""
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in output, output
    return errors[0]


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MOLKS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture()
def small(env: Path, moses_smiles: list[str]) -> Path:
    path = env / "small.smi"
    path.write_text("\n".join(moses_smiles[:96]) + "\n")
    return path


# -- 1. a typo in a training option leaves no run folder ------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--components", "0", "n_components"),
        ("--batch-size", "0", "batch-size"),
        ("--epochs", "0", "epochs"),
        ("--sigma", "0", "sigma"),
        ("--learning-rate", "nan", "learning-rate"),
        ("--lambda-rec", "-1", "lambda-rec"),
        ("--patience", "-1", "patience"),
        ("--option", "bogus=1", "bogus"),
        ("--option", "n_components=[1", "n_components"),
        ("--option", "=1", "KEY=VALUE"),
    ],
)
def test_a_bad_training_option_is_one_line_and_writes_nothing(small: Path, option: str, value: str, named: str) -> None:
    out = small.parent / "run"
    result = runner.invoke(app, ["train", str(small), "--out", str(out), *TINY, option, value])
    assert result.exit_code == 2, result.output
    assert named in one_error_line(result.output)
    assert not out.exists()


def test_after_a_failed_start_the_corrected_command_trains(small: Path) -> None:
    out = small.parent / "run"
    failed = runner.invoke(app, ["train", str(small), "--out", str(out), *TINY, "--option", "n_components=0"])
    assert failed.exit_code == 2 and not out.exists()
    result = runner.invoke(app, ["train", str(small), "--out", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert (out / "model.safetensors").is_file()

    # -- 3. --resume with other data is refused, naming both files
    other = small.parent / "other.smi"
    other.write_text("\n".join(small.read_text().split()[::-1]) + "\n")
    resumed = runner.invoke(app, ["train", str(other), "--out", str(out), *TINY, "--resume"])
    assert resumed.exit_code == 2
    line = one_error_line(resumed.output)
    assert "small.smi" in line and "other.smi" in line and "sha256" in line


# -- 2. a --device typo is one line in every command -----------------------------------------------


DEVICE_COMMANDS = {
    "train": ["train", "small.smi", "--out", "run"],
    "encode": ["encode", "moses-small", "small.smi"],
    "decode": ["decode", "moses-small", "codes.npy"],
    "sample": ["sample", "moses-small", "--n", "2"],
    "evaluate": ["evaluate", "moses-small", "--n-samples", "2"],
    "optimize": ["optimize", "--model", "moses-small", "-o", "opt"],
    "demo": ["demo", "--quick", "--out", "demo"],
}


@pytest.mark.parametrize("device", ["gpu", "CPU", "bogus"])
@pytest.mark.parametrize("command", sorted(DEVICE_COMMANDS))
def test_a_device_typo_is_one_line(small: Path, command: str, device: str) -> None:
    np.save(small.parent / "codes.npy", np.zeros((2, 4), dtype=np.float32))
    result = runner.invoke(app, [*DEVICE_COMMANDS[command], "--device", device])
    assert result.exit_code == 2, result.output
    assert f"--device '{device}'" in one_error_line(result.output)
    assert not (small.parent / "run").exists() and not (small.parent / "demo").exists()


# -- 3. optimize --resume with another pool --------------------------------------------------------


def test_optimize_resume_refuses_another_pool(env: Path, moses_smiles: list[str]) -> None:
    (env / "p1.smi").write_text("\n".join(moses_smiles[:40]) + "\n")
    (env / "p2.smi").write_text("\n".join(moses_smiles[100:140]) + "\n")
    base = ["optimize", "-m", "moses-small", "-q", "2", "--decodings", "1", "-o", "opt", "--quiet"]
    first = runner.invoke(app, [*base, "--pool", "p1.smi", "-n", "1"])
    assert first.exit_code == 0, first.output
    resumed = runner.invoke(app, [*base, "--pool", "p2.smi", "-n", "2", "--resume"])
    assert resumed.exit_code == 2
    line = one_error_line(resumed.output)
    assert "p1.smi" in line and "p2.smi" in line


# -- 4. the chemistry boundary: a huge line, a dead worker ------------------------------------------


@pytest.fixture()
def mixed(env: Path, moses_smiles: list[str]) -> Path:
    path = env / "mix.smi"
    path.write_text("\n".join(moses_smiles[:2500]) + "\n" + "C" * 50_000 + "\n" + "\n".join(moses_smiles[2500:2520]) + "\n")
    return path


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_huge_smiles_is_skipped_before_rdkit(mixed: Path, processes: str) -> None:
    result = runner.invoke(app, ["data", "parse", str(mixed), "--processes", processes, "--no-cache"])
    assert result.exit_code == 0, result.output
    assert "2520 of 2521 items parsed" in result.output
    assert "line 2501: too long: 50,000 characters" in result.output


def test_encode_skips_a_huge_smiles_with_a_short_reason(env: Path, moses_smiles: list[str]) -> None:
    (env / "mix.smi").write_text("\n".join(moses_smiles[:3]) + "\n" + "C" * 50_000 + "\n")
    result = runner.invoke(app, ["encode", "moses-small", "mix.smi", "--out", "codes.npy"])
    assert result.exit_code == 0, result.output
    assert "mix.smi:4: skipped" in result.output and "50,000 characters" in result.output
    assert len(result.output) < 1000  # the 50,000 characters are not echoed
    assert np.load(env / "codes.npy").shape[0] == 3


def exit_on_poison(chunk: list[str]) -> list[str]:
    """A worker function that dies (as RDKit does on a segfault) on the item 'poison'."""
    if "poison" in chunk:
        os._exit(139)
    return chunk


def test_a_dead_worker_raises_instead_of_hanging_and_is_found() -> None:
    chunks = [["a", "b"], ["c", "poison", "d"], ["e"]]
    with pytest.raises(BrokenProcessPool):
        list(map_in_workers(exit_on_poison, chunks, 2))
    assert crashing_item(exit_on_poison, chunks) == (1, 1)
    assert list(map_in_workers(exit_on_poison, [["a"], ["b"]], 2)) == [["a"], ["b"]]


# -- 5. an ambiguous grammar is a finding, not a crash ---------------------------------------------


@pytest.fixture()
def ambiguous(env: Path) -> tuple[Path, Path]:
    grammar = env / "amb.cfg"
    grammar.write_text("S -> S '+' S | 'x'\n")
    data = env / "amb.txt"
    data.write_text("".join("+".join(["x"] * n) + "\n" for n in (1, 3, 14, 25)))
    return grammar, data


def test_grammar_check_reports_heavy_ambiguity(ambiguous: tuple[Path, Path]) -> None:
    grammar, data = ambiguous
    result = runner.invoke(app, ["grammar", "check", str(grammar), str(data), "--json", "report.json"])
    assert result.exit_code == 0, result.output
    assert "more parse trees than nltk will enumerate" in result.output
    report = json.loads((grammar.parent / "report.json").read_text())
    assert {item["line"] for item in report["ambiguous"]} >= {3, 4}


def test_data_parse_skips_heavily_ambiguous_items(ambiguous: tuple[Path, Path]) -> None:
    grammar, data = ambiguous
    result = runner.invoke(app, ["data", "parse", str(data), "--grammar", str(grammar), "--no-cache"])
    assert result.exit_code == 0, result.output
    assert "2 of 4 items parsed" in result.output
    assert "line 3: ambiguous" in result.output and "line 4: ambiguous" in result.output


# -- 6. outputs: atomic, named on failure, ordinary modes, pipes -------------------------------------


def test_a_failed_write_names_the_file_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "codes.npy"
    target.write_bytes(b"old")

    def full_disk(f: object) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="codes.npy") as caught:
        atomic_write(target, full_disk)
    assert caught.value.filename == str(target)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["codes.npy"]


def test_outputs_are_whole_files_with_ordinary_modes(env: Path, moses_smiles: list[str]) -> None:
    (env / "in.smi").write_text("\n".join(moses_smiles[:4]) + "\n")
    assert runner.invoke(app, ["encode", "moses-small", "in.smi", "--out", "codes.csv"]).exit_code == 0
    result = runner.invoke(app, ["sample", "moses-small", "--n", "4", "--out", "s.txt", "--codes", "s.npy", "--png", "s.png"])
    assert result.exit_code == 0, result.output
    umask = os.umask(0)
    os.umask(umask)
    for name in ("codes.csv", "s.txt", "s.npy", "s.png"):
        assert (env / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    assert not [p for p in os.listdir(env) if p.endswith(".tmp")]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["grammar", "check", "smiles", "in.smi", "--json", "adir"], "adir"),
        (["optimize", "-m", "moses-small", "-o", "afile"], "afile"),
        (["encode", "moses-small", "in.smi", "--out", "adir/codes.npy"], "adir/codes.npy"),
    ],
)
def test_an_unusable_output_path_is_one_line(env: Path, args: list[str], named: str) -> None:
    (env / "in.smi").write_text("CCO\n")
    (env / "adir").mkdir()
    (env / "adir" / "codes.npy").mkdir()  # a directory where the file should go
    (env / "afile").write_text("")
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert named in one_error_line(result.output)


@pytest.mark.skipif(not MOLKS.exists(), reason="needs the installed molks command")
def test_encode_into_head_ends_without_a_traceback(env: Path, moses_smiles: list[str]) -> None:
    (env / "in.smi").write_text("\n".join(moses_smiles[:3000]) + "\n")
    shell = f"{MOLKS} encode moses-small in.smi | head -n 2"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2
