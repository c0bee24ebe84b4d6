"""Several targets at once: the Pareto and hypervolume helpers on hand-made points, and the
qLogNEHVI loop end to end on the tiny model (`molks optimize --target qed --target logp`)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import molks
from molks.optimize.acquisition import AcquisitionConfig
from molks.optimize.loop import OptimizeConfig, OptimizeError, optimize
from molks.optimize import multiobjective
from molks.optimize.multiobjective import (
    PARETO_CHUNK,
    PARETO_MC_SAMPLES,
    REFERENCE_RULE,
    MultiObjectiveError,
    contributions,
    fit_surrogates,
    hypervolume,
    open_objectives,
    pareto_mask,
    propose_pareto,
    reference_point,
)
from molks.optimize.state import STATE_FILE, OptimizationState
from molks.optimize.surrogate import SurrogateConfig
from molks.optimize.targets import qed
from molks.training.checkpoint import load_checkpoint

# What `molks optimize -q 4 --pool-size 60 --seed 1` builds, so the CLI can resume the API's run.
CONFIG: dict[str, Any] = {"pool_size": 60, "seed": 1, "threads": 1, "acquisition": AcquisitionConfig(q=4)}
TARGETS = ["qed", "logp"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest: tiny GP matrices


# ---------------------------------------------------------------- Pareto front and hypervolume


def test_hypervolume_of_hand_made_points() -> None:
    staircase = torch.tensor([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [1.0, 1.0], [-1.0, 5.0]])
    # 1x3 + 1x2 + 1x1 above (0, 0); (1, 1) is dominated, (-1, 5) lies left of the reference point.
    assert hypervolume(staircase, torch.zeros(2)) == pytest.approx(6.0)
    assert hypervolume(staircase, torch.tensor([1.0, 1.0])) == pytest.approx(1.0)  # only (2, 2) lies above (1, 1)
    assert hypervolume(torch.tensor([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0]]), torch.zeros(3)) == pytest.approx(3.0)  # 2 + 2 - 1
    assert hypervolume(torch.tensor([[-1.0, 4.0]]), torch.zeros(2)) == 0.0


def test_pareto_mask_and_contributions() -> None:
    Y = torch.tensor([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [1.0, 1.0], [2.0, 2.0]])
    assert pareto_mask(Y).tolist() == [True, True, True, False, True]  # equal points are both non-dominated
    gains = contributions(Y[:4], torch.zeros(2))
    assert gains.tolist() == pytest.approx([1.0, 1.0, 1.0, 0.0])
    assert contributions(Y, torch.zeros(2))[[1, 4]].tolist() == [0.0, 0.0]  # each of two equal points adds nothing


def test_reference_point_is_the_pool_fronts_nadir_lowered_by_a_tenth_of_its_range() -> None:
    pool = torch.tensor([[1.0, 3.0], [3.0, 1.0], [0.0, 0.0], [2.0, 2.0]])
    assert reference_point(pool).tolist() == pytest.approx([0.8, 0.8])


def test_minimised_targets_enter_negated() -> None:
    from molks.chemistry import sa_score
    from molks.dataset.molecules import read_smiles

    with open_objectives(["qed", "sa"]) as objectives:
        assert objectives.name == ["qed", "sa"] and objectives.maximize == [True, False]
        scores = objectives.score(["CC(=O)Oc1ccccc1C(=O)O", "not a molecule"])
        values = objectives.values(scores.terms)
    sa = sa_score(read_smiles("CC(=O)Oc1ccccc1C(=O)O"))
    assert scores.terms[0] == pytest.approx({"qed": qed("CC(=O)Oc1ccccc1C(=O)O"), "sa": sa})
    assert values[0] == pytest.approx([qed("CC(=O)Oc1ccccc1C(=O)O"), -sa]) and values[1] is None


@pytest.mark.parametrize(
    ("targets", "message"),
    [(["qed", "qed"], "more than once"), (["qed", "logp", "sa", "median1"], "2 to 3 targets"), (["qed"], "2 to 3")],
)
def test_bad_target_lists_are_clear_errors(targets: list[str], message: str) -> None:
    with pytest.raises(MultiObjectiveError, match=message):
        open_objectives(targets)


def test_cli_refuses_a_repeated_target_or_four_before_writing(tmp_path: Path) -> None:
    from molks.cli.optimize import app

    for targets in (["qed", "logp", "qed"], ["qed", "logp", "sa", "median1"]):
        args = ["--model", "nowhere", "--out", str(tmp_path / "out"), "--quiet"]
        result = CliRunner().invoke(app, [*args, *(x for t in targets for x in ("--target", t))])
        assert result.exit_code == 2, result.output
        assert len(result.output.strip().splitlines()) == 1
        assert "given more than once" in result.output or "2 to 3 targets" in result.output
        assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- the loop


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def pool(moses_smiles: list[str]) -> list[str]:
    return moses_smiles[1000:1120]


@pytest.fixture(scope="module")
def two_iterations(tiny_run: Path, pool: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mo") / "uninterrupted"
    optimize(molks.load(tiny_run), pool, out, TARGETS, OptimizeConfig(iterations=2, **CONFIG), progress=False)
    return out


def test_run_writes_a_non_dominated_front_and_a_rising_hypervolume(two_iterations: Path) -> None:
    for name in ("candidates.csv", "summary.json", "pareto.csv", "pareto.png", "hypervolume.csv", "hypervolume.png"):
        assert (two_iterations / name).is_file(), name
    candidates = _read_csv(two_iterations / "candidates.csv")
    assert list(candidates[0])[-4:] == ["string", "valid", "qed", "logp"]
    scored = torch.tensor([[float(r["qed"]), float(r["logp"])] for r in candidates if r["valid"] == "1"], dtype=torch.float64)
    front = _read_csv(two_iterations / "pareto.csv")
    assert front and list(front[0]) == ["smiles", "qed", "logp", "iteration"]
    F = torch.tensor([[float(r["qed"]), float(r["logp"])] for r in front], dtype=torch.float64)
    assert pareto_mask(F).all()  # no row of the front dominates another
    for y in scored:  # and every scored molecule is on it or dominated by a row of it
        assert ((F >= y).all(dim=1)).any()
    summary = json.loads((two_iterations / "summary.json").read_text())
    assert summary["targets"] == TARGETS and summary["iterations_completed"] == 2 and summary["pareto_size"] == len(front)
    ref = torch.tensor(summary["reference_point_values"], dtype=torch.float64)
    pool_values = torch.tensor([[float(r["qed"]), float(r["logp"])] for r in candidates if r["iteration"] == "0"])
    assert ref.tolist() == pytest.approx(reference_point(pool_values).tolist())
    curve = _read_csv(two_iterations / "hypervolume.csv")
    assert [r["iteration"] for r in curve] == ["0", "1", "2"]
    volumes = [float(r["hypervolume"]) for r in curve]
    assert volumes == sorted(volumes) and volumes[0] > 0
    assert volumes[-1] == pytest.approx(hypervolume(scored, ref)) == pytest.approx(summary["hypervolume"])
    assert [int(r["oracle_calls"]) for r in curve][-1] == summary["oracle_calls"]
    for name in ("pareto.png", "hypervolume.png"):
        with Image.open(two_iterations / name) as image:
            assert image.format == "PNG" and image.size[0] > 100


def test_the_state_holds_the_objectives_and_saves_them_unchanged(two_iterations: Path, tmp_path: Path) -> None:
    state = OptimizationState.load(two_iterations / STATE_FILE)
    objectives = state.objectives
    assert objectives is not None and objectives is state.meta.objectives
    assert objectives.names == TARGETS and objectives.maximize == [True, True] and objectives.reference_rule == REFERENCE_RULE
    summary = json.loads((two_iterations / "summary.json").read_text())
    assert objectives.reference_point == summary["reference_point_values"]
    assert objectives.pool_hypervolume == summary["pool_hypervolume"]
    assert state.meta.identity.target == TARGETS and isinstance(state.meta.fill_value, list) and len(state.meta.fill_value) == 2
    state.save(tmp_path / STATE_FILE)
    written, saved = (load_checkpoint(path / STATE_FILE, finite=False)[1] for path in (tmp_path, two_iterations))
    assert written == saved and list(written) == list(saved)


def test_cli_resumes_the_run_as_if_never_interrupted(two_iterations: Path, tiny_run: Path, pool: list[str], tmp_path: Path) -> None:
    from molks.cli.optimize import app

    pool_file = tmp_path / "pool.smi"
    pool_file.write_text("\n".join(pool) + "\n")
    out = tmp_path / "interrupted"
    args = ["--model", str(tiny_run), "--pool", str(pool_file), "--pool-size", "60", "--seed", "1", "-q", "4",
            "--target", "qed", "--target", "logp", "--out", str(out), "--quiet"]  # fmt: skip
    first = CliRunner().invoke(app, [*args, "--iterations", "1"])
    assert first.exit_code == 0, first.output
    assert "reference point: qed" in first.output and "hypervolume: pool" in first.output
    assert len(_read_csv(out / "hypervolume.csv")) == 2
    resumed = CliRunner().invoke(app, [*args, "--iterations", "2", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert (out / "candidates.csv").read_text() == (two_iterations / "candidates.csv").read_text()
    assert (out / "hypervolume.csv").read_text() == (two_iterations / "hypervolume.csv").read_text()
    # The reference point came from the state, not from the pool again.
    assert json.loads((out / "summary.json").read_text())["reference_point"] == json.loads(
        (two_iterations / "summary.json").read_text())["reference_point"]  # fmt: skip


def test_resume_with_other_targets_is_refused(two_iterations: Path, tiny_run: Path, pool: list[str]) -> None:
    model = molks.load(tiny_run)
    with pytest.raises(OptimizeError, match="target was \\['qed', 'logp'\\], now \\['qed', 'sa'\\]"):
        optimize(model, [], two_iterations, ["qed", "sa"], OptimizeConfig(iterations=3, **CONFIG), resume=True, progress=False)
    with pytest.raises(OptimizeError, match="target"):
        optimize(model, [], two_iterations, "qed", OptimizeConfig(iterations=3, **CONFIG), resume=True, progress=False)


# ---------------------------------------------------------------- the proposal step's settings


class _Spy:
    """Wraps optimize_acqf: records each call's q and the acquisition's MC samples."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, int]] = []
        real = multiobjective.optimize_acqf

        def spy(acqf: Any, **kwargs: Any) -> Any:
            self.calls.append((kwargs["q"], acqf.sampler.sample_shape[0]))
            return real(acqf, **kwargs)

        monkeypatch.setattr(multiobjective, "optimize_acqf", spy)


