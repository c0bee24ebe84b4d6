"""Evaluating a trained model: reconstruction, sample quality, and how well codes fit the prior.

>>> import molks
>>> from molks.evaluation import evaluate
>>> report = evaluate(molks.load("runs/moses"), n_samples=1000, png="samples.png")
>>> report["reconstruction"], report["prior_validity"], report["ks_ratio"]

What :func:`evaluate` measures (every fraction is in [0, 1]; a fraction whose denominator is zero
is ``None``):

* ``reconstruction``: exact-match rate of greedy decoding of the held-out items' codes: items
  match when their canonical forms in the model's domain (:mod:`molks.domain`) are equal --
  canonical RDKit SMILES for molecules, the token sequence for expressions
  (``grammar.detokenize(grammar.tokenize(text))``, so spacing does not matter). Held-out
  items the model cannot encode (invalid SMILES, a token outside the grammar, a derivation longer
  than the model's length) are skipped and counted in ``held_out_skipped``.
  ``reconstruction_unfinished``: fraction of those decodings that hit the length limit.
* ``reconstruction_sampled``: the Grammar VAE's protocol (Kusner et al. 2017 decode each of 10
  encodings 100 times; our encoder is deterministic, so one code): the fraction of
  ``reconstruction_decodings`` (N, default 10) decodings per held-out code, sampled at temperature
  1 instead of greedily, that equal the input. None when N is 0.
* ``reconstruction_tanimoto`` (molecules only, else None): mean Tanimoto similarity between each
  held-out molecule and its greedy decoding on Morgan fingerprints (radius 2, 2048 bits, RDKit's
  rdFingerprintGenerator); an invalid or unfinished decoding counts 0. Progress below exact
  matches shows here.
* ``prior_*`` and ``ex_post_*``: ``n_samples`` latent points from the model's prior
  (``LatentModel.sample_latent(source="prior")``; for ``rae`` that is its ex-post GMM) and from
  the ex-post GMM fitted on the training codes, decoded greedily. ``validity``: valid / all, by
  the model's domain (molecules: RDKit reads it into at least one atom; expressions: it derives
  from the grammar, i.e. decoding finished). ``uniqueness``: distinct valid / valid.
  ``novelty``: distinct valid not in the run's training set (``train.smi.gz``, canonicalised the
  same way, which costs about 0.1 ms a training molecule) / distinct valid; None when the run
  has no ``train.smi.gz``.
  ``unfinished``: decodings that hit the length limit / all.
* ``prior_unique@1000`` .. ``prior_weight_wasserstein`` (molecules only, else None): FCD and the
  MOSES metrics of the prior samples against ``reference`` molecules (default: the held-out
  items; ``n_reference`` of them valid), computed by :func:`molks.metrics.distribution_metrics`,
  whose docstring defines each; ``properties_png``: the property histograms, if asked for.
* ``*_beam`` (``beam_width`` K > 1, else None): the same measures with each code decoded by a
  beam search of width K that returns the most probable of its K derivations that is valid
  (``LatentModel.decode(beam_width=K)``): ``reconstruction_beam`` for the held-out codes,
  ``prior_beam_*`` and ``ex_post_beam_*`` for the same latent points. The distribution metrics
  (FCD, MOSES) are of the decodings molks hands out: the beam's when K > 1 (``samples_decoding``).
* ``ks``, ``cv``: the method's L_KS and L_CV between the held-out codes and a reference prior;
  ``ks_reference``/``cv_reference``: the mean of the same losses over ``n_reference`` true prior
  samples of the same size, and ``ks_ratio``/``cv_ratio`` = value / reference (1: as close to the
  prior as a perfect sample of that size; the training losses are in the same units). The
  reference prior (``distance_prior``) is the model's own GMM prior for ``gmm``; for every other
  regulariser it is N(0, I), expressed as a one-component ``GaussianMixturePrior`` with sigma 1 --
  the prior VAE, CV-VAE and WAE are trained towards, and what RAE's L2 penalty pulls towards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from molks.decoding import DEFAULT_BEAM_WIDTH
from molks.domain import MOLECULES
from molks.errors import MolksError
from molks.model.prior import GaussianMixturePrior
from molks.model.regularizers import GMMRegularizer, cv_loss, ks_loss
from molks.runs import RunDir

if TYPE_CHECKING:
    from rdkit import Chem

    from molks.api import LatentModel

__all__ = [
    "DISTRIBUTION_KEYS",
    "EvaluationError",
    "METRIC_KEYS",
    "canonical_smiles",
    "evaluate",
    "evaluation_prior",
    "format_report",
    "novelty",
    "prior_distances",
    "read_molecule",
    "read_train_texts",
    "reconstruction_matches",
    "reconstruction_tanimoto",
    "sample_metrics",
    "sampled_decodings",
    "text_normalizer",
]

# The MOSES metrics of molks.metrics reported for the prior samples (as "prior_<name>"); validity,
# uniqueness and novelty of the samples are the prior_* keys above them.
DISTRIBUTION_KEYS = (
    "unique@1000", "unique@10000", "fcd", "snn", "frag", "scaf", "int_div1", "int_div2", "filters",
    "logp_wasserstein", "sa_wasserstein", "qed_wasserstein", "weight_wasserstein",
)  # fmt: skip

# Measures of decoded samples, per source of latent points (greedy, and the beam search's).
SAMPLE_KEYS = ("validity", "uniqueness", "novelty", "unfinished")
SAMPLE_SOURCES = ("prior", "ex_post", "prior_beam", "ex_post_beam")

# The keys of evaluate()'s result, in the order reports print them.
METRIC_KEYS = (
    "run_dir", "regularizer", "grammar", "latent_dim", "seed",
    "n_held_out", "held_out_skipped", "reconstruction", "reconstruction_unfinished",
    "reconstruction_decodings", "reconstruction_sampled", "reconstruction_tanimoto",
    "beam_width", "reconstruction_beam", "reconstruction_tanimoto_beam",
    "n_samples", *(f"{source}_{name}" for source in SAMPLE_SOURCES for name in SAMPLE_KEYS),
    "samples_decoding", "reference", "n_reference", *(f"prior_{name}" for name in DISTRIBUTION_KEYS), "properties_png",
    "distance_prior", "ks", "ks_reference", "ks_ratio", "cv", "cv_reference", "cv_ratio",
    "png", "seconds",
)  # fmt: skip


class EvaluationError(MolksError, ValueError):
    """An evaluation cannot run (no held-out data, nothing encodable, n_samples < 1, ...)."""


# ----------------------------------------------------------------------------------------------
# Comparing strings
# ----------------------------------------------------------------------------------------------


def read_molecule(smiles: str | None) -> Chem.Mol | None:
    """RDKit's molecule of a SMILES, or None for None, empty, unreadable or atom-less strings
    (the rule of :class:`molks.domain.Molecules`)."""
    return MOLECULES.read(smiles)


def canonical_smiles(smiles: str | None) -> str | None:
    """RDKit's canonical SMILES, or None for None, empty, unreadable or atom-less strings."""
    return MOLECULES.canonical(smiles)


