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
from typer.testing import CliRunner, Result

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
    base = ["optimize", "-m", "moses", "-q", "2", "-o", "opt", "--quiet"]
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


OPTIMIZE = ["optimize", "-m", "moses", "--pool", "pool.smi", "-n", "1", "-q", "2", "-o", "opt", "--quiet"]


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
        (flip_a_byte, "the weights, altered or damaged on disk"),
        (replace_the_weights, "the weights, altered or damaged on disk"),
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


# -- bounded resources: every count a typo can blow up is refused before anything is allocated ------


@pytest.fixture()
def codes_file(env: Path) -> Path:
    path = env / "codes.npy"
    np.save(path, np.zeros((2, 8), dtype=np.float32))  # the tiny run's latent size
    return path


@pytest.mark.parametrize("value", ["0", "-5", "100000000"])
@pytest.mark.parametrize("command", ["encode", "decode"])
def test_a_batch_size_out_of_bounds_is_one_line(tiny_run: Path, small: Path, codes_file: Path, command: str, value: str) -> None:
    source = small if command == "encode" else codes_file
    result = runner.invoke(app, [command, str(tiny_run), str(source), "--batch-size", value])
    assert result.exit_code == 2, result.output
    assert f"batch_size (--batch-size) must be an integer from 1 to 65,536, got {value}" in one_error_line(result.output)


def test_the_python_api_refuses_the_same_batch_sizes_and_beam_widths(tiny_run: Path) -> None:
    import molks
    from molks.errors import MolksError

    model = molks.load(tiny_run)
    z = model.sample_latent(2, seed=0)
    for call in (
        lambda: model.encode(["CCO"], batch_size=-1),
        lambda: model.encode(["CCO"], batch_size=0, errors="skip"),
        lambda: model.decode(z, batch_size=0),
        lambda: model.decode(z, beam_width=1_000_000),
        lambda: model.decode_beams(z, beam_width=1_000_000),
        lambda: model.sample(2, beam_width=1_000_000),
        lambda: model.sample_latent(10**30),
        lambda: model.sample_latent(2, seed=2**70),
        lambda: model.sample_latent(2, seed=-1),
    ):
        with pytest.raises(MolksError, match="must be an integer from"):
            call()
    assert len(model.encode(["CCO", "CCN"], batch_size=1)) == 2  # the bounds themselves are allowed


@pytest.mark.parametrize("command", ["decode", "sample"])
def test_a_huge_beam_width_is_refused_before_decoding(tiny_run: Path, codes_file: Path, command: str) -> None:
    args = ["decode", str(tiny_run), str(codes_file)] if command == "decode" else ["sample", str(tiny_run), "--n", "2"]
    result = runner.invoke(app, [*args, "--beam-width", "1000000"])
    assert result.exit_code == 2, result.output
    assert "beam_width (--beam-width) must be an integer from 1 to 1,024, got 1000000" in one_error_line(result.output)
    zero = runner.invoke(app, [*args, "--beam-width", "0"])
    assert zero.exit_code == 2 and "beam_width" in one_error_line(zero.output)


