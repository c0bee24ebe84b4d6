"""``molks grammar ...``: inspect grammars."""

from __future__ import annotations

from pathlib import Path

import typer

from molks.cli.common import fail, fail_cleanly
from molks.files import atomic_write_text

app = typer.Typer(help="Inspect grammars: coverage, ambiguity, unused symbols.", no_args_is_help=True)


@app.command("show")
@fail_cleanly
def show(grammar: str = typer.Argument("smiles", help="A bundled grammar name or a .cfg path.")) -> None:
    """Print a grammar's size, parser and productions."""
    from molks.grammar import Grammar

    g = Grammar.load(grammar)
    typer.echo(f"{g.name}: {g.n_productions} productions, {len(g.nonterminals)} nonterminals, "
               f"{len(g.terminals)} terminals, parser {g.parser_kind}, file {g.path}")
    for i, p in enumerate(g.productions):
        typer.echo(f"{i:4d}  {p}")


@app.command("check")
@fail_cleanly
def check(
    grammar: str = typer.Argument(..., help="A bundled grammar name or a .cfg path."),
    datafile: Path = typer.Argument(
        ..., help="Data, one item per line: .txt (whole lines), .smi, .csv/.tsv (the smiles column, or the only one); optionally .gz."
    ),
    column: str | None = typer.Option(None, "--column", help="Column of a .csv/.tsv file (default: smiles/SMILES, or the only column)."),
    sample: int = typer.Option(200, "--sample", min=0, help="Items checked for ambiguity with nltk (non-LL(1)/LALR grammars)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON here."),
    processes: int = typer.Option(0, "--processes", min=0, help="Worker processes for parsing (0: every core)."),
    max_failures: int = typer.Option(10, "--max-failures", min=0, help="Failures listed in the report."),
) -> None:
    """Check a grammar against data: coverage, ambiguity, unused symbols, LL(1) conflicts, longest derivation."""
    import json
    import os

    from molks.grammar import Grammar
    from molks.grammar.check import check_grammar, read_lines

    if json_out is not None and json_out.is_dir():  # found before minutes of parsing, not after
        fail(f"--json {json_out}: is a directory; give a file name")
    g = Grammar.load(grammar)
    items, numbers = read_lines(datafile, column)
    report = check_grammar(
        g,
        items,
        line_numbers=numbers,
        sample=sample,
        max_failures=max_failures,
        processes=processes or os.cpu_count() or 1,
    )
    typer.echo(f"data: {datafile}")
    typer.echo(report.format())
    if json_out is not None:
        atomic_write_text(json_out, json.dumps(report.to_dict(), indent=2) + "\n")  # a full disk: one line naming it
        typer.echo(f"report written to {json_out}")