def text_normalizer(model: LatentModel) -> Callable[[str | None], str | None]:
    """The canonical form strings of this model are compared in (its domain's): canonical SMILES for
    molecules, the detokenised token sequence for other grammars; None for what is not valid."""
    return model.domain.canonical


def reconstruction_matches(
    decoded: Sequence[str | None],
    targets: Sequence[str],
    normalize: Callable[[str | None], str | None] = canonical_smiles,
) -> list[bool]:
    """Whether each decoded string is the target (same canonical form; None never matches).

    Each distinct string is normalised once (sampled decodings repeat a lot).

    >>> reconstruction_matches(["OCC", "CCN", None], ["CCO", "CCO", "C"])
    [True, False, False]
    """
    if len(decoded) != len(targets):
        raise EvaluationError(f"{len(decoded)} decoded strings for {len(targets)} targets")
    forms: dict[str | None, str | None] = {}
    matches = []
    for got, want in zip(decoded, targets):
        for text in (got, want):
            if text not in forms:
                forms[text] = normalize(text)
        matches.append(forms[got] is not None and forms[got] == forms[want])
    return matches


def reconstruction_tanimoto(decoded: Sequence[str | None], targets: Sequence[str], n_bits: int = 2048) -> list[float]:
    """Tanimoto similarity of each target molecule and its decoding, on Morgan fingerprints of
    radius 2 with ``n_bits`` bits (RDKit's rdFingerprintGenerator); 0 where either is invalid."""
    from molks.metrics import morgan_fingerprints, tanimoto_pairs

    if len(decoded) != len(targets):
        raise EvaluationError(f"{len(decoded)} decoded strings for {len(targets)} targets")
    pairs = [(read_molecule(want), read_molecule(got)) for got, want in zip(decoded, targets)]
    both = [i for i, (want, got) in enumerate(pairs) if want is not None and got is not None]
    similarities = [0.0] * len(pairs)
    if both:
        a = morgan_fingerprints([pairs[i][0] for i in both], n_bits)
        b = morgan_fingerprints([pairs[i][1] for i in both], n_bits)
        for i, value in zip(both, tanimoto_pairs(a, b)):
            similarities[i] = float(value)
    return similarities


