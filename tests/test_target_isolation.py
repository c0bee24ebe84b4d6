"""User targets that misbehave (issues 20, 21): nothing a target's code does -- scores of 1e300, inf
or NaN, ``os._exit``, ``sys.exit``, a segfault, a hang -- ends, fakes or stalls ``molks optimize``.

Real target modules are written to tmp_path and run in real worker processes, with real BoTorch
on the tiny trained models of conftest."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import molks
from molks.optimize.guard import SCORE_LIMIT, unusable_score
from molks.optimize.loop import OptimizeConfig, OptimizeError, optimize
from molks.optimize.state import STATE_FILE, OptimizationState
from molks.optimize.surrogate import SurrogateConfig
from molks.optimize.targets import TargetError

ROOT = Path(__file__).resolve().parents[1]
FAST = SurrogateConfig(maxiter=20, max_fit=100)


def _config(iterations: int, q: int = 2) -> OptimizeConfig:
    from molks.optimize.acquisition import AcquisitionConfig

    return OptimizeConfig(
        iterations=iterations, pool_size=20, seed=0, target_timeout=2.0, surrogate=FAST,
        acquisition=AcquisitionConfig(q=q, num_restarts=1, raw_samples=16, mc_samples=32, maxiter=20),
    )  # fmt: skip


@pytest.fixture()
def user_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path for target modules (worker processes get the same sys.path)."""
    folder = tmp_path / "targets"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def _expressions(run: Path, n: int = 20) -> list[str]:
    import gzip

    with gzip.open(run / "train.smi.gz", "rt") as f:
        return [line.strip() for line, _ in zip(f, range(n))]


# ---------------------------------------------------------------- absurd and non-finite scores


def test_unusable_scores_are_named() -> None:
    assert unusable_score(math.nan) == "NaN" and unusable_score(math.inf) == "inf" and unusable_score(-math.inf) == "-inf"
    assert unusable_score(1e300) == "beyond ±1e15" and unusable_score(-2 * SCORE_LIMIT) == "beyond ±1e15"
    assert unusable_score(SCORE_LIMIT) is None and unusable_score(-3.5) is None


def test_scores_of_1e300_inf_and_nan_are_failures_not_a_gp_crash(
    tiny_expression_run: Path, user_modules: Path, tmp_path: Path
) -> None:
    (user_modules / "absurd_scores.py").write_text(
        "def f(texts):\n"
        "    return [float('nan') if 'sin' in t else float('inf') if 'exp' in t else 1e300 if '*' in t else float(len(t))\n"
        "            for t in texts]\n"
    )
    lines: list[str] = []
    out = tmp_path / "out"
    summary = optimize(molks.load(tiny_expression_run), _expressions(tiny_expression_run), out, "absurd_scores:f",
                       _config(2), progress=False, log=lines.append)  # fmt: skip
    assert summary["iterations_completed"] == 2  # the GP was fitted on finite values: no linalg error
    pool_line = next(line for line in lines if "pool strings have no usable score" in line)
    assert "scored beyond ±1e15" in pool_line and "scored inf" in pool_line and "scored NaN" in pool_line, pool_line
    state = OptimizationState.load(out / STATE_FILE)
    assert all(math.isfinite(v) and abs(v) <= SCORE_LIMIT for v in state.Y.tolist())
    failed = [r for r in state.rows if r.get("failure")]
    assert all(not r["valid"] and "not a finite number within ±1e15" in r["failure"] for r in failed)
    if any("*" in r["string"] for r in state.rows if r["iteration"] > 0):  # proposals the target scored 1e300
        assert failed and "failure" in (out / "candidates.csv").read_text().splitlines()[0]


# ---------------------------------------------------------------- "only 0 pool strings": which happened


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ("return [float('nan')] * len(texts)", "20 scored NaN"),
        ("return [float('inf')] * len(texts)", "20 scored inf"),
        ("return [1e300] * len(texts)", "20 scored beyond ±1e15"),
        ("return [None] * len(texts)", "20 scored None by the target"),
    ],
    ids=["nan", "inf", "1e300", "none"],
)
def test_a_pool_without_usable_scores_says_which_happened(
    tiny_run: Path, moses_smiles: list[str], user_modules: Path, tmp_path: Path, body: str, said: str
) -> None:
    name = f"pool_scores_{abs(hash(body))}"
    (user_modules / f"{name}.py").write_text(f"def f(texts):\n    {body}\n")
    with pytest.raises(OptimizeError) as caught:
        optimize(molks.load(tiny_run), moses_smiles[:20], tmp_path / "out", f"{name}:f", _config(1), progress=False)
    assert "only 0 of 20 pool strings could be encoded and scored" in str(caught.value)
    assert said in str(caught.value), str(caught.value)
    assert not (tmp_path / "out" / STATE_FILE).exists()


