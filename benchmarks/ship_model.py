"""Make a run directory a shipped model: what ``molks/models/moses`` was made by (issue 17).

    python benchmarks/ship_model.py RUN --out STAGING --held-out HELD_OUT.smi [--train TRAIN.smi]
        [--bandwidth B] [--gmm-codes 20000]

Copies the run's configuration, grammar, best weights, last checkpoint (so that training can be
resumed from the shipped folder), metrics and loss curves into ``--out``, with the training data's
path reduced to its file name in ``config.json`` and in every weights file's metadata (a shipped
file names no machine's folders), each weights file re-recorded in its ``.sha256``. Then it fits
what a finished training fits, which a run stopped by hand lacks:

* the ex-post GMM (10 components, full covariances) on the codes of the first ``--gmm-codes``
  molecules of ``--train`` (the run's training file);
* the kernel density ``molks sample`` draws from by default, on the codes of ``--held-out``
  (molecules the run was not trained on; for ``moses``: the 16,749 molecules of
  ``data/moses_sample.smi`` that are not in ``moses-250k.smi``, which may be committed), with the
  kernel sd ``--bandwidth`` (default: ``molks.model.regularizers.kde_bandwidth``, 1.4 x the run's
  ``latent_noise``).

Move ``--out`` over ``molks/models/NAME`` afterwards (``molks kde`` refuses to write into an
installed package, hence the staging folder).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

COPIED = ("config.json", "grammar.cfg", "metrics.csv", "loss_curves.png", "validation.smi")


def relative_data_path(doc: dict[str, Any]) -> dict[str, Any]:
    """The run configuration with its training data named by file name only."""
    data = doc.get("data")
    if isinstance(data, dict) and "path" in data:
        data["path"] = Path(str(data["path"])).name
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--held-out", type=Path, required=True)
    parser.add_argument("--train", type=Path, help="the run's training molecules (for the ex-post GMM)")
    parser.add_argument("--bandwidth", type=float)
    parser.add_argument("--gmm-codes", type=int, default=20_000)
    parser.add_argument("--validation", type=Path, help="validation.smi to ship (default: the run's)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    import molks
    from molks.model.regularizers import fit_ex_post_gmm
    from molks.runs import RunDir
    from molks.training.checkpoint import load_checkpoint, save_weights
    from molks.model.regularizers import kde_bandwidth

    if args.out.exists():
        raise SystemExit(f"{args.out} exists: remove it first")
    (args.out / "checkpoints").mkdir(parents=True)
    for name in COPIED:
        source = args.validation if name == "validation.smi" and args.validation else args.run / name
        if source.is_file():
            shutil.copyfile(source, args.out / name)
    config = args.out / "config.json"
    config.write_text(json.dumps(relative_data_path(json.loads(config.read_text())), indent=2) + "\n")
    for name in ("model.safetensors", "checkpoints/last.safetensors"):
        state, meta, optimizer = load_checkpoint(args.run / name)
        if isinstance(meta.get("config"), dict):
            relative_data_path(meta["config"])
        save_weights(args.out / name, state, meta, optimizer)
    model = molks.load(args.out)
    run = RunDir(args.out)
    if args.train:
        codes = model.encode(args.train.read_text().split()[: args.gmm_codes], errors="skip").codes
        run.write_ex_post(fit_ex_post_gmm(codes, n_components=10, seed=0), n_codes=len(codes))
        print(f"ex-post GMM on {len(codes)} training codes")
    bandwidth = args.bandwidth if args.bandwidth is not None else kde_bandwidth(model.model.regularizer)
    encoding = model.fit_kde(args.held_out.read_text().split(), bandwidth)
    print(f"kernel density on {len(encoding.codes)} held-out codes ({len(encoding.failures)} not encodable), "
          f"bandwidth {bandwidth}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
