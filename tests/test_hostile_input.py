"""Hostile but realistic input (issue 12): every case ends in one clear line with exit code 2, or
succeeds where it should; nothing is left half-written and nothing hangs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
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
    "encode": ["encode", "moses", "small.smi"],
    "decode": ["decode", "moses", "codes.npy"],
    "sample": ["sample", "moses", "--n", "2"],
    "evaluate": ["evaluate", "moses", "--n-samples", "2"],
    "optimize": ["optimize", "--model", "moses", "-o", "opt"],
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
    base = ["optimize", "-m", "moses", "-q", "2", "--decodings", "1", "-o", "opt", "--quiet"]
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
    result = runner.invoke(app, ["encode", "moses", "mix.smi", "--out", "codes.npy"])
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
    assert runner.invoke(app, ["encode", "moses", "in.smi", "--out", "codes.csv"]).exit_code == 0
    result = runner.invoke(app, ["sample", "moses", "--n", "4", "--out", "s.txt", "--codes", "s.npy", "--png", "s.png"])
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
        (["optimize", "-m", "moses", "-o", "afile"], "afile"),
        (["encode", "moses", "in.smi", "--out", "adir/codes.npy"], "adir/codes.npy"),
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
    shell = f"{MOLKS} encode moses in.smi | head -n 2"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2


# -- 7. user targets: checked once, before the optimisation, in one line naming the target -----------


TARGETS_MODULE = '''
def good(texts):
    return [float(len(t)) for t in texts]

def two_arguments(texts, scale):
    return [scale * len(t) for t in texts]

def no_arguments():
    return []

def raises(texts):
    raise ZeroDivisionError("division by zero in my scorer")

def too_short(texts):
    return [1.0]

def words(texts):
    return ["high" for t in texts]

def booleans(texts):
    return [True for t in texts]

def a_number(texts):
    return 3.0

def a_string(texts):
    return "1.0"

NOT_A_FUNCTION = 3
'''

BAD_TARGETS = {
    "two_arguments": "signature is (texts, scale)",
    "no_arguments": "signature is ()",
    "raises": "raised ZeroDivisionError: division by zero in my scorer",
    "too_short": "returned 1 scores for 2 inputs",
    "words": "neither a number nor None",
    "booleans": "neither a number nor None",
    "a_number": "returned float, not a list",
    "a_string": "returned str, not a list",
    "NOT_A_FUNCTION": "not a function",
    "missing": "has no attribute 'missing'",
}


@pytest.fixture()
def targets(env: Path, monkeypatch: pytest.MonkeyPatch, moses_smiles: list[str]) -> Path:
    """A folder on sys.path and PYTHONPATH holding target modules, and a small pool."""
    folder = env / "usertargets"
    folder.mkdir()
    (folder / "hostile_targets.py").write_text(TARGETS_MODULE)
    (folder / "hostile_syntax.py").write_text("def f(texts):\n    return [1.0 for t in texts\n")
    (folder / "hostile_importerror.py").write_text("import molks_no_such_dependency_xyz\n\ndef f(texts):\n    return []\n")
    (folder / "hostile_crash_on_import.py").write_text("raise RuntimeError('no licence file found')\n")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))
    (env / "pool.smi").write_text("\n".join(moses_smiles[:20]) + "\n")
    yield folder
    for name in ("hostile_targets", "hostile_syntax", "hostile_importerror", "hostile_crash_on_import"):
        sys.modules.pop(name, None)


OPTIMIZE = ["optimize", "-m", "moses", "--pool", "pool.smi", "-n", "1", "-q", "2", "--decodings", "1", "-o", "opt", "--quiet"]


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        *((f"hostile_targets:{name}", reason) for name, reason in BAD_TARGETS.items()),
        ("hostile_syntax:f", "syntax error in module 'hostile_syntax' at "),
        ("hostile_importerror:f", "imports 'molks_no_such_dependency_xyz', which is not installed"),
        ("hostile_crash_on_import:f", "raised RuntimeError: no licence file found"),
        ("hostile_no_such_module:f", "cannot import module 'hostile_no_such_module'"),
        ("hostile_targets", "unknown target"),
    ],
)
def test_a_bad_user_target_is_one_line_before_the_optimisation(targets: Path, spec: str, reason: str) -> None:
    result = runner.invoke(app, [*OPTIMIZE, "--target", spec])
    assert result.exit_code == 2, result.output
    line = one_error_line(result.output)
    assert f"target {spec!r}" in line and reason in line, line
    assert not (targets.parent / "opt").exists()  # found before the run folder is written


def test_a_good_user_target_optimises(targets: Path) -> None:
    result = runner.invoke(app, [*OPTIMIZE, "--target", "hostile_targets:good"])
    assert result.exit_code == 0, result.output
    assert (targets.parent / "opt" / "summary.json").is_file()


def test_the_target_contract_is_in_the_help() -> None:
    result = runner.invoke(app, ["optimize", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "list[str] -> list[float | None]" in " ".join(result.output.replace("│", " ").split())


@pytest.mark.skipif(not MOLKS.exists(), reason="needs the installed molks command")
def test_a_raising_target_is_one_line_from_the_installed_command(targets: Path) -> None:
    done = subprocess.run(
        [str(MOLKS), *OPTIMIZE, "--target", "hostile_targets:raises"],
        capture_output=True, text=True, timeout=300, cwd=targets.parent, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "target 'hostile_targets:raises' raised ZeroDivisionError" in one_error_line(done.stderr)


# -- 8. the rest: CSV columns, huge --n, negative options, altered weights ---------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["grammar", "check", "smiles", "multi.csv"],
        ["data", "parse", "multi.csv", "--no-cache"],
        ["encode", "moses", "multi.csv"],
        ["optimize", "-m", "moses", "--pool", "multi.csv", "-o", "opt"],
        ["train", "multi.csv", "--out", "run", *TINY],
    ],
    ids=["grammar-check", "data-parse", "encode", "optimize", "train"],
)
def test_a_csv_without_a_smiles_column_is_refused_naming_its_columns(env: Path, args: list[str]) -> None:
    (env / "multi.csv").write_text("id,mol,logp\n1,CCO,0.1\n2,c1ccccc1,1.2\n")
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    line = one_error_line(result.output)
    assert "multi.csv" in line and "'id', 'mol', 'logp'" in line and "--column" in line, line
    assert not (env / "run").exists() and not (env / "opt").exists()


def test_a_csv_column_can_be_named_and_a_one_column_csv_is_used_as_is(env: Path) -> None:
    (env / "multi.csv").write_text("id,mol\n1,CCO\n2,c1ccccc1\n")
    named = runner.invoke(app, ["grammar", "check", "smiles", "multi.csv", "--column", "mol"])
    assert named.exit_code == 0, named.output
    assert "2 of 2 items tokenize and parse" in named.output.replace(",", "")
    (env / "single.csv").write_text("molecule\nCCO\nc1ccccc1\nCC(=O)O\n")
    for args in (["grammar", "check", "smiles", "single.csv"], ["data", "parse", "single.csv", "--no-cache"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "3 of 3 items" in result.output.replace(",", ""), result.output


def test_a_huge_sample_is_drawn_in_chunks_and_streamed(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import molks.cli.model as model_cli
    from molks.api import LatentModel
    from molks.codes import CodesError

    monkeypatch.setattr(model_cli, "SAMPLE_CHUNK", 4)
    sizes: list[int] = []
    original = LatentModel.sample

    def spy(self: LatentModel, n: int, **kwargs: object) -> object:
        sizes.append(n)
        if len(sizes) > 3:
            raise CodesError("enough")  # a billion samples would take days: stop after three chunks
        return original(self, n, **kwargs)

    monkeypatch.setattr(LatentModel, "sample", spy)
    streamed = runner.invoke(app, ["sample", "moses", "--n", "1000000000", "--seed", "1"])
    assert streamed.exit_code == 2 and sizes == [4, 4, 4, 4]  # never more than a chunk at once
    assert len(streamed.output.splitlines()) == 12 + 1  # three chunks printed as they came, then the error

    sizes.clear()
    failed = runner.invoke(app, ["sample", "moses", "--n", "1000000000", "--out", "s.txt", "--codes", "s.npy"])
    assert failed.exit_code == 2 and not (env / "s.txt").exists() and not (env / "s.npy").exists()  # atomic
    assert not [p for p in os.listdir(env) if p.endswith(".tmp")]

    monkeypatch.setattr(LatentModel, "sample", original)
    args = ["sample", "moses", "--seed", "1", "--n"]
    assert runner.invoke(app, [*args, "10", "--out", "s.txt", "--codes", "s.npy"]).exit_code == 0
    assert runner.invoke(app, [*args, "10", "--codes", "s.csv"]).exit_code == 0
    assert runner.invoke(app, [*args, "4", "--out", "first.txt", "--codes", "first.npy"]).exit_code == 0
    lines = (env / "s.txt").read_text().splitlines()
    codes = np.load(env / "s.npy")
    assert len(lines) == 10 and codes.shape[0] == 10
    assert (env / "first.txt").read_text().splitlines() == lines[:4]  # chunk 0 is the plain seed
    np.testing.assert_array_equal(np.load(env / "first.npy"), codes[:4])
    from molks.codes import read_codes

    np.testing.assert_allclose(read_codes(env / "s.csv"), codes, rtol=1e-6)
    assert len(set(lines)) > 4  # the chunks differ


@pytest.mark.parametrize(("option", "value"), [("--patience", "-1"), ("--lambda-rec", "-1"), ("--lambda-rec", "nan")])
def test_negative_training_weights_are_refused(small: Path, option: str, value: str) -> None:
    result = runner.invoke(app, ["train", str(small), "--out", "run", *TINY, option, value])
    assert result.exit_code == 2, result.output
    assert option.lstrip("-") in one_error_line(result.output)
    assert not (small.parent / "run").exists()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, moses_smiles: list[str]) -> Path:
    """A tiny run trained once for the weight-checksum tests (copied before each is altered)."""
    folder = tmp_path_factory.mktemp("weights")
    (folder / "small.smi").write_text("\n".join(moses_smiles[:96]) + "\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOLKS_CACHE_DIR", str(folder / "cache"))
        result = runner.invoke(app, ["train", str(folder / "small.smi"), "--out", str(folder / "run"), *TINY])
    assert result.exit_code == 0, result.output
    shutil.rmtree(folder / "cache", ignore_errors=True)
    return folder / "run"


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte of the last tensor: still a valid safetensors file
    path.write_bytes(bytes(data))


def replace_the_weights(path: Path) -> None:
    """Valid weights of the same model, but not the trained ones (a file swapped or edited by a tool)."""
    from molks.training.checkpoint import load_checkpoint, save_checkpoint

    state, meta, _ = load_checkpoint(path)
    save_checkpoint(path, {name: tensor * 0.5 for name, tensor in state.items()}, meta)


def garble_record(path: Path) -> None:
    path.with_name("weights.sha256").write_text("not a checksum\n")


@pytest.mark.parametrize(
    ("alter", "reason"),
    [
        (flip_a_byte, "the weights were altered or damaged on disk"),
        (replace_the_weights, "the weights were altered or damaged on disk"),
        (garble_record, "holds no SHA-256 of model.safetensors"),
    ],
    ids=["flipped-byte", "replaced", "bad-record"],
)
def test_weights_altered_on_disk_are_refused(
    trained_run: Path, tmp_path: Path, alter: Callable[[Path], object], reason: str
) -> None:
    import molks
    from molks.errors import MolksError

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert (run / "weights.sha256").read_text().split() == [
        hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest(),
        "model.safetensors",
    ]
    molks.load(run)  # intact: loads
    alter(run / "model.safetensors")
    with pytest.raises(MolksError, match=reason) as caught:
        molks.load(run)
    assert "model.safetensors" in str(caught.value) or "weights.sha256" in str(caught.value)
    result = runner.invoke(app, ["sample", str(run), "--n", "2"])
    assert result.exit_code == 2 and reason in one_error_line(result.output)


def test_runs_without_a_weights_record_still_load(trained_run: Path, tmp_path: Path) -> None:
    import molks

    run = tmp_path / "old-run"
    shutil.copytree(trained_run, run)
    (run / "weights.sha256").unlink()  # a run trained before the record existed
    flip_a_byte(run / "model.safetensors")
    assert molks.load(run).latent_dim == 8
    # The shipped model carries its record, and it matches.
    assert (ROOT / "molks" / "models" / "moses" / "weights.sha256").is_file()
    molks.load("moses")


def test_saving_new_weights_never_leaves_a_record_that_refuses_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from molks.training import checkpoint

    path = tmp_path / "model.safetensors"
    checkpoint.save_weights(path, {"w": torch.zeros(3)}, {})
    checkpoint.verify_weights(path)
    written: list[str] = []

    def killed_after_the_first_record(record: Path, name: str, digests: list[str]) -> None:
        original_write_record(record, name, digests)
        written.append(record.read_text())
        raise KeyboardInterrupt  # a kill between the record and the weights

    original_write_record = checkpoint._write_record
    monkeypatch.setattr(checkpoint, "_write_record", killed_after_the_first_record)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_weights(path, {"w": torch.ones(3)}, {})
    assert len(written[0].splitlines()) == 2  # old and new both accepted while the file is replaced
    checkpoint.verify_weights(path)  # the old weights are still accepted
    monkeypatch.setattr(checkpoint, "_write_record", original_write_record)
    checkpoint.save_weights(path, {"w": torch.ones(3)}, {})
    checkpoint.verify_weights(path)
    assert len((tmp_path / "weights.sha256").read_text().splitlines()) == 1