@torch.no_grad()
def sampled_decodings(
    model: LatentModel, codes: torch.Tensor, n: int, seed: int = 0, batch_size: int = 1024
) -> list[str | None]:
    """``n`` decodings of each code [M, D], sampled at temperature 1 (not greedy) -> [M * n]
    strings, the decodings of code i at rows i * n .. i * n + n - 1 (None where unfinished)."""
    if n < 1:
        raise EvaluationError(f"the number of sampled decodings must be at least 1, got {n}")
    generator = torch.Generator(device=model.device).manual_seed(seed)
    z = torch.as_tensor(codes, dtype=torch.float32).repeat_interleave(n, dim=0)
    return model.decode(z, greedy=False, temperature=1.0, generator=generator, batch_size=batch_size)


def novelty(distinct: set[str], train: set[str]) -> float | None:
    """Distinct items not in ``train`` / distinct items (both in canonical form); None for none.

    The novelty of MOSES (Polykovskiy et al. 2020) when the items are canonical SMILES.
    """
    return _fraction(len(distinct - train), len(distinct))


def sample_metrics(
    texts: Sequence[str | None],
    normalize: Callable[[str | None], str | None] = canonical_smiles,
    train: set[str] | None = None,
) -> dict[str, float | int | None]:
    """Validity, uniqueness, novelty and unfinished fraction of decoded samples (None = unfinished).

    ``train`` holds the training set in canonical form (``normalize``'s output); without it
    novelty is None. Returns {"n", "validity", "uniqueness", "novelty", "unfinished"}.
    """
    n = len(texts)
    forms = [normalize(t) for t in texts]
    valid = [f for f in forms if f is not None]
    unique = set(valid)
    return {
        "n": n,
        "validity": _fraction(len(valid), n),
        "uniqueness": _fraction(len(unique), len(valid)),
        "novelty": None if train is None else novelty(unique, train),
        "unfinished": _fraction(sum(t is None for t in texts), n),
    }


def _fraction(a: int, b: int) -> float | None:
    return a / b if b else None


# ----------------------------------------------------------------------------------------------
# Codes against the prior
# ----------------------------------------------------------------------------------------------


