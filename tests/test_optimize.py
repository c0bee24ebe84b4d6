"""Latent-space BO: GP surrogates, batch proposals, the resumable loop and `molks optimize`, on real tiny models."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from rdkit import Chem

import molks
from molks.decoding import DEFAULT_BEAM_WIDTH
from molks.optimize.acquisition import (
    AcquisitionConfig,
    AcquisitionError,
    TrustRegion,
    bounding_box,
    propose,
    trust_region_bounds,
)
from molks.optimize.loop import STATE_FILE, OptimizeConfig, OptimizeError, optimize
from molks.optimize.report import render_report
from molks.optimize.state import OptimizationState, RunIdentity
from molks.optimize.surrogate import (
    SurrogateConfig,
    SurrogateError,
    choose_surrogate,
    fit_surrogate,
    heldout_metrics,
    predictive_metrics,
    select_subset,
)
from molks.optimize.targets import get_target
from molks.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

# Small budgets: the real pipeline, tiny sizes (a few seconds per loop on 2 cores).
FAST_ACQ = AcquisitionConfig(q=4, num_restarts=1, raw_samples=16, mc_samples=32, maxiter=20)
FAST_GP = SurrogateConfig(maxiter=50, inducing_points=16)
OUTPUT_FILES = ("candidates.csv", "summary.json", "best_molecules.png", "best_score.png", STATE_FILE)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny GP matrices


@pytest.fixture(scope="module")
def pool(moses_smiles: list[str]) -> list[str]:
    return moses_smiles[1000:1120]


@pytest.fixture(scope="module")
def scored_codes(tiny_run: Path, pool: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes [N, D] of real molecules under the tiny model and their penalised logP [N]."""
    model = molks.load(tiny_run)
    y = get_target("logp").score(pool)
    keep = [i for i, v in enumerate(y) if v is not None]
    return model.encode([pool[i] for i in keep]).double(), torch.tensor([y[i] for i in keep], dtype=torch.float64)


# ---------------------------------------------------------------- surrogate


def test_select_subset_keeps_the_best_half_and_a_random_rest() -> None:
    y = torch.arange(100, dtype=torch.float64).flip(0)  # best values first
    idx = select_subset(y, 20, torch.Generator().manual_seed(0))
    assert len(idx) == 20 and len(set(idx.tolist())) == 20 and idx.tolist() == sorted(idx.tolist())
    assert set(range(10)) <= set(idx.tolist())  # the 10 best
    assert select_subset(y[:5], 20, torch.Generator()).tolist() == [0, 1, 2, 3, 4]


def test_exact_gp_fits_and_beats_the_mean_on_held_out_codes(scored_codes: tuple[torch.Tensor, torch.Tensor]) -> None:
    X, Y = scored_codes
    box = bounding_box(X)
    metrics = heldout_metrics(X, Y, box, FAST_GP, kinds=("exact", "variational"), seed=0)
    assert metrics["exact"]["n_test"] == round(0.1 * len(X))
    for kind in ("baseline", "exact", "variational"):
        assert math.isfinite(metrics[kind]["rmse"]) and math.isfinite(metrics[kind]["log_likelihood"])
    assert choose_surrogate(metrics) in ("exact", "variational")
    # On its own training data the GP must do better than predicting the mean.
    surrogate = fit_surrogate(X, Y, box, FAST_GP, kind="exact")
    assert predictive_metrics(surrogate.model, X, Y)["rmse"] < float(Y.std())


def test_exact_gp_hyperparameters_on_a_subset_posterior_on_all(scored_codes: tuple[torch.Tensor, torch.Tensor]) -> None:
    X, Y = scored_codes
    surrogate = fit_surrogate(X, Y, bounding_box(X), SurrogateConfig(max_fit=40, maxiter=50), kind="exact")
    assert (surrogate.n_fit, surrogate.n_points) == (40, len(X))
    assert surrogate.model.train_inputs[0].shape[-2] == len(X)


