"""Trust-region restarts after low-yield rounds (TuRBO), and the oracle call index of every row, on a real tiny model."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import molks
from molks.optimize.acquisition import AcquisitionConfig, AcquisitionError, TrustRegion, restart_center
from molks.optimize.loop import STATE_FILE, OptimizeConfig, OptimizeError, optimize
from molks.optimize.pmo_metrics import oracle_trace
from molks.optimize.report import render_report
from molks.optimize.state import OptimizationState, derive_call_indices
from molks.optimize.surrogate import SurrogateConfig
from molks.training.checkpoint import load_checkpoint, save_checkpoint

FAST_ACQ = AcquisitionConfig(q=6, num_restarts=1, raw_samples=16, mc_samples=32, maxiter=20)
FAST_GP = SurrogateConfig(maxiter=50, inducing_points=16)
ITERATIONS = 6


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny GP matrices


@pytest.fixture(scope="module")
def pool(moses_smiles: list[str]) -> list[str]:
    return moses_smiles[4000:4060]


def _config(iterations: int, **acquisition: object) -> OptimizeConfig:
    # Sampled decodings (beam_width=0): the tiny model's beam decodes these proposals to nothing valid.
    return OptimizeConfig(iterations=iterations, beam_width=0, decodings=4, pool_size=60, seed=2, surrogate=FAST_GP,
                          acquisition=replace(FAST_ACQ, **acquisition))  # type: ignore[arg-type]  # fmt: skip


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------- the rule, by hand


def test_update_says_when_the_region_collapses_and_restart_resets_it() -> None:
    config = AcquisitionConfig(tr_length=0.4, tr_length_min=0.1, failure_tolerance=1)
    tr = TrustRegion(0.4)
    assert [tr.update(False, config) for _ in range(3)] == [False, False, True]  # 0.2, 0.1, then below 0.1
    assert tr.length == 0.1  # held at the floor until restarted
    bounds = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    record = tr.restart(config, iteration=3, reason="collapsed", bounds=bounds, center=5, n_rows=9)
    assert record == {"iteration": 3, "reason": "collapsed", "length": 0.1, "center": 5}
    assert (tr.length, tr.successes, tr.failures, tr.center, tr.start) == (0.4, 0, 0, 5, 9)
    assert tr.local_rows(11) == [5, 9, 10] and torch.equal(tr.abandoned()[0], bounds)
    again = TrustRegion.from_dict(json.loads(json.dumps(tr.to_dict())))  # as saved in the state
    assert again == tr
    old = TrustRegion.from_dict({"length": 0.8, "successes": 1, "failures": 0, "history": [0.4]})  # saved before restarts
    assert old.center is None and old.restarts == [] and old.center_index(torch.tensor([0.0, 2.0, 1.0])) == 1


def test_a_local_run_follows_its_best_point() -> None:
    tr = TrustRegion(0.4, center=1, start=3)
    Y = torch.tensor([5.0, 1.0, 0.0, 0.5, 2.0, 1.5], dtype=torch.float64)
    tr.follow(Y, first=3)
    assert tr.center == 4  # beats the centre (1.0), though not the best point overall (5.0)
    tr.follow(torch.cat([Y, torch.tensor([1.9], dtype=torch.float64)]), first=6)
    assert tr.center == 4


def test_the_new_centre_is_the_best_valid_point_outside_the_abandoned_regions() -> None:
    X = torch.tensor([[0.1, 0.1], [0.2, 0.2], [0.9, 0.9], [0.8, 0.1], [0.5, 0.5]], dtype=torch.float64)
    Y = torch.tensor([3.0, 2.0, 9.0, 1.0, 0.5], dtype=torch.float64)
    valid = torch.tensor([True, True, False, True, True])
    region = torch.tensor([[0.0, 0.0], [0.3, 0.3]], dtype=torch.float64)
    assert restart_center(X, Y, valid, []) == 0  # nothing abandoned: the best valid point (row 2 is invalid)
    assert restart_center(X, Y, valid, [region]) == 3  # rows 0 and 1 lie in the abandoned region
    everything = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    assert restart_center(X, Y, valid, [everything]) == 0  # every point inside: the best valid one


def test_restart_settings_are_checked_and_left_out_of_the_identity_when_off() -> None:
    with pytest.raises(AcquisitionError, match=r"restart_yield must lie in \[0, 1\]"):
        AcquisitionConfig(restart_yield=1.5)
    with pytest.raises(AcquisitionError, match="restart_yield"):
        AcquisitionConfig(restart_yield=-0.1)
    assert AcquisitionConfig().restarts and AcquisitionConfig().restart_yield == 0.25
    assert {"restarts", "restart_yield"} <= set(OptimizeConfig().identity()["acquisition"])
    off = OptimizeConfig(acquisition=AcquisitionConfig(restarts=False)).identity()["acquisition"]
    assert "restarts" not in off and "restart_yield" not in off  # as runs saved before restarts have it


# ---------------------------------------------------------------- the loop


@pytest.fixture(scope="module")
def restarted(tiny_run: Path, pool: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run of the tiny model, whose poor decoder gives rounds of few new molecules (most proposals
    invalid or scored before): some of its rounds bring fewer new oracle calls than a quarter of their
    proposals, so it restarts."""
    out = tmp_path_factory.mktemp("restarts") / "uninterrupted"
    optimize(molks.load(tiny_run), pool, out, "qed", _config(ITERATIONS), progress=False)
    return out