def test_a_pool_that_does_not_fit_the_model_says_so(tiny_run: Path, tiny_expression_run: Path, tmp_path: Path) -> None:
    with pytest.raises(OptimizeError) as caught:  # expressions given to a SMILES model
        optimize(molks.load(tiny_run), _expressions(tiny_expression_run), tmp_path / "out", "logp", _config(1), progress=False)
    assert "20 do not fit the model" in str(caught.value), str(caught.value)


# ---------------------------------------------------------------- exits, signals, hangs


HOSTILE = '''
import ctypes, os, sys, time
from pathlib import Path

def _call_number(name):
    """How many times ``name`` has been called, this call included (kept in a file: workers restart)."""
    counter = Path(__file__).with_name(f"{name}.count")
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    return n


def exits(texts):
    os._exit(3)


def sys_exits(texts):
    sys.exit(0)


def segfaults(texts):
    ctypes.string_at(0)


def sleeps(texts):
    time.sleep(10_000)


def flaky(texts):
    """Call 1 checks two pool strings, call 2 scores the pool; call 3 exits, call 4 segfaults."""
    n = _call_number("flaky")
    if n == 3:
        os._exit(3)
    if n == 4:
        ctypes.string_at(0)
    return [float(len(t)) for t in texts]


def dies_after_the_pool(texts):
    if _call_number("dies_after_the_pool") > 2:
        os._exit(3)
    return [float(len(t)) for t in texts]
'''

SCRIPT = '''
import json, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
folder, run, out = sys.argv[1:4]
sys.path.insert(0, folder)
import molks
from molks.optimize.acquisition import AcquisitionConfig
from molks.optimize.loop import OptimizeConfig, optimize
from molks.optimize.surrogate import SurrogateConfig
model = molks.load(run)
pool = Path(folder, "pool.txt").read_text().splitlines()
for spec, iterations in json.loads(sys.argv[4]):
    config = OptimizeConfig(iterations=iterations, pool_size=20, target_timeout=2.0,
                            surrogate=SurrogateConfig(maxiter=20, max_fit=100),
                            acquisition=AcquisitionConfig(q=2, num_restarts=1, raw_samples=16, mc_samples=32, maxiter=20))
    try:
        summary = optimize(model, pool, Path(out, spec.replace(":", "-")), spec, config, progress=False)
        print(json.dumps([spec, "ok", summary["iterations_completed"]]), flush=True)
    except Exception as err:
        print(json.dumps([spec, type(err).__name__, str(err)]), flush=True)
'''

CASES = {
    "dies_on_import:f": 1,
    "hostile:exits": 1,
    "hostile:sys_exits": 1,
    "hostile:segfaults": 1,
    "hostile:sleeps": 1,
    "hostile:flaky": 3,
    "hostile:dies_after_the_pool": 5,
}


