"""``molks score FILE --target NAME``: each item, a tab, its score; one clear line for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from molks.cli import app
from molks.optimize import pmo
from molks.optimize.targets import BUILTIN_TARGETS, get_target


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["score", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture()
def smiles_file(tmp_path: Path) -> Path:
    path = tmp_path / "in.smi"
    path.write_text("CC(=O)Oc1ccccc1C(=O)O aspirin\nnot-a-molecule\n\nCC(=O)Nc1ccc(O)cc1 paracetamol\n")
    return path


def test_a_pmo_target_scores_each_line(smiles_file: Path) -> None:
    code, out, err = _invoke(str(smiles_file), "--target", "celecoxib_rediscovery")
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["CC(=O)Oc1ccccc1C(=O)O", "not-a-molecule", "CC(=O)Nc1ccc(O)cc1"]
    expected = pmo.score("celecoxib_rediscovery", ["CC(=O)Oc1ccccc1C(=O)O", "CC(=O)Nc1ccc(O)cc1"])
    assert [float(lines[0].split("\t")[1]), float(lines[2].split("\t")[1])] == expected
    assert lines[1] == "not-a-molecule\t"  # an invalid molecule: an empty score
    assert f"{smiles_file}:2: no score: 'not-a-molecule' is not a valid SMILES" in err
    assert "scored 2 of 3 items" in err


@pytest.mark.parametrize("name", sorted(BUILTIN_TARGETS))
def test_every_builtin_target_scores(name: str, tmp_path: Path) -> None:
    if name == "expression":
        texts, path = ["x + 1", "sin( x ) * x"], tmp_path / "in.txt"
    else:
        texts, path = ["CCO", "c1ccc2ccccc2c1"], tmp_path / "in.smi"
    path.write_text("\n".join(texts) + "\n")
    code, out, err = _invoke(str(path), "-t", name)
    assert code == 0, err
    expected = get_target(name).score(texts)
    assert [line.split("\t") for line in out.splitlines()] == [[t, repr(v)] for t, v in zip(texts, expected)]


def test_a_function_of_yours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "targets"
    folder.mkdir()
    (folder / "molks_score_target.py").write_text(
        "def length(texts):\n    return [float(len(t)) if t != 'CCC' else None for t in texts]\n"
        "def broken(texts):\n    raise RuntimeError('no scores today')\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    path = tmp_path / "in.smi"
    path.write_text("CCO\nCCC\nc1ccccc1\n")
    code, out, err = _invoke(str(path), "-t", "molks_score_target:length")
    assert code == 0, err
    assert out.splitlines() == ["CCO\t3.0", "CCC\t", "c1ccccc1\t8.0"]
    assert f"{path}:2: no score: the target returned None" in err
    # A target that fails every call: its lines have no score, and after 3 failed calls in a row
    # (100 lines a call) the command stops with one line naming the file and the last line scored.
    path.write_text("C\n" * 250)
    code, out, err = _invoke(str(path), "-t", "molks_score_target:broken")
    assert code == 2
    assert out.splitlines() == ["C\t"] * 250
    assert err.strip().splitlines()[-1].startswith(f"error: {path}:250: after this line: target 'molks_score_target:broken' failed 3 calls")


def test_bad_input_is_one_line(smiles_file: Path, tmp_path: Path) -> None:
    code, _, err = _invoke(str(tmp_path / "missing.smi"), "-t", "qed")
    assert code == 2 and err.strip() == f"error: {tmp_path / 'missing.smi'}: no such file"
    code, _, err = _invoke(str(smiles_file), "-t", "no_such_target")
    assert code == 2 and "unknown target 'no_such_target'" in err and len(err.strip().splitlines()) == 1
    table = tmp_path / "t.csv"
    table.write_text("name,value\naspirin,1\n")
    code, _, err = _invoke(str(table), "-t", "qed")
    assert code == 2 and str(table) in err and len(err.strip().splitlines()) == 1
    binary = tmp_path / "b.smi"
    binary.write_bytes(b"\x00\x01\x02CCO\n")
    code, _, err = _invoke(str(binary), "-t", "qed")
    assert code == 2 and str(binary) in err and len(err.strip().splitlines()) == 1
    code, _, err = _invoke(str(smiles_file), "-t", "no_such_module_xyz:f")
    assert code == 2 and "no_such_module_xyz" in err and len(err.strip().splitlines()) == 1
