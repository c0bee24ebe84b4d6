"""Benchmark: train gmm, vae and rae on the same MOSES subset, then evaluate them on MOSES test.

    python benchmarks/train_eval.py [--n-train 10000] [--n-test 1000] [--epochs 10] [--batch-size 128]
        [--regularizers gmm,vae,rae] [--preset small] [--decoder autoregressive|repeat] [--device cpu] [--n-samples 1000] [--seed 0]
        [--threads N] [--out DIR] [--data-dir PATH]

Data: ``train.csv.gz`` and ``test.csv.gz`` (column SMILES) of the MOSES split, read from
``../shared/data/moses`` relative to the repository root unless ``--data-dir`` says otherwise; a
random subset of each (seeded) is checked with RDKit, canonicalised and parsed with the bundled
SMILES grammar (``molks.dataset.load_dataset``). Every model trains on the same subset with the
same network preset, sequence length (the subset's longest derivation), batch size, epochs and
seed (``molks.training.trainer.train``; 10% of the subset is the validation split). Test molecules
longer than that sequence length cannot be encoded and are skipped (counted in the table).

Evaluation (``molks.evaluation.evaluate``): reconstruction = exact canonical-SMILES match of greedy
decoding of the test molecules; validity / uniqueness / novelty of ``--n-samples`` prior samples
(for rae the prior *is* its ex-post GMM) and validity of as many ex-post GMM samples; KS and CV
ratios of the test codes to the prior (1 = as close as a true prior sample of that size).

Prints a markdown table, the machine and the command. Run directories and sample grids (PNG) are
kept in ``--out`` (default: a new temporary folder).

Defaults (10,000 molecules, 10 epochs, batch 128, small preset) are meant to finish in roughly
20-30 minutes for the three models on 2 otherwise idle CPU cores (estimated from ~70 molecules a
second per training step measured with 1 thread on a heavily shared 2-core machine). On a shared
machine pass ``--threads 1``: several processes each spinning 2 OpenMP threads on 2 cores slow
torch down by one to two orders of magnitude. With a GPU (``--device cuda``) use ``--preset paper``
and much more data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "moses"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="folder with MOSES train.csv.gz and test.csv.gz")
    p.add_argument("--n-train", type=int, default=10000, help="training subset size (10%% of it validates)")
    p.add_argument("--n-test", type=int, default=1000, help="test subset size")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--regularizers", default="gmm,vae,rae", help="comma-separated: gmm, vae, cv-vae, rae, wae")
    p.add_argument("--preset", default="small", choices=("small", "paper"))
    p.add_argument("--decoder", default="autoregressive", choices=("autoregressive", "repeat"),
                   help="autoregressive (molks' default) or repeat (the GVAE decoder)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--n-samples", type=int, default=1000, help="prior and ex-post samples (each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience in epochs")
    p.add_argument("--out", type=Path, default=None, help="where runs and PNGs go (default: a temporary folder)")
    args = p.parse_args(argv)
    for name in ("n_train", "n_test", "epochs", "batch_size", "n_samples"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def read_subset(path: Path, n: int, seed: int, out: Path) -> Path:
    """A seeded random subset of n SMILES of a MOSES csv.gz, written one per line to ``out``."""
    from molks.dataset import load_texts

    items = load_texts(path)
    if n > len(items):
        raise SystemExit(f"error: {path} holds {len(items)} molecules, fewer than the {n} asked for")
    pick = np.sort(np.random.default_rng(seed).choice(len(items), size=n, replace=False))
    out.write_text("".join(f"{items[i][1]}\n" for i in pick))
    return out


def machine(device: torch.device) -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} with {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text += f"; GPU {torch.cuda.get_device_name(device)}"
    try:
        text += f"; load average at the end {os.getloadavg()[0]:.1f}"
    except OSError:
        pass
    return text


def seconds_per_epoch(run: Path) -> tuple[float, int]:
    from molks.runs import RunDir

    rows = RunDir(run).read_metrics()
    return float(np.mean([r["seconds"] for r in rows])), len(rows)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in ("train.csv.gz", "test.csv.gz"):
        if not (args.data_dir / name).is_file():
            print(f"error: {args.data_dir / name} not found; the MOSES split is expected in ../shared/data/moses "
                  "relative to the repository root (or pass --data-dir)", file=sys.stderr)
            return 2

    import molks
    from molks.dataset import load_dataset
    from molks.evaluation import EvaluationSettings, evaluate
    from molks.grammar import Grammar
    from molks.training.spec import TrainConfig, TrainingSpec, train_from_file
    from molks.training.trainer import resolve_device

    device = resolve_device(args.device)
    out = args.out or Path(tempfile.mkdtemp(prefix="molks-train-eval-"))
    out.mkdir(parents=True, exist_ok=True)
    grammar = Grammar.load("smiles")
    started = time.perf_counter()
    train_file = read_subset(args.data_dir / "train.csv.gz", args.n_train, args.seed, out / "train_subset.smi")
    test_file = read_subset(args.data_dir / "test.csv.gz", args.n_test, args.seed, out / "test_subset.smi")
    data = load_dataset(train_file, grammar, progress=False)  # cached: each training below reads it again
    test = load_dataset(test_file, grammar, use_cache=False, progress=False)
    sequences = data.padded()
    print(f"data: {len(data)} training molecules ({len(data.failures)} rejected), {len(test)} test molecules, "
          f"sequence length {sequences.shape[1]}; prepared in {time.perf_counter() - started:.0f} s", file=sys.stderr)

    rows = []
    for reg in [r.strip() for r in args.regularizers.split(",") if r.strip()]:
        run = out / f"run-{reg}"
        if run.exists():
            print(f"error: {run} exists; choose another --out", file=sys.stderr)
            return 2
        spec = TrainingSpec(
            regularizer=reg, preset=args.preset, decoder=args.decoder,
            train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, device=str(device),
                              patience=args.patience),
        )  # fmt: skip
        t0 = time.perf_counter()
        train_from_file(train_file, spec, run, progress=False,
                        log=lambda message, reg=reg: print(f"[{reg}] {message}", file=sys.stderr))  # fmt: skip
        train_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        settings = EvaluationSettings(n_samples=args.n_samples, seed=args.seed, held_out=None, ex_post=True)
        result = evaluate(molks.load(run, device=str(device)), test.texts, settings=settings,
                          png=out / f"samples-{reg}.png")  # fmt: skip
        per_epoch, epochs = seconds_per_epoch(run)
        result.update(train_seconds=train_seconds, eval_seconds=time.perf_counter() - t0,
                      seconds_per_epoch=per_epoch, epochs_run=epochs)  # fmt: skip
        (out / f"evaluation-{reg}.json").write_text(json.dumps(result, indent=2) + "\n")
        print(f"[{reg}] trained in {train_seconds:.0f} s, evaluated in {result['eval_seconds']:.0f} s", file=sys.stderr)
        rows.append((reg, result))

    n_test = rows[0][1]["n_held_out"] + rows[0][1]["held_out_skipped"] if rows else 0
    print(f"\nMOSES subset: {len(data)} training molecules (90% train / 10% validation), "
          f"{n_test} test molecules ({rows[0][1]['held_out_skipped'] if rows else 0} longer than the model's "
          f"{sequences.shape[1]} steps, skipped); preset {args.preset}, decoder {args.decoder}, batch {args.batch_size}, seed {args.seed}; "
          f"{args.n_samples} samples per source.\n")
    print("| model | reconstruction % | prior validity % | uniqueness % | novelty % | ex-post GMM validity % "
          "| unfinished (prior) % | KS ratio | CV ratio | s / epoch | epochs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for reg, r in rows:
        print(f"| {reg} | {pct(r['reconstruction'])} | {pct(r['prior_validity'])} | {pct(r['prior_uniqueness'])} "
              f"| {pct(r['prior_novelty'])} | {pct(r['ex_post_validity'])} | {pct(r['prior_unfinished'])} "
              f"| {num(r['ks_ratio'])} | {num(r['cv_ratio'])} | {r['seconds_per_epoch']:.1f} | {r['epochs_run']} |")
    print(f"\nMachine: {machine(device)}")
    print(f"Device: {device}; total {time.perf_counter() - started:.0f} s; runs and PNGs in {out}")
    print(f"Command: python {shlex.join(['benchmarks/train_eval.py', *sys.argv[1:]] if argv is None else ['benchmarks/train_eval.py', *argv])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
