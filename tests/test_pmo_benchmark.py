"""``molks benchmark pmo``: PMO's AUC top-10, read from what a run saved, and the resumable suite."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import molks
from molks.cli import app
from molks.decoding import DEFAULT_BEAM_WIDTH
from molks.optimize.loop import OptimizeConfig, optimize, read_pool
from molks.optimize.pmo_benchmark import PmoBenchmarkError, check_benchmark, check_tasks
from molks.optimize.pmo_metrics import PmoMetricError, oracle_trace, top_auc, top_curve
from molks.optimize.pmo_published import METHODS, PUBLISHED_AUC, PUBLISHED_SUM_20
from molks.optimize.state import STATE_FILE, OptimizationState, PoolRecord, RunIdentity, RunMeta

BUDGET = 60
POOL_SIZE = 40
TASKS = ("qed", "median1")

# ---------------------------------------------------------------- the metric, by hand


def test_auc_of_a_flat_trace_over_three_checkpoints() -> None:
    # (0, 0) -> (100, .5) -> (200, .5) -> (250, .5): 25 + 50 + 25 = 100, over 250 calls
    assert top_auc([0.5] * 250, budget=250) == pytest.approx(0.4)


def test_auc_averages_the_ten_best_so_far() -> None:
    scores = [i / 200 for i in range(1, 201)]  # call i scores i/200
    # top-10 at 100 calls: (91..100)/200 = .4775; at 200: (191..200)/200 = .9775
    assert top_curve(scores, budget=200) == [(0, 0.0), (100, pytest.approx(0.4775)), (200, pytest.approx(0.9775))]
    assert top_auc(scores, budget=200) == pytest.approx((100 * 0.4775 / 2 + 100 * (0.4775 + 0.9775) / 2) / 200)


def test_an_early_stop_carries_the_last_value_to_the_budget() -> None:
    # (0, 0) -> (100, 1) -> (150, 1), then flat to 1000: 50 + 50 + 850 = 950
    assert top_auc([1.0] * 150, budget=1000) == pytest.approx(0.95)
    assert top_curve([1.0] * 150, budget=1000)[-1] == (1000, 1.0)
    assert top_auc([1.0] * 150, budget=1000, finish=False) == pytest.approx(0.1)  # PMO's intermediate log


def test_a_budget_that_is_not_a_multiple_of_100() -> None:
    # (0, 0) -> (100, .2) -> (130, 1.0): 10 + 30 * 0.6 = 28, over 130
    assert top_auc([0.2] * 100 + [1.0] * 30, budget=130) == pytest.approx(28 / 130)


def test_fewer_than_ten_scores_unscored_calls_and_a_trace_past_the_budget() -> None:
    assert top_auc([0.2, 0.4], budget=2) == pytest.approx(0.3 / 2)  # the mean of the 2 there are
    # a call without a score counts as a call and is not among the best; nothing scored yet: 0
    assert top_curve([None] * 100 + [1.0], budget=101) == [(0, 0.0), (100, 0.0), (101, 1.0)]
    assert top_auc([1.0] * 300, budget=200) == top_auc([1.0] * 200, budget=200)  # cut at the budget


def _pmo_top_auc(buffer: dict[str, list[float]], top_n: int, finish: bool, freq_log: int, max_oracle_calls: int) -> float:
    """PMO's own definition (mol-opt's ``top_auc``), written out: ``buffer`` maps a molecule to
    [score, call number]."""
    total, prev, called = 0.0, 0.0, 0
    ordered = sorted(buffer.items(), key=lambda kv: kv[1][1])
    for idx in range(freq_log, min(len(buffer), max_oracle_calls), freq_log):
        now = float(np.mean(sorted((s for _, (s, _) in ordered[:idx]), reverse=True)[:top_n]))
        total += freq_log * (now + prev) / 2
        prev, called = now, idx
    now = float(np.mean(sorted((s for _, (s, _) in ordered), reverse=True)[:top_n]))
    total += (len(buffer) - called) * (now + prev) / 2
    if finish and len(buffer) < max_oracle_calls:
        total += (max_oracle_calls - len(buffer)) * now
    return total / max_oracle_calls


@pytest.mark.parametrize("calls,budget", [(1000, 1000), (437, 1000), (1000, 1250), (99, 100), (100, 100), (7, 50)])
def test_the_auc_is_pmos_on_random_traces(calls: int, budget: int) -> None:
    rng = random.Random(calls * 7919 + budget)
    scores = [rng.random() ** 3 for _ in range(calls)]
    buffer = {f"m{i}": [s, i + 1] for i, s in enumerate(scores)}
    assert top_auc(scores, budget) == pytest.approx(_pmo_top_auc(buffer, 10, True, 100, budget), rel=1e-12)


# ---------------------------------------------------------------- the trace of a saved run


def _state(rows: list[dict], calls: int, per_iteration: list[int]) -> OptimizationState:
    n = len(rows)
    meta = RunMeta(
        identity=RunIdentity("qed", True, None, {}), domain="molecules", pool=PoolRecord("", n, ""), fill_value=0.0,
        surrogate_kind="exact", trust_region={}, completed=len(per_iteration), oracle_calls=calls, pool_seconds=2.0,
        iterations=[{"iteration": i + 1, "oracle_calls": c, "seconds": {"total": 1.0}} for i, c in enumerate(per_iteration)],
    )  # fmt: skip
    return OptimizationState(torch.zeros(n, 2, dtype=torch.float64), torch.zeros(n, dtype=torch.float64),
                             torch.zeros(2, 2, dtype=torch.float64), rows, meta)  # fmt: skip


def _row(iteration: int, text: str, score: float | None, failure: str | None = None) -> dict:
    row = {"iteration": iteration, "string": text, "valid": score is not None, **({"score": score} if score is not None else {})}
    return {**row, "failure": failure} if failure else row


def test_the_trace_counts_calls_as_the_ledger_does() -> None:
    rows = [
        _row(0, "CCO", 0.1), _row(0, "OCC", 0.1), _row(0, "c1ccccc1", 0.3),  # OCC is CCO: one call
        _row(1, "CCN", 0.5), _row(1, "NCC", 0.5),  # a repeat within the round: free
        _row(1, "C1CC", None), _row(1, "", None),  # not a molecule, nothing decoded: free
        _row(1, "CCO", 0.1),  # scored in the pool: free
        _row(1, "CCCl", None, failure="target raised"),  # a failed call counts ...
        _row(2, "ClCC", 0.7),  # ... and the item may be called again
        _row(2, "CCN", 0.5),
    ]  # fmt: skip
    # the pool had 3 distinct strings encoded, one of which had no score (not a row): 3 calls
    state = _state(rows, calls=3 + 2 + 1, per_iteration=[2, 1])
    assert oracle_trace(state) == [0.1, 0.3, None, 0.5, None, 0.7]
    with pytest.raises(PmoMetricError, match="iteration 2 saved 2 oracle calls"):
        oracle_trace(_state(rows, calls=7, per_iteration=[2, 2]))


# ---------------------------------------------------------------- options and published numbers


def test_tasks_and_settings_are_checked_first() -> None:
    assert check_tasks(["qed", " median1", "qed"]) == ["qed", "median1"]
    with pytest.raises(PmoBenchmarkError, match="'jnk3' cannot be run: scored by a classifier"):
        check_tasks(["qed", "jnk3"])
    with pytest.raises(PmoBenchmarkError, match="unknown task 'logp'"):
        check_tasks(["logp"])
    with pytest.raises(PmoBenchmarkError, match="--pool-size 100 leaves no oracle calls of --budget 100"):
        check_benchmark(["qed"], 1, OptimizeConfig(budget=100, pool_size=100))
    with pytest.raises(PmoBenchmarkError, match="needs an oracle budget"):
        check_benchmark(["qed"], 1, OptimizeConfig())


def test_the_published_sums_are_the_sums_of_their_rows() -> None:
    assert len(PUBLISHED_AUC) == 20
    for method in METHODS:  # the source's sums are of unrounded numbers: equal within the rounding
        assert sum(PUBLISHED_AUC[t][method] for t in PUBLISHED_AUC) == pytest.approx(PUBLISHED_SUM_20[method], abs=0.005)


# ---------------------------------------------------------------- the command, end to end


@pytest.fixture(scope="module")
def pool_file(moses_smiles: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pmo") / "pool.smi"
    path.write_text("\n".join(moses_smiles[3000:3000 + POOL_SIZE]) + "\n")
    return path


def _args(run: Path, pool: Path, out: Path, *extra: str) -> list[str]:
    return ["benchmark", "pmo", "--model", str(run), "--pool", str(pool), "--pool-size", str(POOL_SIZE),
            "--budget", str(BUDGET), "--seeds", "1", "--tasks", ",".join(TASKS), "--out", str(out),
            "--batch-size", "6", "--quiet", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def suite(tiny_run: Path, pool_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pmo") / "suite"
    result = CliRunner().invoke(app, _args(tiny_run, pool_file, out))
    assert result.exit_code == 0, result.output
    assert "| qed |" in result.output and "2/2 runs done" in result.output
    return out


def test_the_suite_writes_its_report(suite: Path) -> None:
    result = json.loads((suite / "results.json").read_text())
    assert result["runs_done"] == result["runs_total"] == 2
    assert [(r["task"], r["seed"]) for r in result["runs"]] == [("median1", 0), ("qed", 0)]
    for run in result["runs"]:
        state = OptimizationState.load(suite / run["task"] / "seed0" / STATE_FILE)
        trace = oracle_trace(state)
        assert run["oracle_calls"] == len(trace) == state.meta.oracle_calls <= BUDGET
        assert run["auc_top10"] == pytest.approx(top_auc(trace, BUDGET))
        assert run["top1"] == max(s for s in trace if s is not None)
        assert 0 < run["auc_top10"] <= run["top10_mean"] <= run["top1"] <= 1
        assert run["seconds_per_call"] == pytest.approx(run["seconds"] / run["oracle_calls"])
        assert (suite / run["task"] / "top10_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert result["sum_auc_top10"] == pytest.approx(sum(r["auc_top10"] for r in result["runs"]))
    csv_lines = (suite / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("task,seed,auc_top10,top1") and len(csv_lines) == 3
    table = (suite / "table.md").read_text()
    qed = result["tasks"]["qed"]["auc_top10_mean"]
    assert f"| qed | {qed:.3f} +- 0.000 (1) | 0.941 | 0.940 |" in table
    assert "Not comparable: the published numbers are at 10,000 oracle calls, this run at 60." in table
    assert "- drd2: not run: scored by a classifier" in table and "sum over the 2 with results" in table
    assert str(suite) not in table and str(suite) not in (suite / "results.json").read_text()


def test_resume_skips_finished_runs(suite: Path, tiny_run: Path, pool_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(suite, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "seed0" in str(p)}
    refused = CliRunner().invoke(app, _args(tiny_run, pool_file, out))
    assert refused.exit_code == 2 and "already holds a PMO benchmark; pass --resume" in refused.output
    again = CliRunner().invoke(app, _args(tiny_run, pool_file, out, "--resume"))
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in before} == before  # no run touched
    other = CliRunner().invoke(app, [*_args(tiny_run, pool_file, out, "--resume"), "--batch-size", "5"])
    assert other.exit_code == 2 and "was started with another config" in other.output
    assert "--beam-width 0" not in other.output
    # A benchmark started with sampled decodings (the default before the beam search): its resume says how.
    record = json.loads((out / "pmo.json").read_text())
    assert record["identity"]["config"]["beam_width"] == DEFAULT_BEAM_WIDTH  # the default decoding
    record["identity"]["config"]["beam_width"] = 0
    (out / "pmo.json").write_text(json.dumps(record))
    older = CliRunner().invoke(app, _args(tiny_run, pool_file, out, "--resume"))
    assert older.exit_code == 2 and "started with sampled decodings, the default before, resumes with them: --beam-width 0" in older.output
    assert CliRunner().invoke(app, _args(tiny_run, pool_file, out, "--resume", "--beam-width", "0")).exit_code == 0


def test_a_killed_run_resumes_to_the_uninterrupted_result(suite: Path, tiny_run: Path, pool_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    shutil.copytree(suite, out)
    # median1 seed 0 killed after its first round: its record missing, its state one round in
    (out / "median1" / "seed0.json").unlink()
    shutil.rmtree(out / "median1" / "seed0")
    model = molks.load(tiny_run)
    config = OptimizeConfig(iterations=1, budget=BUDGET, pool_size=POOL_SIZE, seed=0,
                            acquisition=replace(OptimizeConfig().acquisition, q=6))  # fmt: skip
    optimize(model, read_pool(pool_file, model.domain), out / "median1" / "seed0", "median1", config, progress=False)
    assert OptimizationState.load(out / "median1" / "seed0" / STATE_FILE).meta.completed == 1
    result = CliRunner().invoke(app, _args(tiny_run, pool_file, out, "--resume"))
    assert result.exit_code == 0, result.output
    assert (out / "median1" / "seed0" / "candidates.csv").read_text() == (suite / "median1" / "seed0" / "candidates.csv").read_text()
    resumed, whole = (json.loads((d / "median1" / "seed0.json").read_text()) for d in (out, suite))
    assert resumed["auc_top10"] == whole["auc_top10"] and resumed["curve"] == whole["curve"]
