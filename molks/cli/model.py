"""``molks encode / decode / sample / evaluate``: using a trained run from the command line.

RUN_DIR is a run directory written by ``molks train`` or the name of a model shipped with molks.

Codes files: ``.npy`` (a float array [N, D], read without pickle) or ``.csv``. ``encode`` writes
CSV with the columns ``line, smiles|text, z0 .. z{D-1}``; ``decode`` reads the ``z0 ..`` columns of
a CSV with a header, or every column of a CSV without one (a first row of numbers).

Decoded strings are printed one per line, in the order of the codes; a decoding that hit the
model's length limit prints the marker ``<unfinished>`` (not a SMILES, not an expression), so
line i of the output always belongs to code i.

Register the commands at the top level of the ``molks`` app with :func:`register`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import numpy as np
import typer

from molks.cli.common import fail_cleanly, resolve_data_file

if TYPE_CHECKING:
    from molks.api import LatentModel

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
CODE_SUFFIXES = (".npy", ".csv")

RunArg = Annotated[str, typer.Argument(help="A run directory (from molks train) or the name of a shipped model.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]


class CodesError(ValueError):
    """A codes file is unreadable, malformed, or does not fit the model."""


class Source(str, Enum):
    prior = "prior"
    ex_post = "ex-post"


# ----------------------------------------------------------------------------------------------
# Codes files
# ----------------------------------------------------------------------------------------------


def _check_suffix(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in CODE_SUFFIXES:
        raise CodesError(f"{path}: {what} must end in .npy or .csv, not {suffix or '(no suffix)'!r}")
    return suffix


def read_codes(path: Path, latent_dim: int | None = None) -> np.ndarray:
    """Latent codes [N, D] (float32) from a .npy or .csv file; checks D against ``latent_dim``."""
    path = Path(path)
    suffix = _check_suffix(path, "a codes file")
    if not path.is_file():
        raise CodesError(f"{path}: no such file")
    if suffix == ".npy":
        try:
            codes = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise CodesError(f"{path}: not a readable .npy array ({err})") from None
        if not isinstance(codes, np.ndarray) or not np.issubdtype(codes.dtype, np.number):
            raise CodesError(f"{path}: holds {getattr(codes, 'dtype', type(codes))}, not numbers")
    else:
        codes = _read_csv_codes(path)
    if codes.ndim == 1:
        codes = codes.reshape(1, -1)
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise CodesError(f"{path}: codes must be a non-empty [N, D] array, got shape {list(codes.shape)}")
    if latent_dim is not None and codes.shape[1] != latent_dim:
        raise CodesError(f"{path}: codes have {codes.shape[1]} dimensions but the model's latent dimension is {latent_dim}")
    codes = codes.astype(np.float32)
    if not np.isfinite(codes).all():
        raise CodesError(f"{path}: codes contain NaN or infinite values")
    return codes


def _read_csv_codes(path: Path) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CodesError(f"{path}: not UTF-8 text") from None
    rows = [(number, row) for number, row in enumerate(csv.reader(io.StringIO(text)), start=1) if any(c.strip() for c in row)]
    if not rows:
        raise CodesError(f"{path}: empty")
    columns = list(range(len(rows[0][1])))
    if not all(_is_number(cell) for cell in rows[0][1]):  # a header: take the z0, z1, ... columns
        header = [cell.strip() for cell in rows[0][1]]
        named = sorted((int(name[1:]), i) for i, name in enumerate(header) if name[:1] == "z" and name[1:].isdigit())
        if not named:
            raise CodesError(f"{path}:1: a header without z0, z1, ... columns; the columns are {header}")
        if [k for k, _ in named] != list(range(len(named))):
            raise CodesError(f"{path}:1: the z columns must be z0 .. z{len(named) - 1} without gaps")
        columns = [i for _, i in named]
        rows = rows[1:]
    values = []
    for number, row in rows:
        try:
            values.append([float(row[i]) for i in columns])
        except (ValueError, IndexError):
            raise CodesError(f"{path}:{number}: expected {len(columns)} numbers, got {row}") from None
    return np.asarray(values, dtype=np.float64).reshape(len(values), len(columns))


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def write_codes(path: Path, codes: np.ndarray, texts: list[str] | None = None, lines: list[int] | None = None,
                text_column: str = "smiles") -> None:
    """Write codes [N, D] to .npy (the array only) or .csv (with line and text columns when given)."""
    if _check_suffix(path, "--out") == ".npy":
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, codes.astype(np.float32), allow_pickle=False)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        _write_csv(f, codes, texts, lines, text_column)


def _write_csv(f: io.TextIOBase, codes: np.ndarray, texts: list[str] | None, lines: list[int] | None, text_column: str) -> None:
    writer = csv.writer(f, lineterminator="\n")
    head = (["line"] if lines is not None else []) + ([text_column] if texts is not None else [])
    writer.writerow(head + [f"z{j}" for j in range(codes.shape[1])])
    for i, row in enumerate(codes.tolist()):
        lead = ([lines[i]] if lines is not None else []) + ([texts[i]] if texts is not None else [])
        writer.writerow(lead + [repr(float(v)) for v in row])


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
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")


def _shown(texts: list[str | None]) -> list[str]:
    return [UNFINISHED if t is None else t for t in texts]


def _check_temperature(temperature: float | None) -> None:
    if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
        raise typer.BadParameter(f"must be a number > 0, got {temperature}", param_hint="--temperature")


def _read_items(model: LatentModel, path: str, column: str | None) -> list[tuple[int, str]]:
    from molks.dataset import load_texts

    return load_texts(resolve_data_file(path), column, whole_lines=not model.is_molecular)


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
    from molks.evaluation import encodable, encode_sequences

    if out is not None:
        _check_suffix(out, "--out")
    model = _load(run_dir, device)
    items = _read_items(model, input, column)
    texts = [text for _, text in items]
    kept, sequences, failures = encodable(model, texts)
    for index, reason in failures:
        if strict:
            raise CodesError(f"{input}:{items[index][0]}: {reason}")
        typer.echo(f"{input}:{items[index][0]}: skipped: {reason}", err=True)
    if not kept:
        raise CodesError(f"{input}: none of its {len(items)} items can be encoded")
    codes = encode_sequences(model, sequences, batch_size).numpy()
    kept_lines = [items[i][0] for i in kept]
    kept_texts = [texts[i] for i in kept]
    text_column = "smiles" if model.is_molecular else "text"
    if out is None:
        _write_csv(sys.stdout, codes, kept_texts, kept_lines, text_column)  # type: ignore[arg-type]
        sys.stdout.flush()
    else:
        write_codes(out, codes, kept_texts, kept_lines, text_column)
    where = f" -> {out}" if out is not None else ""
    typer.echo(f"encoded {len(kept)} of {len(items)} items ({len(failures)} skipped){where}", err=True)


@fail_cleanly
def decode_command(
    run_dir: RunArg,
    codes: Annotated[Path, typer.Argument(help="Latent codes: .npy [N, D] or .csv (z0 .. columns, or numbers only).")],
    temperature: Annotated[Optional[float], typer.Option(help="Sample the productions at this temperature (default: greedy).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of temperature sampling.")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Write the strings here instead of stdout.")] = None,
    batch_size: Annotated[int, typer.Option(help="Codes decoded per batch.")] = 1024,
    device: DeviceOpt = "auto",
) -> None:
    """Decode latent codes: one string per line, <unfinished> where decoding hit the length limit."""
    import torch

    _check_temperature(temperature)
    model = _load(run_dir, device)
    z = torch.from_numpy(read_codes(codes, model.latent_dim))
    if temperature is None:
        texts = model.decode(z, batch_size=batch_size)
    else:
        generator = torch.Generator(device=model.device).manual_seed(seed)
        texts = model.decode(z, greedy=False, temperature=temperature, generator=generator, batch_size=batch_size)
    _emit(_shown(texts), out)


@fail_cleanly
def sample_command(
    run_dir: RunArg,
    n: Annotated[int, typer.Option("--n", min=1, help="Number of samples.")] = 10,
    component: Annotated[Optional[int], typer.Option(help="Sample from this mixture component only.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sample the productions at this temperature (default: greedy).")] = None,
    source: Annotated[Source, typer.Option(help="prior (the model's prior) or ex-post (the GMM fitted on the training codes).")] = Source.prior,
    seed: Annotated[int, typer.Option(help="Seed of the latent draw (and of temperature sampling).")] = 0,
    out: Annotated[Optional[Path], typer.Option(help="Write the strings here instead of stdout.")] = None,
    codes: Annotated[Optional[Path], typer.Option(help="Also save the latent points (.npy or .csv).")] = None,
    png: Annotated[Optional[Path], typer.Option(help="Draw the valid molecules (up to 24) into this PNG.")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Sample latent points and decode them: one string per line, <unfinished> where decoding hit the length limit."""
    _check_temperature(temperature)
    if codes is not None:
        _check_suffix(codes, "--codes")
    model = _load(run_dir, device)
    if png is not None and not model.is_molecular:
        raise CodesError(f"--png draws molecules, but {run_dir} models {model.grammar.name} strings")
    z, texts = model.sample(n, component=component, temperature=temperature, source=source.value, seed=seed)
    _emit(_shown(texts), out)
    if codes is not None:
        write_codes(codes, z.numpy())
    if png is not None:
        from molks.drawing import DrawingError, draw_molecules

        try:
            draw_molecules([t for t in texts if t], png)
        except DrawingError as err:
            typer.echo(f"no PNG written: {err}", err=True)