def test_an_absurd_sample_count_or_seed_is_one_line(tiny_run: Path, env: Path) -> None:
    for args, named in (
        (["--n", str(10**30)], "n (--n) must be an integer from 1 to 1,000,000,000"),
        (["--n", "0"], "n (--n)"),
        (["--seed", str(2**70)], "seed (--seed) must be an integer from 0 to 4,294,967,295"),
        (["--seed", "-1"], "seed (--seed)"),
    ):
        result = runner.invoke(app, ["sample", str(tiny_run), *args, "--out", "s.txt"])
        assert result.exit_code == 2, result.output
        assert named in one_error_line(result.output)
        assert not (env / "s.txt").exists()
    codes = env / "codes.npy"
    np.save(codes, np.zeros((2, 8), dtype=np.float32))
    result = runner.invoke(app, ["decode", str(tiny_run), str(codes), "--temperature", "1", "--seed", str(2**70)])
    assert result.exit_code == 2 and "seed (--seed)" in one_error_line(result.output)


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--seed", str(2**70), "seed (--seed) must be an integer from 0 to 4,294,967,295"),
        ("--latent-dim", str(10**9), "latent_dim (--latent-dim) must be an integer from 1 to 4,096"),
        ("--latent-dim", "0", "latent_dim (--latent-dim)"),
        ("--components", str(10**7), "n_components must be an integer from 1 to 1,024"),
        ("--batch-size", str(10**9), "batch_size (--batch-size) must be an integer from 2 to 65,536"),
    ],
)
def test_absurd_training_sizes_are_refused_before_anything_is_allocated(small: Path, option: str, value: str, named: str) -> None:
    from molks.errors import MolksError
    from molks.training.spec import TrainConfig, TrainingSpec

    out = small.parent / "run"
    args = [a for i, a in enumerate(TINY) if option not in (a, TINY[i - 1] if i else None)]  # TINY without option
    result = runner.invoke(app, ["train", str(small), "--out", str(out), *args, option, value])
    assert result.exit_code == 2, result.output
    assert named in one_error_line(result.output)
    assert not out.exists()
    with pytest.raises(MolksError):  # the same rule in the Python API
        if option == "--latent-dim":
            TrainingSpec(latent_dim=int(value))
        elif option == "--components":
            TrainingSpec(regularizer_options={"n_components": int(value)})
        else:
            TrainConfig(**{option.lstrip("-").replace("-", "_"): int(value)})


def npy_claiming(path: Path, shape: tuple[int, ...], rows_written: int) -> None:
    """A .npy file whose header claims ``shape`` but which holds only ``rows_written`` rows of 8 floats."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
        f.write(np.zeros((rows_written, 8), dtype="<f4").tobytes())


@pytest.mark.parametrize("shape", [(10**11, 8), (3, 8)], ids=["huge", "truncated"])
def test_a_npy_whose_header_claims_more_than_the_file_holds_is_refused(tiny_run: Path, env: Path, shape: tuple[int, int]) -> None:
    from molks.codes import CodesError, read_codes

    path = env / "lying.npy"
    npy_claiming(path, shape, rows_written=2)
    with pytest.raises(CodesError, match="lying.npy: its header says"):
        read_codes(path)
    result = runner.invoke(app, ["decode", str(tiny_run), str(path)])
    assert result.exit_code == 2, result.output
    assert "lying.npy: its header says" in one_error_line(result.output)
    npy_claiming(path, (2, 8), rows_written=2)  # an honest header
    assert read_codes(path).shape == (2, 8)


# -- a run's own files are checked on load as its weights are --------------------------------------


def edit_config(run: Path, change: Callable[[dict], object]) -> None:
    doc = json.loads((run / "config.json").read_text())
    change(doc["model"])
    (run / "config.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("max_length", 10**9, "max_length must be an integer from 1 to 10,000"),
        ("max_length", 1e9, "max_length must be an integer from 1 to 10,000"),
        ("latent_dim", 10**9, "latent_dim must be an integer from 1 to 4,096"),
        ("gru_hidden", 10**8, "gru_hidden must be an integer from 1 to 16,384"),
        ("conv_channels", [10**8, 8], "conv_channels must be integers from 1 to 16,384"),
        ("n_components", 10**7, "n_components must be an integer from 1 to 1,024"),
        ("batch_size", 10**9, "batch_size must be"),
    ],
)
def test_a_run_configuration_with_absurd_sizes_is_refused_on_load(
    tiny_run: Path, tmp_path: Path, key: str, value: object, named: str
) -> None:
    import molks
    from molks.training.checkpoint import CheckpointError

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)

    def change(model: dict) -> None:
        where = model["regularizer_options"] if key == "n_components" else model if key == "batch_size" else model["network"]
        where[key] = value

    edit_config(run, change)
    with pytest.raises(CheckpointError, match=named) as caught:
        molks.load(run)
    assert "config.json" in str(caught.value)
    result = runner.invoke(app, ["sample", str(run), "--n", "2"])
    assert result.exit_code == 2 and "config.json" in one_error_line(result.output)


def write_ex_post(run: Path, change: Callable[[dict], object]) -> None:
    """Rewrite the run's ex-post GMM with ``change`` applied to its tensors (a checkpoint, no checksum)."""
    from molks.training.checkpoint import load_checkpoint, save_checkpoint

    tensors, meta, _ = load_checkpoint(run / "ex_post_gmm.safetensors")
    change(tensors)
    save_checkpoint(run / "ex_post_gmm.safetensors", tensors, meta)