def evaluation_prior(model: LatentModel) -> tuple[GaussianMixturePrior, str]:
    """(prior on the CPU, description): the model's GMM prior for ``gmm``, else N(0, I)."""
    reg = model.model.regularizer
    if isinstance(reg, GMMRegularizer):
        prior = GaussianMixturePrior(reg.prior.means.detach().float().cpu(), float(reg.prior.sigma))
        return prior, f"model GMM prior (K={prior.n_components}, sigma={float(prior.sigma):g})"
    return GaussianMixturePrior(torch.zeros(1, model.latent_dim), 1.0), "N(0, I)"


@torch.no_grad()
def prior_distances(
    codes: torch.Tensor, prior: GaussianMixturePrior, n_reference: int = 16, seed: int = 0
) -> dict[str, float]:
    """L_KS and L_CV of codes [N, d] (N >= 2) to ``prior``, and relative to true prior samples.

    The reference is the mean loss over ``n_reference`` samples of N points drawn from the prior
    itself (seeded), so a ratio near 1 means "as close as a perfect sample of this size".
    Returns {"ks", "cv", "ks_reference", "cv_reference", "ks_ratio", "cv_ratio"}.
    """
    codes = torch.as_tensor(codes).detach().to(device="cpu", dtype=prior.means.dtype)
    if codes.ndim != 2 or codes.shape[1] != prior.dim:
        raise EvaluationError(f"codes must have shape [N, {prior.dim}], got {list(codes.shape)}")
    if codes.shape[0] < 2:
        raise EvaluationError(f"need at least 2 codes to compare with the prior, got {codes.shape[0]}")
    if n_reference < 1:
        raise EvaluationError(f"n_reference must be >= 1, got {n_reference}")
    prior = prior.cpu()
    gen = torch.Generator().manual_seed(seed)
    ks_ref = cv_ref = 0.0
    for _ in range(n_reference):
        sample = prior.sample(codes.shape[0], generator=gen)
        ks_ref += float(ks_loss(sample, prior)) / n_reference
        cv_ref += float(cv_loss(sample, prior)) / n_reference
    ks, cv = float(ks_loss(codes, prior)), float(cv_loss(codes, prior))
    return {"ks": ks, "cv": cv, "ks_reference": ks_ref, "cv_reference": cv_ref,
            "ks_ratio": ks / ks_ref, "cv_ratio": cv / cv_ref}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Data of the run
# ----------------------------------------------------------------------------------------------


def read_train_texts(run_dir: str | Path) -> list[str] | None:
    """The training texts of a run (``train.smi.gz``, one per line), or None when the run has none."""
    return RunDir(run_dir).train_texts()


def _read_validation(run_dir: Path) -> list[str]:
    texts = RunDir(run_dir).validation_texts()
    if texts is None:
        raise EvaluationError(f"{run_dir} has no validation.smi; pass held-out data (--data FILE)")
    return texts


# ----------------------------------------------------------------------------------------------
# The evaluation
# ----------------------------------------------------------------------------------------------