@fail_cleanly
def evaluate_command(
    run_dir: RunArg,
    data: Annotated[Optional[str], typer.Option(help="Held-out file to reconstruct (default: the run's validation.smi).")] = None,
    column: Annotated[Optional[str], typer.Option(help="CSV/TSV column holding the strings.")] = None,
    n_samples: Annotated[int, typer.Option(min=1, help="Samples drawn from the prior and from the ex-post GMM (each).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the samples.")] = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the metrics as JSON here.")] = None,
    png: Annotated[Optional[Path], typer.Option(help="Draw up to 24 valid prior samples into this PNG.")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Reconstruction accuracy, validity/uniqueness/novelty of samples, and KS/CV distances to the prior."""
    from molks.evaluation import evaluate, format_report

    model = _load(run_dir, device)
    held_out = None if data is None else [text for _, text in _read_items(model, data, column)]
    result = evaluate(model, held_out, n_samples=n_samples, seed=seed, png=png)
    typer.echo(format_report(result))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


COMMANDS = {"encode": encode_command, "decode": decode_command, "sample": sample_command, "evaluate": evaluate_command}


def register(app: typer.Typer) -> None:
    """Add ``encode``, ``decode``, ``sample`` and ``evaluate`` to ``app`` (the top-level molks app)."""
    for name, command in COMMANDS.items():
        app.command(name)(command)
