"""Prior samples decoded at latent temperatures: the mixture's component sd scaled by t (issue 17).

    python benchmarks/latent_temperature.py RUN --reference moses-test-5k.smi [--t 0.7 0.866 1.0] [--beam 1 4] [--n 1000]

For each t and decoding (greedy = beam 1, or a beam search of width K), ``--n`` prior samples of the
run's GMM prior with component sd sigma * t: the fraction of valid molecules, the fraction unique, and
the FCD of the valid ones to the reference molecules (``benchmarks/moses_subset.py --split test --n
5000 --seed 2``, which reads ``../shared/data/moses``). One torch thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fid_table import fcd_and_validity  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run directory or a shipped model name")
    parser.add_argument("--reference", type=Path, required=True, help="FCD reference molecules, one SMILES a line")
    parser.add_argument("--t", type=float, nargs="+", default=[0.7, 0.866, 1.0])
    parser.add_argument("--beam", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import molks
    from molks.chemistry import canonical_smiles
    from molks.metrics import chemnet_activations, chemnet_statistics
    from molks.model.prior import GaussianMixturePrior

    reference = [s for s in map(canonical_smiles, args.reference.read_text().split()) if s]
    stats = chemnet_statistics(chemnet_activations(reference))
    model = molks.load(args.run)
    prior = model.model.regularizer.prior
    for t in args.t:
        for beam in args.beam:
            generator = torch.Generator().manual_seed(0)
            z = GaussianMixturePrior(prior.means, float(prior.sigma) * t).sample(args.n, generator=generator).float()
            started = time.perf_counter()
            valid = [s for s in map(canonical_smiles, model.decode(z, beam_width=beam)) if s]
            fcd = fcd_and_validity(valid, stats)[0]
            print(f"t={t} beam={beam} valid={len(valid) / args.n:.3f} unique={len(set(valid)) / max(1, len(valid)):.3f} "
                  f"fcd={fcd:.2f} ({time.perf_counter() - started:.0f}s)", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
