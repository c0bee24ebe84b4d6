"""The ``molks`` command line: one typer sub-app per stage of the pipeline."""

from __future__ import annotations

import typer

from molks.cli.benchmark import app as benchmark_app
from molks.cli.data import app as data_app
from molks.cli.demo import demo_command
from molks.cli.grammar import app as grammar_app
from molks.cli.model import register as register_model_commands
from molks.cli.optimize import optimize as optimize_command
from molks.cli.score import score_command
from molks.cli.train import train_command

app = typer.Typer(
    name="molks",
    help="Grammar autoencoders with a Gaussian-mixture latent space, and Bayesian optimisation in it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(grammar_app, name="grammar")
app.add_typer(benchmark_app, name="benchmark")
app.command("demo")(demo_command)
app.command("train")(train_command)
register_model_commands(app)
app.command("optimize")(optimize_command)
app.command("score")(score_command)

__all__ = ["app"]
