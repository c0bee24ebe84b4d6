"""``molks data ...`` commands through typer's test runner."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from molks.cli.data import app
from molks.grammar import Grammar

runner = CliRunner()


def test_parse_prints_summary_and_writes_report(tmp_path: Path) -> None:
    data = tmp_path / "m.smi"
    data.write_text("OCC a\nC1CC b\nc1ccccc1 c\n")
    report = tmp_path / "out" / "report.json"
    args = ["parse", str(data), "--processes", "1", "--cache-dir", str(tmp_path / "cache"), "--report", str(report)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 of 3 items parsed" in result.output
    assert "1  invalid SMILES" in result.output and "line 2: invalid SMILES: RDKit: unclosed ring" in result.output
    assert "longest derivation:" in result.output
    summary = json.loads(report.read_text())
    assert summary["n_parsed"] == 2 and summary["failures_by_reason"] == {"invalid SMILES": 1}
    reason = "invalid SMILES: RDKit: unclosed ring for input: 'C1CC'"
    assert summary["first_failures"] == [{"line": 2, "reason": reason}]
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "[from cache]" in again.output


def test_parse_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    table = tmp_path / "m.csv"
    table.write_text("id,mol\n1,CCO\n")
    result = runner.invoke(app, ["parse", str(table), "--no-cache"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {table}:1: no 'smiles' or 'SMILES' column (choose one with column=... or --column); "
        "the columns are: 'id', 'mol'"
    ]
    assert "Traceback" not in result.output
    ok = runner.invoke(app, ["parse", str(table), "--column", "mol", "--no-cache", "--processes", "1"])
    assert ok.exit_code == 0 and "1 of 1 items parsed" in ok.output

    bad = tmp_path / "bad.smi"
    bad.write_text("CCO\nCC(C\n")
    strict = runner.invoke(app, ["parse", str(bad), "--strict", "--no-cache", "--processes", "1"])
    assert strict.exit_code == 2 and strict.output.startswith(f"error: {bad}:2: invalid SMILES")

    unknown = runner.invoke(app, ["parse", str(bad), "--grammar", "nonsense", "--no-cache"])
    assert unknown.exit_code == 2 and unknown.output.startswith("error: no grammar 'nonsense'")


def test_parse_expressions_without_canonicalisation(tmp_path: Path) -> None:
    data = tmp_path / "e.txt"
    data.write_text("x + 1\nexp( x )\n")
    result = runner.invoke(app, ["parse", str(data), "--grammar", "arithmetic", "--no-canonicalize", "--no-cache"])
    assert result.exit_code == 0 and "2 of 2 items parsed" in result.output


def test_expressions_command(tmp_path: Path) -> None:
    out = tmp_path / "expr.txt"
    options = ["--n", "200", "--max-productions", "9", "--seed", "5"]
    result = runner.invoke(app, ["expressions", *options, "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    g = Grammar.load("arithmetic")
    assert len(lines) == len(set(lines)) == 200 and all(len(g.parse(s)) <= 9 for s in lines)
    stdout = runner.invoke(app, ["expressions", *options])
    assert stdout.output.splitlines() == lines
    too_many = runner.invoke(app, ["expressions", "--n", "10", "--max-productions", "2"])
    assert too_many.exit_code == 2 and "error: found only 4 distinct sentences" in too_many.output


def test_download_command(tmp_path: Path) -> None:
    source = tmp_path / "zinc.csv"
    source.write_bytes(b"smiles\nCCO\n")
    out = tmp_path / "got" / "zinc.csv"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    base = ["download", "zinc250k", "--url", source.as_uri(), "--out", str(out), "--no-progress"]
    wrong = runner.invoke(app, base)  # the pinned ZINC checksum does not match this file
    assert wrong.exit_code == 2 and "checksum mismatch" in wrong.output and not out.exists()
    right = runner.invoke(app, [*base, "--sha256", digest])
    assert right.exit_code == 0 and right.output.strip() == str(out) and out.read_bytes() == source.read_bytes()
