"""``molks encode / decode / sample / evaluate``: using a trained run from the command line.

RUN_DIR is a run directory written by ``molks train`` or the name of a model shipped with molks.

Codes files: ``.npy`` or ``.csv``, read and written by :mod:`molks.codes` (``encode`` writes CSV
with the columns ``line, smiles|text, z0 .. z{D-1}``; ``decode`` reads the ``z0 ..`` columns).

Decoded strings are printed one per line, in the order of the codes; a decoding that hit the
model's length limit prints the marker ``<unfinished>`` (not a SMILES, not an expression), so
line i of the output always belongs to code i.

Register the commands at the top level of the ``molks`` app with :func:`register`.
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Optional

import typer

from molks.checks import (
    MAX_BEAM_WIDTH,
    MAX_EVALUATION_ITEMS,
    MAX_SAMPLED_DECODINGS,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_WORKERS,
    check_batch_size,
    check_beam_width,
    check_int,
    check_sample_count,
    check_seed,
)
from molks.cli.common import check_distinct_files, choices, fail_cleanly
from molks.codes import CodesError, check_codes_suffix, read_codes, write_codes, write_codes_csv
from molks.data_files import resolve_data_file
from molks.decoding import DEFAULT_BEAM_WIDTH
from molks.devices import check_device_name
from molks.files import atomic_write, atomic_write_text
from molks.model.names import EVALUATION_PROTOCOLS, LATENT_SOURCES

if TYPE_CHECKING:
    import torch

    from molks.api import LatentModel
    from molks.evaluation import EvaluationSettings

__all__ = [
    "UNFINISHED",
    "CodesError",
    "decode_command",
    "encode_command",
    "evaluate_command",
    "read_codes",
    "register",
    "sample_command",
    "write_codes",
]

UNFINISHED = "<unfinished>"

RunArg = Annotated[str, typer.Argument(help="A run directory (from molks train) or the name of a shipped model.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]


Source = choices("Source", LATENT_SOURCES)  # the library's lists (molks.model.names)
Protocol = choices("Protocol", EVALUATION_PROTOCOLS)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _load(run_dir: str, device: str) -> LatentModel:
    import molks

    return molks.load(run_dir, device=device)


def _emit(lines: list[str], out: Path | None) -> None:
    text = "".join(f"{line}\n" for line in lines)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(out, text)


def _shown(texts: list[str | None]) -> list[str]:
    return [UNFINISHED if t is None else t for t in texts]


def _check_temperature(temperature: float | None) -> None:
    if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
        raise typer.BadParameter(f"must be a number > 0, got {temperature}", param_hint="--temperature")


BeamOpt = Annotated[
    Optional[int],
    typer.Option(help=f"Beam search width: the most probable valid of the K most probable decodings of each code (default {DEFAULT_BEAM_WIDTH}; 1: greedy, at most {MAX_BEAM_WIDTH:,}; not with --temperature)."),
]


def _beam_width(beam_width: int | None, temperature: float | None) -> int:
    """The beam width to decode with: the default unless sampling at a temperature."""
    if beam_width is not None:
        check_beam_width(beam_width)
    if temperature is None:
        return DEFAULT_BEAM_WIDTH if beam_width is None else beam_width
    if beam_width is not None and beam_width > 1:
        raise typer.BadParameter("beam search is deterministic: give --temperature or --beam-width, not both", param_hint="--beam-width")
    return 1


def _read_items(model: LatentModel, path: str, column: str | None) -> list[tuple[int, str]]:
    return model.domain.read_items(resolve_data_file(path), column)


# ----------------------------------------------------------------------------------------------
# Commands
# ----------------------------------------------------------------------------------------------


@fail_cleanly
def encode_command(
    run_dir: RunArg,
    input: Annotated[str, typer.Argument(help="Strings to encode: .smi/.txt (one per line) or .csv/.tsv, optionally .gz.")],
    out: Annotated[Optional[Path], typer.Option(help="codes.npy or codes.csv (default: CSV on stdout).")] = None,
    column: Annotated[Optional[str], typer.Option(help="CSV/TSV column holding the strings (default: smiles).")] = None,
    strict: Annotated[bool, typer.Option(help="Stop at the first line that cannot be encoded instead of skipping it.")] = False,
    batch_size: Annotated[int, typer.Option(help="Codes computed per batch.")] = 1024,
    device: DeviceOpt = "auto",
) -> None:
    """Encode SMILES (or expressions) into latent codes; lines that cannot be encoded are reported and skipped."""
    check_batch_size(batch_size)
    check_distinct_files(INPUT=input, out=out)
    if out is not None:
        check_codes_suffix(out, "--out")
    model = _load(run_dir, device)
    items = _read_items(model, input, column)
    texts = [text for _, text in items]
    codes_tensor, kept, failures = model.encode(texts, batch_size, errors="skip")
    for index, reason in failures:
        if strict:
            raise CodesError(f"{input}:{items[index][0]}: {reason}")
        typer.echo(f"{input}:{items[index][0]}: skipped: {reason}", err=True)
    if not kept:
        raise CodesError(f"{input}: none of its {len(items)} items can be encoded")
    codes = codes_tensor.numpy()
    kept_lines = [items[i][0] for i in kept]
    kept_texts = [texts[i] for i in kept]
    text_column = model.domain.column
    if out is None:
        write_codes_csv(sys.stdout, codes, kept_texts, kept_lines, text_column)
        sys.stdout.flush()
    else:
        write_codes(out, codes, kept_texts, kept_lines, text_column)
    where = f" -> {out}" if out is not None else ""
    typer.echo(f"encoded {len(kept)} of {len(items)} items ({len(failures)} skipped){where}", err=True)


@fail_cleanly
def decode_command(
    run_dir: RunArg,
    codes: Annotated[Path, typer.Argument(help="Latent codes: .npy [N, D] or .csv (z0 .. columns, or numbers only).")],
    temperature: Annotated[Optional[float], typer.Option(help="Sample the productions at this temperature (default: beam search).")] = None,
    beam_width: BeamOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of temperature sampling.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Write the strings here instead of stdout.")] = None,
    batch_size: Annotated[int, typer.Option(help="Codes decoded per batch.")] = 1024,
    device: DeviceOpt = "auto",
) -> None:
    """Decode latent codes: one string per line, <unfinished> where decoding hit the length limit."""
    import torch

    _check_temperature(temperature)
    width = _beam_width(beam_width, temperature)
    check_batch_size(batch_size)
    check_seed(seed)
    check_distinct_files(CODES=codes, out=out)
    model = _load(run_dir, device)
    z = torch.from_numpy(read_codes(codes, model.latent_dim))
    if temperature is None:
        texts = model.decode(z, batch_size=batch_size, beam_width=width)
    else:
        generator = torch.Generator(device=model.device).manual_seed(seed)
        texts = model.decode(z, temperature=temperature, generator=generator, batch_size=batch_size)
    _emit(_shown(texts), out)


@fail_cleanly
def sample_command(
    run_dir: RunArg,
    n: Annotated[int, typer.Option("--n", help=f"Number of samples, at most {MAX_SAMPLES:,} (drawn, decoded and written 10,000 at a time: any n fits in memory).")] = 10,
    component: Annotated[Optional[int], typer.Option(help="Sample from this mixture component only.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sample the productions at this temperature (default: beam search).")] = None,
    beam_width: BeamOpt = None,
    source: Annotated[Optional[Source], typer.Option(help="prior (the model's prior), ex-post (the GMM fitted on the training codes), kde (the kernel density on held-out codes, molks kde) or between (points between neighbouring held-out codes of that density). Default: between when the run has a kernel density (and no --component is given), else prior.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the latent draw (and of temperature sampling).")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Write the strings here instead of stdout.")] = None,
    codes: Annotated[Optional[Path], typer.Option(help="Also save the latent points (.npy or .csv).")] = None,
    png: Annotated[Optional[Path], typer.Option(help="Draw the valid molecules (up to 24) into this PNG.")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Sample latent points and decode them: one string per line, <unfinished> where decoding hit the length limit."""
    _check_temperature(temperature)
    width = _beam_width(beam_width, temperature)
    check_sample_count(n)
    check_seed(seed)
    check_distinct_files(out=out, codes=codes, png=png)
    codes_suffix = None if codes is None else check_codes_suffix(codes, "--codes")
    model = _load(run_dir, device)
    if png is not None and not model.is_molecular:
        raise CodesError(f"--png draws molecules, but {run_dir} models {model.grammar.name} strings")
    chunks = _sample_chunks(model, n, component=component, temperature=temperature, beam_width=width, source=None if source is None else source.value, seed=seed)
    drawable: list[str] = []

    def stream(text_file: IO[bytes] | None, codes_file: IO[bytes] | None) -> None:
        if codes_file is not None:
            _write_codes_header(codes_file, codes_suffix, n, model.latent_dim)
        for z, texts in chunks:
            lines = "".join(f"{line}\n" for line in _shown(texts))
            if text_file is not None:
                text_file.write(lines.encode("utf-8"))
            else:
                try:
                    sys.stdout.write(lines)
                    sys.stdout.flush()
                except BrokenPipeError as err:  # not an OSError inside atomic_write: the reader is gone
                    raise _ReaderGone from err
            if codes_file is not None:
                _write_codes_rows(codes_file, codes_suffix, z.numpy())
            if png is not None and len(drawable) < 200:  # enough to find 24 drawable molecules
                drawable.extend(t for t in texts if t)

    def with_codes(text_file: IO[bytes] | None) -> None:
        if codes is None:
            stream(text_file, None)
        else:
            atomic_write(codes, lambda codes_file: stream(text_file, codes_file))

    try:
        if out is None:
            with_codes(None)
        else:
            atomic_write(out, with_codes)
    except _ReaderGone:
        raise BrokenPipeError from None  # `molks sample ... | head`: ends quietly (fail_cleanly)
    if png is not None:
        from molks.drawing import DrawingError

        try:
            model.domain.draw(drawable, png)
        except DrawingError as err:
            typer.echo(f"no PNG written: {err}", err=True)