def test_surrogate_rejects_bad_input() -> None:
    with pytest.raises(SurrogateError, match="unknown surrogate kind"):
        SurrogateConfig(kind="forest")
    with pytest.raises(SurrogateError, match="at least 3"):
        fit_surrogate(torch.zeros(2, 4), torch.zeros(2), torch.tensor([[0.0] * 4, [1.0] * 4]), FAST_GP)
    with pytest.raises(SurrogateError, match="finite"):
        fit_surrogate(torch.zeros(5, 4), torch.tensor([0, 1, float("nan"), 2, 3]), torch.tensor([[0.0] * 4, [1.0] * 4]), FAST_GP)


# ---------------------------------------------------------------- acquisition


@pytest.mark.parametrize("region", ["box", "trust-region"])
def test_proposals_lie_in_the_region_with_the_requested_shape(
    scored_codes: tuple[torch.Tensor, torch.Tensor], region: str
) -> None:
    X, Y = scored_codes
    box = bounding_box(X)
    model = fit_surrogate(X, Y, box, FAST_GP, kind="exact").model
    config = AcquisitionConfig(**{**FAST_ACQ.to_dict(), "q": 5, "region": region, "tr_length": 0.3})
    tr = TrustRegion(config.tr_length)
    proposal = propose(model, X, Y, box, config, seed=3, trust_region=tr)
    assert proposal.X.shape == (5, X.shape[1])
    assert bool(((proposal.X >= proposal.bounds[0]) & (proposal.X <= proposal.bounds[1])).all())
    assert bool(((proposal.bounds[0] >= box[0] - 1e-12) & (proposal.bounds[1] <= box[1] + 1e-12)).all())
    if region == "trust-region":
        expected = trust_region_bounds(X[int(Y.argmax())], 0.3, box, model)
        assert torch.equal(proposal.bounds, expected)
        assert float((proposal.bounds[1] - proposal.bounds[0]).prod()) < float((box[1] - box[0]).prod())
    else:
        assert torch.equal(proposal.bounds, box)
    again = propose(model, X, Y, box, config, seed=3, trust_region=tr)
    assert torch.equal(proposal.X, again.X)  # seeded: reproducible


def test_trust_region_expands_after_successes_and_shrinks_after_failures() -> None:
    config = AcquisitionConfig(tr_length=0.4, success_tolerance=2, failure_tolerance=2, tr_length_min=0.1)
    tr = TrustRegion(0.4)
    tr.update(True, config)
    assert tr.length == 0.4
    tr.update(True, config)
    assert tr.length == 0.8
    for _ in range(6):
        tr.update(False, config)
    assert tr.length == 0.1  # halved three times, then held at the floor


def test_acquisition_config_rejects_bad_settings() -> None:
    with pytest.raises(AcquisitionError, match="unknown region"):
        AcquisitionConfig(region="ball")
    with pytest.raises(AcquisitionError, match="q must be"):
        AcquisitionConfig(q=0)
    with pytest.raises(AcquisitionError, match="best_f"):
        AcquisitionConfig(best_f="median")


# ---------------------------------------------------------------- the loop


