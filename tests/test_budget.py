"""``molks optimize --budget N``: oracle calls counted as PMO counts them, the run stopping when they are spent."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from rdkit import Chem
from typer.testing import CliRunner

from molks.cli import app
from molks.domain import MOLECULES
from molks.optimize.loop import OptimizeConfig, OptimizeError
from molks.optimize.oracle import OracleLedger

POOL_SIZE = 20
EXTRA = 4  # oracle calls left for proposals


@pytest.fixture(scope="module")
def pool_file(moses_smiles: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("budget") / "pool.smi"
    path.write_text("\n".join(moses_smiles[2000:2000 + POOL_SIZE]) + "\n")
    return path


def _args(run: Path, pool: Path, out: Path, *extra: str) -> list[str]:
    # Sampled decodings (--beam-width 0): the tiny model's beam decodes these proposals to no new molecule.
    return ["optimize", "--model", str(run), "--pool", str(pool), "--pool-size", str(POOL_SIZE), "--out", str(out),
            "--target", "qed", "--batch-size", "6", "--beam-width", "0", "--decodings", "4", "--quiet", *extra]  # fmt: skip


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "candidates.csv", newline="") as f:
        return list(csv.DictReader(f))


def _distinct_scored(rows: list[dict[str, str]]) -> int:
    return len({Chem.MolToSmiles(Chem.MolFromSmiles(r["string"])) for r in rows if r["valid"] == "1"})


@pytest.fixture(scope="module")
def budget_run(tiny_run: Path, pool_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("budget") / "whole"
    result = CliRunner().invoke(app, _args(tiny_run, pool_file, out, "--budget", str(POOL_SIZE + EXTRA)))
    assert result.exit_code == 0, result.output
    return out


def test_the_run_stops_when_the_budget_is_spent(budget_run: Path) -> None:
    summary = json.loads((budget_run / "summary.json").read_text())
    rows = _rows(budget_run)
    assert summary["settings"]["budget"] == POOL_SIZE + EXTRA
    assert summary["oracle_calls"] == POOL_SIZE + EXTRA  # the pool's 20 and 4 proposals: spent exactly
    assert _distinct_scored(rows) == summary["oracle_calls"]  # every distinct molecule scored is one call
    iterations = summary["iterations"]
    assert sum(it["oracle_calls"] for it in iterations) == EXTRA and iterations[-1]["oracle_calls_total"] == POOL_SIZE + EXTRA
    # Every proposal kept was evaluated: the ones over the budget are not in the table at all.
    assert len([r for r in rows if r["iteration"] != "0"]) == sum(it["proposals"] for it in iterations)
    assert summary["iterations_completed"] == len(iterations) < 1_000_000


def test_repeats_are_free(budget_run: Path) -> None:
    """A molecule proposed again takes its earlier score without a call (PMO's cache)."""
    summary = json.loads((budget_run / "summary.json").read_text())
    rows = [r for r in _rows(budget_run) if r["valid"] == "1"]
    repeats = len(rows) - _distinct_scored(rows)
    assert sum(it["repeats"] for it in summary["iterations"]) == repeats
    by_molecule: dict[str, set[str]] = {}
    for r in rows:
        by_molecule.setdefault(MOLECULES.canonical(r["string"]) or "", set()).add(r["score"])
    assert all(len(scores) == 1 for scores in by_molecule.values())


def test_a_budget_run_resumes_to_the_same_result(budget_run: Path, tiny_run: Path, pool_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    budget = str(POOL_SIZE + EXTRA)
    first = CliRunner().invoke(app, _args(tiny_run, pool_file, out, "--budget", budget, "--iterations", "1"))
    assert first.exit_code == 0, first.output
    assert json.loads((out / "summary.json").read_text())["iterations_completed"] == 1
    again = CliRunner().invoke(app, _args(tiny_run, pool_file, out, "--budget", budget, "--resume"))
    assert again.exit_code == 0, again.output
    assert (out / "candidates.csv").read_text() == (budget_run / "candidates.csv").read_text()
    done = CliRunner().invoke(app, _args(tiny_run, pool_file, out, "--budget", budget, "--resume"))  # spent: nothing to do
    assert done.exit_code == 0 and (out / "candidates.csv").read_text() == (budget_run / "candidates.csv").read_text()


def test_a_budget_below_the_pool_is_one_clear_line(tiny_run: Path, pool_file: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, _args(tiny_run, pool_file, tmp_path / "small", "--budget", "5"))
    assert result.exit_code == 2
    assert "--budget 5 is smaller than the starting pool" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "small" / "candidates.csv").exists()
    with pytest.raises(OptimizeError, match="budget"):
        OptimizeConfig(budget=0)


def test_ledger_counts_new_items_once_and_stops_at_the_budget() -> None:
    ledger = OracleLedger(MOLECULES.canonical, budget=4, calls=1, known={"CCO": {"score": 0.5}})
    strings = ["OCC", "c1ccccc1", "C1=CC=CC=C1", None, "CCN", "CCC", "CCCl", "CCN"]
    valid = [s is not None for s in strings]
    batch = ledger.plan(strings, valid)
    assert batch.cached == {0: {"score": 0.5}}  # ethanol, written another way: known, free
    assert batch.to_score == ["c1ccccc1", "CCN", "CCC"] and batch.over_budget == [6]  # 3 calls left
    assert batch.waiting == {1: 0, 2: 0, 4: 1, 5: 2, 7: 1}  # benzene twice, CCN twice: one call each
    ledger.record(batch, [{"score": 0.1}, None, {"score": 0.3}], [None, None, "timed out"])
    assert ledger.calls == 4 and ledger.spent and ledger.left == 0
    assert "CCC" not in ledger.known and ledger.known["CCN"] is None  # a failed call is not remembered
    scored, failures = batch.results(len(strings), [{"score": 0.1}, None, {"score": 0.3}], [None, None, "timed out"])
    assert scored[2] == {"score": 0.1} and failures[5] == "timed out" and scored[3] is None
    assert batch.kept(len(strings)) == [0, 1, 2, 3, 4, 5, 7]
