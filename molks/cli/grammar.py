"""``molks grammar ...``: inspect grammars."""

from __future__ import annotations

import typer

app = typer.Typer(help="Inspect grammars: coverage, ambiguity, unused symbols.", no_args_is_help=True)


@app.command("show")
def show(grammar: str = typer.Argument("smiles", help="A bundled grammar name or a .cfg path.")) -> None:
    """Print a grammar's size, parser and productions."""
    from molks.grammar import Grammar

    g = Grammar.load(grammar)
    typer.echo(f"{g.name}: {g.n_productions} productions, {len(g.nonterminals)} nonterminals, "
               f"{len(g.terminals)} terminals, parser {g.parser_kind}, file {g.path}")
    for i, p in enumerate(g.productions):
        typer.echo(f"{i:4d}  {p}")
