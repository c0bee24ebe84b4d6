"""``molks data ...``: download datasets, generate expressions, parse a dataset file."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from molks.cli.common import fail_cleanly
from molks.files import atomic_write_text

app = typer.Typer(help="Datasets: download, generate expressions, parse and cache.", no_args_is_help=True)


@app.command("download")
@fail_cleanly
def download_command(
    name: str = typer.Argument(..., help="Dataset to fetch: zinc250k."),
    out: Path | None = typer.Option(None, "--out", help="Where to write it (default: <cache dir>/<name>.csv)."),
    url: str | None = typer.Option(None, "--url", help="Fetch from this URL instead (file:// works)."),
    sha256: str | None = typer.Option(None, "--sha256", help="Expected SHA-256, overriding the pinned one."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on a terminal."),
) -> None:
    """Download a public dataset and check its SHA-256 (the file is kept only if it matches)."""
    from molks.dataset import download_dataset

    path = download_dataset(name, out, url=url, sha256=sha256, progress=progress)
    typer.echo(str(path))


@app.command("expressions")
@fail_cleanly
def expressions_command(
    n: int = typer.Option(100_000, "--n", min=1, help="How many distinct sentences."),
    max_productions: int = typer.Option(15, "--max-productions", min=1, help="Most productions per derivation."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    grammar: str = typer.Option("arithmetic", "--grammar", help="Bundled grammar name or .cfg path."),
    out: Path | None = typer.Option(None, "--out", help="Output file (default: stdout)."),
) -> None:
    """Generate random distinct sentences of a grammar, one per line."""
    from molks.dataset import generate_sentences
    from molks.grammar import Grammar

    sentences = generate_sentences(Grammar.load(grammar), n, max_productions, seed)
    text = "".join(f"{s}\n" for s in sentences)
    if out is None:
        typer.echo(text, nl=False)
        return
    atomic_write_text(out, text)
    typer.echo(f"wrote {len(sentences)} sentences to {out}", err=True)


@app.command("parse")
@fail_cleanly
def parse_command(
    file: Path = typer.Argument(..., help="A .smi/.txt/.csv/.tsv file, optionally .gz."),
    grammar: str = typer.Option("smiles", "--grammar", help="Bundled grammar name or .cfg path."),
    column: str | None = typer.Option(None, "--column", help="CSV/TSV column to read (default: smiles/SMILES)."),
    canonicalize: bool = typer.Option(True, "--canonicalize/--no-canonicalize", help="RDKit canonical SMILES."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first item that fails."),
    max_length: int | None = typer.Option(None, "--max-length", min=1, help="Skip longer derivations."),
    processes: int | None = typer.Option(
        None, "--processes", min=1,
        help="Worker processes (default: all cores). RDKit reads the SMILES in worker processes even for 1, so that a "
        "crash of RDKit on a hostile SMILES is an error naming its line, not the end of the command.",
    ),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache directory (default: ~/.cache/molks)."),
    use_cache: bool = typer.Option(True, "--cache/--no-cache", help="Read and write the parsed-dataset cache."),
    report: Path | None = typer.Option(None, "--report", help="Write the summary as JSON here."),
    show: int = typer.Option(10, "--show-failures", min=0, help="How many failures to list."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on a terminal."),
) -> None:
    """Read, check (RDKit) and parse a dataset file; print a summary of what parsed and what failed."""
    from molks.dataset import load_dataset
    from molks.grammar import Grammar

    started = time.perf_counter()
    dataset = load_dataset(
        file,
        Grammar.load(grammar),
        column=column,
        canonicalize=canonicalize,
        strict=strict,
        max_length=max_length,
        processes=processes,
        cache_dir=cache_dir,
        use_cache=use_cache,
        progress=progress,
        isolate=True,
    )
    summary = dataset.summary(n_failures=show)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    typer.echo(f"{summary['source']}: {summary['n_parsed']} of {summary['n_items']} items parsed "
               f"({summary['n_unique']} distinct) with grammar {summary['grammar']}"
               f"{' [from cache]' if summary['cache_hit'] else ''}")
    typer.echo(f"failed: {summary['n_failed']}")
    for reason, count in summary["failures_by_reason"].items():
        typer.echo(f"  {count:8d}  {reason}")
    if summary["first_failures"]:
        typer.echo(f"first {len(summary['first_failures'])} failures:")
        for failure in summary["first_failures"]:
            typer.echo(f"  line {failure['line']}: {failure['reason']}")
    typer.echo(f"longest derivation: {summary['longest_derivation']} productions "
               f"(mean {summary['mean_derivation']:.1f})")
    typer.echo(f"time: {summary['seconds']:.2f} s")
    if report is not None:
        atomic_write_text(report, json.dumps(summary, indent=2) + "\n")

