"""Evaluation metrics and molecule drawing, on real RDKit, real models and real files."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

import molks
from molks.checks import (
    MAX_BATCH_SIZE,
    MAX_BEAM_WIDTH,
    MAX_EVALUATION_ITEMS,
    MAX_SAMPLED_DECODINGS,
    MAX_SEED,
    MAX_WORKERS,
)
from molks.drawing import DrawingError, draw_molecules, grid_png
from molks.evaluation import (
    DISTRIBUTION_KEYS,
    METRIC_KEYS,
    EvaluationError,
    EvaluationSettings,
    canonical_smiles,
    evaluate,
    evaluation_prior,
    format_report,
    prior_distances,
    reconstruction_matches,
    reconstruction_tanimoto,
    sample_metrics,
    sampled_decodings,
    text_normalizer,
)
from molks.grammar import Grammar
from molks.model.autoencoder import Autoencoder, ModelConfig
from molks.model.networks import NetworkConfig
from molks.model.prior import GaussianMixturePrior
from molks.model.regularizers import cv_loss, ks_loss
from molks.training.checkpoint import save_checkpoint

from conftest import ROOT

FRACTIONS = [k for k in METRIC_KEYS if k.startswith(("reconstruction", "prior_", "ex_post_"))
             and k not in ("reconstruction_decodings", "prior_fcd", "prior_fcd_5k") and "wasserstein" not in k]  # fmt: skip


def untrained_run(run_dir: Path, grammar_name: str, regularizer: str, texts: list[str], train: list[str] | None = None) -> Path:
    """A run directory holding a real, randomly initialised model (no training: milliseconds)."""
    grammar = Grammar.load(grammar_name)
    length = max(len(grammar.parse(t)) for t in texts)
    network = NetworkConfig(
        n_outputs=grammar.n_outputs, max_length=length, latent_dim=4, conv_channels=(4,), conv_kernels=(3,),
        dense_size=16, decoder_dense_size=8, gru_layers=1, gru_hidden=16,
    )
    config = ModelConfig(network, regularizer, 16, grammar_hash=grammar.content_hash)
    torch.manual_seed(0)
    model = Autoencoder(config, grammar)
    run_dir.mkdir(parents=True)
    (run_dir / "grammar.cfg").write_text(grammar.text)
    doc = {"model": config.to_dict(), "grammar": {"name": grammar.name, "hash": grammar.content_hash, "file": "grammar.cfg"}}
    (run_dir / "config.json").write_text(json.dumps(doc))
    save_checkpoint(run_dir / "model.safetensors", model.state_dict(), {"epoch": 0})
    (run_dir / "validation.smi").write_text("".join(f"{t}\n" for t in texts))
    if train is not None:
        (run_dir / "train.smi.gz").write_bytes(gzip.compress("".join(f"{t}\n" for t in train).encode()))
    return run_dir


# -- string comparison ------------------------------------------------------------------------


def test_reconstruction_compares_canonical_smiles() -> None:
    decoded = ["OCC", "C1=CC=CC=C1", "CCN", None, "", "C1CC"]
    targets = ["CCO", "c1ccccc1", "CCO", "C", "C", "C1CC"]
    assert reconstruction_matches(decoded, targets) == [True, True, False, False, False, False]
    assert canonical_smiles("OCC") == "CCO" and canonical_smiles("C1CC") is None and canonical_smiles(None) is None
    with pytest.raises(EvaluationError, match="2 decoded strings for 1 targets"):
        reconstruction_matches(["C", "C"], ["C"])


def test_reconstruction_tanimoto_on_known_pairs() -> None:
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    a, b = "CCOc1ccccc1", "CCNc1ccccc1"
    expected = DataStructs.TanimotoSimilarity(generator.GetFingerprint(Chem.MolFromSmiles(a)),
                                              generator.GetFingerprint(Chem.MolFromSmiles(b)))  # fmt: skip
    got = reconstruction_tanimoto(["OCC", b, None, "C1CC"], ["CCO", a, "CCO", "CCO"])
    assert got[0] == 1.0 and got[1] == pytest.approx(expected) and got[2:] == [0.0, 0.0]  # invalid: 0
    assert 0.0 < expected < 1.0
    with pytest.raises(EvaluationError, match="1 decoded strings for 2 targets"):
        reconstruction_tanimoto(["C"], ["C", "C"])


def test_sample_metrics_count_validity_uniqueness_novelty() -> None:
    texts = ["CCO", "OCC", "c1ccccc1", None, "C1CC", "CCN"]  # OCC is CCO again; C1CC is invalid
    m = sample_metrics(texts, canonical_smiles, train={"CCO"})
    assert m == {"n": 6, "validity": 4 / 6, "uniqueness": 3 / 4, "novelty": 2 / 3, "unfinished": 1 / 6}
    empty = sample_metrics([None, "C1CC"], canonical_smiles, train=None)
    assert empty["validity"] == 0.0 and empty["uniqueness"] is None and empty["novelty"] is None


# -- distances to the prior ---------------------------------------------------------------------


def test_prior_samples_score_about_one_and_distorted_samples_do_not() -> None:
    prior = GaussianMixturePrior.with_default_centres(8, 10, 1.0)
    ratios = torch.tensor([
        [prior_distances(prior.sample(500, generator=torch.Generator().manual_seed(100 + s)), prior, 8, seed=s)[k]
         for k in ("ks_ratio", "cv_ratio")]
        for s in range(8)
    ])  # fmt: skip
    mean = ratios.mean(0)
    assert 0.6 < mean[0] < 1.6 and 0.6 < mean[1] < 1.6, mean
    z = prior.sample(500, generator=torch.Generator().manual_seed(1))
    assert prior_distances(z + 1.0, prior)["ks_ratio"] > 10  # shifted
    assert prior_distances(z * 1.5, prior)["cv_ratio"] > 10  # scaled
    with pytest.raises(EvaluationError, match="at least 2 codes"):
        prior_distances(z[:1], prior)
    with pytest.raises(EvaluationError, match=r"shape \[N, 8\]"):
        prior_distances(z[:, :3], prior)


# -- evaluate on a trained model ----------------------------------------------------------------


def test_evaluate_tiny_run(tiny_run: Path, tmp_path: Path) -> None:
    model = molks.load(tiny_run)
    png = tmp_path / "grid" / "samples.png"
    # The prior's samples (the tiny model's kernel density, on 2 epochs' codes, decodes few valid ones).
    result = evaluate(model, settings=EvaluationSettings(n_samples=200, sampled_decodings=10, ex_post=True, source="prior"),
                      png=png)  # fmt: skip
    assert tuple(result) == METRIC_KEYS
    for key in FRACTIONS:
        assert result[key] is None or 0.0 <= result[key] <= 1.0, key
    for key in ("reconstruction", "prior_validity", "prior_unfinished", "ex_post_validity", "ex_post_unfinished"):
        assert result[key] is not None, key  # the run has a validation set, a training set and an ex-post GMM
    validation = (tiny_run / "validation.smi").read_text().split()
    assert result["n_held_out"] == len(validation) and result["held_out_skipped"] == 0

    # The metrics are what the API and the loss functions give directly.
    codes = model.encode(validation)
    matches = reconstruction_matches(model.decode(codes), validation)
    assert result["reconstruction"] == pytest.approx(sum(matches) / len(matches))
    prior, description = evaluation_prior(model)
    assert description.startswith("model GMM prior (K=10")
    assert result["ks"] == pytest.approx(float(ks_loss(codes, prior)), rel=1e-5)
    assert result["cv"] == pytest.approx(float(cv_loss(codes, prior)), rel=1e-5)
    assert result["ks_ratio"] == pytest.approx(result["ks"] / result["ks_reference"])

    # The Grammar VAE protocol and the Tanimoto similarity, as the API computes them.
    assert result["reconstruction_decodings"] == 10
    sampled = sampled_decodings(model, codes, 10, seed=0)
    assert len(sampled) == 10 * len(validation)
    sampled_matches = reconstruction_matches(sampled, [t for t in validation for _ in range(10)])
    assert result["reconstruction_sampled"] == pytest.approx(sum(sampled_matches) / len(sampled_matches))
    similarities = reconstruction_tanimoto(model.decode(codes), validation)
    assert result["reconstruction_tanimoto"] == pytest.approx(sum(similarities) / len(similarities))

    # FCD and the MOSES metrics of the prior samples against the validation split, every field.
    assert result["reference"] == "held-out items" and result["n_reference"] == len(validation)
    valid_samples = round(result["prior_validity"] * 200)
    for name in DISTRIBUTION_KEYS:
        if valid_samples >= 2 or name.startswith("unique"):
            assert result[f"prior_{name}"] is not None or name == "scaf", name  # scaf: None without 2-ring scaffolds
    if valid_samples >= 2:
        assert result["prior_fcd"] >= 0.0 and 0.0 <= result["prior_snn"] <= 1.0

    # Reproducible, and the PNG exists exactly when some prior sample is a valid molecule.
    again = evaluate(model, settings=EvaluationSettings(n_samples=200, sampled_decodings=10, ex_post=True, source="prior",
                                                        distribution=False))  # fmt: skip
    same = [k for k in FRACTIONS if k.removeprefix("prior_") not in DISTRIBUTION_KEYS]
    assert {k: again[k] for k in same} == {k: result[k] for k in same}
    if result["prior_validity"] > 0:
        assert result["png"] == str(png)
        with Image.open(png) as image:
            assert image.format == "PNG" and image.size[0] > 0
    else:
        assert result["png"] is None and not png.exists()
    assert "prior_validity" in format_report(result) and json.dumps(result, allow_nan=False)
    assert all(again[f"prior_{name}"] is None for name in DISTRIBUTION_KEYS)  # distribution=False skips them


def test_evaluate_skips_held_out_items_it_cannot_encode(tiny_run: Path) -> None:
    model = molks.load(tiny_run)
    few = EvaluationSettings(n_samples=20)
    result = evaluate(model, ["OCC", "not a molecule", "C" * 400, "c1ccccc1"], settings=few)
    assert result["n_held_out"] == 2 and result["held_out_skipped"] == 2
    with pytest.raises(EvaluationError, match="none of the 1 held-out items"):
        evaluate(model, ["C1CC"], settings=few)
    with pytest.raises(EvaluationError, match="n_samples"):
        EvaluationSettings(n_samples=0)
    with pytest.raises(EvaluationError, match="list of strings"):
        evaluate(model, "CCO", settings=few)  # type: ignore[arg-type]
    with pytest.raises(EvaluationError, match="reference must be a list of strings"):
        evaluate(model, ["CCO"], settings=few, reference="CCO")  # type: ignore[arg-type]
    with pytest.raises(EvaluationError, match="sampled_decodings"):
        EvaluationSettings(sampled_decodings=-1)
    with pytest.raises(EvaluationError, match=r"protocol \(--protocol\) must be one of quick, moses"):
        EvaluationSettings(protocol="fast")
    with pytest.raises(EvaluationError, match="MOSES test set"):
        evaluate(model, ["CCO"], settings=EvaluationSettings.moses(n_samples=20))  # no reference: not bundled


def test_evaluate_command_writes_every_field_against_a_reference_file(tiny_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from molks.cli import app

    reference = tmp_path / "reference.smi"
    reference.write_text("CCO\nc1ccc2ccccc2c1\nCC(=O)Nc1ccc(O)cc1\nnot-a-molecule\n")
    out = tmp_path / "out" / "metrics.json"
    args = ["evaluate", str(tiny_run), "--n-samples", "200", "--decodings", "2", "--reference", str(reference),
            "--json", str(out), "--properties-png", str(tmp_path / "out" / "properties.png"), "--device", "cpu",
            "--source", "prior"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    assert tuple(metrics) == METRIC_KEYS
    assert metrics["reference"] == str(reference) and metrics["n_reference"] == 3 and metrics["reconstruction_decodings"] == 2
    for key in ("reconstruction_sampled", "reconstruction_tanimoto", "prior_unique@1000"):
        assert key in result.stdout and metrics[key] is not None, key
    assert (metrics["properties_png"] is not None) == (tmp_path / "out" / "properties.png").is_file()
    skipped = CliRunner().invoke(app, [*args[:-2], "--no-distribution", "--decodings", "0"])
    assert skipped.exit_code == 0, skipped.output
    metrics = json.loads(out.read_text())
    assert metrics["reconstruction_sampled"] is None and metrics["prior_fcd"] is None and metrics["reference"] is None


def test_the_quick_look_is_the_default_and_says_how_long_each_stage_took(tiny_run: Path) -> None:
    model = molks.load(tiny_run)
    validation = (tiny_run / "validation.smi").read_text().split()
    result = evaluate(model, settings=EvaluationSettings(n_samples=30, held_out=5))
    assert result["protocol"] == "quick" and result["held_out_limit"] == 5
    assert result["n_held_out"] + result["held_out_skipped"] == 5 < len(validation)  # the cap, the first items
    # The expensive parts are opt-in: no sampled decodings, no ex-post samples, no 5k-vs-5k split.
    assert result["reconstruction_decodings"] == 0 and result["reconstruction_sampled"] is None
    assert result["ex_post_validity"] is None and result["ex_post_beam_validity"] is None
    assert result["split_size"] is None and result["floor_fcd_5k"] is None
    stages = result["seconds_by_stage"]
    assert list(stages)[:3] == ["held-out: encoding", "held-out: greedy decoding", "held-out: beam search (8)"]
    assert result["samples_source"] == "between"  # what training leaves, and what molks sample draws
    assert "between samples: beam search (8)" in stages and all(seconds >= 0 for seconds in stages.values())
    assert sum(stages.values()) <= result["seconds"] + 0.1
    report = format_report(result)
    assert "  between samples: beam search (8)" in report and report.rstrip().endswith(" s")
    defaults = EvaluationSettings()
    assert (defaults.held_out, defaults.n_samples, defaults.sampled_decodings, defaults.ex_post) == (1000, 1000, 0, False)
    assert EvaluationSettings.moses().n_samples == 30_000


@pytest.mark.parametrize(
    ("name", "least", "most"),
    [("held_out", 1, MAX_EVALUATION_ITEMS), ("n_samples", 1, MAX_EVALUATION_ITEMS), ("beam_width", 1, MAX_BEAM_WIDTH),
     ("sampled_decodings", 0, MAX_SAMPLED_DECODINGS), ("split_size", 2, MAX_EVALUATION_ITEMS), ("seed", 0, MAX_SEED),
     ("batch_size", 1, MAX_BATCH_SIZE), ("processes", 1, MAX_WORKERS)],
)  # fmt: skip
def test_every_setting_is_held_to_its_bound(name: str, least: int, most: int) -> None:
    for fine in (least, most):
        assert getattr(EvaluationSettings(**{name: fine}), name) == fine
    flag = "--decodings" if name == "sampled_decodings" else f"--{name.replace('_', '-')}"
    for bad in (least - 1, most + 1, 10**30, 2.0, True, "3"):
        with pytest.raises(EvaluationError, match=rf"^{name} \({flag}\) must be an integer from {least:,} to {most:,}"):
            EvaluationSettings(**{name: bad})


def test_the_moses_settings_and_the_flags_are_checked_too() -> None:
    with pytest.raises(EvaluationError, match="n_samples"):
        EvaluationSettings.moses(n_samples=MAX_EVALUATION_ITEMS + 1)
    assert EvaluationSettings(held_out=None).held_out is None  # None: every held-out item
    with pytest.raises(EvaluationError, match=r"^ex_post \(--ex-post\) must be true or false, got 1"):
        EvaluationSettings(ex_post=1)  # type: ignore[arg-type]


def test_the_moses_protocol_adds_split_numbers_and_their_floors(tiny_run: Path, moses_smiles: list[str]) -> None:
    from molks.metrics import distribution_metrics

    model = molks.load(tiny_run)
    reference = moses_smiles[:60]
    settings = EvaluationSettings.moses(n_samples=40, split_size=20, held_out=10, beam_width=1, seed=3)
    result = evaluate(model, settings=settings, reference=reference)
    assert result["protocol"] == "moses" and result["n_samples"] == 40 and result["split_size"] == 20
    assert result["n_reference"] == 60 and result["reference"] == "given (60 items)"
    # The floor: two disjoint seeded draws of 20 reference molecules, compared as the samples are.
    import random

    chosen = random.Random(3).sample(range(60), 40)
    first, second = [reference[i] for i in chosen[:20]], [reference[i] for i in chosen[20:]]
    floor = distribution_metrics(first, second)
    for name in ("fcd", "snn", "frag", "scaf"):
        assert result[f"floor_{name}_5k"] == pytest.approx(floor[name]), name
    assert 0.0 < result["floor_snn_5k"] < 1.0 and result["floor_fcd_5k"] > 0.0
    samples = model.decode(model.sample_latent(40, seed=3))[:20]
    split = distribution_metrics(samples, first)
    assert result["prior_snn_5k"] == pytest.approx(split["snn"]) and result["prior_fcd_5k"] == pytest.approx(split["fcd"])
    with pytest.raises(EvaluationError, match="at least 200 reference molecules"):
        evaluate(model, settings=replace(settings, split_size=100), reference=reference)


def test_evaluate_shows_a_line_a_minute_without_a_terminal(tiny_run: Path) -> None:
    from molks.progress import Stages

    lines: list[str] = []
    stages = Stages("evaluate", enabled=None, every=0.05, log=lines.append)  # stderr is not a terminal here
    with stages.stage("beam search", total=10) as step:
        step(4)
        import time

        time.sleep(0.3)
    assert lines and all(line.startswith("evaluate: beam search ") for line in lines) and "4/10" in lines[-1]
    silent: list[str] = []
    quiet = Stages("evaluate", enabled=False, every=0.05, log=silent.append)
    with quiet.stage("beam search", total=10):
        time.sleep(0.2)
    assert silent == [] and list(quiet.seconds) == ["beam search"]


def test_evaluate_command_reports_paths_as_given(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from typer.testing import CliRunner

    from molks.cli import app

    shutil.copytree(tiny_run, tmp_path / "run")
    (tmp_path / "reference.smi").write_text("CCO\nc1ccc2ccccc2c1\nCC(=O)Nc1ccc(O)cc1\n")
    monkeypatch.chdir(tmp_path)
    args = ["evaluate", "run", "--n-samples", "20", "--held-out", "4", "--reference", "reference.smi",
            "--json", "out.json", "--png", "samples.png", "--device", "cpu"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "evaluating run (quick): at most 4 held-out items" in result.output and "--protocol moses" in result.output
    text = (tmp_path / "out.json").read_text()
    metrics = json.loads(text)
    assert metrics["run_dir"] == "run" and metrics["reference"] == "reference.smi"
    assert str(tmp_path) not in text and metrics["seconds_by_stage"]
    moses = CliRunner().invoke(app, ["evaluate", "run", "--protocol", "moses", "--n-samples", "20"])
    assert moses.exit_code == 2 and "does not bundle" in moses.output


def test_evaluate_expressions_and_a_standard_normal_prior(tmp_path: Path) -> None:
    texts = (ROOT / "data" / "expressions.txt").read_text().splitlines()[:40]
    run = untrained_run(tmp_path / "expr", "arithmetic", "vae", texts)  # no train.smi.gz, no ex-post GMM
    model = molks.load(run)
    normalize = text_normalizer(model)
    assert normalize("x+1") == normalize("x + 1") and normalize("x +") is None and normalize("y") is None
    assert reconstruction_matches(["sin(x)*2"], ["sin( x ) * 2"], normalize) == [True]
    result = evaluate(model, settings=EvaluationSettings(n_samples=50, sampled_decodings=3, ex_post=True), png=tmp_path / "never.png")
    assert result["distance_prior"] == "N(0, I)" and result["n_held_out"] == 40
    # Exact and sampled reconstruction for any grammar; Tanimoto and the MOSES metrics for molecules only.
    assert result["reconstruction_decodings"] == 3 and 0.0 <= result["reconstruction_sampled"] <= 1.0
    assert result["reconstruction_tanimoto"] is None and result["reference"] is None
    assert all(result[f"prior_{name}"] is None for name in DISTRIBUTION_KEYS)
    assert result["prior_novelty"] is None and result["ex_post_validity"] is None  # nothing to compare / sample
    assert result["png"] is None and not (tmp_path / "never.png").exists()  # expressions are not drawn
    for key in FRACTIONS:
        assert result[key] is None or 0.0 <= result[key] <= 1.0, key


# -- drawing ----------------------------------------------------------------------------------


def test_draw_molecules_writes_a_png_of_the_readable_molecules(tmp_path: Path) -> None:
    path = draw_molecules(["CCO", "C1CC", "c1ccccc1"], tmp_path / "a" / "grid.png", legends=["one", "bad", "two"], size=120)
    assert path == tmp_path / "a" / "grid.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (240, 120)  # two readable molecules in one row
    assert grid_png(["C"] * 30, max_molecules=24, per_row=6, size=100)[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(tmp_path / "a" / "grid.png"):
        pass
    with pytest.raises(DrawingError, match="nothing to draw"):
        draw_molecules(["C1CC", ""], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
    with pytest.raises(DrawingError, match="2 legends for 1 molecules"):
        draw_molecules(["C"], tmp_path / "x.png", legends=["a", "b"])
