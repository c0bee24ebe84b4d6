"""Benchmark: learning curves of network designs at a fixed CPU budget each (issue #9).

    python benchmarks/architecture.py [--designs small,gru,...] [--n-train 2000] [--n-test 500]
        [--cpu-minutes 5] [--eval-every 30] [--batch-size 128] [--learning-rate 1e-3]
        [--threads 1] [--seed 0] [--out DIR] [--data-dir PATH]

Every design trains the gmm model (the method) on the same seeded MOSES subset, from the same
seed, with the same batches, for the same CPU time (``time.process_time``: the CPU seconds of
this process, so other jobs on a shared machine do not eat the budget). Every ``--eval-every``
CPU seconds it records, against CPU minutes:

- ``train_exact``: exact greedy reconstruction of (up to) 500 of the training molecules,
- ``test_exact``: the same for ``--n-test`` held-out MOSES test molecules,
- ``train_rec`` / ``test_rec``: their masked reconstruction loss (nats per molecule).

Exact reconstruction comes from one teacher-forced pass (``Autoencoder.forward``'s "exact"): greedy
masked decoding returns a molecule exactly when the true output is the best allowed one at every
step given the true prefix, so this is the greedy reconstruction rate, not an estimate of it.
With ``--n-train 2000`` this is the memorisation screen of issue #9: a design that cannot
memorise 2,000 molecules in minutes will not generalise in hours.

Data: ``train.csv.gz`` / ``test.csv.gz`` of the MOSES split in ``../shared/data/moses`` (relative
to the repository root; ``--data-dir`` to change). Writes ``curves.csv`` and ``curves.png`` into
``--out`` and prints a table of the last point of each curve, the machine and the command.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_eval import DEFAULT_DATA, machine, read_subset  # noqa: E402

# name -> (NetworkConfig overrides of the small preset, training overrides)
DESIGNS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "small": ({}, {}),
    "fast": ({"encoder": "gru", "encoder_size": 128, "gru_layers": 1}, {}),
    "conv-wide": ({"conv_channels": (64, 64, 64)}, {}),
    "gru": ({"encoder": "gru", "encoder_size": 128}, {}),
    "gru-256": ({"encoder": "gru", "encoder_size": 256}, {}),
    "transformer": ({"encoder": "transformer", "encoder_size": 128, "encoder_layers": 2}, {}),
    "dec-1x256": ({"gru_layers": 1}, {}),
    "dec-1x512": ({"gru_layers": 1, "gru_hidden": 512}, {}),
    "dec-3x256": ({"gru_layers": 3}, {}),
    "dec-2x384": ({"gru_hidden": 384}, {}),
    "dec-dense-256": ({"decoder_dense_size": 256}, {}),
    "latent-128": ({"latent_dim": 128, "decoder_dense_size": 128}, {}),
    "gru-dense-256": ({"encoder": "gru", "encoder_size": 128, "decoder_dense_size": 256}, {}),
    "batch-64": ({}, {"batch_size": 64}),
    "batch-256": ({}, {"batch_size": 256}),
    "lr-3e-3": ({}, {"learning_rate": 3e-3}),
    "feedback-dropout": ({"feedback_dropout": 0.2}, {}),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--designs", default="small,gru,conv-wide", help=f"comma-separated, of: {', '.join(DESIGNS)}")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="folder with MOSES train.csv.gz and test.csv.gz")
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--cpu-minutes", type=float, default=5.0, help="CPU budget per design")
    p.add_argument("--eval-every", type=float, default=30.0, help="CPU seconds between curve points")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--merge", type=Path, nargs="+", default=None, metavar="CSV",
                   help="only merge curves.csv files of earlier runs into --out (curves.csv, curves.png)")
    args = p.parse_args(argv)
    unknown = [d for d in args.designs.split(",") if d not in DESIGNS]
    if unknown:
        p.error(f"unknown designs {unknown}; choose from {list(DESIGNS)}")
    return args


def build_model(design: str, grammar: Any, length: int, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The gmm Autoencoder of a design and its training settings."""
    from molks.model.autoencoder import Autoencoder, ModelConfig
    from molks.model.networks import network_config

    network_overrides, train_overrides = DESIGNS[design]
    settings = {"batch_size": args.batch_size, "learning_rate": args.learning_rate, **train_overrides}
    network = dataclasses.replace(network_config("small", "molecules", grammar.n_outputs, length), **network_overrides)
    config = ModelConfig(network=network, regularizer="gmm", batch_size=settings["batch_size"],
                         regularizer_options={"n_components": 10, "sigma": 1.0}, grammar_hash=grammar.content_hash)  # fmt: skip
    torch.manual_seed(args.seed)
    return Autoencoder(config, grammar), settings


@torch.no_grad()
def measure(model: Any, data: torch.Tensor, batch_size: int = 250) -> tuple[float, float]:
    """(exact greedy reconstruction, mean reconstruction loss) of sequences [N, L]."""
    model.eval()
    exact = rec = 0.0
    for i in range(0, len(data), batch_size):
        x = data[i : i + batch_size].long()
        terms = model(x)
        exact += float(terms["exact"]) * len(x)
        rec += float(terms["rec"]) * len(x)
    model.train()
    return exact / len(data), rec / len(data)


