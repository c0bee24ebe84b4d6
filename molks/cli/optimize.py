"""``molks optimize``: Bayesian optimisation in a trained model's latent space.

The lead registers :func:`optimize` on the main app (``app.command("optimize")(optimize)``);
``app`` here runs it standalone (tests, ``python -m``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from molks.cli.common import fail_cleanly
from molks.decoding import DEFAULT_BEAM_WIDTH

if TYPE_CHECKING:
    from molks.optimize.guard import TargetRunner
    from molks.optimize.loop import OptimizeConfig
    from molks.optimize.multiobjective import Objectives

UNTIL_BUDGET = 1_000_000
"""The iterations of a run with --budget and no --iterations: it ends when the budget is spent."""

app = typer.Typer(help="Bayesian optimisation in a trained model's latent space.", pretty_exceptions_enable=False)


@app.command("optimize")
@fail_cleanly
def optimize(
    model: str = typer.Option(..., "--model", "-m", help="A run directory made by molks training, or a shipped model name."),
    target: list[str] = typer.Option(
        ["logp"],
        "--target",
        "-t",
        metavar="TARGET",
        help=(
            "Repeat it for 2 or 3 targets optimised together (qLogNEHVI; pareto.csv, pareto.png, hypervolume.csv "
            "against a reference point from the starting pool). "
            "logp | qed | sa (synthetic accessibility, minimised) | expression | a PMO objective (celecoxib_rediscovery, median1, osimertinib_mpo, deco_hop, ...: "
            "a wrong name lists them all) | package.module:function. A function of yours is called with a list of "
            "strings and returns one score per string: list\\[str] -> list\\[float | None], None for a string it "
            "cannot score; it is maximised unless it has an attribute maximize = False. Its module must be "
            "importable (on PYTHONPATH); it is called once on two pool strings before the optimisation starts. "
            "It runs in a worker process of its own: a call that raises, exits, crashes or passes --target-timeout "
            "scores its strings as failed (the run goes on and says so; 3 such calls in a row stop it, saved); "
            "a score that is NaN, inf or beyond 1e15 is a failure too."
        ),  # \\[ : a literal bracket for rich, which renders the help
    ),
    target_timeout: float = typer.Option(
        60.0, "--target-timeout", min=0.001, max=86400.0,
        help="Seconds one call of a --target function of yours may take (the pool is scored 100 strings a call, each round's proposals in one call; with --from, each starting molecule's round).",
    ),
    pool: Path | None = typer.Option(
        None, "--pool", "--data", help="Strings to start from (.smi/.txt/.csv/.tsv, optionally .gz); default: the run's train.smi.gz (its validation.smi for a model shipped without it)."
    ),
    column: str | None = typer.Option(None, "--column", help="Column of a .csv/.tsv pool (default: smiles)."),
    pool_size: int = typer.Option(2000, "--pool-size", help="Subsample the pool to this many strings (with --seed)."),
    out: Path = typer.Option(Path("optimize-out"), "--out", "-o", help="Output directory."),
    iterations: int | None = typer.Option(
        None, "--iterations", "-n", min=1,
        help="Rounds of fit -> propose -> decode -> score (default 5; with --budget: until the budget is spent).",
    ),
    batch_size: int = typer.Option(50, "--batch-size", "-q", help="Proposals per round (q of qLogEI)."),
    decodings: int = typer.Option(
        100, "--decodings",
        help="With --beam-width 0: sampled decodings per proposal besides the greedy one (the published protocol: 500).",
    ),
    beam_width: int | None = typer.Option(
        None, "--beam-width", min=0, show_default=False,
        help=f"Decode each proposal with a beam search of this width (default {DEFAULT_BEAM_WIDTH}; with --from: 1, greedy). "
        "0: greedily plus --decodings sampled decodings, the most frequent valid string kept (the Grammar VAE protocol; "
        "how runs started before the beam was the default resume).",
    ),
    region: str = typer.Option("trust-region", "--region", help="Where proposals may lie: trust-region | box."),
    strategy: str = typer.Option("joint", "--strategy", help="Batch optimisation: joint | sequential (slow baseline)."),
    restarts: bool = typer.Option(
        True, "--restarts/--no-restarts",
        help="Restart the trust region (TuRBO) after a round with few new oracle calls (--restart-yield) or when it "
        "collapses: its length reset, re-centred on the best point outside the regions abandoned. --no-restarts: "
        "the region stays at its smallest around the best point (how runs started before restarts existed resume).",
    ),
    restart_yield: float = typer.Option(
        0.25, "--restart-yield", min=0.0, max=1.0,
        help="With restarts: the fraction of a round's proposals that must be new oracle calls (molecules not scored "
        "before) for the trust region not to restart (0: restart only when it collapses).",
    ),
    surrogate: str = typer.Option("exact", "--surrogate", help="GP: exact | variational | auto (choose on a 10% held-out split)."),
    heldout: bool = typer.Option(False, "--heldout", help="Report held-out RMSE / log-likelihood of both GP kinds first."),
    seed: int = typer.Option(0, "--seed", help="Makes the run reproducible."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last completed round."),
    device: str = typer.Option("cpu", "--device", help="Where the autoencoder runs (cpu, cuda, auto); the GP runs on the CPU."),
    threads: int = typer.Option(1, "--threads", help="Torch threads for the GP (1 is fastest for these matrix sizes on a busy CPU)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or log lines."),
    from_file: Path | None = typer.Option(
        None, "--from",
        help="Lead optimisation: improve each molecule of this file (.smi/.txt/.csv/.tsv) in its latent neighbourhood, "
        "keeping Tanimoto similarity (Morgan radius 2, unhashed counts) >= --min-similarity; a row per molecule in "
        "leads.csv, unencodable ones reported and counted as failures. Uses --budget, --batch-size, --beam-width.",
    ),
    min_similarity: float = typer.Option(0.4, "--min-similarity", min=0.0, max=1.0, help="With --from: the similarity threshold delta."),
    budget: int | None = typer.Option(
        None, "--budget", min=1,
        help="Oracle calls: the run stops when this many distinct strings have been scored, the starting pool's included "
        "(a repeat and an invalid proposal are free, as in PMO); the calls used are in summary.json. With --from: "
        "distinct molecules scored per starting molecule (default 100).",
    ),
) -> None:
    """Search the latent space for strings that maximise (or, for expression, minimise) a target."""
    if len(target) > 1:  # several targets: checked before anything is loaded or written
        from molks.optimize.multiobjective import check_target_names

        check_target_names(target)
        if from_file is not None:
            from molks.optimize.multiobjective import MultiObjectiveError

            raise MultiObjectiveError("--from (lead optimisation) takes one --target")
    if from_file is not None:
        from molks.cli.lead import run_leads

        run_leads(model=model, target=target[0], from_file=from_file, column=column, min_similarity=min_similarity,
                  budget=budget or 100, batch_size=batch_size, beam_width=beam_width, out=out, seed=seed,
                  resume=resume, device=device, threads=threads, quiet=quiet, target_timeout=target_timeout)  # fmt: skip
        return
    from molks.optimize.acquisition import AcquisitionConfig
    from molks.optimize.guard import open_target
    from molks.optimize.loop import OptimizeConfig, OptimizeError
    from molks.optimize.multiobjective import open_objectives
    from molks.optimize.surrogate import SurrogateConfig

    if not quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = OptimizeConfig(
        iterations=iterations if iterations is not None else 5 if budget is None else UNTIL_BUDGET,
        budget=budget,
        decodings=decodings,
        beam_width=DEFAULT_BEAM_WIDTH if beam_width is None else beam_width,
        pool_size=pool_size,
        seed=seed,
        heldout=heldout,
        threads=threads,
        target_timeout=target_timeout,
        surrogate=SurrogateConfig(kind=surrogate),
        acquisition=AcquisitionConfig(q=batch_size, region=region, strategy=strategy, restarts=restarts,
                                      restart_yield=restart_yield),
    )
    if out.exists() and not out.is_dir():
        raise OptimizeError(f"--out {out}: exists and is not a directory")
    # A function of yours: imported in its worker now.
    scorer = open_target(target[0], config.target_timeout) if len(target) == 1 else open_objectives(target, config.target_timeout)
    with scorer:
        _run(scorer, model, device, out, pool, column, resume, quiet, config)


def _run(
    scorer: TargetRunner | Objectives, model: str, device: str, out: Path, pool: Path | None, column: str | None, resume: bool,
    quiet: bool, config: OptimizeConfig,
) -> None:
    """Load the model, read the pool, run the loop and print the best strings."""
    import molks
    from molks.optimize.loop import (
        STATE_FILE,
        default_pool_file,
        file_sha256,
        read_pool,
    )
    from molks.optimize.loop import optimize as run_loop

    latent = molks.load(model, device=device)
    texts: list[str] = []
    resuming = resume and (out / STATE_FILE).exists()
    source_path = pool if pool is not None else default_pool_file(latent.run_dir)
    if not resuming:  # a resumed run has its pool in its state
        texts = read_pool(source_path, latent.domain, column=column)
    # Compared on --resume when a pool is named again: another file is refused, not ignored.
    pool_sha256 = file_sha256(source_path) if pool is not None or not resuming else None
    summary = run_loop(
        latent, texts, out, scorer, config, resume=resume, pool_source=str(source_path), pool_sha256=pool_sha256,
        progress=not quiet,
    )
    if "pareto_front" in summary:
        _echo_pareto(summary, out)
        return
    top = summary["top"][:3]
    typer.echo(
        f"{summary['valid_proposals']}/{summary['proposals']} valid proposals; "
        f"average valid score {summary['average_valid_score'] if summary['average_valid_score'] is None else round(summary['average_valid_score'], 3)}"
    )
    for item in top:
        typer.echo(f"{item['score']:.3f}\t{item['string']}")
    typer.echo(f"results in {out}")


def _echo_pareto(summary: dict, out: Path) -> None:
    """What a run of several targets prints: the reference point, the hypervolume, the front's best."""
    names = summary["targets"]
    ref = ", ".join(f"{n} {summary['reference_point'][n]:.4g}" for n in names)
    typer.echo(f"{summary['valid_proposals']}/{summary['proposals']} valid proposals; reference point: {ref} ({summary['reference_rule']})")
    hv = ", ".join(f"{v:.4g}" for v in summary["hypervolume_per_iteration"])
    typer.echo(f"hypervolume: pool {summary['pool_hypervolume']:.4g}; per iteration {hv or '-'}")
    typer.echo(f"Pareto front: {summary['pareto_size']} items ({summary['pareto_from_proposals']} from proposals)")
    typer.echo("\t".join([*names, "string"]))
    for item in summary["pareto_front"][:5]:
        typer.echo("\t".join([*(f"{item[n]:.3f}" for n in names), item["string"]]))
    typer.echo(f"results in {out}")


__all__ = ["app", "optimize"]
