"""Lead optimisation (``molks optimize --from FILE --min-similarity D``) end to end through the
command line: on the tiny trained run (it decodes nothing valid yet: every molecule fails, each with
its reason) and on the shipped model, which finds similar, better molecules (seconds)."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator
from typer.testing import CliRunner

from molks.cli.optimize import app

UNENCODABLE = {
    "not-a-molecule": "not a valid SMILES",  # RDKit reads no molecule in it
    "CC[U]": "outside the grammar",  # a token the SMILES grammar lacks
    "C" * 150: "productions; the model allows at most",  # a derivation longer than the model allows
}
LEADS = ["CC(=O)Oc1ccccc1C(=O)O", "CC(=O)Nc1ccc(O)cc1", "CCOc1ccccc1O"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _similarity(a: str, b: str) -> float:
    """Tanimoto of unhashed Morgan counts, radius 2 (JT-VAE's GetMorganFingerprint(mol, 2)), computed here."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2)
    fa, fb = (generator.GetSparseCountFingerprint(Chem.MolFromSmiles(s)) for s in (a, b))
    return DataStructs.TanimotoSimilarity(fa, fb)


def _run(model: str | Path, starts: list[str], tmp_path: Path, delta: float, *extra: str) -> tuple[Path, Path, list[str]]:
    start_file = tmp_path / "leads.smi"
    start_file.write_text("".join(f"{s}\n" for s in starts))
    out = tmp_path / "out"
    args = ["--model", str(model), "--from", str(start_file), "--min-similarity", str(delta), "--budget", "6",
            "--batch-size", "3", "--out", str(out), "--quiet", *extra]  # fmt: skip
    return start_file, out, args


def _check_table(out: Path, starts: list[str], delta: float, output: str, start_file: Path) -> list[dict[str, str]]:
    """The per-molecule table's invariants; returns its rows."""
    table = _rows(out / "leads.csv")
    assert list(table[0])[:5] == ["start", "best", "similarity", "improvement", "success"]
    assert [row["start"] for row in table] == starts  # one row per molecule, in input order, none dropped
    for line, (row, start) in enumerate(zip(table, starts), start=1):
        if start in UNENCODABLE:  # reported with the reason, counted as a failure
            assert row["success"] == "0" and row["best"] == "" and float(row["improvement"]) == 0.0
            assert row["reason"].startswith("not encoded") and UNENCODABLE[start] in row["reason"], row
            assert f"{start_file}:{line}: not encoded" in output
            continue
        assert int(row["scored"]) <= 6  # the per-molecule oracle budget
        if row["success"] == "1":  # the constraint holds, recomputed here with RDKit
            assert _similarity(start, row["best"]) >= delta
            assert math.isclose(float(row["similarity"]), _similarity(start, row["best"]))
            assert Chem.CanonSmiles(row["best"]) != Chem.CanonSmiles(start)
            assert float(row["improvement"]) > 0
            assert math.isclose(float(row["improvement"]), float(row["best_score"]) - float(row["start_score"]))
        else:
            assert float(row["improvement"]) == 0.0 and row["best"] == "" and row["reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["molecules"] == len(starts)
    assert summary["encoded"] == len(starts) - sum(s in UNENCODABLE for s in starts)
    assert {f["start"] for f in summary["not_encoded"]} == set(UNENCODABLE) & set(starts)
    assert summary["successes"] == sum(row["success"] == "1" for row in table)
    assert summary["success_rate"] == pytest.approx(summary["successes"] / len(starts))
    improvements = [float(row["improvement"]) for row in table]
    assert summary["improvement_all"]["mean"] == pytest.approx(sum(improvements) / len(improvements))
    assert "morgan2-counts" in summary["protocol"]
    assert (out / "pairs.png").exists() == (summary["successes"] > 0)
    return table


def _kill_after_first_and_resume(out: Path, args: list[str]) -> None:
    """Keep only the first molecule's saved result (what a kill after it leaves), resume, and compare."""
    expected = {name: (out / name).read_text() for name in ("leads.csv", "candidates.csv")}
    summary = _summary_without_time(out)
    for record in sorted((out / "molecules").glob("*.json"))[1:]:
        record.unlink()
    for name in (*expected, "summary.json"):
        (out / name).unlink()
    resumed = CliRunner().invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert {name: (out / name).read_text() for name in expected} == expected
    assert _summary_without_time(out) == summary


def _summary_without_time(out: Path) -> dict[str, object]:
    summary = json.loads((out / "summary.json").read_text())
    del summary["seconds"]
    return summary


def test_every_molecule_gets_a_row_with_its_reason_on_the_tiny_run(tiny_run: Path, tmp_path: Path,
                                                                   moses_smiles: list[str]) -> None:  # fmt: skip
    starts = [*moses_smiles[:2], *UNENCODABLE, moses_smiles[2]]
    start_file, out, args = _run(tiny_run, starts, tmp_path, 0.2)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "molecules improved at similarity >= 0.2" in result.output
    _check_table(out, starts, 0.2, result.output, start_file)
    # Without --beam-width, --from decodes greedily (LeadConfig's default), not by molks optimize's beam search.
    from molks.optimize.lead import LeadConfig

    assert json.loads((out / "summary.json").read_text())["settings"]["beam_width"] == LeadConfig.beam_width == 1

    again = CliRunner().invoke(app, args)  # the same --out again without --resume: refused in one line
    assert again.exit_code == 2 and "--resume" in again.output and again.output.count("\n") == 1
    other = CliRunner().invoke(app, [*args, "--resume", "--min-similarity", "0.6"])
    assert other.exit_code == 2 and "different config" in other.output
    _kill_after_first_and_resume(out, args)


def test_similar_better_molecules_and_resume_with_the_shipped_model(tmp_path: Path) -> None:
    starts = [LEADS[0], "CC[U]", *LEADS[1:]]
    start_file, out, args = _run("moses", starts, tmp_path, 0.4)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    table = _check_table(out, starts, 0.4, result.output, start_file)
    assert sum(row["success"] == "1" for row in table) >= 2  # the constraint check above is not vacuous
    candidates = _rows(out / "candidates.csv")
    for start in LEADS:
        mine = [c for c in candidates if c["start"] == start]
        assert len({c["smiles"] for c in mine}) == len(mine) <= 6  # distinct molecules, within the budget
        for c in mine:
            assert c["feasible"] == str(int(float(c["similarity"]) >= 0.4))
    for row in table:  # the best is the best feasible candidate
        if row["success"] == "1":
            feasible = [c for c in candidates if c["start"] == row["start"] and c["feasible"] == "1"
                        and Chem.CanonSmiles(c["smiles"]) != Chem.CanonSmiles(row["start"])]  # fmt: skip
            assert max(float(c["score"]) for c in feasible) == pytest.approx(float(row["best_score"]))
    _kill_after_first_and_resume(out, args)


def test_the_gp_proposes_after_the_initial_design(tmp_path: Path) -> None:
    import molks
    from molks.optimize.lead import LeadConfig, optimize_leads

    config = LeadConfig(min_similarity=0.4, budget=9, batch_size=3, initial=3, max_rounds=3)
    summary = optimize_leads(molks.load("moses"), LEADS[1:2], tmp_path, "logp", config, progress=False, log=lambda _: None)
    record = json.loads((tmp_path / "molecules" / "00000.json").read_text())
    assert record["rounds"] == 3 and record["bo_rounds"] == 2
    assert summary["done"] == 1 and record["scored"] <= 9


def test_bad_settings_end_in_one_line(tiny_run: Path, tmp_path: Path) -> None:
    _, out, args = _run(tiny_run, ["CCO"], tmp_path, 0.4)
    bad = CliRunner().invoke(app, [*args, "--target", "nope"])
    assert bad.exit_code == 2 and "unknown target" in bad.output
    missing = CliRunner().invoke(app, [*args, "--from", str(tmp_path / "missing.smi")])
    assert missing.exit_code == 2 and "missing.smi" in missing.output
    assert not (out / "lead.json").exists()


# ---------------------------------------------------------------- user targets that misbehave, state altered on disk

LEAD_TARGETS = '''
import os, time
from pathlib import Path


def _call_number(name):
    """How many times ``name`` has been called, this call included (kept in a file: workers restart)."""
    counter = Path(__file__).with_name(f"{name}.count")
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    return n


def flaky(texts):
    """Call 1 checks two starts, call 2 scores the first; call 3 raises, call 4 hangs."""
    n = _call_number("flaky")
    if n == 3:
        raise RuntimeError("flaky call 3")
    if n == 4:
        time.sleep(600)
    return [float(len(t)) for t in texts]


def dies(texts):
    """Ends its process on every call after the first two while a file named broken lies beside it."""
    if _call_number("dies") > 2 and Path(__file__).with_name("broken").exists():
        os._exit(3)
    return [float(len(t)) for t in texts]
'''


@pytest.fixture()
def user_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on sys.path holding lead_targets.py (worker processes get the same sys.path)."""
    folder = tmp_path / "targets"
    folder.mkdir()
    (folder / "lead_targets.py").write_text(LEAD_TARGETS)
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_a_target_that_raises_or_hangs_fails_its_molecules_and_the_lead_run_goes_on(
    user_modules: Path, tmp_path: Path
) -> None:
    import molks
    from molks.optimize.lead import LeadConfig, optimize_leads

    lines: list[str] = []
    out = tmp_path / "out"
    config = LeadConfig(min_similarity=0.4, budget=6, batch_size=3, target_timeout=2.0)
    started = time.perf_counter()
    summary = optimize_leads(molks.load("moses"), LEADS[:2], out, "lead_targets:flaky", config, progress=False,
                             log=lines.append)  # fmt: skip
    assert time.perf_counter() - started < 300  # the hanging call was cut at 2 s, not waited for
    assert summary["done"] == 2 and summary["target_failures"]["calls"] == 2
    first, second = (json.loads((out / "molecules" / f"0000{i}.json").read_text()) for i in range(2))
    assert "raised RuntimeError: flaky call 3" in first["target_failures"][0], first["target_failures"]
    assert "gave no answer within 2 s (--target-timeout)" in first["target_failures"][1], first["target_failures"]
    failed = [c for c in first["candidates"] if "failure" in c]
    assert failed and all(c["score"] is None for c in failed)
    assert second["target_failures"] == [] and second["start_score"] is not None  # the worker was restarted
    assert any("the run goes on" in line and "--target-timeout" in line for line in lines), lines
    assert (out / "candidates.csv").read_text().splitlines()[0].endswith(",failure")
    saved = json.loads((out / "lead.json").read_text())["target_failures"]
    assert saved["calls"] == 2 and saved["in_a_row"] == 0 and "--target-timeout" in saved["last"]


def test_three_failed_calls_in_a_row_stop_a_lead_run_saved_and_resume_goes_on(user_modules: Path, tmp_path: Path) -> None:
    """Through the command in its own process: a target that ends its process (os._exit) must not end molks."""
    (user_modules / "broken").write_text("")
    _, out, args = _run("moses", LEADS[:2], tmp_path, 0.4, "--target", "lead_targets:dies")
    molks_command = Path(sys.executable).with_name("molks")
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(user_modules), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
    done = subprocess.run([str(molks_command), "optimize", *args], capture_output=True, text=True, timeout=600, env=env,
                          check=False)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, (done.returncode, done.stderr[-3000:])
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "target 'lead_targets:dies' failed 3 calls in a row" in errors[0], done.stderr
    assert "exited with code 3" in errors[0] and f"saved in {out}" in errors[0], errors[0]
    stopped_at = int(re.search(r"the run stopped at molecule (\d) of 2", errors[0]).group(1))  # type: ignore[union-attr]
    assert len(list((out / "molecules").glob("*.json"))) == stopped_at - 1  # the molecules done are saved
    assert json.loads((out / "lead.json").read_text())["target_failures"]["in_a_row"] == 3

    (user_modules / "broken").unlink()  # the target mended: --resume goes on
    resumed = subprocess.run([str(molks_command), "optimize", *args, "--resume"], capture_output=True, text=True,
                             timeout=600, env=env, check=False)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 2 and summary["target_failures"]["calls"] >= 2 * (stopped_at == 2)


def test_a_lead_state_altered_on_disk_is_refused_on_resume(tiny_run: Path, tmp_path: Path,
                                                           moses_smiles: list[str]) -> None:  # fmt: skip
    _, out, args = _run(tiny_run, moses_smiles[:2], tmp_path, 0.2)
    assert CliRunner().invoke(app, args).exit_code == 0
    lead, record = out / "lead.json", out / "molecules" / "00000.json"
    original = lead.read_text()
    lead.write_text(original.replace('"calls": 0', '"calls": 7'))  # valid JSON, same run: only its checksum differs
    refused = CliRunner().invoke(app, [*args, "--resume"])
    assert refused.exit_code == 2 and refused.output.count("\n") == 1, refused.output
    assert "lead.json" in refused.output and "lead.sha256" in refused.output and "altered" in refused.output

    lead.write_text(original)
    result = json.loads(record.read_text())
    record.write_text(json.dumps({**result, "success": True, "improvement": 9.0}) + "\n")  # a faked result
    refused = CliRunner().invoke(app, [*args, "--resume"])
    assert refused.exit_code == 2 and refused.output.count("\n") == 1, refused.output
    assert "00000.json" in refused.output and "altered" in refused.output

    record.write_text(json.dumps(result) + "\n")  # restored: resumes
    assert CliRunner().invoke(app, [*args, "--resume"]).exit_code == 0
    (out / "lead.sha256").unlink()  # a run saved before lead.json had checksums resumes unchecked
    doc = json.loads(lead.read_text())
    del doc["results"], doc["target_failures"]
    lead.write_text(json.dumps(doc))
    assert CliRunner().invoke(app, [*args, "--resume"]).exit_code == 0