@pytest.fixture(scope="module")
def hostile_runs(tiny_expression_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list]]:
    """Every case of CASES run in one real `python` process through the public API (so that a target
    that ended the process, as before, fails these tests instead of ending pytest)."""
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "hostile.py").write_text(HOSTILE)
    (folder / "dies_on_import.py").write_text("import os\nos._exit(3)\n\ndef f(texts):\n    return [1.0] * len(texts)\n")
    (folder / "pool.txt").write_text("\n".join(_expressions(tiny_expression_run)) + "\n")
    out = folder / "out"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), str(tiny_expression_run), str(out), json.dumps(list(CASES.items()))],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False,
    )  # fmt: skip
    results = {line[0]: line[1:] for line in map(json.loads, done.stdout.splitlines()) if isinstance(line, list)}
    assert done.returncode == 0 and len(results) == len(CASES), (done.returncode, done.stdout, done.stderr[-3000:])
    return out, results


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("dies_on_import:f", "target 'dies_on_import:f': importing module 'dies_on_import' failed: the worker process exited with code 3"),
        ("hostile:exits", "target 'hostile:exits' failed when scoring 2 strings: the worker process exited with code 3"),
        ("hostile:sys_exits", "target 'hostile:sys_exits' failed when scoring 2 strings: called sys.exit(0)"),
        ("hostile:segfaults", "the worker process was killed by signal 11 (SIGSEGV)"),
        ("hostile:sleeps", "gave no answer within 2 s (--target-timeout); its worker process was killed"),
    ],
    ids=["os._exit-on-import", "os._exit", "sys.exit(0)", "segfault", "sleeps-forever"],
)
def test_a_target_that_exits_crashes_or_hangs_at_once_is_one_error_before_the_run(
    hostile_runs: tuple[Path, dict[str, list]], spec: str, reason: str
) -> None:
    out, results = hostile_runs
    kind, message = results[spec]
    assert kind == "TargetError" and reason in message, results[spec]
    assert not (out / spec.replace(":", "-") / STATE_FILE).exists()  # found before anything was written


def test_a_call_that_exits_or_segfaults_fails_its_strings_and_the_run_goes_on(
    hostile_runs: tuple[Path, dict[str, list]],
) -> None:
    out, results = hostile_runs
    assert results["hostile:flaky"] == ["ok", 3], results["hostile:flaky"]
    state = OptimizationState.load(out / "hostile-flaky" / STATE_FILE)
    failures = [r["failure"] for r in state.rows if r.get("failure")]
    assert any("exited with code 3" in f for f in failures), failures
    assert any("killed by signal 11 (SIGSEGV)" in f for f in failures), failures
    assert [it["target_failures"] != [] for it in state.meta.iterations] == [True, True, False]
    assert "failure" in (out / "hostile-flaky" / "candidates.csv").read_text().splitlines()[0]


def test_three_failed_calls_in_a_row_stop_the_run_saved_naming_the_target(
    hostile_runs: tuple[Path, dict[str, list]],
) -> None:
    out, results = hostile_runs
    kind, message = results["hostile:dies_after_the_pool"]
    assert kind == "TargetError", results["hostile:dies_after_the_pool"]
    assert message.startswith("target 'hostile:dies_after_the_pool' failed 3 calls in a row"), message
    assert "exited with code 3" in message
    state = OptimizationState.load(out / "hostile-dies_after_the_pool" / STATE_FILE)  # saved: --resume can go on
    assert f"the run stopped after iteration {state.meta.completed}, saved in " in message
    assert sum(bool(it["target_failures"]) for it in state.meta.iterations) == 3


def test_target_timeout_is_an_option_of_optimize() -> None:
    from typer.testing import CliRunner

    from molks.cli import app

    result = CliRunner().invoke(app, ["optimize", "--help"], env={"COLUMNS": "200"})
    assert "--target-timeout" in result.output
    with pytest.raises(OptimizeError):
        OptimizeConfig(target_timeout=0)
    with pytest.raises(TargetError):
        from molks.optimize.guard import open_target

        open_target("logp", timeout=-1)


# ---------------------------------------------------------------- RDKit on untrusted strings, one process

CRASHING_RDKIT = '''
"""Loaded by every Python process of the test (sitecustomize): RDKit's check segfaults on 'C[poison]'."""
import ctypes

import molks.dataset.molecules as molecules

_check = molecules.check_smiles


def check_smiles(text, *args, **kwargs):
    if "poison" in text:
        ctypes.string_at(0)  # what RDKit does on a hostile SMILES it cannot handle
    return _check(text, *args, **kwargs)


molecules.check_smiles = check_smiles
'''


def test_an_rdkit_crash_with_one_process_names_the_line(tmp_path: Path, moses_smiles: list[str]) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(CRASHING_RDKIT)
    data = tmp_path / "hostile.smi"
    data.write_text("\n".join([*moses_smiles[:5], "C[poison]", *moses_smiles[5:10]]) + "\n")
    molks_command = Path(sys.executable).with_name("molks")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run(
        [str(molks_command), "data", "parse", str(data), "--processes", "1", "--no-cache", "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "hostile.smi:6: " in errors[0] and "killed a worker process" in errors[0], done.stderr
