"""``molks encode / decode / sample / evaluate`` through typer's CliRunner, on a real trained run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

import molks
from molks.cli.model import UNFINISHED, read_codes, register
from molks.decoding import DEFAULT_BEAM_WIDTH
from molks.evaluation import canonical_smiles
from conftest import MOSES_SAMPLE

app = typer.Typer(pretty_exceptions_enable=False)
register(app)
runner = CliRunner()


def run(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_error(result: object, *fragments: str) -> None:
    """Exit code 2 and one line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def shown(texts: list[str | None]) -> list[str]:
    return [UNFINISHED if t is None else t for t in texts]


@pytest.fixture(scope="module")
def model(tiny_run: Path) -> molks.LatentModel:
    return molks.load(tiny_run)


def test_encode_skips_bad_lines_and_writes_npy_and_csv(tiny_run: Path, model: molks.LatentModel, tmp_path: Path) -> None:
    src = tmp_path / "in.smi"
    src.write_text("OCC\nnot_a_smiles\nc1ccccc1 benzene\n\nCC(=O)O\n")
    result = run("encode", tiny_run, src, "--out", tmp_path / "codes.npy", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"{src}:2: skipped" in result.stderr and "encoded 3 of 4 items (1 skipped)" in result.stderr
    codes = np.load(tmp_path / "codes.npy")
    expected = model.encode(["OCC", "c1ccccc1", "CC(=O)O"]).numpy()
    assert codes.shape == (3, model.latent_dim) and np.allclose(codes, expected, atol=1e-5)

    result = run("encode", tiny_run, src, "--out", tmp_path / "codes.csv", "--device", "cpu")
    assert result.exit_code == 0, result.output
    header, *rows = (tmp_path / "codes.csv").read_text().splitlines()
    assert header.split(",")[:3] == ["line", "smiles", "z0"] and [r.split(",")[:2] for r in rows] == [
        ["1", "OCC"], ["3", "c1ccccc1"], ["5", "CC(=O)O"]]  # fmt: skip
    assert np.allclose(read_codes(tmp_path / "codes.csv", model.latent_dim), expected, atol=1e-5)

    result = run("encode", tiny_run, src)  # CSV on stdout
    assert result.exit_code == 0 and result.stdout.splitlines()[0].startswith("line,smiles,z0")

    assert_clean_error(run("encode", tiny_run, src, "--strict", "--out", tmp_path / "s.npy"), f"{src}:2:", "not_a_smiles")
    assert not (tmp_path / "s.npy").exists()
    assert_clean_error(run("encode", tiny_run, src, "--out", tmp_path / "codes.txt"), ".npy or .csv")
    assert_clean_error(run("encode", tiny_run, tmp_path / "missing.smi"), "missing.smi", "no such file")


def test_decode_prints_one_line_per_code(tiny_run: Path, model: molks.LatentModel, tmp_path: Path) -> None:
    z = model.sample_latent(12, seed=5)
    np.save(tmp_path / "z.npy", z.numpy())
    result = run("decode", tiny_run, tmp_path / "z.npy", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == shown(model.decode(z, beam_width=DEFAULT_BEAM_WIDTH))
    greedy = run("decode", tiny_run, tmp_path / "z.npy", "--beam-width", "1")
    assert greedy.exit_code == 0 and greedy.stdout.splitlines() == shown(model.decode(z))
    # The beam's choice is valid wherever greedy decoding's is, and often where it is not.
    beam_valid = [t is not None and model.is_valid(t) for t in model.decode(z, beam_width=DEFAULT_BEAM_WIDTH)]
    assert all(b for b, t in zip(beam_valid, model.decode(z)) if t is not None and model.is_valid(t))

    # A headerless numeric CSV, and the same codes through --out.
    np.savetxt(tmp_path / "z.csv", z.numpy(), delimiter=",")
    result = run("decode", tiny_run, tmp_path / "z.csv", "--out", tmp_path / "out.txt")
    assert result.exit_code == 0 and result.stdout == ""
    assert (tmp_path / "out.txt").read_text().splitlines() == shown(
        model.decode(torch.from_numpy(read_codes(tmp_path / "z.csv")), beam_width=DEFAULT_BEAM_WIDTH))

    # Temperature sampling is seeded.
    first = run("decode", tiny_run, tmp_path / "z.npy", "--temperature", "0.7", "--seed", "3").stdout
    assert first == run("decode", tiny_run, tmp_path / "z.npy", "--temperature", "0.7", "--seed", "3").stdout
    assert len(first.splitlines()) == 12
    assert run("decode", tiny_run, tmp_path / "z.npy", "--temperature", "0").exit_code == 2
    both = run("decode", tiny_run, tmp_path / "z.npy", "--temperature", "1", "--beam-width", "4")
    assert both.exit_code == 2 and "not both" in both.output
    assert run("decode", tiny_run, tmp_path / "z.npy", "--beam-width", "0").exit_code == 2


def test_decode_errors_are_one_clear_line(tiny_run: Path, model: molks.LatentModel, tmp_path: Path) -> None:
    np.save(tmp_path / "wide.npy", np.zeros((3, model.latent_dim + 1), dtype=np.float32))
    assert_clean_error(run("decode", tiny_run, tmp_path / "wide.npy"), f"{model.latent_dim + 1} dimensions", f"is {model.latent_dim}")
    (tmp_path / "junk.npy").write_bytes(b"\x00\x01 not numpy at all")
    assert_clean_error(run("decode", tiny_run, tmp_path / "junk.npy"), "junk.npy", "not a readable .npy")
    (tmp_path / "bad.csv").write_text("z0,z1\n1,2\n3,oops\n")
    assert_clean_error(run("decode", tiny_run, tmp_path / "bad.csv"), "bad.csv:3:")
    (tmp_path / "nan.csv").write_text(",".join(["nan"] * model.latent_dim) + "\n")
    assert_clean_error(run("decode", tiny_run, tmp_path / "nan.csv"), "NaN")
    assert_clean_error(run("decode", tmp_path / "no-such-run", tmp_path / "wide.npy"), "no-such-run", "not a molks run directory")


def test_corrupt_run_files_are_clear_errors(tiny_run: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "z.npy", np.zeros((2, 8), dtype=np.float32))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_run, corrupt)
    data = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(data[: len(data) // 2])  # a truncated download
    assert_clean_error(run("decode", corrupt, tmp_path / "z.npy"), "model.safetensors", "corrupt")
    (corrupt / "config.json").write_text("{not json")
    assert_clean_error(run("sample", corrupt, "--n", "2"), "config.json", "unreadable")


def test_sample_matches_the_api_and_writes_codes_and_png(tiny_run: Path, model: molks.LatentModel, tmp_path: Path) -> None:
    result = run("sample", tiny_run, "--n", 40, "--seed", 3, "--codes", tmp_path / "z.npy", "--png", tmp_path / "s.png")
    assert result.exit_code == 0, result.output
    z, texts = model.sample(40, seed=3)
    assert result.stdout.splitlines() == shown(texts)
    assert np.allclose(np.load(tmp_path / "z.npy"), z.numpy())
    if any(t and canonical_smiles(t) for t in texts):
        with Image.open(tmp_path / "s.png") as image:
            assert image.format == "PNG"
    else:
        assert "no PNG written" in result.stderr

    result = run("sample", tiny_run, "--n", 5, "--component", 2, "--source", "ex-post", "--out", tmp_path / "o.smi")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.smi").read_text().splitlines() == shown(model.sample(5, component=2, source="ex-post", seed=0)[1])
    assert_clean_error(run("sample", tiny_run, "--n", 5, "--component", 12), "component", "[0, 10)")
    assert run("sample", tiny_run, "--n", 0).exit_code == 2
    assert run("sample", tiny_run, "--source", "posterior").exit_code == 2


def test_evaluate_prints_and_writes_json(tiny_run: Path, tmp_path: Path) -> None:
    data = tmp_path / "held.csv"
    data.write_text("name,SMILES\na,OCC\nb,C1CC\nc,c1ccccc1\n")
    result = run("evaluate", tiny_run, "--data", data, "--n-samples", 30, "--json", tmp_path / "e" / "m.json",
                 "--png", tmp_path / "e" / "g.png")  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "e" / "m.json").read_text())
    assert metrics["n_held_out"] == 2 and metrics["held_out_skipped"] == 1 and metrics["n_samples"] == 30
    assert "reconstruction" in result.stdout and "prior_validity" in result.stdout
    assert metrics["beam_width"] == DEFAULT_BEAM_WIDTH and 0 <= metrics["prior_beam_validity"] <= 1
    assert metrics["samples_decoding"] == f"beam search, width {DEFAULT_BEAM_WIDTH}"
    assert (metrics["png"] is not None) == (tmp_path / "e" / "g.png").exists()
    assert_clean_error(run("evaluate", tiny_run, "--data", tmp_path / "none.smi"), "none.smi")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--n-samples", "0"], "n_samples (--n-samples)"),
        (["--n-samples", "-5"], "n_samples (--n-samples)"),
        (["--n-samples", str(10**15)], "n_samples (--n-samples)"),
        (["--held-out", "0"], "held_out (--held-out)"),
        (["--held-out", str(10**15)], "held_out (--held-out)"),
        (["--decodings", "-1"], "sampled_decodings (--decodings)"),
        (["--decodings", "1000000"], "sampled_decodings (--decodings)"),
        (["--beam-width", "0"], "beam_width (--beam-width)"),
        (["--beam-width", "1000000"], "beam_width (--beam-width)"),
        (["--seed", "-1"], "seed (--seed)"),
        (["--seed", str(2**40)], "seed (--seed)"),
        (["--processes", "0"], "processes (--processes)"),
        (["--processes", "100000"], "processes (--processes)"),
        (["--threads", "0"], "threads (--threads)"),
        (["--threads", "100000"], "threads (--threads)"),
        (["--protocol", "moses", "--n-samples", str(10**9)], "n_samples (--n-samples)"),
        (["--device", "gpu0"], "--device 'gpu0'"),
    ],
)
def test_evaluate_refuses_an_out_of_bound_option_before_it_loads_anything(tmp_path: Path, args: list[str], fragment: str) -> None:
    # Neither the run nor the data exist: the error reported is the option's, so it was checked first.
    result = run("evaluate", tmp_path / "no-such-run", "--data", tmp_path / "no-such.smi", *args)
    assert_clean_error(result, fragment)
    assert "no-such" not in result.stderr