SAMPLE_CHUNK = 10_000
"""``molks sample`` draws, decodes and writes this many samples at a time, so that any ``--n`` fits in memory."""


class _ReaderGone(Exception):
    """stdout's reader closed the pipe (not an OSError, so that atomic_write passes it through)."""


def _sample_chunks(
    model: LatentModel, n: int, *, component: int | None, temperature: float | None, beam_width: int, source: str | None, seed: int
) -> Iterator[tuple[torch.Tensor, list[str | None]]]:
    """(codes, decoded strings) of ``n`` samples, :data:`SAMPLE_CHUNK` at a time.

    The first chunk uses ``seed`` itself, so up to :data:`SAMPLE_CHUNK` samples are exactly what
    ``model.sample(n, seed=seed)`` gives (and a larger ``--n`` begins with them); chunk i > 0 is
    seeded from ``(seed, i)``.
    """
    import numpy as np

    for index, start in enumerate(range(0, n, SAMPLE_CHUNK)):
        chunk_seed = seed if index == 0 else int(np.random.SeedSequence([seed % 2**64, index]).generate_state(1)[0])
        yield model.sample(
            min(SAMPLE_CHUNK, n - start), component=component, temperature=temperature, source=source, seed=chunk_seed,
            beam_width=beam_width,
        )