def evaluate(
    model: LatentModel,
    held_out: Sequence[str] | None = None,
    n_samples: int = 1000,
    seed: int = 0,
    png: str | Path | None = None,
    *,
    n_decodings: int = 10,
    reference: Sequence[str] | None = None,
    distribution: bool = True,
    fcd: bool = True,
    properties_png: str | Path | None = None,
    batch_size: int = 1024,
    n_reference: int = 16,
    png_molecules: int = 24,
    processes: int = 1,
    progress: bool = False,
    reference_cache: bool | str | Path = False,
    beam_width: int = DEFAULT_BEAM_WIDTH,
) -> dict[str, Any]:
    """Evaluate a trained model; see the module docstring for every metric. Returns a JSON-ready dict
    with the keys :data:`METRIC_KEYS` (fractions in [0, 1] or None when undefined).

    held_out: texts to reconstruct and to compare with the prior (default: the run's
        ``validation.smi``). n_samples: latent points drawn from the prior and from the ex-post
        GMM (each). seed: seeds both draws, the sampled decodings and the KS/CV reference samples.
        png: where to write a grid of up to ``png_molecules`` valid prior samples (molecular
        models only; ``"png"`` in the result is the path written, or None). n_decodings: sampled
        decodings per held-out code for the Grammar VAE protocol (0: skip it).
        reference: molecules the prior samples are compared with by :mod:`molks.metrics`
        (default: the held-out texts); distribution=False skips those metrics, fcd=False only
        FCD (the slow part); properties_png: where to draw the property histograms.
        processes: worker processes for the RDKit part of the metrics. progress: progress bars.
        reference_cache: keep the prepared reference on disk (True: ``molks.metrics.metrics_cache_dir()``,
        or a directory), so the next evaluation against the same reference only reads it.
        beam_width: the ``*_beam`` measures decode with a beam search of this width (1: skip them).
    """
    started = time.perf_counter()
    if n_samples < 1:
        raise EvaluationError(f"n_samples must be at least 1, got {n_samples}")
    if beam_width < 1:
        raise EvaluationError(f"beam_width must be 1 (greedy only) or more, got {beam_width}")
    if n_decodings < 0:
        raise EvaluationError(f"n_decodings must be 0 (skip) or more, got {n_decodings}")
    for name, value in (("held_out", held_out), ("reference", reference)):
        if isinstance(value, str):
            raise EvaluationError(f"{name} must be a list of strings, not a single string")
    texts = _read_validation(model.run_dir) if held_out is None else list(held_out)
    if not texts:
        raise EvaluationError("no held-out data to evaluate on")
    normalize = text_normalizer(model)
    result: dict[str, Any] = {
        "run_dir": str(model.run_dir),
        "regularizer": model.model.config.regularizer,
        "grammar": model.grammar.name,
        "latent_dim": model.latent_dim,
        "seed": seed,
        "beam_width": beam_width,
    }
    codes = _reconstruction(model, texts, normalize, n_decodings, seed, batch_size, beam_width, result)

    # Samples from the prior and from the ex-post GMM.
    train_texts = read_train_texts(model.run_dir)
    train = None if train_texts is None else {f for f in map(normalize, train_texts) if f is not None}
    result["n_samples"] = n_samples
    latent = {"prior": model.sample_latent(n_samples, source="prior", seed=seed)}
    if model.ex_post is not None:
        latent["ex_post"] = model.sample_latent(n_samples, source="ex-post", seed=seed)
    decoded: dict[str, list[str | None]] = {}
    for source, z in latent.items():
        decoded[source] = model.decode(z, batch_size=batch_size)
        if beam_width > 1:
            decoded[f"{source}_beam"] = model.decode(z, batch_size=batch_size, beam_width=beam_width)
    for source in SAMPLE_SOURCES:
        metrics = sample_metrics(decoded[source], normalize, train) if source in decoded else {}
        result.update({f"{source}_{name}": metrics.get(name) for name in SAMPLE_KEYS})
    prior_texts = decoded["prior_beam" if beam_width > 1 else "prior"]
    result["samples_decoding"] = f"beam search, width {beam_width}" if beam_width > 1 else "greedy"

    # Prior samples against the reference molecules: FCD and the MOSES metrics.
    if distribution and model.is_molecular:
        result["reference"] = "held-out items" if reference is None else f"given ({len(reference)} items)"
        metrics = _distribution(prior_texts, texts if reference is None else list(reference), train, fcd,
                                properties_png, str(model.device), processes, progress, reference_cache)  # fmt: skip
        result["n_reference"] = metrics["n_reference"]
        result["properties_png"] = metrics["png"]
        result.update({f"prior_{name}": metrics[name] for name in DISTRIBUTION_KEYS})

    # Held-out codes against the prior.
    prior, description = evaluation_prior(model)
    result["distance_prior"] = description
    if len(codes) >= 2:
        result.update(prior_distances(codes, prior, n_reference=n_reference, seed=seed))
    else:
        result.update(dict.fromkeys(("ks", "cv", "ks_reference", "cv_reference", "ks_ratio", "cv_ratio")))

    result["png"] = None
    if png is not None and model.is_molecular:  # structures are drawn; a table of expressions is not
        from molks.drawing import DrawingError

        valid = [t for t in prior_texts if model.domain.is_valid(t)]
        try:
            result["png"] = str(model.domain.draw(valid, png, max_items=png_molecules))
        except DrawingError:
            result["png"] = None  # no valid sample to draw
    result["seconds"] = time.perf_counter() - started
    return {key: result.get(key) for key in METRIC_KEYS}


