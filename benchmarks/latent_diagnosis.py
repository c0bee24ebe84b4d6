"""Where a latent space decodes well and where it does not: the sample-quality diagnosis of issue 17.

For one or more runs (or shipped model names) it decodes, greedily, ``--n`` codes of each kind:

* held-out codes: the codes of ``--n`` MOSES test molecules (those the model can encode);
* held-out codes + N(0, s^2) in every dimension, for each ``--noise`` s (is the decoder right
  *between* the codes?);
* prior samples and ex-post GMM samples (does the prior land where the data is?);
* midpoints of two held-out codes (the notebooks' interpolations);

and reports for each: the fraction of valid molecules, the fraction equal to the input molecule
(where there is one), the FCD of the valid ones to ``--n-reference`` other MOSES test molecules, and
the median distance from each code to the nearest code of the reference molecules. The FCD floor
is the FCD of ``--n`` held-out *molecules* themselves to the same reference: no model can do better
at this sample size, so every FCD is to be read against it.

``--checkpoint`` judges ``checkpoints/last.safetensors`` (the weights the run holds now, also in the
middle of an epoch) instead of the best weights, so that a running training can be followed; with
``--csv FILE`` each run appends one row (run, epoch, batches, every number) to FILE: a learning curve.

Reads data that is NOT bundled with molks: the MOSES test set ``../shared/data/moses/test.csv.gz``
(``--moses DIR`` elsewhere). The held-out and reference molecules default to the seeded subsets the
shipped model's evaluation used (``benchmarks/moses_subset.py --split test --n 1000 --seed 1`` and
``--n 5000 --seed 2``); ``--held-out FILE`` and ``--reference FILE`` take others. Prints a Markdown
table, the machine, its load and the command; ``--json FILE`` writes everything.

Run from the repository root::

    python benchmarks/latent_diagnosis.py moses [RUN ...] [--n 1000] [--n-reference 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fid_table import fcd_and_validity, interpolation_midpoints  # noqa: E402
from metrics_speed import MOSES, load, machine  # noqa: E402
from train_eval import read_subset  # noqa: E402

NOISE_SCALES = (0.1, 0.25, 0.5, 1.0)


def canonical_all(texts: Sequence[str | None]) -> list[str | None]:
    from molks.evaluation import canonical_smiles

    return [canonical_smiles(t) for t in texts]


def nearest_distance(codes: torch.Tensor, reference: torch.Tensor, exclude_self: bool = False) -> float:
    """Median over ``codes`` [N, D] of the Euclidean distance to the nearest of ``reference`` [M, D]."""
    d = torch.cdist(codes.float(), reference.float())
    if exclude_self:
        d.fill_diagonal_(float("inf"))
    return float(d.min(dim=1).values.median())


def load_model(run: str, checkpoint: bool) -> tuple[Any, dict[str, Any]]:
    """(the loaded LatentModel, where its weights came from: file, epoch, batches reached)."""
    import molks
    from molks.training.checkpoint import load_checkpoint

    model = molks.load(run, device="cpu")
    if not checkpoint:
        _, meta, _ = load_checkpoint(model.run_dir / "model.safetensors")
        return model, {"weights": "model.safetensors", "epoch": meta.get("epoch"), "batches": None,
                       "training_minutes": None}  # fmt: skip
    state, meta, _ = load_checkpoint(model.run_dir / "checkpoints" / "last.safetensors")
    model.model.load_state_dict(state)
    model.model.eval()
    state = meta["state"]
    partial = state.get("partial") or {}
    # Wall seconds of training so far: finished epochs and the part of the current one.
    seconds = sum(row.get("seconds", 0.0) for row in state.get("history", [])) + partial.get("seconds", 0.0)
    return model, {"weights": "checkpoints/last.safetensors", "epoch": state["epoch"],
                   "batches": partial.get("batches"), "training_minutes": seconds / 60}  # fmt: skip


def diagnose(run: str, held_out: list[str], reference: list[str], reference_stats: tuple[np.ndarray, np.ndarray],
             noise: Sequence[float], seed: int, checkpoint: bool) -> dict[str, Any]:  # fmt: skip
    """Every number of the diagnosis for one run (see the module's docstring)."""
    started = time.perf_counter()
    model, source = load_model(run, checkpoint)
    codes, kept, _ = model.encode(held_out, errors="skip")
    inputs = canonical_all([held_out[i] for i in kept])
    reference_codes, _, _ = model.encode(reference, errors="skip")
    n = len(codes)
    gen = torch.Generator().manual_seed(seed)
    kinds: dict[str, tuple[torch.Tensor, bool]] = {"held-out codes": (codes, True)}
    for s in noise:
        kinds[f"held-out + N(0, {s:g}^2)"] = (codes + s * torch.randn(codes.shape, generator=gen), True)
    kinds["prior samples"] = (model.sample_latent(n, source="prior", seed=seed), False)
    if model.ex_post is not None:
        kinds["ex-post GMM samples"] = (model.sample_latent(n, source="ex-post", seed=seed), False)
    kinds["midpoints of two held-out codes"] = (interpolation_midpoints(codes, seed), False)
    rows = {}
    for kind, (z, paired) in kinds.items():
        decoded = canonical_all(model.decode(z))
        valid = [s for s in decoded if s is not None]
        rows[kind] = {
            "valid": len(valid) / len(decoded),
            "same_molecule": sum(a == b for a, b in zip(decoded, inputs)) / n if paired else None,
            "unique": len(set(valid)) / len(valid) if valid else None,
            "fcd": fcd_and_validity(valid, reference_stats)[0],
            "nearest_reference_code": nearest_distance(z, reference_codes),
        }
    return {
        "run": run,
        **source,
        "encodable": f"{n}/{len(held_out)}",
        "reference_code_to_reference_code": nearest_distance(reference_codes, reference_codes, exclude_self=True),
        "kinds": rows,
        "seconds": time.perf_counter() - started,
    }


def markdown(result: dict[str, Any], floor: float) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    lines = [
        f"**{result['run']}** ({result['weights']}, epoch {result['epoch']}"
        + (f", batch {result['batches']} of the next" if result["batches"] else "") + f"; {result['encodable']} held-out encodable)",
        "",
        "| decoded codes (greedy) | valid | same molecule as the input | unique | FCD | median distance to nearest reference code |",
        "|---|---|---|---|---|---|",
    ]
    for kind, row in result["kinds"].items():
        fcd = "-" if row["fcd"] is None else f"{row['fcd']:.2f}"
        lines.append(f"| {kind} | {pct(row['valid'])} | {pct(row['same_molecule'])} | {pct(row['unique'])} | {fcd} "
                     f"| {row['nearest_reference_code']:.2f} |")  # fmt: skip
    lines.append(f"| (reference codes to each other) | | | | {floor:.2f} (floor: held-out molecules themselves) "
                 f"| {result['reference_code_to_reference_code']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def csv_row(result: dict[str, Any], floor: float) -> dict[str, Any]:
    row: dict[str, Any] = {"run": result["run"], "weights": result["weights"], "epoch": result["epoch"],
                           "batches": result["batches"] or "", "fcd_floor": round(floor, 4),
                           "training_minutes": round(result["training_minutes"] or 0, 1)}  # fmt: skip
    short = {"held-out codes": "heldout", "prior samples": "prior", "ex-post GMM samples": "expost",
             "midpoints of two held-out codes": "midpoint"}  # fmt: skip
    for kind, values in result["kinds"].items():
        name = short.get(kind) or "noise" + kind.split("N(0, ")[1].split("^")[0]
        for key, value in values.items():
            if value is not None:
                row[f"{name}_{key}"] = round(value, 4)
    return row


def append_csv(path: Path, row: dict[str, Any]) -> None:
    rows = list(csv.DictReader(path.open())) if path.is_file() else []
    rows.append(row)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def subset_or_file(given: Path | None, moses: Path, n: int, seed: int, folder: Path) -> list[str]:
    if given is not None:
        return [line.strip() for line in given.read_text().splitlines() if line.strip()]
    source = moses / "test.csv.gz"
    if not source.is_file():
        raise SystemExit(f"error: {source} not found: the MOSES test set is read from ../shared/data/moses (or pass --moses)")
    out = read_subset(source, n, seed, folder / f"test-{n}-{seed}.smi")
    return out.read_text().split()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories or shipped model names")
    parser.add_argument("--n", type=int, default=1000, help="held-out molecules (and codes of every kind)")
    parser.add_argument("--n-reference", type=int, default=5000, help="MOSES test molecules of the FCD reference")
    parser.add_argument("--noise", type=float, nargs="*", default=list(NOISE_SCALES), help="noise scales s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out", type=Path, help="held-out molecules, one SMILES a line")
    parser.add_argument("--reference", type=Path, help="FCD reference molecules, one SMILES a line")
    parser.add_argument("--moses", type=Path, default=MOSES, help="folder holding MOSES test.csv.gz")
    parser.add_argument("--checkpoint", action="store_true", help="judge checkpoints/last.safetensors, not the best weights")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--csv", type=Path, help="append one row per run here (a learning curve)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from molks.metrics import chemnet_activations, chemnet_statistics

    with tempfile.TemporaryDirectory() as folder:
        held_out = subset_or_file(args.held_out, args.moses, args.n, 1, Path(folder))[: args.n]
        reference = subset_or_file(args.reference, args.moses, args.n_reference, 2, Path(folder))[: args.n_reference]
    reference = [s for s in canonical_all(reference) if s is not None]
    reference_stats = chemnet_statistics(chemnet_activations(reference))
    floor = fcd_and_validity(held_out, reference_stats)[0]
    results = []
    for run in args.runs:
        result = diagnose(run, held_out, reference, reference_stats, args.noise, args.seed, args.checkpoint)
        results.append(result)
        print(markdown(result, floor), end="\n\n", flush=True)
        if args.csv:
            append_csv(args.csv, csv_row(result, floor))
    command = "python benchmarks/latent_diagnosis.py " + " ".join(map(shlex.quote, argv if argv is not None else sys.argv[1:]))
    where = f"{machine(torch.device('cpu'))}; {load()}"
    print(f"FCD of valid decodings to {len(reference)} MOSES test molecules; floor {floor:.2f}.\n{where}\n{command}")
    if args.json:
        args.json.write_text(json.dumps({"command": command, "machine": where, "fcd_floor": floor, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
