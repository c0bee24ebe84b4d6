"""Parse speed: molks's parsers against nltk's ChartParser, on MOSES and on the GVAE expressions.

Reads data that is NOT bundled with molks:

* MOSES from ``../shared/data/moses/{train,test}.csv.gz`` (one column, header ``SMILES``);
* the Grammar VAE expressions from ``../shared/data/expressions/equation2_15_dataset.txt``.

Pass ``--moses DIR`` / ``--expressions FILE`` to read them elsewhere; a missing file is a clear error.

What it measures (everything tokenize + parse, no RDKit):

1. 2,000 random (seeded) MOSES test molecules: nltk's ChartParser on a subset (200; its first
   tree, mapped to production indices) against molks on one core, checking both give identical
   sequences on the subset; molecules/second for each and the ratio.
2. All of MOSES train with ``Grammar.parse_many`` on every core: wall time and failures.
3. All of MOSES test: parse (every core) + round trip ``derive(parse(s)) == s``; failures must be 0.
4. The arithmetic grammar: 2,000 random (seeded) GVAE expressions, nltk against molks, ratio.

Run from the repository root::

    python benchmarks/parse_speed.py [--moses DIR] [--expressions FILE] [--n 2000] [--nltk-subset 200]
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import lark
import nltk

from molks.grammar import Grammar, GrammarError
from molks.grammar.general import chart_parser

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moses", type=Path, default=SHARED / "moses", help="folder with train.csv.gz and test.csv.gz")
    parser.add_argument(
        "--expressions", type=Path, default=SHARED / "expressions" / "equation2_15_dataset.txt", help="GVAE expressions"
    )
    parser.add_argument("--n", type=int, default=2000, help="molecules / expressions compared on one core")
    parser.add_argument("--nltk-subset", type=int, default=200, help="of those, how many molecules nltk parses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=0, help="worker processes for the full sets (0: every core)")
    args = parser.parse_args(argv)
    processes = args.processes or os.cpu_count() or 1

    print("$ python " + shlex.join(sys.argv))
    print(
        f"python {platform.python_version()}, nltk {nltk.__version__}, lark {lark.__version__}, "
        f"{os.cpu_count()} cores, {platform.machine()}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )
    print(f"load average at start: {load()} (timings are only comparable on an otherwise idle machine)")
    train_path, test_path = args.moses / "train.csv.gz", args.moses / "test.csv.gz"
    for path in (train_path, test_path, args.expressions):
        if not path.is_file():
            print(f"error: {path} not found (this benchmark reads the full data sets; see --help)", file=sys.stderr)
            return 2
    print(f"data: {train_path}, {test_path}, {args.expressions}\n")

    smiles = Grammar.load("smiles")
    test = read_moses(test_path)
    chosen = random.Random(args.seed).sample(test, args.n)
    subset = chosen[: args.nltk_subset]
    print(f"== SMILES grammar ({smiles.n_productions} productions, parser {smiles.parser_kind}): "
          f"{args.n} random MOSES test molecules (seed {args.seed}) ==")
    compare(smiles, chosen, subset, "molecules")

    print(f"\n== all of MOSES train with Grammar.parse_many, {processes} processes ==")
    train = read_moses(train_path)
    start = time.perf_counter()
    results = smiles.parse_many(train, processes=processes)
    elapsed = time.perf_counter() - start
    failures = [(s, r) for s, r in zip(train, results) if isinstance(r, GrammarError)]
    print(f"{len(train):,} molecules in {elapsed:.1f} s wall ({len(train) / elapsed:,.0f} molecules/s), "
          f"{len(failures)} failures")
    for s, err in failures[:5]:
        print(f"  {s!r}: {err}")
    del results

    print(f"\n== all of MOSES test: parse ({processes} processes) + round trip derive(parse(s)) == s ==")
    start = time.perf_counter()
    results = smiles.parse_many(test, processes=processes)
    parsed_at = time.perf_counter()
    bad = []
    for s, r in zip(test, results):
        if isinstance(r, GrammarError):
            bad.append((s, str(r)))
        elif smiles.derive(r) != s:
            bad.append((s, f"derives {smiles.derive(r)!r}"))
    end = time.perf_counter()
    print(f"{len(test):,} molecules: parse {parsed_at - start:.1f} s wall, round trip {end - parsed_at:.1f} s "
          f"(one core), {len(bad)} failures")
    for s, why in bad[:5]:
        print(f"  {s!r}: {why}")

    arithmetic = Grammar.load("arithmetic")
    expressions = [line.strip() for line in args.expressions.read_text(encoding="utf-8").splitlines() if line.strip()]
    picked = random.Random(args.seed).sample(expressions, args.n)
    print(f"\n== arithmetic grammar ({arithmetic.n_productions} productions, parser {arithmetic.parser_kind}): "
          f"{args.n} random GVAE expressions of {len(expressions):,} (seed {args.seed}) ==")
    ratio = compare(arithmetic, picked, picked, "expressions")
    print(f"target >= 10x: {'met' if ratio >= 10 else 'NOT met'}")
    print(f"\nload average at end: {load()}")
    return 1 if bad or failures else 0


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1, 5, 15 min)"


def read_moses(path: Path) -> list[str]:
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
    if not lines or lines[0].strip() != "SMILES":
        raise SystemExit(f"error: {path} does not start with the header 'SMILES'")
    return [line.strip() for line in lines[1:] if line.strip()]


def compare(grammar: Grammar, items: Sequence[str], subset: Sequence[str], unit: str) -> float:
    """Time nltk on ``subset`` and molks (one core) on ``items``; check they agree on ``subset``.

    Both wall and CPU time (of this process) are reported; the speed-up uses CPU time, which other
    processes on a shared machine disturb far less than wall time. Returns the speed-up.
    """
    index: dict[nltk.grammar.Production, int] = {p: i for i, p in enumerate(grammar.productions)}
    chart = chart_parser(grammar.cfg)

    def nltk_parse(text: str) -> list[int]:
        tree = next(iter(chart.parse(grammar.tokenize(text))))
        return [index[p] for p in tree.productions()]

    nltk_ids, nltk_wall, nltk_cpu = timed(lambda: [nltk_parse(s) for s in subset])
    # molks is fast enough to time a few repeats; the median damps noise from other processes.
    runs = [timed(lambda: [grammar.parse(s) for s in items]) for _ in range(5)]
    molks_ids = runs[0][0]
    molks_wall = statistics.median(wall for _, wall, _ in runs)
    molks_cpu = statistics.median(cpu for _, _, cpu in runs)
    same = sum(a == b for a, b in zip(nltk_ids, molks_ids[: len(subset)]))

    n, m = len(subset), len(items)
    print(f"nltk ChartParser: {n} {unit}: CPU {nltk_cpu:.2f} s = {1000 * nltk_cpu / n:.2f} ms per item, "
          f"{n / nltk_cpu:,.1f} {unit}/s (wall {nltk_wall:.2f} s)")
    print(f"molks ({grammar.parser_kind}), one core: {m} {unit}, median of 5 runs: CPU {molks_cpu:.3f} s = "
          f"{1e6 * molks_cpu / m:.1f} us per item, {m / molks_cpu:,.0f} {unit}/s (wall {molks_wall:.3f} s)")
    print(f"identical production sequences on the nltk subset: {same}/{n}")
    speed_up = (m / molks_cpu) / (n / nltk_cpu)
    print(f"speed-up molks / nltk: {speed_up:,.0f}x by CPU time ({(m / molks_wall) / (n / nltk_wall):,.0f}x by wall time)")
    if same != n:
        raise SystemExit(f"error: molks and nltk disagree on {n - same} {unit}")
    return speed_up


def timed(work: Callable[[], list[list[int]]]) -> tuple[list[list[int]], float, float]:
    """``work()``'s result, wall seconds and CPU seconds of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    return out, time.perf_counter() - wall, time.process_time() - cpu


if __name__ == "__main__":
    raise SystemExit(main())