@pytest.fixture(scope="module")
def toy() -> dict[str, Any]:
    """Two objectives of 4-D codes [24, 4] and their GPs: a proposal takes a second or two."""
    X = torch.rand(24, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    Y = torch.stack([-(X - 0.2).pow(2).sum(dim=1), -(X - 0.8).pow(2).sum(dim=1)], dim=1)
    box = torch.stack([torch.zeros(4), torch.ones(4)]).double()
    return {"X": X, "Y": Y, "box": box, "ref": reference_point(Y),
            "model": fit_surrogates(X, Y, box, SurrogateConfig(), seed=0).model}  # fmt: skip


def test_a_joint_batch_is_built_in_chunks_and_a_sequential_one_a_code_at_a_time(toy: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy(monkeypatch)
    q = PARETO_CHUNK + 1
    for strategy, mc in (("joint", 16), ("sequential", 8)):
        config = AcquisitionConfig(q=q, region="box", strategy=strategy, maxiter=5, raw_samples=16)
        spy.calls.clear()
        proposal = propose_pareto(toy["model"], toy["X"], toy["Y"], toy["box"], toy["ref"], config, seed=3, mc_samples=mc)
        assert proposal.X.shape == (q, 4) and math.isfinite(proposal.acq_value)
        assert ((proposal.X >= 0) & (proposal.X <= 1)).all()
        chunks = [PARETO_CHUNK, 1] if strategy == "joint" else [1] * q
        assert spy.calls == [(n, mc) for n in chunks]  # the chunks, each with the configured MC samples


def test_sequential_is_botorchs_sequential_greedy_bit_for_bit(toy: dict[str, Any]) -> None:
    from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
    from botorch.optim import optimize_acqf
    from botorch.sampling.normal import SobolQMCNormalSampler

    config = AcquisitionConfig(q=3, region="box", strategy="sequential", maxiter=5, raw_samples=16)
    ours = propose_pareto(toy["model"], toy["X"], toy["Y"], toy["box"], toy["ref"], config, seed=5, mc_samples=16)
    torch.manual_seed(5)
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([16]), seed=5)
    acqf = qLogNoisyExpectedHypervolumeImprovement(toy["model"], ref_point=toy["ref"], X_baseline=toy["X"], sampler=sampler,
                                                   prune_baseline=True, cache_root=True)  # fmt: skip
    theirs, _ = optimize_acqf(acqf, bounds=toy["box"], q=3, num_restarts=2, raw_samples=16, sequential=True,
                              options={"maxiter": 5, "seed": 5, "batch_limit": 2}, retry_on_optimization_warning=False)  # fmt: skip
    assert torch.equal(ours.X, theirs)


def test_bad_chunk_or_sample_count_is_a_clear_error(toy: dict[str, Any]) -> None:
    args = (toy["model"], toy["X"], toy["Y"], toy["box"], toy["ref"], AcquisitionConfig(q=2, region="box"))
    with pytest.raises(MultiObjectiveError, match="chunk must be 1 to"):
        propose_pareto(*args, seed=0, chunk=0)
    with pytest.raises(MultiObjectiveError, match="mc_samples must be at least 1"):
        propose_pareto(*args, seed=0, mc_samples=0)


def test_the_batch_settings_are_honoured_recorded_and_resumed(
    tiny_run: Path, pool: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _Spy(monkeypatch)
    settings = {**CONFIG, "acquisition": AcquisitionConfig(q=3, strategy="sequential")}
    model = molks.load(tiny_run)
    whole, part = tmp_path / "whole", tmp_path / "part"
    optimize(model, pool, whole, TARGETS, OptimizeConfig(iterations=2, **settings), progress=False)
    assert spy.calls == [(1, PARETO_MC_SAMPLES)] * 6  # two rounds of three codes, one at a time
    saved = OptimizationState.load(whole / STATE_FILE).meta.settings
    assert saved is not None and saved["acquisition"]["strategy"] == "sequential"
    optimize(model, pool, part, TARGETS, OptimizeConfig(iterations=1, **settings), progress=False)
    optimize(model, pool, part, TARGETS, OptimizeConfig(iterations=2, **settings), resume=True, progress=False)
    for name in ("candidates.csv", "hypervolume.csv"):
        assert (part / name).read_text() == (whole / name).read_text()
    with pytest.raises(OptimizeError, match="strategy was 'sequential', now 'joint'"):
        optimize(model, pool, part, TARGETS, OptimizeConfig(iterations=3, **CONFIG), resume=True, progress=False)
