"""The end-to-end demo: real model, real evaluation, real optimisation, on the quick settings."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from molks.decoding import DEFAULT_BEAM_WIDTH
from molks.demo import DEMO_MARKER, QUICK, DemoError, run_demo, with_overrides

REPORT_KEYS = {"kind", "molks_version", "created", "quick", "seed", "settings", "model", "evaluation",
               "optimization", "files", "commands", "notes", "seconds"}  # fmt: skip


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def _parses(command: str) -> None:
    """The molks command line in ``command`` names a real command with real options (parsed, not run)."""
    from molks.cli import app
    from molks.cli.optimize import app as optimize_app

    words = shlex.split(command.split("  #")[0])
    assert words[0] == "molks"
    from molks.cli.demo import demo_command

    group = typer.main.get_command(app)
    commands = dict(group.commands)  # type: ignore[attr-defined]
    # optimize and demo may not be registered on the main app yet: parse them on their own.
    commands.setdefault("optimize", typer.main.get_command(optimize_app))
    if "demo" not in commands:
        demo_app = typer.Typer()
        demo_app.command("demo")(demo_command)
        commands["demo"] = typer.main.get_command(demo_app)
    command_obj, args = commands[words[1]], words[2:]
    command_obj.make_context(words[1], list(args), resilient_parsing=False)


def _check_report(out: Path, lines: list[str]) -> dict:
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert report["kind"] == "molks-demo" and report["quick"] is True
    assert [line[:5] for line in lines if line.startswith("[")] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]

    evaluation = report["evaluation"]
    assert evaluation["n_samples"] == report["settings"]["n_samples"] == 50
    assert 0 <= evaluation["reconstruction"] <= 1 and 0 <= evaluation["prior_validity"] <= 1
    # The grid shows the samples as decoded for the metrics: the beam's when there is one.
    if evaluation["prior_beam_validity" if evaluation["beam_width"] > 1 else "prior_validity"] > 0:
        assert report["files"]["samples"] == "samples.png"
        assert _png_size(out / "samples.png")[0] > 0
    else:  # no valid sample: said so in the report, no grid
        assert report["files"]["samples"] is None and not (out / "samples.png").exists()
        assert any("no samples.png" in note for note in report["notes"])

    optimization = report["optimization"]
    assert optimization["target"] == "logp"
    # The proposals are decoded as molks optimize decodes them by default: the beam search.
    assert report["settings"]["beam_width"] == optimization["settings"]["beam_width"] == DEFAULT_BEAM_WIDTH
    assert "decodings" not in report["settings"]
    (step,) = [line for line in lines if line.startswith("[3/4]")]
    assert f"each decoded by a beam search of {DEFAULT_BEAM_WIDTH}" in step
    assert f"--beam-width {DEFAULT_BEAM_WIDTH}" in report["commands"]["optimize"]
    assert optimization["iterations_completed"] == 2
    assert optimization["proposals"] == 2 * report["settings"]["q"] == 10
    assert 0 <= optimization["valid_proposals"] <= optimization["proposals"]
    # The best distinct molecules among the valid proposals, best first.
    assert len(optimization["best"]) <= optimization["valid_proposals"]
    assert bool(optimization["best"]) == bool(optimization["valid_proposals"])
    if optimization["best"]:
        scores = [item["score"] for item in optimization["best"]]
        assert optimization["best_score"] == max(scores) and scores == sorted(scores, reverse=True)
    for name in ("best_molecules.png", "best_score.png"):
        assert _png_size(out / name)[0] > 0
        assert (out / name).read_bytes() == (out / "optimize" / name).read_bytes()
    assert (out / "optimize" / "summary.json").is_file()

    for step in ("evaluate", "optimize", "demo"):
        assert report["commands"][step].startswith("molks ")
    for step in ("evaluate", "optimize", "train", "demo"):
        if step in report["commands"]:
            _parses(report["commands"][step])
    assert report["seconds"]["total"] >= report["seconds"]["optimization"] > 0
    return report


def test_quick_demo_with_the_shipped_model(tmp_path: Path) -> None:
    lines: list[str] = []
    out = run_demo(tmp_path / "demo", quick=True, log=lines.append)
    assert out == tmp_path / "demo"
    report = _check_report(out, lines)
    assert report["model"]["source"] == "shipped" and report["model"]["model"] == "moses"
    assert report["model"]["training"] is None
    assert report["evaluation"]["n_held_out"] + report["evaluation"]["held_out_skipped"] == 200
    assert "train" not in report["commands"]


def test_quick_demo_trains_and_replaces_only_an_earlier_demos_files(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    (out / "optimize").mkdir(parents=True)
    (out / DEMO_MARKER).write_text("earlier demo\n")
    (out / "report.json").write_text('{"stale": true}\n')
    (out / "optimize" / "state.safetensors").write_bytes(b"stale")  # would block a new optimisation
    (out / "mine.txt").write_text("the user's file\n")

    lines: list[str] = []
    run_demo(out, quick=True, train=True, log=lines.append)
    report = _check_report(out, lines)
    assert (out / "mine.txt").read_text() == "the user's file\n"
    assert report["model"]["source"] == "trained"
    assert report["model"]["run_dir"] == str(out / "model")
    assert report["model"]["training"]["molecules"] == len((out / "train_data.smi").read_text().split()) == 400
    assert (out / "model" / "model.safetensors").is_file()
    assert any(line.strip().startswith("epoch 1:") for line in lines)


def test_demo_refuses_a_directory_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a demo\n")
    with pytest.raises(DemoError, match="not written by molks demo"):
        run_demo(tmp_path, quick=True, log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_demo_command_reports_a_bad_output_directory_cleanly(tmp_path: Path) -> None:
    from molks.cli.demo import demo_command

    app = typer.Typer()
    app.command("demo")(demo_command)
    app.command("other")(lambda: None)  # two commands: typer keeps "demo" as a subcommand name
    (tmp_path / "data.csv").write_text("x\n")
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--quick"])
    assert result.exit_code == 2
    assert "not written by molks demo" in result.output
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "new"), "--train", "--model", "moses"])
    assert result.exit_code == 2 and "--model" in result.output
    assert not (tmp_path / "new").exists()


def test_the_demo_command_line_names_another_beam_width() -> None:
    from molks.demo import _decoding, _demo_command

    assert _demo_command(Path("d"), "moses", False, True, QUICK, 0) == "molks demo --out d --model moses --quick"
    other = _demo_command(Path("d"), "moses", False, True, with_overrides(QUICK, beam_width=0), 0)
    assert other == "molks demo --out d --model moses --quick --beam-width 0"
    _parses(other)
    assert _decoding(0) == "each decoded greedily plus 100 sampled decodings"
    assert _decoding(1) == "each decoded greedily" and _decoding(4) == "each decoded by a beam search of 4"