def test_evaluate_offers_the_library_protocols_as_choices(tmp_path: Path) -> None:
    # The choices come from molks.model.names, the list EvaluationSettings checks against.
    from molks.evaluation import PROTOCOLS

    result = run("evaluate", tmp_path / "no-such-run", "--protocol", "fast")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'fast' is not one of" in result.output and all(f"'{name}'" in result.output for name in PROTOCOLS)
    assert "no-such-run" not in result.output


def test_evaluate_checks_its_options_before_a_real_run_is_loaded(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    result = run("evaluate", tiny_run, "--beam-width", 10**6, "--json", out, "--device", "cpu")
    assert_clean_error(result, "beam_width (--beam-width)", "1,024", "1000000")
    assert not out.exists() and "evaluating" not in result.stderr  # nothing measured, nothing written
    (tmp_path / "held.smi").write_text("CCO\n")
    same = run("evaluate", tmp_path / "no-such-run", "--data", tmp_path / "held.smi", "--json", tmp_path / "held.smi")
    assert_clean_error(same, "--data and --json are the same file")
    assert (tmp_path / "held.smi").read_text() == "CCO\n"


def test_every_latent_source_the_cli_offers_is_one_the_model_samples(model: molks.LatentModel) -> None:
    from molks.cli.model import Source
    from molks.model.names import LATENT_SOURCES

    assert [member.value for member in Source] == list(LATENT_SOURCES)
    with_kde = molks.load(model.run_dir)  # its own copy: fitting a density changes the model's default source
    with_kde.fit_kde(MOSES_SAMPLE.read_text().split()[-50:], bandwidth=0.5, save=False)
    for source in LATENT_SOURCES:
        assert with_kde.sample_latent(3, source=source, seed=0).shape == (3, model.latent_dim)
    with pytest.raises(molks.MolksError, match="source must be one of 'prior', 'ex-post', 'kde', 'between', got 'posterior'"):
        model.sample_latent(3, source="posterior")


def test_kde_fits_on_held_out_items_and_becomes_what_sample_draws(tiny_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    held_out = tmp_path / "held.smi"
    held_out.write_text("".join(f"{s}\n" for s in MOSES_SAMPLE.read_text().split()[-40:]) + "not_a_smiles\n")
    # Training leaves one, on the validation split's codes, with the default kernel (no latent_noise).
    from molks.model.regularizers import DEFAULT_KDE_BANDWIDTH
    from molks.runs import RunDir

    trained = RunDir(run_dir).read_kde()
    assert trained is not None and trained[1]["codes_of"] == "validation split"
    assert trained[1]["bandwidth"] == DEFAULT_KDE_BANDWIDTH and molks.load(run_dir).default_source == "between"
    (run_dir / "ex_post_kde.safetensors").unlink()
    assert molks.load(run_dir).default_source == "prior"
    for source in ("kde", "between"):  # the between sampler draws around the density's codes
        with pytest.raises(molks.MolksError, match="no kernel density"):
            molks.load(run_dir).sample_latent(2, source=source)

    result = run("kde", run_dir, held_out, "--bandwidth", 0.3, "--max-codes", 30, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (run_dir / "ex_post_kde.safetensors").is_file() and (run_dir / "ex_post_kde.sha256").is_file()
    model = molks.load(run_dir)
    assert model.default_source == "between" and model.kde is not None
    assert model.kde.shared_covariance and model.kde.n_components <= 30
    # Its components are the held-out items' codes, each with the kernel's sd on the diagonal.
    chosen = model.kde.means
    codes = model.encode(MOSES_SAMPLE.read_text().split()[-40:])
    assert all(torch.isclose(codes, row, atol=1e-5).all(dim=1).any() for row in chosen)
    assert torch.allclose(model.kde.scale_tril[0], 0.3 * torch.eye(model.latent_dim))

    # molks sample draws between its codes when no --source is given: the codes of sample_latent("between").
    result = run("sample", run_dir, "--n", 6, "--seed", 4, "--codes", tmp_path / "z.npy", "--out", tmp_path / "s.smi")
    assert result.exit_code == 0, result.output
    assert np.allclose(np.load(tmp_path / "z.npy"), model.sample_latent(6, source="between", seed=4).numpy())
    for other in ("kde", "prior"):
        assert not np.allclose(np.load(tmp_path / "z.npy"), model.sample_latent(6, source=other, seed=4).numpy())
    for source in ("kde", "between"):
        assert_clean_error(run("sample", run_dir, "--n", 2, "--source", source, "--component", 1), "component")

    # Altered on disk since it was written: refused, as the weights are.
    with (run_dir / "ex_post_kde.safetensors").open("r+b") as f:
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    assert_clean_error(run("sample", run_dir, "--n", 2), "ex_post_kde")


def test_kde_refuses_bad_input_before_it_loads_anything(tmp_path: Path) -> None:
    for bandwidth in ("0", "-1", "nan", "1e9"):
        assert_clean_error(run("kde", tmp_path / "no-run", tmp_path / "no.smi", "--bandwidth", bandwidth), "--bandwidth")
    assert_clean_error(run("kde", tmp_path / "no-run", tmp_path / "no.smi", "--max-codes", 0), "max_codes")
    assert_clean_error(run("kde", "moses", MOSES_SAMPLE), "shipped")  # never written into the installed package
