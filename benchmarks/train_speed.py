"""Benchmark: molecules per second of one training step, per network preset and thread count.

    python benchmarks/train_speed.py [--presets small,paper] [--threads 1,2] [--batch-size 128]
        [--steps 8] [--data FILE]

Each row times full optimisation steps (forward, masked loss, KS/CV, backward, AdamW) of the gmm
model on random batches of the embedded MOSES sample (``data/moses_sample.smi``, 20,000 molecules,
so no ``../shared`` is needed), twice on the same batches and the same initial weights:

- ``padded``: every batch runs over all L steps (as molks did before issue #9),
- ``cut``: the decoder and the loss stop after the batch's longest derivation
  (``Autoencoder.trim``; the steps after it are padding whose masked loss is exactly 0).

It checks that both give the same loss terms on every batch (the printed max difference) and
prints the median molecules per second of the timed steps (the first two are warm-up), the
machine's load and the command. Batches are not sorted by length: KS and CV are statistics of a
batch, so length-sorted batches would be samples of another distribution.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="small,paper")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=8, help="timed steps per setting (after 2 warm-up steps)")
    p.add_argument("--data", type=Path, default=ROOT / "data" / "moses_sample.smi")
    return p.parse_args(argv)


def time_steps(model: torch.nn.Module, batches: list[torch.Tensor], cut: bool) -> tuple[float, list[dict[str, float]]]:
    """Median seconds per step and the loss terms of each batch (weights restored afterwards)."""
    from molks.training.trainer import TrainConfig, make_optimizer, train_step

    initial = {k: v.clone() for k, v in model.state_dict().items()}
    if not cut:
        model.trim = lambda x: x  # the whole padded length, as before issue #9
    optimizer = make_optimizer(model, TrainConfig())
    seconds, terms = [], []
    for x in batches:
        started = time.perf_counter()
        result = train_step(model, x, optimizer)
        seconds.append(time.perf_counter() - started)
        terms.append({k: float(v.detach()) for k, v in result.items()})
    if not cut:
        del model.trim
    model.load_state_dict(initial)
    return statistics.median(seconds[2:]), terms


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from molks.dataset import load_dataset
    from molks.grammar import Grammar
    from molks.model.autoencoder import Autoencoder, ModelConfig
    from molks.model.networks import network_config

    grammar = Grammar.load("smiles")
    data = torch.from_numpy(load_dataset(args.data, grammar, progress=False, processes=1).padded())
    generator = torch.Generator().manual_seed(0)
    batches = [data[torch.randint(0, len(data), (args.batch_size,), generator=generator)].long() for _ in range(args.steps + 2)]
    print(f"{len(data)} molecules of {args.data.name}, sequences of {data.shape[1]} steps, batch {args.batch_size}\n")
    print("| preset | threads | padded mol/s | cut mol/s | speed-up | max loss difference |")
    print("|---|---|---|---|---|---|")
    for preset in args.presets.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            network = network_config(preset, "molecules", grammar.n_outputs, data.shape[1])
            config = ModelConfig(network, "gmm", args.batch_size, {"n_components": 10, "sigma": 1.0}, grammar_hash=grammar.content_hash)
            model = Autoencoder(config, grammar)
            padded, padded_terms = time_steps(model, batches, cut=False)
            cut, cut_terms = time_steps(model, batches, cut=True)
            diff = max(abs(a[k] - b[k]) for a, b in zip(padded_terms, cut_terms) for k in ("total", "rec"))
            print(f"| {preset} | {threads} | {args.batch_size / padded:.0f} | {args.batch_size / cut:.0f} "
                  f"| {padded / cut:.2f}x | {diff:.2g} |", flush=True)
    print(f"\nMachine: {os.cpu_count()} cores, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"Command: python {shlex.join(['benchmarks/train_speed.py', *(sys.argv[1:] if argv is None else argv)])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
