"""``molks optimize --from FILE --min-similarity D``: lead optimisation, the command line's side.

A thin adapter over :func:`molks.optimize.lead.optimize_leads`: read the starting molecules (every
line, the invalid ones too, so that they are reported and counted), run, print the outcome. The
target is opened through :func:`molks.optimize.guard.open_target`, as ``molks optimize`` opens it: a
function of yours is imported in its worker process before anything else is done.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

__all__ = ["run_leads"]


def run_leads(
    *,
    model: str,
    target: str,
    from_file: Path,
    column: str | None,
    min_similarity: float,
    budget: int,
    batch_size: int,
    beam_width: int | None,
    out: Path,
    seed: int,
    resume: bool,
    device: str,
    threads: int,
    quiet: bool,
    target_timeout: float | None = None,
) -> None:
    """Run a lead optimisation of the molecules of ``from_file`` and print its outcome
    (``target_timeout``: ``--target-timeout``; None: the guard's default; ``beam_width`` None:
    :class:`~molks.optimize.lead.LeadConfig`'s default, greedy, not ``molks optimize``'s beam; 0: greedy too)."""
    import molks
    from molks.domain import MOLECULES
    from molks.optimize.guard import DEFAULT_TIMEOUT, open_target
    from molks.optimize.lead import LeadConfig, LeadError, optimize_leads

    if not quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = LeadConfig(
        min_similarity=min_similarity, budget=budget, batch_size=batch_size, seed=seed, threads=threads,
        beam_width=LeadConfig.beam_width if beam_width is None else max(1, beam_width),
        target_timeout=DEFAULT_TIMEOUT if target_timeout is None else target_timeout,
    )  # fmt: skip
    if out.exists() and not out.is_dir():
        raise LeadError(f"--out {out}: exists and is not a directory")
    with open_target(target, config.target_timeout) as scorer:  # a function of yours: imported in its worker now
        items = MOLECULES.read_items(from_file, column)
        latent = molks.load(model, device=device)
        summary = optimize_leads(
            latent, [text for _, text in items], out, scorer, config, resume=resume, source=str(from_file),
            progress=not quiet,
        )  # fmt: skip
    for failure in summary["not_encoded"]:
        typer.echo(f"{from_file}:{items[failure['index']][0]}: {failure['reason']}", err=True)
    everyone, successes = summary["improvement_all"], summary["improvement_successes"]
    typer.echo(
        f"{summary['successes']}/{summary['molecules']} molecules improved at similarity >= {min_similarity} "
        f"({summary['success_rate']:.1%}); mean improvement {everyone['mean']:.3f} +- {everyone['sd']:.3f} "
        f"(failures as 0)"
        + (f", {successes['mean']:.3f} +- {successes['sd']:.3f} over the successes" if successes["mean"] is not None else "")
    )
    failed = summary["target_failures"]
    if failed["calls"]:
        typer.echo(f"the target failed {failed['calls']} calls, their molecules scored as failed (candidates.csv, "
                   f"column failure); the last: {failed['last']}", err=True)  # fmt: skip
    typer.echo(f"{len(summary['not_encoded'])} not encoded; results in {out}")