def nan_means(tensors: dict) -> None:
    tensors["means"][0, 0] = float("nan")


def negative_weight(tensors: dict) -> None:
    tensors["weights"][0] = -0.5


def singular_scale(tensors: dict) -> None:
    tensors["scale_tril"][1] = 0.0


@pytest.mark.parametrize(
    ("change", "reason"),
    [(nan_means, "means must be finite"), (negative_weight, "weights must be finite and >= 0"),
     (singular_scale, "scale_tril must be lower-triangular with a positive diagonal")],
    ids=["nan-means", "negative-weight", "singular-scale"],
)  # fmt: skip
def test_an_invalid_ex_post_gmm_is_refused_on_load(tiny_run: Path, tmp_path: Path, change: Callable[[dict], object], reason: str) -> None:
    import molks
    from molks.training.checkpoint import CheckpointError

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "ex_post_gmm.sha256").unlink(missing_ok=True)  # a run from before the record: only the values are checked
    write_ex_post(run, change)
    with pytest.raises(CheckpointError, match=reason) as caught:
        molks.load(run)
    assert "ex_post_gmm.safetensors" in str(caught.value)
    result = runner.invoke(app, ["sample", str(run), "--n", "2", "--source", "ex-post"])
    assert result.exit_code == 2 and reason in one_error_line(result.output)


def test_an_ex_post_gmm_altered_on_disk_is_refused_by_its_checksum(tiny_run: Path, tmp_path: Path) -> None:
    import molks
    from molks.training.checkpoint import CheckpointError

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    record = (run / "ex_post_gmm.sha256").read_text().split()
    assert record == [hashlib.sha256((run / "ex_post_gmm.safetensors").read_bytes()).hexdigest(), "ex_post_gmm.safetensors"]

    def halve_the_means(tensors: dict) -> None:  # valid values, but not the fitted ones
        tensors["means"] *= 0.5

    write_ex_post(run, halve_the_means)
    with pytest.raises(CheckpointError, match="altered or damaged on disk") as caught:
        molks.load(run)
    assert "ex_post_gmm.safetensors" in str(caught.value) and "ex_post_gmm.sha256" in str(caught.value)
    (run / "ex_post_gmm.sha256").unlink()  # the change is intended: deleting the record accepts it
    assert molks.load(run).ex_post is not None
    assert (ROOT / "molks" / "models" / "moses" / "ex_post_gmm.sha256").is_file()  # the shipped model carries its record


# -- issue 21: never write over the user's files, never resume from damage, never race ---------------


def test_train_refuses_a_folder_of_the_users_files_and_leaves_it_as_it_was(small: Path) -> None:
    userdir = small.parent / "userdir"
    userdir.mkdir()
    (userdir / "metrics.csv").write_text("my,own\n1,2\n")
    (userdir / "validation.smi").write_text("my molecules\n")
    before = {p.name: p.read_bytes() for p in userdir.iterdir()}
    result = runner.invoke(app, ["train", str(small), "--out", str(userdir), *TINY])
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert "userdir" in line and "not empty" in line and "metrics.csv" in line
    assert {p.name: p.read_bytes() for p in userdir.iterdir()} == before  # nothing added, nothing changed


