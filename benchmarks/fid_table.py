"""The "Shape your Space" FID table for molecules: FCD and validity of four kinds of output per run.

The paper (Saseendran et al., NeurIPS 2021, following Ghosh et al., ICLR 2020) judges a latent
space by the FID of samples from the prior (Samp.), samples from a GMM fitted after training
(GMM), reconstructions of held-out data (Rec.) and midpoints of interpolations between held-out
pairs (Inter.). For molecules, FID becomes the Fréchet ChemNet Distance (FCD, ``molks.metrics``,
ChemNet from the ``fcd`` package) against a reference sample of the MOSES test set; each cell
also gives the validity of those outputs (FCD is over the valid ones).

Give one run directory per regulariser (or shipped model names), trained on the same data and
budget, e.g. ``runs/gmm runs/vae runs/rae runs/wae runs/cv-vae``. For every run:

* Samp.: ``--n`` latent points from the model's prior, decoded greedily;
* GMM: ``--n`` points from the ex-post GMM (``ex_post_gmm.safetensors``; "-" without one);
* Rec.: the greedy decodings of ``--n`` held-out molecules' codes (those the model can encode);
* Inter.: decodings of ``(z_i + z_j) / 2`` for ``--n`` held-out pairs (i, next i in a seeded order).

Reads data that is NOT bundled with molks: the MOSES test set, ``../shared/data/moses/test.csv.gz``
relative to the repository root (``--moses DIR`` elsewhere). Two disjoint seeded samples of it are
the reference (``--n-reference``) and the held-out molecules (``--n``); pass ``--held-out FILE``
to use other held-out molecules. Prints a Markdown table, the machine and the command.

Run from the repository root::

    python benchmarks/fid_table.py RUN [RUN ...] [--n 10000] [--n-reference 10000] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics_speed import MOSES, load, machine, read_moses  # noqa: E402  (the benchmark next to this one)

KINDS = ("Samp.", "GMM", "Rec.", "Inter.")


def fcd_and_validity(texts: list[str | None], reference: tuple[np.ndarray, np.ndarray]) -> tuple[float | None, float]:
    """(FCD of the valid molecules against the reference statistics or None below 2, valid / all)."""
    from molks.evaluation import canonical_smiles
    from molks.metrics import chemnet_activations, chemnet_statistics, frechet_distance

    valid = [s for s in map(canonical_smiles, texts) if s is not None]
    validity = len(valid) / len(texts) if texts else 0.0
    if len(valid) < 2:
        return None, validity
    return frechet_distance(chemnet_statistics(chemnet_activations(valid, progress=True)), reference), validity


def interpolation_midpoints(codes: torch.Tensor, seed: int) -> torch.Tensor:
    """Midpoints [N, D] of N held-out pairs: code i with the next code in a seeded random order."""
    order = torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)  # each code's successor in the cycle through the order
    return (codes + codes[partner]) / 2


def outputs(run: str, held_out: list[str], n: int, seed: int) -> tuple[str, str, dict[str, list[str | None] | None]]:
    """(regulariser, how many held-out molecules encode, the decoded molecules of each kind) of one
    run; the GMM kind is None for a run without an ex-post GMM."""
    import molks
    model = molks.load(run, device="cpu")
    codes, kept, _ = model.encode(held_out, errors="skip")
    decoded = {
        "Samp.": model.decode(model.sample_latent(n, source="prior", seed=seed)),
        "GMM": None if model.ex_post is None else model.decode(model.sample_latent(n, source="ex-post", seed=seed)),
        "Rec.": model.decode(codes),
        "Inter.": model.decode(interpolation_midpoints(codes, seed)),
    }
    return model.model.config.regularizer, f"{len(kept)}/{len(held_out)} encodable", decoded


def cell(value: tuple[float | None, float] | None) -> str:
    if value is None:
        return "- | -"
    fcd, validity = value
    return f"{'-' if fcd is None else f'{fcd:.2f}'} | {100 * validity:.1f}%"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories (one per regulariser) or shipped model names")
    parser.add_argument("--moses", type=Path, default=MOSES, help="folder with test.csv.gz")
    parser.add_argument("--held-out", type=Path, default=None, help="held-out SMILES (default: a MOSES test sample)")
    parser.add_argument("--n", type=int, default=10_000, help="samples per kind and held-out molecules")
    parser.add_argument("--n-reference", type=int, default=10_000, help="MOSES test molecules of the reference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    command = "python " + shlex.join(["benchmarks/fid_table.py", *(sys.argv[1:] if argv is None else argv)])
    path = args.moses / "test.csv.gz"
    if not path.is_file():
        print(f"error: {path} not found (pass --moses DIR)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    from molks.evaluation import canonical_smiles
    from molks.metrics import chemnet_activations, chemnet_statistics

    started = time.perf_counter()
    smiles = read_moses(path)
    random.Random(args.seed).shuffle(smiles)
    reference = [s for s in map(canonical_smiles, smiles[: args.n_reference]) if s is not None]
    if args.held_out is not None:
        held_out = [line.split()[0] for line in args.held_out.read_text().splitlines() if line.strip()][: args.n]
    else:
        held_out = smiles[args.n_reference : args.n_reference + args.n]
    reference_stats = chemnet_statistics(chemnet_activations(reference, progress=True))  # once, for every run

    rows = []
    for run in args.runs:
        t0 = time.perf_counter()
        regularizer, note, decoded = outputs(run, held_out, args.n, args.seed)
        scores = {kind: None if decoded[kind] is None else fcd_and_validity(decoded[kind], reference_stats) for kind in KINDS}
        rows.append((run, regularizer, note, scores))
        print(f"[{run}] done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    print(f"\nFCD (lower is better) and validity against {len(reference)} MOSES test molecules; {args.n} outputs "
          f"per kind; held-out: {args.held_out or f'{len(held_out)} other MOSES test molecules'}; seed {args.seed}\n")  # fmt: skip
    print("| run | regulariser | " + " | ".join(f"{k} FCD | {k} valid" for k in KINDS) + " | held-out |")
    print("|---|---|" + "---|---|" * len(KINDS) + "---|")
    for run, regularizer, note, scores in rows:
        print(f"| {run} | {regularizer} | " + " | ".join(cell(scores[k]) for k in KINDS) + f" | {note} |")
    print(f"\nMachine: {machine(torch.device('cpu'))}; {load()}")
    print(f"Total {time.perf_counter() - started:.0f} s")
    print(f"Command: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