def curve(design: str, train: torch.Tensor, test: torch.Tensor, grammar: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    from molks.training.trainer import TrainConfig, make_optimizer, train_step

    model, settings = build_model(design, grammar, train.shape[1], args)
    optimizer = make_optimizer(model, TrainConfig(learning_rate=settings["learning_rate"], batch_size=settings["batch_size"]))
    batches = torch.Generator().manual_seed(args.seed)
    train_probe = train[:500]
    rows: list[dict[str, Any]] = []
    cpu = 0.0
    step = 0
    next_eval = 0.0
    budget = 60 * args.cpu_minutes
    while True:
        if cpu >= next_eval or cpu >= budget:
            train_exact, train_rec = measure(model, train_probe)
            test_exact, test_rec = measure(model, test)
            rows.append({"design": design, "cpu_minutes": cpu / 60, "step": step, "molecules": step * settings["batch_size"],
                         "train_exact": train_exact, "test_exact": test_exact, "train_rec": train_rec, "test_rec": test_rec})  # fmt: skip
            print(f"[{design}] {cpu / 60:5.1f} CPU min, step {step}: train exact {100 * train_exact:.1f}%, "
                  f"test exact {100 * test_exact:.1f}%, rec {train_rec:.1f} / {test_rec:.1f} nats", file=sys.stderr)
            next_eval += args.eval_every
            if cpu >= budget:
                return rows
        idx = torch.randint(0, len(train), (settings["batch_size"],), generator=batches)
        started = time.process_time()
        train_step(model, train[idx].long(), optimizer)
        cpu += time.process_time() - started
        step += 1


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 3.6))
    axes = fig.subplots(1, 4)
    panels = [("train_exact", 100, "training molecules: exact %"), ("test_exact", 100, "held-out molecules: exact %"),
              ("train_rec", 1, "training rec. loss (nats)"), ("test_rec", 1, "held-out rec. loss (nats)")]  # fmt: skip
    for design in dict.fromkeys(r["design"] for r in rows):
        mine = [r for r in rows if r["design"] == design]
        for ax, (key, scale, _) in zip(axes, panels):
            ax.plot([r["cpu_minutes"] for r in mine], [scale * r[key] for r in mine], label=design)
    for ax, (key, _, title) in zip(axes, panels):
        ax.set_title(title)
        ax.set_xlabel("CPU minutes")
        if key.endswith("rec"):
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_curves(rows: list[dict[str, Any]], out: Path) -> None:
    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "curves.png")


def merge(paths: list[Path], out: Path) -> int:
    """Curves of several runs (made in parallel processes) in one CSV and one plot."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        with open(path, newline="") as f:
            rows += [{k: v if k == "design" else float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    out.mkdir(parents=True, exist_ok=True)
    write_curves(rows, out)
    print(f"{len(rows)} curve points of {len({r['design'] for r in rows})} designs -> {out / 'curves.csv'}, {out / 'curves.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out or Path("."))
    torch.set_num_threads(args.threads)
    from molks.dataset import load_dataset
    from molks.grammar import Grammar

    out = args.out or Path(tempfile.mkdtemp(prefix="molks-architecture-"))
    out.mkdir(parents=True, exist_ok=True)
    grammar = Grammar.load("smiles")
    train_data = load_dataset(read_subset(args.data_dir / "train.csv.gz", args.n_train, args.seed, out / "train.smi"),
                              grammar, use_cache=False, progress=False, processes=1)  # fmt: skip
    test_data = load_dataset(read_subset(args.data_dir / "test.csv.gz", args.n_test, args.seed, out / "test.smi"),
                             grammar, use_cache=False, progress=False, processes=1)  # fmt: skip
    length = max(train_data.padded().shape[1], test_data.padded().shape[1])
    train = torch.from_numpy(train_data.padded(length))
    test = torch.from_numpy(test_data.padded(length))
    rows: list[dict[str, Any]] = []
    for design in args.designs.split(","):
        rows += curve(design, train, test, grammar, args)
        write_curves(rows, out)
    print(f"\n{len(train)} MOSES training molecules, {len(test)} test molecules, {args.cpu_minutes:g} CPU minutes "
          f"per design, gmm loss, seed {args.seed}\n")
    print("| design | steps | train exact % | test exact % | train rec | test rec |")
    print("|---|---|---|---|---|---|")
    for design in args.designs.split(","):
        last = [r for r in rows if r["design"] == design][-1]
        print(f"| {design} | {last['step']} | {100 * last['train_exact']:.1f} | {100 * last['test_exact']:.1f} "
              f"| {last['train_rec']:.1f} | {last['test_rec']:.1f} |")
    print(f"\nMachine: {machine(torch.device('cpu'))}")
    print(f"Curves: {out / 'curves.csv'}, {out / 'curves.png'}")
    print(f"Command: python {shlex.join(['benchmarks/architecture.py', *(sys.argv[1:] if argv is None else argv)])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
