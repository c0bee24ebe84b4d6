"""``molks benchmark pmo``: the PMO benchmark of a model, the command line's side.

A thin adapter over :func:`molks.optimize.pmo_benchmark.run_pmo`: check the options, load the model,
read the pool, run, print the table.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from molks.cli.common import fail_cleanly
from molks.cli.optimize import UNTIL_BUDGET
from molks.decoding import DEFAULT_BEAM_WIDTH

app = typer.Typer(help="Benchmarks of a model: the PMO suite of molecular optimisation.", no_args_is_help=True,
                  pretty_exceptions_enable=False)  # fmt: skip


@app.command("pmo")
@fail_cleanly
def pmo(
    model: str = typer.Option(..., "--model", "-m", help="A run directory made by molks training, or a shipped model name."),
    budget: int = typer.Option(10_000, "--budget", min=1, help="Oracle calls per run, the pool's included (PMO: 10,000)."),
    seeds: int = typer.Option(5, "--seeds", min=1, help="Runs per task, with seeds 0 .. N-1 (PMO: 5)."),
    tasks: str | None = typer.Option(
        None, "--tasks", help="Comma-separated PMO objectives (default: the 20 that need only RDKit; drd2, gsk3b and jnk3 cannot run)."
    ),
    out: Path = typer.Option(Path("pmo-out"), "--out", "-o", help="Output folder: <task>/seed<k>/ per run, results.json, results.csv, table.md."),
    resume: bool = typer.Option(False, "--resume", help="Continue the benchmark in --out: finished runs are skipped, a killed one resumed."),
    pool: Path | None = typer.Option(
        None, "--pool", help="Molecules to start from (.smi/.txt/.csv/.tsv, optionally .gz); default: the model's training (or held-out) molecules."
    ),
    column: str | None = typer.Option(None, "--column", help="Column of a .csv/.tsv pool (default: smiles)."),
    pool_size: int = typer.Option(1000, "--pool-size", min=1, help="Starting molecules per run (with the run's seed); they are oracle calls, so below --budget."),
    batch_size: int = typer.Option(50, "--batch-size", "-q", min=1, help="Proposals per round (q of qLogEI)."),
    decodings: int = typer.Option(100, "--decodings", min=0, help="With --beam-width 0: sampled decodings per proposal besides the greedy one."),
    beam_width: int = typer.Option(
        DEFAULT_BEAM_WIDTH, "--beam-width", min=0,
        help="Decode each proposal with a beam search of this width. 0: greedily plus --decodings sampled decodings, "
        "the most frequent valid string kept (the Grammar VAE protocol; how benchmarks started before the beam was the default resume).",
    ),
    surrogate: str = typer.Option("exact", "--surrogate", help="GP: exact | variational | auto."),
    region: str = typer.Option("trust-region", "--region", help="Where proposals may lie: trust-region | box."),
    restarts: bool = typer.Option(
        True, "--restarts/--no-restarts", help="Restart the trust region after a round with few new oracle calls or when it collapses (TuRBO)."
    ),
    restart_yield: float = typer.Option(
        0.25, "--restart-yield", min=0.0, max=1.0,
        help="The fraction of a round's proposals that must be new oracle calls for the trust region not to restart (0: only on collapse).",
    ),
    device: str = typer.Option("cpu", "--device", help="Where the autoencoder runs (cpu, cuda, auto); the GP runs on the CPU."),
    threads: int = typer.Option(1, "--threads", min=1, help="Torch threads for the GP."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars or log lines; only the table at the end."),
) -> None:
    """Run the PMO benchmark (Gao et al., NeurIPS 2022): every task with every seed at --budget oracle
    calls; AUC top-10 per run, and a table beside the published methods (table.md)."""
    import molks
    from molks.optimize.acquisition import AcquisitionConfig
    from molks.optimize.loop import (
        OptimizeConfig,
        default_pool_file,
        file_sha256,
        read_pool,
    )
    from molks.optimize.pmo import PMO_OBJECTIVES
    from molks.optimize.pmo_benchmark import check_benchmark, run_pmo
    from molks.optimize.surrogate import SurrogateConfig

    if not quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = OptimizeConfig(
        iterations=UNTIL_BUDGET, budget=budget, decodings=decodings, beam_width=beam_width, pool_size=pool_size,
        threads=threads, surrogate=SurrogateConfig(kind=surrogate),
        acquisition=AcquisitionConfig(q=batch_size, region=region, restarts=restarts, restart_yield=restart_yield),
    )  # fmt: skip
    names, _ = check_benchmark(tasks.split(",") if tasks is not None else PMO_OBJECTIVES, seeds, config)
    latent = molks.load(model, device=device)
    source = pool if pool is not None else default_pool_file(latent.run_dir)
    texts = read_pool(source, latent.domain, column=column)
    result = run_pmo(
        latent, texts, out, names, seeds, config, resume=resume, model_name=Path(model).name,
        pool_source=source.name if pool is not None else f"{source.name} of {Path(model).name}",
        pool_sha256=file_sha256(source), progress=not quiet, log=None if not quiet else lambda _: None,
    )  # fmt: skip
    typer.echo((out / "table.md").read_text(), nl=False)
    typer.echo(f"{result['runs_done']}/{result['runs_total']} runs done; results in {out}")


__all__ = ["app", "pmo"]