def _config(iterations: int, **changes: Any) -> OptimizeConfig:
    """The loop's settings for the tests: its default decoding (the beam search) unless ``changes`` say otherwise."""
    return OptimizeConfig(iterations=iterations, pool_size=100, seed=1, surrogate=FAST_GP, acquisition=FAST_ACQ, **changes)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def two_iterations(tiny_run: Path, pool: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bo") / "uninterrupted"
    optimize(molks.load(tiny_run), pool, out, "logp", _config(2), progress=False)
    return out


def test_loop_writes_every_output_with_the_right_columns(two_iterations: Path, tiny_run: Path) -> None:
    for name in OUTPUT_FILES:
        assert (two_iterations / name).is_file(), name
    rows = _read_csv(two_iterations / "candidates.csv")
    dim = molks.load(tiny_run).latent_dim
    assert list(rows[0]) == ["iteration", "call", *(f"z{j}" for j in range(dim)), "string", "valid", "score", "logp", "sa", "cycle"]
    iterations = [int(r["iteration"]) for r in rows]
    assert iterations.count(1) == iterations.count(2) == 4 and iterations.count(0) == len(rows) - 8
    for r in rows:
        if r["valid"] == "1":  # the parts add up to the score (method.md's normalisation)
            parts = (float(r["logp"]) - 2.4570953396190123) / 1.434324401111988 + (-float(r["sa"]) + 3.0525811293166134) / 0.8347207269356862 + (float(r["cycle"]) + 0.0485696876403053) / 0.2860212110245455
            assert float(r["score"]) == pytest.approx(parts)
        else:
            assert r["score"] == ""
    summary = json.loads((two_iterations / "summary.json").read_text())
    assert summary["iterations_completed"] == 2 and summary["proposals"] == 8
    assert summary["valid_proposals"] == sum(r["valid"] == "1" for r in rows if r["iteration"] != "0")
    assert summary["fraction_valid"] == summary["valid_proposals"] / 8
    assert len(summary["seconds_per_iteration"]) == 2 and all(s > 0 for s in summary["seconds_per_iteration"])
    scores = [t["score"] for t in summary["top"]]
    assert scores == sorted(scores, reverse=True)
    canonical = [Chem.MolToSmiles(Chem.MolFromSmiles(t["string"])) for t in summary["top"]]
    assert len(set(canonical)) == len(canonical)  # one molecule written two ways is listed once
    assert summary["settings"]["acquisition"]["q"] == 4 and summary["settings"]["beam_width"] == DEFAULT_BEAM_WIDTH
    assert f"beam search of width {DEFAULT_BEAM_WIDTH}" in summary["note"]  # the default decoding
    for name in ("best_molecules.png", "best_score.png"):
        with Image.open(two_iterations / name) as image:
            assert image.format == "PNG" and image.size[0] > 100


def test_resumed_run_equals_an_uninterrupted_one(two_iterations: Path, tiny_run: Path, pool: list[str], tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    optimize(molks.load(tiny_run), pool, out, "logp", _config(1), progress=False)  # "killed" after iteration 1
    assert json.loads((out / "summary.json").read_text())["iterations_completed"] == 1
    optimize(molks.load(tiny_run), [], out, "logp", _config(2), resume=True, progress=False)  # the pool comes from the state
    assert (out / "candidates.csv").read_text() == (two_iterations / "candidates.csv").read_text()


def test_existing_run_needs_resume_and_the_same_settings(two_iterations: Path, tiny_run: Path, pool: list[str]) -> None:
    model = molks.load(tiny_run)
    with pytest.raises(OptimizeError, match="--resume"):
        optimize(model, pool, two_iterations, "logp", _config(2), progress=False)
    with pytest.raises(OptimizeError, match="target"):
        optimize(model, pool, two_iterations, "qed", _config(2), resume=True, progress=False)


def test_beam_decoding_of_the_proposals(tiny_run: Path, pool: list[str], tmp_path: Path) -> None:
    model = molks.load(tiny_run)
    config = OptimizeConfig(iterations=1, beam_width=3, pool_size=100, seed=1, surrogate=FAST_GP, acquisition=FAST_ACQ)
    summary = optimize(model, pool, tmp_path, "logp", config, progress=False)
    assert summary["settings"]["beam_width"] == 3 and "beam search of width 3" in summary["note"]
    rows = [r for r in _read_csv(tmp_path / "candidates.csv") if r["iteration"] == "1"]
    z = torch.tensor([[float(r[f"z{j}"]) for j in range(model.latent_dim)] for r in rows])
    assert [r["string"] for r in rows] == [s or "" for s in model.decode(z, beam_width=3)]
    # A run decoded one way does not resume another, and the refusal names the option that differs.
    with pytest.raises(OptimizeError, match=f"config.beam_width was 3, now {DEFAULT_BEAM_WIDTH}") as caught:
        optimize(model, pool, tmp_path, "logp", _config(2), resume=True, progress=False)
    assert "--beam-width 0" not in str(caught.value)  # the hint is for runs saved with sampled decodings only
    with pytest.raises(OptimizeError, match="beam_width"):
        OptimizeConfig(beam_width=-1)


def test_sampled_decodings_and_a_run_saved_with_them_resume_with_beam_width_0(
    tiny_run: Path, pool: list[str], tmp_path: Path
) -> None:
    # beam_width=0: greedy plus sampled decodings (the default before the beam). Such a run's identity
    # has no beam_width, as runs saved before the option existed: resumed with the default (the beam)
    # it is refused, and the refusal says how to resume it.
    model = molks.load(tiny_run)
    sampled = _config(1, beam_width=0, decodings=4)
    summary = optimize(model, pool, tmp_path, "logp", sampled, progress=False)
    assert summary["settings"]["beam_width"] == 0 and "greedily plus 4 sampled decodings" in summary["note"]
    assert "beam_width" not in OptimizationState.load(tmp_path / STATE_FILE).meta.identity.config
    with pytest.raises(OptimizeError, match=f"config.beam_width was None, now {DEFAULT_BEAM_WIDTH}") as caught:
        optimize(model, [], tmp_path, "logp", _config(2, decodings=4), resume=True, progress=False)
    assert "a run started with sampled decodings, the default before, resumes with them: --beam-width 0" in str(caught.value)
    resumed = optimize(model, [], tmp_path, "logp", _config(2, beam_width=0, decodings=4), resume=True, progress=False)
    assert resumed["iterations_completed"] == 2 and resumed["settings"]["beam_width"] == 0


def test_a_run_resumes_with_other_optimiser_effort_and_states_saved_with_it_still_resume(
    tiny_run: Path, pool: list[str], tmp_path: Path
) -> None:
    # The L-BFGS iterations of the GP fit and of the proposal say how long each step works, not what
    # the run is: their defaults follow measurements, and a run saved under the old ones resumes.
    model = molks.load(tiny_run)
    first = _config(1)
    optimize(model, pool, tmp_path, "logp", first, progress=False)
    state = OptimizationState.load(tmp_path / STATE_FILE)
    assert "maxiter" not in state.meta.identity.config["acquisition"]
    assert "maxiter" not in state.meta.identity.config["surrogate"]
    # A state saved before: its identity holds both (the loader leaves them out of the comparison).
    saved = state.meta.identity.to_json()
    saved["config"] = {**saved["config"], "acquisition": {**saved["config"]["acquisition"], "maxiter": 100},
                       "surrogate": {**saved["config"]["surrogate"], "maxiter": 200}}  # fmt: skip
    assert RunIdentity.from_json(saved) == state.meta.identity
    effort = replace(first, iterations=2, surrogate=replace(first.surrogate, maxiter=7),
                     acquisition=replace(first.acquisition, maxiter=3, raw_samples=8))  # fmt: skip
    resumed = optimize(model, [], tmp_path, "logp", effort, resume=True, progress=False)
    assert resumed["iterations_completed"] == 2 and resumed["settings"]["acquisition"]["maxiter"] == 3
    with pytest.raises(OptimizeError, match="config.acquisition.q was 4, now 5"):  # what the run is: still refused
        optimize(model, [], tmp_path, "logp", replace(effort, iterations=3, acquisition=replace(effort.acquisition, q=5)),
                 resume=True, progress=False)  # fmt: skip


def test_expression_target_loop(tiny_expression_run: Path, tmp_path: Path) -> None:
    model = molks.load(tiny_expression_run)
    texts = (Path(__file__).resolve().parents[1] / "data" / "expressions.txt").read_text().splitlines()[400:480]
    auto = SurrogateConfig(**{**FAST_GP.to_dict(), "kind": "auto"})  # held-out comparison picks the GP
    config = OptimizeConfig(iterations=1, pool_size=80, surrogate=auto, acquisition=FAST_ACQ)
    summary = optimize(model, texts, tmp_path, "expression", config, progress=False)
    assert set(summary["heldout_metrics"]) == {"baseline", "exact", "variational"}
    assert summary["surrogate_kind"] == choose_surrogate(summary["heldout_metrics"])
    assert summary["iterations"][0]["surrogate"]["kind"] == summary["surrogate_kind"]
    rows = _read_csv(tmp_path / "candidates.csv")
    assert list(rows[0])[-3:] == ["string", "valid", "score"]
    proposals = [r for r in rows if r["iteration"] == "1"]
    assert len(proposals) == 4
    worst = math.log(1001)
    for r in proposals:  # the expression score lies in [0, log 1001]
        assert r["valid"] == "0" or 0 <= float(r["score"]) <= worst + 1e-9
    assert summary["maximize"] is False
    top = [t["score"] for t in summary["top"]]
    assert top == sorted(top)  # lower is better
    assert (tmp_path / "best_molecules.png").is_file()


def test_bad_settings_are_clear_errors(tiny_run: Path, tmp_path: Path) -> None:
    with pytest.raises(OptimizeError, match="iterations"):
        OptimizeConfig(iterations=0)
    with pytest.raises(OptimizeError, match="empty"):
        optimize(molks.load(tiny_run), [], tmp_path / "empty", "logp", _config(1), progress=False)


# ---------------------------------------------------------------- the saved state


def _raw_meta(path: Path) -> dict:
    """The JSON meta of a state file as written (rows included)."""
    return load_checkpoint(path, finite=False)[1]


def test_state_meta_round_trips_through_save_and_load(two_iterations: Path, tmp_path: Path) -> None:
    state = OptimizationState.load(two_iterations / STATE_FILE)
    meta = state.meta
    assert meta.completed == 2 and [it["iteration"] for it in meta.iterations] == [1, 2]
    assert meta.identity.target == "logp" and meta.identity.maximize is True and meta.identity.config["seed"] == 1
    assert meta.domain == "molecules" and meta.molecular is True and meta.objectives is None
    assert meta.pool.size == sum(row["iteration"] == 0 for row in state.rows) and meta.pool.file_sha256 is None
    assert meta.oracle_calls == meta.iterations[-1]["oracle_calls_total"] and meta.fill_value == float(state.Y[: meta.pool.size].min())
    assert meta.settings is not None and meta.settings["iterations"] == 2 and set(meta.trust_region) >= {"length", "history"}
    state.save(tmp_path / STATE_FILE)
    again = OptimizationState.load(tmp_path / STATE_FILE)
    assert again.meta == meta and again.rows == state.rows and torch.equal(again.X, state.X) and torch.equal(again.Y, state.Y)
    assert again.gp.keys() == state.gp.keys() and all(torch.equal(again.gp[k], v) for k, v in state.gp.items())
    written, saved = _raw_meta(tmp_path / STATE_FILE), _raw_meta(two_iterations / STATE_FILE)
    assert written == saved and list(written) == list(saved)  # the same keys, in the same order


# A state as molks wrote it before RunMeta existed (every key of that format), written out literally.
TODAYS_STATE = {
    "version": 1,
    "identity": {"target": "logp", "maximize": True, "model_sha256": None,
                 "config": {"decodings": 4, "pool_size": 100, "seed": 1, "top_k": 10, "heldout": False,
                            "surrogate": {"kind": "exact"}, "acquisition": {"q": 2, "region": "trust-region"}}},
    "molecular": True,
    "domain": "molecules",
    "completed": 1,
    "oracle_calls": 4,
    "fill_value": -1.5,
    "pool": {"source": "pool.smi", "size": 3, "sha256": "ab" * 32, "file_sha256": "cd" * 32},
    "surrogate_kind": "exact",
    "trust_region": {"length": 0.8, "successes": 1, "failures": 0, "history": [0.4]},
    "iterations": [{"iteration": 1, "proposals": 2, "valid": 1, "improved": True, "best_so_far": 2.5, "acq_value": 0.3,
                    "region_volume_fraction": 0.01, "failed": 0, "failure_kinds": "", "target_failures": [],
                    "oracle_calls": 1, "oracle_calls_total": 4, "repeats": 0, "over_budget": 0,
                    "surrogate": {"kind": "exact", "n_points": 3, "n_fit": 3},
                    "seconds": {"fit": 0.5, "propose": 0.25, "decode": 0.125, "score": 0.125, "total": 1.0}}],
    "pool_seconds": 2.0,
    "heldout": None,
    "settings": {"target": "logp", "iterations": 1, "decodings": 4, "beam_width": 0, "pool_size": 100, "seed": 1, "top_k": 10,
                 "heldout": False, "processes": None, "threads": 1, "target_timeout": 60.0, "budget": None,
                 "surrogate": {"kind": "exact"}, "acquisition": {"q": 2, "region": "trust-region"}},
    "rows": [
        {"iteration": 0, "string": "CCO", "valid": True, "logp": -0.0014, "sa": 1.98, "cycle": 0.0, "score": -1.5},
        {"iteration": 0, "string": "c1ccccc1", "valid": True, "logp": 1.6866, "sa": 1.0, "cycle": 0.0, "score": 1.0},
        {"iteration": 0, "string": "CCCCCC", "valid": True, "logp": 2.3406, "sa": 1.3, "cycle": 0.0, "score": 0.5},
        {"iteration": 1, "string": "CCCCCCCC", "valid": True, "logp": 3.1208, "sa": 1.2, "cycle": 0.0, "score": 2.5},
        {"iteration": 1, "string": "C1CC", "valid": False},
    ],
}  # fmt: skip


def _write_state(path: Path, meta: dict, n: int = 5) -> None:
    """A state file of ``n`` codes [n, 2] whose values are the rows' scores (the fill value where invalid)."""
    Y = torch.tensor([row.get("score", -1.5) for row in TODAYS_STATE["rows"]][:n], dtype=torch.float64)
    X = torch.linspace(-1.0, 1.0, 2 * n, dtype=torch.float64).reshape(n, 2)
    save_checkpoint(path, {"X": X, "Y": Y, "box": torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=torch.float64)}, meta)


def test_a_state_in_the_format_written_before_run_meta_loads_and_saves_unchanged(tmp_path: Path) -> None:
    _write_state(tmp_path / STATE_FILE, TODAYS_STATE)
    state = OptimizationState.load(tmp_path / STATE_FILE)
    meta = state.meta
    assert meta.identity.target == "logp" and meta.completed == 1 and meta.oracle_calls == 4 and meta.fill_value == -1.5
    assert meta.pool.file_sha256 == "cd" * 32 and meta.trust_region["history"] == [0.4] and meta.domain_name() == "molecules"
    assert meta.iterations[0]["seconds"]["total"] == 1.0 and meta.heldout is None and meta.unknown == {}
    state.save(tmp_path / "again.safetensors")
    written = _raw_meta(tmp_path / "again.safetensors")
    assert written == TODAYS_STATE and list(written) == list(TODAYS_STATE)
    summary = render_report(tmp_path)  # the report reads it as it read it before
    assert summary["iterations_completed"] == 1 and summary["oracle_calls"] == 4 and summary["pool"] == TODAYS_STATE["pool"]
    assert summary["top"][0]["string"] == "CCCCCCCC" and summary["trust_region"] == TODAYS_STATE["trust_region"]


def test_older_states_load_with_defaults_and_keep_keys_of_a_later_molks(tmp_path: Path) -> None:
    # Before "domain", "oracle_calls", "settings" and the pool file's SHA-256 were saved; and a key a later molks adds.
    older = {k: v for k, v in TODAYS_STATE.items() if k not in ("domain", "oracle_calls", "settings")}
    older["pool"] = {k: v for k, v in TODAYS_STATE["pool"].items() if k != "file_sha256"}
    _write_state(tmp_path / STATE_FILE, {**older, "later_key": {"kept": [1, 2]}})
    meta = OptimizationState.load(tmp_path / STATE_FILE).meta
    assert meta.domain is None and meta.domain_name() == "molecules" and meta.oracle_calls is None and meta.settings is None
    assert meta.pool.file_sha256 is None and meta.unknown == {"later_key": {"kept": [1, 2]}}
    written = meta.to_json()
    assert "domain" not in written and "oracle_calls" not in written and "settings" not in written
    assert written["later_key"] == {"kept": [1, 2]}  # saved again as it came
    summary = render_report(tmp_path)
    assert summary["oracle_calls"] is None and summary["settings"]["iterations"] == 1 and summary["settings"]["threads"] is None


def test_a_state_saved_before_domain_oracle_calls_and_settings_resumes(
    two_iterations: Path, tiny_run: Path, pool: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "older"
    optimize(molks.load(tiny_run), pool, out, "logp", _config(1), progress=False)
    meta = _raw_meta(out / STATE_FILE)
    tensors = load_checkpoint(out / STATE_FILE, finite=False)[0]
    for key in ("domain", "oracle_calls", "settings"):
        del meta[key]
    del meta["pool"]["file_sha256"]
    save_checkpoint(out / STATE_FILE, tensors, meta)
    optimize(molks.load(tiny_run), [], out, "logp", _config(2), resume=True, progress=False)
    assert (out / "candidates.csv").read_text() == (two_iterations / "candidates.csv").read_text()
    resumed = OptimizationState.load(out / STATE_FILE).meta
    assert resumed.domain == "molecules" and resumed.completed == 2 and resumed.oracle_calls is not None


def _damage(meta: dict, change: str) -> None:
    if change == "no completed":
        del meta["completed"]
    elif change == "completed as text":
        meta["completed"] = "2"
    elif change == "no identity config":
        del meta["identity"]["config"]
    elif change == "iterations not a list":
        meta["iterations"] = {"1": {}}
    elif change == "fill value a boolean":
        meta["fill_value"] = True
    elif change == "objectives without a reference point":
        meta["objectives"] = {"names": ["qed", "logp"], "maximize": [True, True], "reference_rule": "r", "pool_hypervolume": 1.0}
    elif change == "a later version":
        meta["version"] = 2
    elif change == "a row too few":
        meta["rows"].pop()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no completed", r"incomplete optimisation state \(its metadata has no 'completed'\)"),
        ("completed as text", r"damaged optimisation state metadata \(completed is a string '2', not an integer\)"),
        ("no identity config", r"its metadata has no 'identity\.config'"),
        ("iterations not a list", r"iterations is an object .*, not a list"),
        ("fill value a boolean", r"fill_value is a boolean True, not a number or a list"),
        ("objectives without a reference point", r"has no 'objectives\.reference_point'"),
        ("a later version", r"unsupported optimisation state \(version 2, this molks reads version 1\)"),
        ("a row too few", r"inconsistent optimisation state"),
    ],
)
def test_a_damaged_state_is_a_checkpoint_error_naming_the_file(two_iterations: Path, tmp_path: Path, change: str, message: str) -> None:
    tensors, meta, _ = load_checkpoint(two_iterations / STATE_FILE, finite=False)
    _damage(meta, change)
    save_checkpoint(tmp_path / STATE_FILE, tensors, meta)
    with pytest.raises(CheckpointError, match=message) as caught:
        render_report(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / STATE_FILE}: ")
    assert not (tmp_path / "summary.json").exists()