def _reconstruction(
    model: LatentModel,
    texts: list[str],
    normalize: Callable[[str | None], str | None],
    n_decodings: int,
    seed: int,
    batch_size: int,
    beam_width: int,
    result: dict[str, Any],
) -> torch.Tensor:
    """Put the reconstruction metrics of the held-out texts into ``result``; returns their codes [M, D]."""
    codes, kept, failures = model.encode(texts, batch_size, errors="skip")
    if not kept:
        first = failures[0]
        raise EvaluationError(f"none of the {len(texts)} held-out items can be encoded; item {first[0]}: {first[1]}")
    targets = [texts[i] for i in kept]
    decoded = model.decode(codes, batch_size=batch_size)
    matches = reconstruction_matches(decoded, targets, normalize)
    result.update(
        n_held_out=len(kept),
        held_out_skipped=len(failures),
        reconstruction=sum(matches) / len(matches),
        reconstruction_unfinished=sum(d is None for d in decoded) / len(decoded),
        reconstruction_decodings=n_decodings,
    )
    if n_decodings:
        sampled = sampled_decodings(model, codes, n_decodings, seed, batch_size)
        sampled_matches = reconstruction_matches(sampled, [t for t in targets for _ in range(n_decodings)], normalize)
        result["reconstruction_sampled"] = sum(sampled_matches) / len(sampled_matches)
    if model.is_molecular:
        similarities = reconstruction_tanimoto(decoded, targets)
        result["reconstruction_tanimoto"] = sum(similarities) / len(similarities)
    if beam_width > 1:
        beam = model.decode(codes, batch_size=batch_size, beam_width=beam_width)
        result["reconstruction_beam"] = sum(reconstruction_matches(beam, targets, normalize)) / len(targets)
        if model.is_molecular:
            result["reconstruction_tanimoto_beam"] = sum(reconstruction_tanimoto(beam, targets)) / len(targets)
    return codes


def _distribution(
    samples: list[str | None],
    reference: list[str],
    train: set[str] | None,
    fcd: bool,
    png: str | Path | None,
    device: str,
    processes: int,
    progress: bool,
    reference_cache: bool | str | Path = False,
) -> dict[str, Any]:
    """:func:`molks.metrics.distribution_metrics` of the samples against the reference."""
    from molks.metrics import distribution_metrics

    return distribution_metrics(samples, reference, train, fcd=fcd, png=png, device=device, processes=processes,
                                progress=progress, reference_cache=reference_cache)  # fmt: skip


def format_report(result: dict[str, Any]) -> str:
    """The result of :func:`evaluate` as aligned ``name  value`` lines (fractions as percentages)."""
    percent = {"reconstruction", "reconstruction_unfinished", "reconstruction_sampled", "reconstruction_beam",
               "prior_filters"} | {
        f"{p}_{m}" for p in SAMPLE_SOURCES for m in SAMPLE_KEYS
    } | {f"prior_unique@{k}" for k in (1000, 10000)}
    width = max(len(k) for k in result)
    lines = []
    for key, value in result.items():
        if value is None:
            shown = "-"
        elif key in percent:
            shown = f"{100 * value:.1f}%"
        elif isinstance(value, float):
            shown = f"{value:.4g}" if math.isfinite(value) else str(value)
        else:
            shown = str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)
