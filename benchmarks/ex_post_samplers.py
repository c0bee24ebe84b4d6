"""Latent samplers compared on one run (issue 17): the prior against densities fitted on the codes.

    python benchmarks/ex_post_samplers.py RUN --train moses-250k.smi --reference moses-test-5k.smi
        [--codes-from FILE] [--n-codes 20000] [--n 5000] [--bandwidth 0.3 0.5 0.7] [--gmm full:10 diag:100]
        [--between 0.3 0.5] [--neighbours 10]

Samplers, each drawing ``--n`` points decoded greedily (``--beam-width 8``: as ``molks sample`` decodes):

* ``prior``: the run's GMM prior;
* ``gmm COV:K``: a K-component Gaussian mixture with COV covariances fitted by scikit-learn's EM on
  the codes of the first ``--n-codes`` molecules of ``--train`` (the ex-post GMM of the RAE paper);
* ``kde h``: the codes' kernel density with an isotropic Gaussian kernel of sd h: a random code of
  those molecules plus N(0, h^2) in every dimension (an equal-weight mixture with one component per
  code).
* ``between h``: a point between two neighbouring codes plus N(0, h^2): a random code, one of its
  ``--neighbours`` nearest codes (Euclidean), a uniform t in ``molks.model.between.BETWEEN_RANGE``
  ([0.4, 0.6]; [0.25, 0.75] before 2026-12-03 afternoon) along the segment. Its
  samples lie where no single code's molecule is, so they should copy less than a kernel of the
  same sd (``molks.model.between``, what ``molks sample`` draws by default).

For each: the fraction valid, unique among the valid, novel (not in the whole ``--train`` file, by
canonical SMILES; give MOSES's whole training set, ``--split train --n 1584663``, for MOSES's
novelty), for a kernel density the fraction of distinct valid samples that are one of the
molecules whose codes it holds (copies; they are MOSES training molecules too), and the FCD of the valid ones to ``--reference`` (``benchmarks/moses_subset.py
--split test --n 5000 --seed 2``, which reads ``../shared/data/moses``; the training file by
``--split train --n 250000 --seed 0``). One torch thread; prints a Markdown table and, with
``--csv FILE``, appends one row per sampler.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from molks.model.between import BETWEEN_NEIGHBOURS  # noqa: E402
from fid_table import fcd_and_validity  # noqa: E402
from metrics_speed import machine  # noqa: E402


def kde_sample(codes: torch.Tensor, bandwidth: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """n points [n, D]: a uniformly chosen code of ``codes`` [N, D] plus N(0, bandwidth^2 I)."""
    idx = torch.randint(len(codes), (n,), generator=generator)
    return codes[idx] + bandwidth * torch.randn(n, codes.shape[1], generator=generator)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory or a shipped model name")
    parser.add_argument("--train", type=Path, required=True, help="the run's training molecules, one SMILES a line")
    parser.add_argument("--reference", type=Path, required=True, help="FCD reference molecules, one SMILES a line")
    parser.add_argument("--codes-from", type=Path, help="fit the samplers on these molecules' codes "
                        "(default: --train; a run's validation.smi holds molecules it was not trained on)")
    parser.add_argument("--n-codes", type=int, default=20000)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--bandwidth", type=float, nargs="*", default=[0.3, 0.5, 0.7])
    parser.add_argument("--gmm", nargs="*", default=["full:10", "diag:100"], help="COV:K ex-post mixtures")
    parser.add_argument("--between", type=float, nargs="*", default=[], help="kernel sds of the between-codes sampler")
    parser.add_argument("--neighbours", type=int, default=BETWEEN_NEIGHBOURS, help="the between-codes sampler's k nearest codes")
    parser.add_argument("--beam-width", type=int, default=1, help="decode by a beam search of this width "
                        "(molks sample's decoding is 8); 1: greedily")
    parser.add_argument("--no-prior", action="store_true")
    parser.add_argument("--floor", type=Path, help="also the FCD of the first --n molecules of this file not in "
                        "--reference (e.g. --split test --n 5200 --seed 3): the floor at this sample size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import molks
    from molks.chemistry import canonical_smiles
    from molks.metrics import chemnet_activations, chemnet_statistics
    from molks.model.between import BetweenCodes
    from molks.model.regularizers import fit_ex_post_gmm

    started = time.perf_counter()
    train_lines = args.train.read_text().split()
    train_set = {s for s in map(canonical_smiles, train_lines) if s}
    reference = [s for s in map(canonical_smiles, args.reference.read_text().split()) if s]
    stats = chemnet_statistics(chemnet_activations(reference))
    model = molks.load(args.run)
    fitted_on = args.codes_from.read_text().split() if args.codes_from else train_lines
    codes = model.encode(fitted_on[: args.n_codes], errors="skip").codes
    fitted_set = {s for s in map(canonical_smiles, fitted_on[: args.n_codes]) if s}
    print(f"# {len(train_set)} training molecules, {len(codes)} codes, reference {len(reference)} "
          f"({time.perf_counter() - started:.0f}s)", flush=True)  # fmt: skip

    samplers: list[tuple[str, object]] = [] if args.no_prior else [("prior", None)]
    samplers += [(f"gmm {spec}", spec) for spec in args.gmm] + [(f"kde {h}", h) for h in args.bandwidth]
    samplers += [(f"between {h}", h) for h in args.between]
    rows = []
    print("| sampler | valid | unique | novel | copies of a kernel's molecule | FCD | seconds |\n|---|---|---|---|---|---|---|",
          flush=True)  # fmt: skip
    for name, setting in samplers:
        t0 = time.perf_counter()
        generator = torch.Generator().manual_seed(args.seed)
        if name == "prior":
            z = model.sample_latent(args.n, source="prior", seed=args.seed)
        elif name.startswith("gmm"):
            covariance, k = str(setting).split(":")
            z = fit_ex_post_gmm(codes, n_components=int(k), covariance=covariance, seed=args.seed).sample(
                args.n, generator=generator
            )
        elif name.startswith("between"):
            z = BetweenCodes(codes, float(setting), args.neighbours).sample(args.n, generator)
        else:
            z = kde_sample(codes, float(setting), args.n, generator)
        valid = [s for s in map(canonical_smiles, model.decode(z.float(), beam_width=args.beam_width)) if s]
        distinct = set(valid)
        fcd = fcd_and_validity(valid, stats)[0]
        copies = len(distinct & fitted_set) / max(1, len(distinct)) if name.startswith(("kde", "between")) else None
        row = {
            "run": args.run, "sampler": name, "n": args.n, "beam_width": args.beam_width, "n_codes": len(codes), "centre_copies": copies,
            "codes_from": (args.codes_from or args.train).name,
            "valid": len(valid) / args.n, "unique": len(distinct) / max(1, len(valid)),
            "novel": len(distinct - train_set) / max(1, len(distinct)), "fcd": fcd,
            "seconds": round(time.perf_counter() - t0),
        }  # fmt: skip
        rows.append(row)
        shown_copies = "-" if copies is None else f"{copies:.3f}"
        print(f"| {name} | {row['valid']:.3f} | {row['unique']:.3f} | {row['novel']:.3f} | {shown_copies} | "
              f"{fcd:.2f} | {row['seconds']} |", flush=True)  # fmt: skip
    if args.floor:
        others = [s for s in map(canonical_smiles, args.floor.read_text().split()) if s and s not in set(reference)]
        floor = fcd_and_validity(others[: args.n], stats)[0]
        rows.append({**rows[-1], "sampler": f"floor: {min(args.n, len(others))} other test molecules", "valid": 1.0,
                     "unique": None, "novel": None, "fcd": floor, "seconds": None})  # fmt: skip
        print(f"| floor ({min(args.n, len(others))} other MOSES test molecules) | - | - | - | - | {floor:.2f} | - |")
    if args.csv:
        new = not args.csv.exists()
        with args.csv.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            if new:
                writer.writeheader()
            writer.writerows(rows)
    print(f"\n{machine(torch.device('cpu'))}\ncommand: python benchmarks/ex_post_samplers.py {' '.join(argv or sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