# ---------------------------------------------------------------- CLI


def test_cli_runs_and_reports(tiny_run: Path, pool: list[str], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from molks.cli.optimize import app

    pool_file = tmp_path / "pool.smi"
    pool_file.write_text("\n".join(pool) + "\n")
    out = tmp_path / "cli-out"
    args = ["--model", str(tiny_run), "--pool", str(pool_file), "--pool-size", "60", "--out", str(out),
            "--iterations", "1", "--batch-size", "3", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "valid proposals" in result.output
    assert json.loads((out / "summary.json").read_text())["settings"]["beam_width"] == DEFAULT_BEAM_WIDTH  # the default decoding
    assert len([r for r in _read_csv(out / "candidates.csv") if r["iteration"] == "1"]) == 3
    again = CliRunner().invoke(app, args)  # same --out without --resume
    assert again.exit_code == 2 and "--resume" in again.output
    bad = CliRunner().invoke(app, ["--model", str(tiny_run), "--target", "nope", "--out", str(tmp_path / "x"), "--quiet"])
    assert bad.exit_code == 2 and "unknown target" in bad.output


def test_default_pool_is_the_training_set_or_else_the_held_out_molecules(tmp_path: Path) -> None:
    from molks.optimize.loop import OptimizeError, default_pool_file

    with pytest.raises(OptimizeError, match="--pool"):
        default_pool_file(tmp_path)
    (tmp_path / "validation.smi").write_text("CCO\n")
    assert default_pool_file(tmp_path) == tmp_path / "validation.smi"  # a shipped model without its training set
    (tmp_path / "train.smi.gz").write_bytes(b"")
    assert default_pool_file(tmp_path) == tmp_path / "train.smi.gz"