def _write_codes_header(f: IO[bytes], suffix: str | None, n: int, dim: int) -> None:
    """The start of a codes file of ``n`` rows: the .npy header (float32 [n, dim]) or the CSV's z0.. header."""
    import numpy as np

    if suffix == ".npy":
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, dim)})
    else:
        f.write((",".join(f"z{j}" for j in range(dim)) + "\n").encode())


def _write_codes_rows(f: IO[bytes], suffix: str | None, z: Any) -> None:
    """Rows of codes after :func:`_write_codes_header`; the same bytes as :func:`molks.codes.write_codes`."""
    import numpy as np

    array = np.asarray(z, dtype=np.float32)
    if suffix == ".npy":
        f.write(array.astype("<f4").tobytes())
    else:
        text = io.StringIO()
        write_codes_csv(text, array, None, None, "smiles")
        f.write(text.getvalue().split("\n", 1)[1].encode())  # without its header row


@fail_cleanly
def evaluate_command(
    run_dir: RunArg,
    protocol: Annotated[Protocol, typer.Option(help="quick: a look in about a minute (at most --held-out items, 1,000 samples, the expensive parts opt-in); moses: the MOSES protocol, 30,000 samples against the whole MOSES test set (give it as --reference: molks does not bundle it) plus the 5k-vs-5k numbers and their floors.")] = Protocol["quick"],
    data: Annotated[Optional[str], typer.Option(help="Held-out file to reconstruct (default: the run's validation.smi).")] = None,
    column: Annotated[Optional[str], typer.Option(help="CSV/TSV column holding the strings (of --data and --reference).")] = None,
    held_out: Annotated[int, typer.Option(help=f"Use at most this many held-out items, the first ones (1 to {MAX_EVALUATION_ITEMS:,}).")] = 1000,
    n_samples: Annotated[Optional[int], typer.Option(help=f"Prior samples (default: 1,000; 30,000 for --protocol moses; at most {MAX_EVALUATION_ITEMS:,}).")] = None,
    decodings: Annotated[int, typer.Option(help=f"Sampled decodings per held-out code (the Grammar VAE protocol; each costs a greedy decoding; 0 skips it; at most {MAX_SAMPLED_DECODINGS:,}).")] = 0,
    ex_post: Annotated[bool, typer.Option(help="Also sample the ex-post GMM fitted on the training codes (the ex_post_* keys).")] = False,
    source: Annotated[Optional[Source], typer.Option(help="Where the samples come from: prior, ex-post, kde or between (default: where molks sample draws, between the held-out codes of the run's kernel density when it has one).")] = None,
    reference: Annotated[Optional[str], typer.Option(help="Molecules the prior samples are compared with (FCD, MOSES metrics); default: the held-out data. For --protocol moses: the MOSES test set (e.g. test.csv.gz).")] = None,
    distribution: Annotated[bool, typer.Option(help="Compute FCD and the MOSES metrics of the prior samples (molecules only).")] = True,
    fcd: Annotated[bool, typer.Option(help="Compute FCD (ChemNet: about 5 ms a molecule on one core); --no-fcd keeps the other MOSES metrics.")] = True,
    properties_png: Annotated[Optional[Path], typer.Option(help="Draw the property histograms (logP, SA, QED, weight) of samples and reference into this PNG.")] = None,
    processes: Annotated[int, typer.Option(help=f"Worker processes for the RDKit part of the MOSES metrics (at most {MAX_WORKERS:,}).")] = 1,
    cache: Annotated[bool, typer.Option(help="Keep the prepared reference set (fingerprints, ChemNet statistics, ...) in $MOLKS_CACHE_DIR/metrics, else $XDG_CACHE_HOME/molks/metrics or ~/.cache/molks/metrics, so the next evaluation against it only reads it.")] = True,
    beam_width: Annotated[int, typer.Option(help=f"Decode the samples (and measure reconstruction, the *_beam keys) with a beam search of this width, as molks sample does; 1: greedy only (at most {MAX_BEAM_WIDTH:,}).")] = DEFAULT_BEAM_WIDTH,
    seed: Annotated[int, typer.Option(help=f"Seed of the samples (0 to {MAX_SEED:,}).")] = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the metrics as JSON here.")] = None,
    png: Annotated[Optional[Path], typer.Option(help="Draw up to 24 valid prior samples into this PNG.")] = None,
    threads: Annotated[int, typer.Option(help=f"Torch threads (at most {MAX_WORKERS:,}). 1 (the default): decoding's small operations gain little from more, and several threads slow down tenfold when other jobs share the cores (benchmarks/RESULTS.md); ChemNet runs beside the RDKit work either way.")] = 1,
    device: DeviceOpt = "auto",
) -> None:
    """Reconstruction, validity/uniqueness/novelty of samples, FCD and the MOSES metrics, and KS/CV distances to the prior; a bar per stage (a line a minute without a terminal) and the seconds of each stage."""
    # Every option is checked before the model is loaded or any data read: a typo costs nothing.
    check_int(threads, "threads", 1, MAX_WORKERS)
    check_device_name(device)
    # No output over another, nor over an input (read at the start, replaced at the end).
    check_distinct_files(data=data, json=json_out, png=png, properties_png=properties_png)
    check_distinct_files(reference=reference, json=json_out, png=png, properties_png=properties_png)
    import torch

    from molks.evaluation import EvaluationSettings, evaluate, format_report

    options = {"held_out": held_out, "sampled_decodings": decodings, "ex_post": ex_post,
               "source": None if source is None else source.value, "distribution": distribution,
               "fcd": fcd, "beam_width": beam_width, "seed": seed, "processes": processes}  # fmt: skip
    if n_samples is not None:
        options["n_samples"] = n_samples
    settings = EvaluationSettings.moses(**options) if protocol.value == "moses" else EvaluationSettings(protocol=protocol.value, **options)
    torch.set_num_threads(threads)
    model = _load(run_dir, device)
    items = None if data is None else [text for _, text in _read_items(model, data, column)]
    references = None if reference is None else [text for _, text in _read_items(model, reference, column)]
    typer.echo(_evaluation_plan(run_dir, settings, data, reference, model.is_molecular), err=True)
    result = evaluate(model, items, settings=settings, reference=references, png=png, properties_png=properties_png,
                      reference_cache=cache, progress=None)  # fmt: skip
    result["run_dir"] = run_dir  # as given: no absolute path of this machine in the report
    if reference is not None and result["reference"] is not None:
        result["reference"] = reference  # the file, not just "given (N items)"
    typer.echo(format_report(result))
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(result, indent=2) + "\n")


