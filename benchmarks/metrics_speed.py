"""Speed of FCD and the MOSES metrics (``molks.metrics``): N generated against M reference molecules.

Reads data that is NOT bundled with molks: the MOSES test set, ``../shared/data/moses/test.csv.gz``
relative to the repository root (one column, header ``SMILES``; pass ``--moses DIR`` to read it
elsewhere). Two disjoint seeded random samples of it play the generated set (default 10,000) and
the reference (default 10,000), so the numbers also show what a perfect generator scores.

It prints the seconds of every step (RDKit features of each set, ChemNet of each set, then the
metrics that compare them), the wall time in all, the metric values, the machine, its load
average before and after, and the command. Steps of the RDKit part run in ``--processes``
worker processes; their seconds are summed over workers (CPU seconds), the wall time is not.

Run from the repository root::

    python benchmarks/metrics_speed.py [--n 10000] [--n-reference 10000] [--threads 1] [--processes 1]
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_eval import machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MOSES = REPO.parent / "shared" / "data" / "moses"


def read_moses(path: Path) -> list[str]:
    """The SMILES of a MOSES ``.csv.gz`` (header ``SMILES``, one column)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    return [line for line in lines[1:] if line]


def load() -> str:
    """The 1/5/15-minute load averages (other jobs on the machine slow every number down)."""
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def print_steps(generated: dict[str, float], reference: dict[str, float], compare: dict[str, float]) -> None:
    """One table row per step: seconds on the generated set, on the reference, and comparing them."""
    print("| step | generated s | reference s | feeds |")
    print("|---|---|---|---|")
    feeds = {
        "parse": "all (canonical SMILES, valid)", "fingerprints": "SNN, IntDiv", "fragments": "Frag",
        "scaffolds": "Scaf", "properties": "logP/SA/QED/weight", "filters": "Filters", "chemnet": "FCD",
    }  # fmt: skip
    for step, what in feeds.items():
        g, r = generated.get(step), reference.get(step)
        print(f"| {step} | {'-' if g is None else f'{g:.1f}'} | {'-' if r is None else f'{r:.1f}'} | {what} |")
    for step, seconds in compare.items():
        print(f"| {step} | {seconds:.1f} | | (both sets) |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moses", type=Path, default=MOSES, help="folder with test.csv.gz")
    parser.add_argument("--n", type=int, default=10_000, help="generated molecules")
    parser.add_argument("--n-reference", type=int, default=10_000, help="reference molecules")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (ChemNet, Tanimoto products)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes for the RDKit features")
    parser.add_argument("--no-fcd", action="store_true", help="skip ChemNet (FCD)")
    parser.add_argument("--png", type=Path, default=None, help="also draw the property histograms here")
    args = parser.parse_args(argv)
    command = "python " + shlex.join(["benchmarks/metrics_speed.py", *(sys.argv[1:] if argv is None else argv)])
    path = args.moses / "test.csv.gz"
    if not path.is_file():
        print(f"error: {path} not found; the MOSES split is expected in ../shared/data/moses relative to the "
              "repository root (or pass --moses DIR)", file=sys.stderr)  # fmt: skip
        return 2
    torch.set_num_threads(args.threads)
    from molks.metrics import distribution_metrics, molecule_set

    smiles = read_moses(path)
    if args.n + args.n_reference > len(smiles):
        print(f"error: {path} holds {len(smiles)} molecules, fewer than {args.n} + {args.n_reference}", file=sys.stderr)
        return 2
    random.Random(args.seed).shuffle(smiles)
    generated, reference = smiles[: args.n], smiles[args.n : args.n + args.n_reference]
    print(f"$ {command}\n{machine(torch.device('cpu'))}\nbefore: {load()}")

    fcd = not args.no_fcd
    started = time.perf_counter()
    ref = molecule_set(reference, fcd=fcd, processes=args.processes, progress=True, description="reference")
    after_reference = time.perf_counter()
    gen = molecule_set(generated, filters=True, fcd=fcd, processes=args.processes, progress=True, description="generated")
    after_generated = time.perf_counter()
    compare: dict[str, float] = {}
    metrics = distribution_metrics(gen, ref, fcd=fcd, png=args.png, progress=True, timings=compare)
    for name in ref.seconds.keys() | gen.seconds.keys():
        compare.pop(name, None)  # distribution_metrics adds the sets' own steps: shown in their columns
    finished = time.perf_counter()

    print(f"after: {load()}\n")
    print(f"{args.n} generated vs {args.n_reference} reference molecules (MOSES test, disjoint seeded samples, "
          f"seed {args.seed}); {args.processes} RDKit process(es), {args.threads} torch thread(s)\n")  # fmt: skip
    print_steps(gen.seconds, ref.seconds, compare)
    print(f"\nwall: reference {after_reference - started:.1f} s, generated {after_generated - after_reference:.1f} s, "
          f"comparison {finished - after_generated:.1f} s; total {finished - started:.1f} s\n")  # fmt: skip
    for name, value in metrics.items():
        print(f"{name:<20} {value if not isinstance(value, float) else f'{value:.4f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