def test_a_low_yield_round_restarts_the_region_and_later_rounds_call_the_oracle(restarted: Path) -> None:
    summary = json.loads((restarted / "summary.json").read_text())
    iterations = summary["iterations"]
    restarts = [it for it in iterations if it["restart"]]
    assert restarts, [it["oracle_calls"] for it in iterations]
    first = restarts[0]
    assert "low-yield" in first["restart"]["reason"]
    assert first["restart"]["new_calls"] == first["oracle_calls"] < 0.25 * first["restart"]["proposals"]
    # recorded in the saved region too, with the region it abandoned, and the region starts again from tr_length
    region = summary["trust_region"]
    assert [r["iteration"] for r in region["restarts"]] == [it["iteration"] for it in restarts]
    assert all(len(r["bounds"]) == 2 for r in region["restarts"])
    center = first["restart"]["center"]
    rows = _read_csv(restarted / "candidates.csv")
    assert center is not None and rows[center]["valid"] == "1" and rows[center]["string"] == first["restart"]["center_string"]
    # the next round starts from tr_length, around the new centre, and the rounds after call the oracle again
    assert region["history"][first["iteration"]] == FAST_ACQ.tr_length
    later = [it for it in iterations if it["iteration"] > first["iteration"]]
    assert later and sum(it["oracle_calls"] for it in later) > 0


def test_without_restarts_the_region_is_never_restarted(tiny_run: Path, pool: list[str], tmp_path: Path) -> None:
    config = _config(3, restarts=False)
    summary = optimize(molks.load(tiny_run), pool, tmp_path, "qed", config, progress=False)
    assert not any(it["restart"] for it in summary["iterations"]) and summary["trust_region"]["restarts"] == []
    assert summary["trust_region"]["center"] is None


def test_a_run_killed_across_a_restart_resumes_to_the_same_result(
    restarted: Path, tiny_run: Path, pool: list[str], tmp_path: Path
) -> None:
    whole = json.loads((restarted / "summary.json").read_text())
    first = next(it["iteration"] for it in whole["iterations"] if it["restart"])
    assert first < ITERATIONS
    out = tmp_path / "killed"
    config = _config(ITERATIONS)
    optimize(molks.load(tiny_run), pool, out, "qed", replace(config, iterations=first), progress=False)  # "killed" after the restart
    saved = OptimizationState.load(out / STATE_FILE).meta.trust_region
    assert saved["restarts"] and saved["center"] is not None
    optimize(molks.load(tiny_run), [], out, "qed", config, resume=True, progress=False)
    assert (out / "candidates.csv").read_text() == (restarted / "candidates.csv").read_text()
    assert json.loads((out / "summary.json").read_text())["trust_region"] == whole["trust_region"]


