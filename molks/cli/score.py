"""``molks score FILE --target NAME``: one score per item of a file, for every target ``molks optimize`` accepts."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from molks.cli.common import fail_cleanly

__all__ = ["score_command"]


@fail_cleanly
def score_command(
    input: Annotated[str, typer.Argument(help="Strings to score: .smi/.txt (one per line) or .csv/.tsv, optionally .gz.")],
    target: Annotated[
        str,
        typer.Option(
            "--target", "-t",
            help="Any target of molks optimize: logp, qed, expression, a PMO objective (celecoxib_rediscovery, median1, "
            "osimertinib_mpo, deco_hop, ...) or package.module:function.",
        ),
    ],
    column: Annotated[Optional[str], typer.Option(help="CSV/TSV column holding the strings (default: smiles).")] = None,
    whole_lines: Annotated[
        bool, typer.Option("--whole-lines", help="Score whole lines (default: the first field of a line, i.e. a SMILES before its name; always whole lines for expression).")
    ] = False,
    processes: Annotated[int, typer.Option(min=1, help="Worker processes for a built-in target.")] = 1,
    target_timeout: Annotated[float, typer.Option(min=0.001, max=86400.0, help="Seconds one call of a function of yours may take (100 strings a call).")] = 60.0,
) -> None:
    """Print each item of INPUT, a tab, and its score (empty where it has none: the reason goes to stderr, with the line)."""
    from molks.data_files import resolve_data_file
    from molks.dataset.io import load_texts
    from molks.optimize.scorefile import item_domain, score_items
    from molks.optimize.targets import TargetError, get_target

    if ":" not in target:
        get_target(target)  # an unknown name: one line before the file is read (a function of yours is imported in its worker)
    domain = item_domain(target)
    items = load_texts(resolve_data_file(input), column, whole_lines=whole_lines or (domain is not None and domain.whole_lines))
    scored = missing = 0
    line: int | None = None  # the last line scored: where a target that stops failing is named
    try:
        for result in score_items(items, target, processes, target_timeout):
            line = result.line
            value = "" if result.score is None else repr(result.score)
            sys.stdout.write(f"{result.text}\t{value}\n")
            if result.score is None:
                missing += 1
                sys.stdout.flush()  # stdout's lines before the stderr line that names this one
                typer.echo(f"{input}:{result.line}: no score: {result.reason}", err=True)
            else:
                scored += 1
    except TargetError as err:
        sys.stdout.flush()
        if line is None:  # the target failed before scoring anything (importing it, say): nothing to locate
            raise
        raise TargetError(f"after this line: {err.reason}", path=input, line=line) from err
    sys.stdout.flush()
    typer.echo(f"scored {scored} of {len(items)} items with {target} ({missing} without a score)", err=True)
