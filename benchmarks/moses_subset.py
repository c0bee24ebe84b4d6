"""Write a seeded random subset of the MOSES split, one SMILES per line (reads ``../shared/data``).

    python benchmarks/moses_subset.py --split train --n 250000 --seed 0 --out moses-250k.smi

The shipped model ``moses`` was trained on ``--split train --n 250000 --seed 0``; its held-out
evaluation used ``--split test --n 1000 --seed 1`` and, as the FCD reference, ``--split test --n 5000
--seed 2``. The same arguments give the same file (and so the SHA-256 that ``molks train --resume``
checks), which is how a later session gets the data to resume that training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_eval import DEFAULT_DATA, read_subset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="folder with MOSES train.csv.gz and test.csv.gz")
    args = p.parse_args(argv)
    source = args.data_dir / f"{args.split}.csv.gz"
    if not source.is_file():
        p.error(f"{source} not found: the MOSES split is expected in ../shared/data/moses (or pass --data-dir)")
    print(read_subset(source, args.n, args.seed, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