def test_call_indices_number_the_oracle_calls_in_order(restarted: Path) -> None:
    rows = _read_csv(restarted / "candidates.csv")
    summary = json.loads((restarted / "summary.json").read_text())
    calls = [int(r["call"]) for r in rows if r["call"]]
    assert calls == list(range(1, summary["oracle_calls"] + 1))  # strictly increasing, 1..N, in row order
    seen: set[str] = set()
    for r in rows:
        key = _canonical(r["string"])
        if r["call"]:  # a call is the first time its molecule is scored ...
            assert key not in seen and (r["valid"] == "1" or r["iteration"] != "0")
            seen.add(key)
        elif r["string"] and key is not None:  # ... and a valid molecule without one was scored before
            assert key in seen or r["valid"] == "0"
    state = OptimizationState.load(restarted / STATE_FILE)
    assert derive_call_indices(state.rows, state.meta) == state.call_indices()  # what older states derive
    trace = oracle_trace(state)
    assert len(trace) == summary["oracle_calls"]
    by_call = {int(r["call"]): float(r["score"]) if r["score"] else None for r in rows if r["call"]}
    assert trace == [by_call[n] for n in range(1, len(trace) + 1)]


def _canonical(text: str) -> str | None:
    from molks.domain import MOLECULES

    return MOLECULES.canonical(text) if text else None


def test_a_state_without_call_indices_loads_reports_and_resumes(tiny_run: Path, pool: list[str], tmp_path: Path) -> None:
    """A state saved before rows had their call (and before restarts): the calls are derived, and a
    run started then resumes (with restarts off, as it ran) to what an uninterrupted run writes."""
    config = _config(2, restarts=False)
    whole = tmp_path / "whole"
    optimize(molks.load(tiny_run), pool, whole, "qed", config, progress=False)
    out = tmp_path / "old"
    optimize(molks.load(tiny_run), pool, out, "qed", replace(config, iterations=1), progress=False)
    tensors, meta, _ = load_checkpoint(out / STATE_FILE, finite=False)
    expected = [row["call"] for row in meta["rows"]]
    meta["rows"] = [{k: v for k, v in row.items() if k != "call"} for row in meta["rows"]]
    meta["trust_region"] = {k: meta["trust_region"][k] for k in ("length", "successes", "failures", "history")}
    for it in meta["iterations"]:
        del it["restart"]
    save_checkpoint(out / STATE_FILE, tensors, meta)
    state = OptimizationState.load(out / STATE_FILE)
    assert all("call" not in row for row in state.rows) and state.call_indices() == expected
    assert [r["call"] for r in _read_csv(out / "candidates.csv")] == [str(c) if c else "" for c in expected]
    render_report(out)
    assert [r["call"] for r in _read_csv(out / "candidates.csv")] == [str(c) if c else "" for c in expected]
    # restarts on: refused, saying how such a run resumes
    with pytest.raises(OptimizeError, match="--no-restarts"):
        optimize(molks.load(tiny_run), [], out, "qed", replace(config, acquisition=FAST_ACQ), resume=True, progress=False)
    optimize(molks.load(tiny_run), [], out, "qed", config, resume=True, progress=False)
    assert (out / "candidates.csv").read_text() == (whole / "candidates.csv").read_text()


def test_the_options_on_the_command_line(tiny_run: Path, pool: list[str], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from molks.cli import app

    pool_file = tmp_path / "pool.smi"
    pool_file.write_text("\n".join(pool[:30]) + "\n")
    inputs = ["--model", str(tiny_run), "--pool", str(pool_file), "--pool-size", "30", "--quiet"]
    bad = tmp_path / "bad"
    refused = CliRunner().invoke(app, ["optimize", *inputs, "--target", "qed", "--out", str(bad), "--restart-yield", "1.5"])
    assert refused.exit_code == 2 and "restart-yield" in refused.output, refused.output
    refused = CliRunner().invoke(app, ["benchmark", "pmo", *inputs, "--tasks", "qed", "--budget", "40", "--seeds", "1",
                                       "--out", str(bad), "--restart-yield", "-0.5"])  # fmt: skip
    assert refused.exit_code == 2 and "restart-yield" in refused.output, refused.output
    assert not bad.exists()
    out = tmp_path / "off"
    result = CliRunner().invoke(app, ["optimize", *inputs, "--target", "qed", "--out", str(out), "--iterations", "1",
                                      "--batch-size", "4", "--beam-width", "0", "--decodings", "4", "--no-restarts", "--restart-yield", "0.5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "summary.json").read_text())["settings"]["acquisition"]
    assert settings["restarts"] is False and settings["restart_yield"] == 0.5
