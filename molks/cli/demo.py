"""``molks demo``: load (or train) a model, evaluate it, optimise logP, and write a small report.

Register on the main app with ``app.command("demo")(demo_command)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from molks.cli.common import fail_cleanly
from molks.decoding import DEFAULT_BEAM_WIDTH
from molks.models import DEFAULT_MODEL

__all__ = ["demo_command"]


@fail_cleanly
def demo_command(
    out: Annotated[Path, typer.Option(help="Report directory (a rerun replaces an earlier demo's files there).")] = Path("runs/demo"),
    model: Annotated[Optional[str], typer.Option(help=f"A shipped model name or a run directory from molks train (default: {DEFAULT_MODEL}).")] = None,
    train: Annotated[bool, typer.Option("--train", help="Train a small model on the embedded MOSES sample first (adds ~5-10 min).")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="Tiny settings (under a minute): checks that everything works.")] = False,
    n_samples: Annotated[Optional[int], typer.Option(min=1, help="Prior samples to evaluate (default 300; quick 50).")] = None,
    iterations: Annotated[Optional[int], typer.Option(min=1, help="Optimisation rounds (default 2).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", "-q", min=1, help="Proposals per round (default 20; quick 5).")] = None,
    beam_width: Annotated[Optional[int], typer.Option(min=0, help=f"Beam search width that decodes each proposal, as molks optimize does (default {DEFAULT_BEAM_WIDTH}; 0: greedily plus 100 sampled decodings, the Grammar VAE protocol).")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Training epochs with --train (default 2; quick 1).")] = None,
    train_size: Annotated[Optional[int], typer.Option(min=2, help="Molecules to train on with --train (default 10000; quick 400).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every step.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, auto, cuda or cuda:N.")] = "cpu",
    threads: Annotated[int, typer.Option(min=1, help="Torch threads (1 avoids oversubscribing a shared CPU, which slows torch many-fold).")] = 1,
) -> None:
    """Show molks working end to end: model, evaluation, logP optimisation, and a report (JSON + PNGs)."""
    import json

    from molks.demo import FULL, QUICK, run_demo, with_overrides
    from molks.devices import resolve_device

    if train and model is not None:
        raise typer.BadParameter("--train trains a new model; leave out --model", param_hint="--model")
    resolve_device(device)  # a typo is one line before anything is written
    import torch

    torch.set_num_threads(threads)
    settings = with_overrides(
        QUICK if quick else FULL, n_samples=n_samples, iterations=iterations, q=batch_size, beam_width=beam_width,
        epochs=epochs, train_size=train_size,
    )  # fmt: skip
    report_dir = run_demo(
        out, model=model or DEFAULT_MODEL, train=train, quick=quick, settings=settings, seed=seed, device=device, progress=None
    )
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    for note in report["notes"]:
        typer.echo(f"note: {note}", err=True)
    best = report["optimization"]["best"][:3]
    if best:
        typer.echo("best molecules found (penalised logP):", err=True)
        for item in best:
            typer.echo(f"  {item['score']:7.3f}  {item['string']}", err=True)
    typer.echo(f"report: {report_dir / 'report.json'}", err=True)
    typer.echo(str(report_dir))
