"""Speed of FCD and the MOSES metrics (``molks.metrics``): N generated against M reference molecules.

Reads data that is NOT bundled with molks: the MOSES test set, ``../shared/data/moses/test.csv.gz``
relative to the repository root (one column, header ``SMILES``; pass ``--moses DIR`` to read it
elsewhere). Two disjoint seeded random samples of it play the generated set (default 10,000) and
the reference (default 10,000), so the numbers also show what a perfect generator scores.

Three phases, each timed (wall seconds, and CPU seconds of this process, all its threads):

1. the reference prepared from its SMILES ("cold") and written to the metrics cache (a fresh
   temporary directory unless ``--cache-dir`` names one), then read back from it ("warm");
2. the generated set prepared (RDKit features, MOSES filters, ChemNet);
3. the metrics that compare the two.

"cold total" = 1 (prepared) + 2 + 3, what a first evaluation against a reference costs;
"warm total" = 1 (read back) + 2 + 3, every later evaluation against the same reference.
It prints the CPU seconds of every step, the machine, the load average before and after, the
metric values and the command. With ``--processes 1`` (the default) all the work is in this
process: the RDKit steps in the main thread, ChemNet in a background thread beside it, so on two
idle cores a set takes about max(RDKit CPU, ChemNet CPU); the script prints that estimate from the
measured CPU seconds, which other jobs on the machine inflate far less than the wall time.
With ``--processes N`` the RDKit steps run in N worker processes, whose CPU time is in the steps
table but not in the process CPU column.

Run from the repository root::

    python benchmarks/metrics_speed.py [--n 10000] [--n-reference 10000] [--threads 1] [--processes 1]
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_eval import machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MOSES = REPO.parent / "shared" / "data" / "moses"
T = TypeVar("T")


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


def cpu_seconds() -> float:
    """CPU seconds of this process so far, every thread (the ChemNet thread, torch's threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def print_steps(generated: dict[str, float], reference: dict[str, float], compare: dict[str, float]) -> None:
    """One table row per step: CPU seconds on the generated set, on the reference, and comparing them."""
    print("| step | generated CPU s | reference CPU s | feeds |")
    print("|---|---|---|---|")
    feeds = {
        "parse": "all (canonical SMILES, valid)", "fingerprints": "SNN, IntDiv", "fragments": "Frag",
        "scaffolds": "Scaf", "properties": "logP/SA/QED/weight", "filters": "Filters", "chemnet": "FCD (background thread)",
    }  # fmt: skip
    for step, what in feeds.items():
        g, r = generated.get(step), reference.get(step)
        print(f"| {step} | {'-' if g is None else f'{g:.1f}'} | {'-' if r is None else f'{r:.1f}'} | {what} |")
    for step, seconds in compare.items():
        print(f"| {step} | {seconds:.1f} | | (both sets) |")


def idle_estimate(steps: dict[str, float]) -> float:
    """Wall seconds a set would take on two idle cores with one RDKit process: its RDKit steps run
    in the main thread while ChemNet runs in the other, so the longer of the two."""
    rdkit = sum(v for k, v in steps.items() if k != "chemnet")
    return max(rdkit, steps.get("chemnet", 0.0))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moses", type=Path, default=MOSES, help="folder with test.csv.gz")
    parser.add_argument("--n", type=int, default=10_000, help="generated molecules")
    parser.add_argument("--n-reference", type=int, default=10_000, help="reference molecules")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (ChemNet, Tanimoto products)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes for the RDKit features")
    parser.add_argument("--no-fcd", action="store_true", help="skip ChemNet (FCD)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="metrics cache for the reference (default: a fresh temporary directory, so phase 1 is cold)")  # fmt: skip
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
    with tempfile.TemporaryDirectory(prefix="molks-metrics-cache-") as scratch:
        cache = args.cache_dir if args.cache_dir is not None else Path(scratch)
        clock: dict[str, tuple[float, float]] = {}  # phase -> (wall s, process CPU s)

        def timed(phase: str, job: Callable[[], T]) -> T:
            wall, cpu = time.perf_counter(), cpu_seconds()
            value = job()
            clock[phase] = (time.perf_counter() - wall, cpu_seconds() - cpu)
            return value

        ref = timed("reference prepared", lambda: molecule_set(reference, fcd=fcd, processes=args.processes,
                                                               progress=True, description="reference", cache=cache))  # fmt: skip
        warm = timed("reference from cache", lambda: molecule_set(reference, fcd=fcd, cache=cache))
        gen = timed("generated prepared", lambda: molecule_set(generated, filters=True, fcd=fcd, processes=args.processes,
                                                                progress=True, description="generated"))  # fmt: skip
        compare: dict[str, float] = {}
        metrics = timed("comparison", lambda: distribution_metrics(gen, warm, fcd=fcd, png=args.png, progress=True,
                                                                     timings=compare))  # fmt: skip
    for name in ref.seconds.keys() | gen.seconds.keys() | warm.seconds.keys():
        compare.pop(name, None)  # distribution_metrics adds the sets' own steps: shown in their columns
    if ref.cached or not warm.cached:
        print("warning: the reference was not built and then read back from the cache", file=sys.stderr)

    print(f"after: {load()}\n")
    print(f"{args.n} generated vs {args.n_reference} reference molecules (MOSES test, disjoint seeded samples, "
          f"seed {args.seed}); {args.processes} RDKit process(es), {args.threads} torch thread(s)\n")  # fmt: skip
    print_steps(gen.seconds, ref.seconds, compare)
    print("\n| phase | wall s | process CPU s |\n|---|---|---|")
    for phase, (wall, cpu) in clock.items():
        print(f"| {phase} | {wall:.2f} | {cpu:.2f} |")
    common = clock["generated prepared"][0] + clock["comparison"][0]
    print(f"\ncold total (reference prepared): {clock['reference prepared'][0] + common:.1f} s wall; "
          f"warm total (reference from cache): {clock['reference from cache'][0] + common:.1f} s wall")  # fmt: skip
    if args.processes == 1:
        comparison_cpu = clock["comparison"][1]
        gen_idle, ref_idle = idle_estimate(gen.seconds), idle_estimate(ref.seconds)
        print(f"idle 2-core estimate from the CPU seconds: generated {gen_idle:.1f} s, reference {ref_idle:.1f} s, "
              f"comparison {comparison_cpu:.1f} s (one thread): cold {ref_idle + gen_idle + comparison_cpu:.1f} s, "
              f"warm {clock['reference from cache'][0] + gen_idle + comparison_cpu:.1f} s\n")  # fmt: skip
    for name, value in metrics.items():
        print(f"{name:<20} {value if not isinstance(value, float) else f'{value:.4f}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
