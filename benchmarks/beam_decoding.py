"""Benchmark: greedy decoding vs beam search of width K (``molks.decoding``) on one model.

    python benchmarks/beam_decoding.py [--model moses] [--widths 1 2 4 8 16] [--n-samples 1000]
                                       [--n-held-out 1000] [--threads 1]

For each width K (1 is greedy decoding; K > 1 is ``LatentModel.decode(z, beam_width=K)``: the
beam's valid candidate whose own code is nearest z) it prints, for ``--n-samples`` latent points
of the model's prior (seed 0): the fraction decoded to a valid molecule, the fraction of distinct
ones among those, and the seconds per 1,000 codes; and for ``--n-held-out`` molecules of the MOSES
test set (seed 1, as the shipped model's evaluation): the fraction decoded back exactly (canonical
SMILES), and the fraction whose exact input is among the beam's candidates at all.

Reads data that is NOT bundled with molks: the MOSES test set, ``../shared/data/moses/test.csv.gz``
relative to the repository root (``--moses DIR`` elsewhere).
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_speed import MOSES, load, read_moses  # noqa: E402  (the benchmarks next to this one)
from train_eval import machine  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="moses", help="A run directory or a shipped model name.")
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--n-held-out", type=int, default=1000)
    parser.add_argument("--moses", type=Path, default=MOSES)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import molks
    from molks.evaluation import canonical_smiles

    model = molks.load(args.model)
    test = read_moses(args.moses / "test.csv.gz")
    held_out = random.Random(1).sample(test, args.n_held_out)
    codes, kept, _ = model.encode(held_out, errors="skip")
    targets = [canonical_smiles(held_out[i]) for i in kept]
    prior = model.sample_latent(args.n_samples, source="prior", seed=0)

    print(f"# {model!r}: {args.n_samples} prior samples, {len(kept)} MOSES test molecules")
    print("| beam width | valid prior samples | unique among valid | exact reconstruction | input among candidates | s / 1,000 codes |")
    print("|---|---|---|---|---|---|")
    for width in args.widths:
        started = time.perf_counter()
        samples = model.decode(prior, beam_width=width)
        per_thousand = 1000 * (time.perf_counter() - started) / len(prior)
        valid = [s for s in samples if s is not None and model.is_valid(s)]
        unique = len({canonical_smiles(s) for s in valid})
        exact = sum(canonical_smiles(s) == t for s, t in zip(model.decode(codes, beam_width=width), targets))
        beams = model.decode_beams(codes, width)
        found = sum(any(canonical_smiles(s) == t for s, _ in b if s is not None) for b, t in zip(beams, targets))
        print(f"| {width} | {len(valid) / len(samples):.1%} | {unique / max(len(valid), 1):.1%} | "
              f"{exact / len(targets):.1%} | {found / len(targets):.1%} | {per_thousand:.1f} |", flush=True)  # fmt: skip
    print(f"\nmachine: {machine(torch.device('cpu'))}; {load()}")
    print(f"command: python benchmarks/beam_decoding.py {shlex.join(argv if argv is not None else sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