def _evaluation_plan(run_dir: str, settings: EvaluationSettings, data: str | None, reference: str | None, molecular: bool) -> str:
    """One line saying what ``molks evaluate`` is about to measure, before it starts."""
    decoding = f"beam search ({settings.beam_width})" if settings.beam_width > 1 else "greedy decoding"
    held_out = f"at most {settings.held_out:,} held-out items of {data or 'validation.smi'}"
    parts = [f"{held_out} (greedy{' and ' + decoding if settings.beam_width > 1 else ''})",
             f"{settings.n_samples:,} prior samples ({decoding})"]  # fmt: skip
    if settings.sampled_decodings:
        parts.append(f"{settings.sampled_decodings} sampled decodings per held-out code")
    if settings.ex_post:
        parts.append(f"{settings.n_samples:,} ex-post GMM samples")
    if settings.distribution and molecular:
        metrics = "FCD and the MOSES metrics" if settings.fcd else "the MOSES metrics (no FCD)"
        parts.append(f"{metrics} against {reference or 'the held-out items'}")
        if settings.protocol == "moses":
            parts.append(f"{settings.split_size:,}-vs-{settings.split_size:,} numbers and their floors")
    hint = "" if settings.protocol == "moses" else "; --protocol moses for the full MOSES protocol"
    return f"evaluating {run_dir} ({settings.protocol}): " + ", ".join(parts) + hint


