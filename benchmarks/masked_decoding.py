"""Benchmark: batched grammar-masked decoding vs the bare decoder and the per-sequence reference.

    python benchmarks/masked_decoding.py [--n-codes 1000] [--max-length 150] [--repeats 5] [--threads 1]

For each network preset (``paper`` and ``small`` molecules) with the bundled SMILES grammar:
  forward    decoder forward pass of N latent codes (logits only)
  select     batched masked greedy selection on those logits (``decode_logits``)
  masked     forward + select, end to end (``MaskedDecoder``)
  sampled    forward + batched masked sampling at temperature 1
  reference  per-sequence Python-stack greedy selection on the same logits (``decode_logits_reference``)
Overhead = select / forward (target: <= 15% on CPU); speed-up = reference / select.

With ``--autoregressive`` it also times the autoregressive decoder (``decoder="autoregressive"``),
whose logits depend on the previous choice, so selection cannot be split from the forward pass:
  unmasked   the same step-by-step loop feeding back the plain argmax (no grammar, no stack)
  masked     ``AutoregressiveGrammarDecoder.decode``: masked greedy decoding with tensor stacks
Overhead = (masked - unmasked) / unmasked.
Times are medians over repeats (the reference runs once). Torch runs on --threads threads
(default 1): on a shared machine whose cores are oversubscribed, OpenMP threads that spin-wait
for each other can make 2-thread GRUs an order of magnitude slower than 1 thread.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from typing import Callable

import torch

from molks.grammar import Grammar
from molks.model.masked import MaskedDecoder, decode_logits, decode_logits_reference, grammar_tensors
from molks.model.networks import AutoregressiveGrammarDecoder, GrammarDecoder, network_config


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (allocator, thread pool)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-codes", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--presets", nargs="+", default=["paper", "small"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--autoregressive", action="store_true", help="also time the autoregressive decoder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    grammar = Grammar.load("smiles")
    tensors = grammar_tensors(grammar)
    print(
        f"grammar smiles: {grammar.n_outputs} outputs, {len(grammar.nonterminals)} nonterminals; "
        f"{args.n_codes} codes, max_length {args.max_length}, median of {args.repeats}"
    )
    header = (
        f"{'preset':<7} {'forward s':>10} {'select s':>9} {'overhead':>9} {'masked s':>9} {'sampled s':>10} "
        f"{'reference s':>12} {'speed-up':>9} {'finished':>9} {'same ids':>9}"
    )
    print(header)
    for preset in args.presets:
        torch.manual_seed(args.seed)
        config = network_config(preset, "molecules", grammar.n_outputs, args.max_length)
        decoder = GrammarDecoder(config).eval()
        masked = MaskedDecoder(decoder, tensors).eval()
        z = torch.randn(args.n_codes, config.latent_dim)

        def forward() -> torch.Tensor:
            with torch.no_grad():
                return decoder(z)

        def sampled() -> object:
            gen = torch.Generator().manual_seed(args.seed)
            return masked(z, greedy=False, temperature=1.0, generator=gen)

        t_forward = median_time(forward, args.repeats)
        t_masked = median_time(lambda: masked(z), args.repeats)
        t_sampled = median_time(sampled, args.repeats)
        logits = forward()
        ids, finished = decode_logits(logits, tensors)
        start = time.perf_counter()
        ref_ids, ref_finished = decode_logits_reference(logits, tensors)
        t_reference = time.perf_counter() - start  # once: it is slow and deterministic
        t_select = median_time(lambda: decode_logits(logits, tensors), args.repeats)
        same = torch.equal(ids, ref_ids) and torch.equal(finished, ref_finished)
        print(
            f"{preset:<7} {t_forward:>10.3f} {t_select:>9.3f} {t_select / t_forward:>9.1%} {t_masked:>9.3f} "
            f"{t_sampled:>10.3f} {t_reference:>12.3f} {t_reference / t_select:>8.0f}x "
            f"{finished.float().mean().item():>9.3f} {str(same):>9}"
        )
    print("overhead = select / forward; speed-up = reference / select (same logits, same ids)")
    if args.autoregressive:
        autoregressive_rows(args, grammar, tensors)


def autoregressive_rows(args: argparse.Namespace, grammar: Grammar, tensors: torch.nn.Module) -> None:
    print(f"\nautoregressive decoder: {'preset':<7} {'unmasked s':>11} {'masked s':>9} {'overhead':>9} {'finished':>9}")
    for preset in args.presets:
        torch.manual_seed(args.seed)
        config = network_config(preset, "molecules", grammar.n_outputs, args.max_length, decoder="autoregressive")
        decoder = AutoregressiveGrammarDecoder(config).eval()
        z = torch.randn(args.n_codes, config.latent_dim)

        @torch.no_grad()
        def unmasked() -> torch.Tensor:
            h, state = decoder.start(z)
            previous = torch.full((len(z),), decoder.start_index, dtype=torch.long)
            for _ in range(config.max_length):
                logits, state = decoder.step(h, state, previous)
                previous = logits.argmax(dim=-1)
            return previous

        t_unmasked = median_time(unmasked, args.repeats)
        t_masked = median_time(lambda: decoder.decode(z, tensors), args.repeats)
        _, finished = decoder.decode(z, tensors)
        print(
            f"{'':<22} {preset:<7} {t_unmasked:>11.3f} {t_masked:>9.3f} {(t_masked - t_unmasked) / t_unmasked:>9.1%} "
            f"{finished.float().mean().item():>9.3f}"
        )


if __name__ == "__main__":
    main()