def test_train_into_an_empty_out_string_refuses_the_current_folder(small: Path) -> None:
    result = runner.invoke(app, ["train", str(small), "--out", "", *TINY])
    assert result.exit_code == 2 and "not empty" in one_error_line(result.output)
    assert sorted(p.name for p in small.parent.iterdir()) == ["small.smi"]


def test_train_into_a_symlink_loop_is_one_line(small: Path) -> None:
    loop = small.parent / "loop"
    loop.symlink_to(loop)
    result = runner.invoke(app, ["train", str(small), "--out", str(loop), *TINY])
    assert result.exit_code == 2 and "loop" in one_error_line(result.output)


def test_a_failed_start_in_a_folder_the_user_made_leaves_it_empty(small: Path) -> None:
    out = small.parent / "mine"
    out.mkdir()
    result = runner.invoke(app, ["train", str(small), "--out", str(out), *TINY[:2], "--batch-size", "90", *TINY[4:]])
    assert result.exit_code == 2 and "batch size" in one_error_line(result.output)
    assert out.is_dir() and list(out.iterdir()) == []  # the start files and the lock file are gone, the folder stays


def test_a_second_training_into_a_locked_run_folder_is_refused(small: Path) -> None:
    out = small.parent / "run"
    holder = subprocess.Popen(  # another process training there: it holds the folder's lock
        [sys.executable, "-c", ("import sys, time; from molks.files import folder_lock\n"
                                f"with folder_lock({str(out)!r}):\n    print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = runner.invoke(app, ["train", str(small), "--out", str(out), *TINY])
        assert result.exit_code == 2
        line = one_error_line(result.output)
        assert "in use by another molks process" in line and f"pid {holder.pid}" in line
        assert sorted(p.name for p in out.iterdir()) == [".molks.lock"]  # the refused run wrote nothing
    finally:
        holder.kill()
        holder.wait()
    result = runner.invoke(app, ["train", str(small), "--out", str(out), *TINY])  # the lock died with its process
    assert result.exit_code == 0, result.output


def test_a_diverging_run_says_where_and_keeps_its_last_good_checkpoint(small: Path) -> None:
    from molks.training.checkpoint import load_checkpoint, verify_weights

    out = small.parent / "run"
    result = runner.invoke(app, ["train", str(small), "--out", str(out), *TINY, "--learning-rate", "1e10",
                                 "--checkpoint-minutes", "0"])  # fmt: skip
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert "loss diverged" in line and "epoch 1, batch 2 of 2" in line and "checkpoint" in line
    _, meta, _ = load_checkpoint(out / "checkpoints" / "last.safetensors")  # finite, and the batch before
    verify_weights(out / "checkpoints" / "last.safetensors")
    assert meta["state"]["partial"]["batches"] == 1


def test_a_run_diverging_before_any_save_leaves_no_folder(small: Path) -> None:
    out = small.parent / "run"
    result = runner.invoke(app, ["train", str(small), "--out", str(out), *TINY, "--learning-rate", "1e10"])
    assert result.exit_code == 2 and "loss diverged" in one_error_line(result.output)
    assert not out.exists()


@pytest.fixture()
def resumable(trained_run: Path, small: Path) -> Path:
    """A copy of a finished 1-epoch run, resumable with ``--epochs 2`` on ``small``."""
    run = small.parent / "run"
    shutil.copytree(trained_run, run)
    return run


def resume(small: Path, run: Path) -> Result:
    return runner.invoke(app, ["train", str(small), "--out", str(run), "--epochs", "2", *TINY[2:], "--resume"])


def flip_tensor_bytes(path: Path) -> None:
    """Four bytes changed inside the tensors, the header intact (a bad disk sector)."""
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    middle = header + (len(data) - header) // 2
    data[middle : middle + 4] = b"\xff\xff\xff\x7f"
    path.write_bytes(bytes(data))


def test_resume_refuses_a_checkpoint_damaged_on_disk(resumable: Path, small: Path) -> None:
    checkpoint = resumable / "checkpoints" / "last.safetensors"
    assert (resumable / "checkpoints" / "last.sha256").read_text().split()[1] == "last.safetensors"
    flip_tensor_bytes(checkpoint)
    result = resume(small, resumable)
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert "last.safetensors" in line and ("altered or damaged" in line or "NaN" in line)
    (resumable / "checkpoints" / "last.sha256").unlink()  # no record: the values are still checked
    result = resume(small, resumable)
    assert result.exit_code == 2 and "NaN or infinite" in one_error_line(result.output)


def test_non_finite_weights_are_refused_on_load(trained_run: Path, tmp_path: Path) -> None:
    import molks
    from molks.training.checkpoint import CheckpointError, load_checkpoint, save_weights

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    state, meta, _ = load_checkpoint(run / "model.safetensors")
    next(t for t in state.values() if t.is_floating_point()).view(-1)[0] = float("nan")
    save_weights(run / "model.safetensors", state, meta)  # recorded anew: only the values are wrong
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        molks.load(run)


def test_resume_without_its_checkpoint_refuses_to_start_over(resumable: Path, small: Path) -> None:
    weights = (resumable / "model.safetensors").read_bytes()
    shutil.rmtree(resumable / "checkpoints")
    result = resume(small, resumable)
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert "last.safetensors is missing" in line and "model.safetensors" in line
    assert (resumable / "model.safetensors").read_bytes() == weights  # the trained weights are untouched


def test_resume_from_a_weights_only_checkpoint_is_a_checkpoint_error(resumable: Path, small: Path) -> None:
    shutil.copyfile(resumable / "model.safetensors", resumable / "checkpoints" / "last.safetensors")
    (resumable / "checkpoints" / "last.sha256").unlink()
    result = resume(small, resumable)
    assert result.exit_code == 2 and "not a training checkpoint" in one_error_line(result.output)


def test_resume_after_a_kill_before_the_first_epoch_says_it_starts_at_epoch_1(resumable: Path, small: Path) -> None:
    for name in ("checkpoints", "model.safetensors", "weights.sha256", "metrics.csv", "loss_curves.png"):
        path = resumable / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    result = resume(small, resumable)
    assert result.exit_code == 0, result.output
    assert "no epoch was saved yet, so training starts at epoch 1" in result.output


def test_optimize_refuses_a_folder_of_the_users_files(env: Path, moses_smiles: list[str]) -> None:
    (env / "pool.smi").write_text("\n".join(moses_smiles[:40]) + "\n")
    results = env / "my-results"
    results.mkdir()
    (results / "candidates.csv").write_text("my,candidates\n")
    (results / "summary.json").write_text('{"mine": true}\n')
    before = {p.name: p.read_bytes() for p in results.iterdir()}
    args = ["optimize", "-m", "moses", "--pool", "pool.smi", "-q", "2", "-n", "1", "--quiet"]
    result = runner.invoke(app, [*args, "-o", str(results)])
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert "my-results" in line and "not empty" in line and "candidates.csv" in line
    assert {p.name: p.read_bytes() for p in results.iterdir()} == before
    # Another process optimising into a folder holds its lock: a second one is refused, writing nothing.
    from molks.files import folder_lock

    with folder_lock(env / "busy"):
        result = runner.invoke(app, [*args, "-o", "busy"])
        assert result.exit_code == 2 and "in use by another molks process" in one_error_line(result.output)
        assert sorted(p.name for p in (env / "busy").iterdir()) == [".molks.lock"]
    assert not (env / "busy").exists()  # the lock's folder, left empty, is gone with it
    result = runner.invoke(app, [*args, "-o", "busy"])
    assert result.exit_code == 0, result.output
    assert (env / "busy" / "candidates.csv").is_file()


@pytest.mark.parametrize("which", ["missing", "expressions"])
def test_a_demo_that_cannot_start_leaves_no_folder(env: Path, tiny_expression_run: Path, which: str) -> None:
    model = "nosuchmodel" if which == "missing" else str(tiny_expression_run)
    result = runner.invoke(app, ["demo", "--quick", "--model", model, "--out", "demo"])
    assert result.exit_code == 2
    assert ("nosuchmodel" if which == "missing" else "molecules") in one_error_line(result.output)
    assert not (env / "demo").exists()


@pytest.mark.parametrize("command", ["sample", "decode", "encode"])
def test_an_output_on_another_file_of_the_same_command_is_refused(tiny_run: Path, codes_file: Path, command: str) -> None:
    (codes_file.parent / "molecules.csv").write_text("smiles\nCCO\nc1ccccc1\n")
    args = {
        "sample": ["sample", str(tiny_run), "--n", "2", "--codes", str(codes_file), "--out", f"./{codes_file.name}"],
        "decode": ["decode", str(tiny_run), str(codes_file), "--out", str(codes_file)],
        "encode": ["encode", str(tiny_run), "molecules.csv", "--out", str(codes_file.parent / "molecules.csv")],
    }[command]
    before = {p: p.read_bytes() for p in codes_file.parent.iterdir() if p.is_file()}
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "are the same file" in one_error_line(result.output)
    assert {p: p.read_bytes() for p in codes_file.parent.iterdir() if p.is_file()} == before


def test_the_python_api_follows_the_command_lines_rules(tiny_run: Path) -> None:
    import torch

    import molks
    from molks.errors import MolksError
    from molks.grammar import Grammar

    model = molks.load(tiny_run)
    z = model.sample_latent(2, seed=0)
    nan = z.clone()
    nan[1, 3] = float("nan")
    refused = {
        "NaN codes": lambda: model.decode(nan),
        "infinite codes": lambda: model.decode_beams(torch.full_like(z, float("inf"))),
        "codes of another size": lambda: model.decode(z[:, :3]),
        "beam width 0": lambda: model.decode(z, beam_width=0),
        "beam width -1": lambda: model.decode(z, beam_width=-1),
        "beam search and a temperature": lambda: model.decode(z, beam_width=4, temperature=1.0),
        "temperature 0": lambda: model.decode(z, temperature=0.0),
        "a single string": lambda: model.encode("CCO"),
        "errors='ignore'": lambda: model.encode(["CCO"], errors="ignore"),  # type: ignore[call-overload]
        "a None item": lambda: model.encode(["CCO", None]),  # type: ignore[list-item]
    }
    for what, call in refused.items():
        with pytest.raises(MolksError) as caught:
            call()
        assert isinstance(caught.value, (ValueError, TypeError)), what  # what callers caught before still catches
    with pytest.raises(MolksError, match="NaN or infinite") as caught:
        model.decode(nan)
    assert caught.value.item == 1
    # A None item is one failure among the others, as a line that does not parse is.
    encoding = model.encode(["CCO", None, "c1ccccc1"], errors="skip")  # type: ignore[list-item]
    assert encoding.kept == [0, 2] and encoding.failures[0][0] == 1 and "not a string" in encoding.failures[0][1]
    parsed = Grammar.load("smiles").parse_many(["CCO", None, 3], processes=1)  # type: ignore[list-item]
    assert isinstance(parsed[0], list)
    assert all(isinstance(p, MolksError) and "not a string" in str(p) for p in parsed[1:])


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [("--beam-width", "1000000", "beam_width (--beam-width)"), ("--seed", str(2**70), "seed (--seed)"),
     ("--decodings", "1000000000", "decodings (--decodings)")],
)  # fmt: skip
def test_optimize_refuses_absurd_counts_before_it_starts(tiny_run: Path, env: Path, option: str, value: str, named: str) -> None:
    from molks.errors import MolksError
    from molks.optimize.loop import OptimizeConfig

    result = runner.invoke(app, ["optimize", "--model", str(tiny_run), "-o", "opt", option, value])
    assert result.exit_code == 2, result.output
    assert named in one_error_line(result.output)
    assert not (env / "opt").exists()
    with pytest.raises(MolksError, match="must be an integer from"):
        OptimizeConfig(**{option.lstrip("-").replace("-", "_"): int(value)})