MAX_BANDWIDTH = 100.0
"""A kernel wider than this is no density of the codes (they lie within a few units of 0)."""


@fail_cleanly
def kde_command(
    run_dir: RunArg,
    held_out: Annotated[str, typer.Argument(help="Molecules (or expressions) the model was NOT trained on, e.g. its validation split: .smi/.txt or .csv/.tsv, optionally .gz.")],
    bandwidth: Annotated[Optional[float], typer.Option(help="Sd of the Gaussian kernel per dimension (default: 1.4 s for a model trained with --option latent_noise=s, else 0.4).")] = None,
    max_codes: Annotated[int, typer.Option(help="Keep at most this many codes (a seeded random choice of the items).")] = 20_000,  # KDE_CODES (torch-free here)
    column: Annotated[Optional[str], typer.Option(help="CSV/TSV column holding the strings (default: smiles).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the choice of items.")] = 0,
    device: DeviceOpt = "auto",
) -> None:
    """Fit the sampler molks sample then uses by default: a kernel density on the codes of held-out items."""
    if bandwidth is not None and not (math.isfinite(bandwidth) and 0 < bandwidth <= MAX_BANDWIDTH):
        raise CodesError(f"--bandwidth must be a number above 0 and at most {MAX_BANDWIDTH:g}, got {bandwidth}")
    check_sample_count(max_codes, "max_codes")
    check_seed(seed)
    model = _load(run_dir, device)
    items = _read_items(model, held_out, column)
    encoding = model.fit_kde([text for _, text in items], bandwidth, max_codes=max_codes, seed=seed)
    for index, reason in encoding.failures:
        typer.echo(f"{held_out}: skipped item {index + 1} of the chosen ones: {reason}", err=True)
    assert model.kde is not None  # fit_kde keeps what it fitted
    width = float(model.kde.scale_tril[0, 0, 0])
    typer.echo(f"kernel density of {len(encoding.codes)} codes, bandwidth {width:g} -> {model.run_dir / 'ex_post_kde.safetensors'}")


COMMANDS = {
    "encode": encode_command, "decode": decode_command, "sample": sample_command, "kde": kde_command,
    "evaluate": evaluate_command,
}  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add ``encode``, ``decode``, ``sample``, ``kde`` and ``evaluate`` to ``app`` (the top-level molks app)."""
    for name, command in COMMANDS.items():
        app.command(name)(command)
