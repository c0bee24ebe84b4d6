"""Evaluating a trained model: reconstruction, sample quality, and how well codes fit the prior.

>>> import molks
>>> from molks.evaluation import EvaluationSettings, evaluate
>>> report = evaluate(molks.load("moses"))                                  # the quick look
>>> report = evaluate(molks.load("moses"), reference=moses_test_smiles,     # the MOSES protocol
...                   settings=EvaluationSettings.moses(), reference_cache=True)

Two protocols (:class:`EvaluationSettings`):

* ``quick`` (the default): at most 1,000 held-out items reconstructed greedily and by the beam
  search, 1,000 prior samples decoded as molks hands them out (the beam search of
  :data:`molks.decoding.DEFAULT_BEAM_WIDTH`), FCD and the MOSES metrics of those samples against
  the held-out items, KS/CV of the held-out codes. The Grammar VAE's sampled decodings and the
  ex-post GMM's samples are opt-in (``sampled_decodings``, ``ex_post``). About a minute on two
  CPU cores for the shipped model (``benchmarks/RESULTS.md``).
* ``moses``: the protocol of MOSES (Polykovskiy et al. 2020): 30,000 prior samples against the
  whole MOSES test set, which molks does not bundle (the caller passes it as ``reference``; its
  prepared statistics are cached with ``reference_cache``), plus the 5k-vs-5k numbers
  ``prior_*_5k`` (the first 5,000 samples against 5,000 reference molecules) with their floors
  ``floor_*_5k`` (those 5,000 against 5,000 other reference molecules: what a perfect sampler of
  the reference scores at this size).

What :func:`evaluate` measures (every fraction is in [0, 1]; a fraction whose denominator is zero,
or a measure not asked for, is ``None``):

* ``reconstruction``: exact-match rate of greedy decoding of the held-out items' codes: items
  match when their canonical forms in the model's domain (:mod:`molks.domain`) are equal --
  canonical RDKit SMILES for molecules, the token sequence for expressions
  (``grammar.detokenize(grammar.tokenize(text))``, so spacing does not matter). Held-out
  items the model cannot encode (invalid SMILES, a token outside the grammar, a derivation longer
  than the model's length) are skipped and counted in ``held_out_skipped``; ``held_out_limit``:
  at most this many held-out items (the first ones) are used.
  ``reconstruction_unfinished``: fraction of those decodings that hit the length limit.
* ``reconstruction_sampled``: the Grammar VAE's protocol (Kusner et al. 2017 decode each of 10
  encodings 100 times; our encoder is deterministic, so one code): the fraction of
  ``reconstruction_decodings`` (N; 0 unless asked) decodings per held-out code, sampled at
  temperature 1 instead of greedily, that equal the input.
* ``reconstruction_tanimoto`` (molecules only): mean Tanimoto similarity between each
  held-out molecule and its greedy decoding on Morgan fingerprints (radius 2, 2048 bits, RDKit's
  rdFingerprintGenerator); an invalid or unfinished decoding counts 0.
* ``prior_*`` and ``ex_post_*``: ``n_samples`` latent points from where ``molks sample`` draws
  by default (``samples_source``: the model's prior, ``LatentModel.sample_latent(source="prior")``,
  for ``rae`` its ex-post GMM; or ``kde``, the kernel density on held-out codes, when the run has
  one) and, if asked, from the ex-post GMM fitted on the training codes, decoded greedily. ``validity``: valid
  / all, by the model's domain. ``uniqueness``: distinct valid / valid. ``novelty``: distinct
  valid not in the run's training set (``train.smi.gz``, canonicalised the same way, which costs
  about 0.1 ms a training molecule) / distinct valid; None when the run has no ``train.smi.gz``.
  ``unfinished``: decodings that hit the length limit / all.
* ``*_beam`` (``beam_width`` K > 1): the same measures with each code decoded by the beam search
  (``LatentModel.decode(beam_width=K)``).
* ``prior_unique@1000`` .. ``prior_weight_wasserstein`` (molecules only): FCD and the MOSES
  metrics of the prior samples (the beam's when K > 1: ``samples_decoding``) against ``reference``
  molecules (default: the held-out items), by :func:`molks.metrics.distribution_metrics`, whose
  docstring defines each; ``properties_png``: the property histograms, if asked for.
* ``ks``, ``cv``: the method's L_KS and L_CV between the held-out codes and a reference prior;
  ``ks_reference``/``cv_reference``: the mean of the same losses over 16 true prior samples of
  the same size, and ``ks_ratio``/``cv_ratio`` = value / reference (1: as close to the prior as a
  perfect sample of that size). The reference prior (``distance_prior``) is the model's own GMM
  prior for ``gmm``; for every other regulariser N(0, I).
* ``seconds_by_stage``: the wall seconds of each stage; ``seconds``: of all.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from molks.checks import (
    MAX_BATCH_SIZE,
    MAX_BEAM_WIDTH,
    MAX_EVALUATION_ITEMS,
    MAX_SAMPLED_DECODINGS,
    MAX_SEED,
    MAX_WORKERS,
    int_rule,
    option_name,
)
from molks.chemistry import canonical_smiles, novelty, read_molecule
from molks.decoding import DEFAULT_BEAM_WIDTH
from molks.errors import InputError
from molks.model.names import EVALUATION_PROTOCOLS, LATENT_SOURCES
from molks.model.prior import GaussianMixturePrior
from molks.model.regularizers import GMMRegularizer, cv_loss, ks_loss
from molks.progress import Stages, showing
from molks.runs import RunDir

if TYPE_CHECKING:
    from molks.api import LatentModel

__all__ = [
    "DISTRIBUTION_KEYS",
    "EvaluationError",
    "EvaluationSettings",
    "METRIC_KEYS",
    "PROTOCOLS",
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

PROTOCOLS = EVALUATION_PROTOCOLS  # torch-free, for the command line (molks.model.names)

# The MOSES metrics of molks.metrics reported for the prior samples (as "prior_<name>"); validity,
# uniqueness and novelty of the samples are the prior_* keys above them.
DISTRIBUTION_KEYS = (
    "unique@1000", "unique@10000", "fcd", "snn", "frag", "scaf", "int_div1", "int_div2", "filters",
    "logp_wasserstein", "sa_wasserstein", "qed_wasserstein", "weight_wasserstein",
)  # fmt: skip
# The 5k-vs-5k metrics of the MOSES protocol, each with its floor (two halves of the reference).
SPLIT_KEYS = ("fcd", "snn", "frag", "scaf")

# Measures of decoded samples, per source of latent points (greedy, and the beam search's).
SAMPLE_KEYS = ("validity", "uniqueness", "novelty", "unfinished")
SAMPLE_SOURCES = ("prior", "ex_post", "prior_beam", "ex_post_beam")
_KS_CV_KEYS = ("ks", "cv", "ks_reference", "cv_reference", "ks_ratio", "cv_ratio")

# The keys of evaluate()'s result, in the order reports print them.
METRIC_KEYS = (
    "run_dir", "regularizer", "grammar", "latent_dim", "protocol", "seed",
    "held_out_limit", "n_held_out", "held_out_skipped", "reconstruction", "reconstruction_unfinished",
    "reconstruction_decodings", "reconstruction_sampled", "reconstruction_tanimoto",
    "beam_width", "reconstruction_beam", "reconstruction_tanimoto_beam",
    "n_samples", "samples_source", *(f"{source}_{name}" for source in SAMPLE_SOURCES for name in SAMPLE_KEYS),
    "samples_decoding", "reference", "n_reference", *(f"prior_{name}" for name in DISTRIBUTION_KEYS),
    "split_size", *(f"prior_{name}_5k" for name in SPLIT_KEYS), *(f"floor_{name}_5k" for name in SPLIT_KEYS),
    "properties_png", "distance_prior", *_KS_CV_KEYS, "png", "seconds_by_stage", "seconds",
)  # fmt: skip


class EvaluationError(InputError):
    """An evaluation cannot run (no held-out data, nothing encodable, n_samples < 1, ...)."""


@dataclass(frozen=True)
class EvaluationSettings:
    """How much :func:`evaluate` measures. The defaults are the quick look; :meth:`moses` gives
    the MOSES protocol.

    held_out: at most this many held-out items (the first ones; None: all). n_samples: prior
    samples. beam_width: how samples are decoded and the ``*_beam`` measures (1: greedy only).
    sampled_decodings: the Grammar VAE's sampled decodings per held-out code (0: skip, the
    default; each costs a greedy decoding). ex_post: also sample the ex-post GMM. source: where the
    ``prior_*`` samples come from (prior, ex-post, kde; None: where ``molks sample`` draws by
    default, :attr:`molks.api.LatentModel.default_source`). distribution:
    FCD and the MOSES metrics of the samples (molecules only); fcd: FCD among them (ChemNet,
    about 5 ms a molecule on one core). split_size: the size of the 5k-vs-5k comparison and its
    floor (``moses`` only). seed: seeds every draw. batch_size: codes per batch. processes:
    worker processes for the RDKit part of the metrics. Each count is checked against its bound
    (:mod:`molks.checks`) when the settings are made: an :class:`EvaluationError` naming it.
    """

    protocol: str = "quick"
    held_out: int | None = 1000
    n_samples: int = 1000
    beam_width: int = DEFAULT_BEAM_WIDTH
    sampled_decodings: int = 0
    ex_post: bool = False
    source: str | None = None
    distribution: bool = True
    fcd: bool = True
    split_size: int = 5000
    seed: int = 0
    batch_size: int = 1024
    processes: int = 1

    def __post_init__(self) -> None:
        # Every setting against its bound (molks.checks) as the settings are made: molks evaluate
        # makes them before it loads the model or reads data, so a typo is refused at once.
        if self.protocol not in PROTOCOLS:
            raise EvaluationError(f"{option_name('protocol')} must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        for name, (accepts, phrase) in _SETTING_RULES.items():
            value = getattr(self, name)
            if not accepts(value):
                raise EvaluationError(f"{option_name(name, _FLAGS.get(name))} must be {phrase}, got {value!r}")

    @classmethod
    def moses(cls, **changes: Any) -> EvaluationSettings:
        """The MOSES protocol: 30,000 samples (against the whole test set, given as ``reference``)."""
        return replace(cls(protocol="moses", n_samples=30_000), **changes)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


_ITEMS = int_rule(1, MAX_EVALUATION_ITEMS)

# Setting -> (predicate, what it must be).
_SETTING_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "held_out": (lambda v: v is None or _ITEMS[0](v), f"{_ITEMS[1]} (or None: all)"),
    "n_samples": _ITEMS,
    "beam_width": int_rule(1, MAX_BEAM_WIDTH),
    "sampled_decodings": int_rule(0, MAX_SAMPLED_DECODINGS),
    "ex_post": (_is_bool, "true or false"),
    "source": (lambda v: v is None or v in LATENT_SOURCES, f"one of {', '.join(LATENT_SOURCES)} (or None: the run's default)"),
    "distribution": (_is_bool, "true or false"),
    "fcd": (_is_bool, "true or false"),
    "split_size": int_rule(2, MAX_EVALUATION_ITEMS),
    "seed": int_rule(0, MAX_SEED),
    "batch_size": int_rule(1, MAX_BATCH_SIZE),
    "processes": int_rule(1, MAX_WORKERS),
}  # fmt: skip
# molks evaluate's spelling of a setting, where it is not --<name>.
_FLAGS = {"sampled_decodings": "--decodings"}


# ----------------------------------------------------------------------------------------------
# Comparing strings
# ----------------------------------------------------------------------------------------------


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
    model: LatentModel, codes: torch.Tensor, n: int, seed: int = 0, batch_size: int = 1024,
    step: Callable[[int], None] | None = None,
) -> list[str | None]:  # fmt: skip
    """``n`` decodings of each code [M, D], sampled at temperature 1 (not greedy) -> [M * n]
    strings, the decodings of code i at rows i * n .. i * n + n - 1 (None where unfinished).
    ``step(k)``: told as each batch of k decodings is done."""
    if n < 1:
        raise EvaluationError(f"the number of sampled decodings must be at least 1, got {n}")
    generator = torch.Generator(device=model.device).manual_seed(seed)
    z = torch.as_tensor(codes, dtype=torch.float32).repeat_interleave(n, dim=0)
    return _decode(model, z, step or (lambda k: None), batch_size, temperature=1.0, generator=generator)


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
    *,
    settings: EvaluationSettings | None = None,
    reference: Sequence[str] | None = None,
    png: str | Path | None = None,
    properties_png: str | Path | None = None,
    reference_cache: bool | str | Path = False,
    progress: bool | None = False,
) -> dict[str, Any]:
    """Evaluate a trained model; see the module docstring for every metric. Returns a JSON-ready dict
    with the keys :data:`METRIC_KEYS`.

    held_out: texts to reconstruct and to compare with the prior (default: the run's
    ``validation.smi``); at most ``settings.held_out`` of them are used. settings: what to measure
    and how much (default: the quick look). reference: molecules the samples are compared with
    (default: the held-out texts; the MOSES protocol needs the MOSES test set here). png: a grid
    of up to 24 valid prior samples (molecular models only). properties_png: the property
    histograms. reference_cache: keep the prepared reference on disk (True:
    ``molks.metrics.metrics_cache_dir()``, or a directory). progress: None shows a bar per stage
    on a terminal and a line a minute elsewhere (stderr); False is silent.
    """
    started = time.perf_counter()
    settings = settings or EvaluationSettings()
    texts = _held_out_texts(model, held_out, reference, settings)
    stages = Stages("evaluate", enabled=progress)
    result: dict[str, Any] = {
        "run_dir": str(model.run_dir), "regularizer": model.model.config.regularizer, "grammar": model.grammar.name,
        "latent_dim": model.latent_dim, "protocol": settings.protocol, "seed": settings.seed,
        "held_out_limit": settings.held_out, "beam_width": settings.beam_width, "n_samples": settings.n_samples,
    }  # fmt: skip
    codes, reconstruction = _reconstruction(model, texts, settings, stages)
    result.update(reconstruction)
    with stages.stage("training set (novelty)"):
        train_texts = read_train_texts(model.run_dir)
        train = None if train_texts is None else {f for f in map(model.domain.canonical, train_texts) if f is not None}
    decoded = _samples(model, settings, stages)
    for source in SAMPLE_SOURCES:
        metrics = sample_metrics(decoded[source], model.domain.canonical, train) if source in decoded else {}
        result.update({f"{source}_{name}": metrics.get(name) for name in SAMPLE_KEYS})
    samples = decoded["prior_beam" if settings.beam_width > 1 else "prior"]
    result["samples_source"] = settings.source or model.default_source
    result["samples_decoding"] = f"beam search, width {settings.beam_width}" if settings.beam_width > 1 else "greedy"
    if settings.distribution and model.is_molecular:
        given = None if reference is None else list(reference)
        result.update(_distribution(samples, texts if given is None else given, train, settings, stages,
                                    properties_png, str(model.device), progress, reference_cache))  # fmt: skip
        result["reference"] = "held-out items" if given is None else f"given ({len(given)} items)"
    with stages.stage("codes against the prior (KS, CV)"):
        prior, result["distance_prior"] = evaluation_prior(model)
        distances = prior_distances(codes, prior, seed=settings.seed) if len(codes) >= 2 else {}
        result.update({key: distances.get(key) for key in _KS_CV_KEYS})
    result["png"] = _draw(model, samples, png)
    result["seconds_by_stage"] = {name: round(seconds, 2) for name, seconds in stages.seconds.items()}
    result["seconds"] = time.perf_counter() - started
    return {key: result.get(key) for key in METRIC_KEYS}


def _held_out_texts(
    model: LatentModel, held_out: Sequence[str] | None, reference: Sequence[str] | None, settings: EvaluationSettings
) -> list[str]:
    """The held-out texts to use (at most ``settings.held_out``), after checking the inputs."""
    for name, value in (("held_out", held_out), ("reference", reference)):
        if isinstance(value, str):
            raise EvaluationError(f"{name} must be a list of strings, not a single string")
    if settings.protocol == "moses" and model.is_molecular and reference is None:
        raise EvaluationError("the MOSES protocol compares the samples with the whole MOSES test set, which molks "
                              "does not bundle: pass it as the reference (molks evaluate --reference test.csv.gz)")  # fmt: skip
    texts = (_read_validation(model.run_dir) if held_out is None else list(held_out))[: settings.held_out]
    if not texts:
        raise EvaluationError("no held-out data to evaluate on")
    return texts


_BEAM_CHUNK = 128  # codes per beam-search call: a progress step of a few seconds on one CPU core


def _decode(model: LatentModel, z: torch.Tensor, step: Callable[[int], None], batch_size: int,
            beam_width: int = 1, **sampling: Any) -> list[str | None]:  # fmt: skip
    """``model.decode`` of codes z [N, D], a chunk at a time so that the stage's bar moves."""
    chunk = _BEAM_CHUNK if beam_width > 1 else batch_size
    out: list[str | None] = []
    for start in range(0, len(z), chunk):
        part = z[start : start + chunk]
        out += model.decode(part, batch_size=batch_size, beam_width=beam_width, **sampling)
        step(len(part))
    return out


def _reconstruction(
    model: LatentModel, texts: list[str], settings: EvaluationSettings, stages: Stages
) -> tuple[torch.Tensor, dict[str, Any]]:
    """(codes [M, D] of the held-out texts that encode, the reconstruction measures)."""
    normalize, batch_size = model.domain.canonical, settings.batch_size
    with stages.stage("held-out: encoding", len(texts)) as step:
        codes, kept, failures = model.encode(texts, batch_size, errors="skip")
        step(len(texts))
    if not kept:
        first = failures[0]
        raise EvaluationError(f"none of the {len(texts)} held-out items can be encoded; item {first[0]}: {first[1]}")
    targets = [texts[i] for i in kept]
    with stages.stage("held-out: greedy decoding", len(codes)) as step:
        decoded = _decode(model, codes, step, batch_size)
    matches = reconstruction_matches(decoded, targets, normalize)
    out: dict[str, Any] = {
        "n_held_out": len(kept), "held_out_skipped": len(failures), "reconstruction": sum(matches) / len(matches),
        "reconstruction_unfinished": sum(d is None for d in decoded) / len(decoded),
        "reconstruction_decodings": settings.sampled_decodings,
    }  # fmt: skip
    if model.is_molecular:
        out["reconstruction_tanimoto"] = sum(reconstruction_tanimoto(decoded, targets)) / len(targets)
    n = settings.sampled_decodings
    if n:
        with stages.stage(f"held-out: {n} sampled decodings each", len(codes) * n) as step:
            sampled = sampled_decodings(model, codes, n, settings.seed, batch_size, step)
        sampled_matches = reconstruction_matches(sampled, [t for t in targets for _ in range(n)], normalize)
        out["reconstruction_sampled"] = sum(sampled_matches) / len(sampled_matches)
    if settings.beam_width > 1:
        with stages.stage(f"held-out: beam search ({settings.beam_width})", len(codes)) as step:
            beam = _decode(model, codes, step, batch_size, settings.beam_width)
        out["reconstruction_beam"] = sum(reconstruction_matches(beam, targets, normalize)) / len(targets)
        if model.is_molecular:
            out["reconstruction_tanimoto_beam"] = sum(reconstruction_tanimoto(beam, targets)) / len(targets)
    return codes, out


def _samples(model: LatentModel, settings: EvaluationSettings, stages: Stages) -> dict[str, list[str | None]]:
    """Decoded samples per source (``prior``: the model's default sampler, ``ex_post``, and their
    ``_beam`` decodings)."""
    sources = {"prior": settings.source or model.default_source}
    if settings.ex_post and model.ex_post is not None:
        sources["ex_post"] = "ex-post"
    decoded: dict[str, list[str | None]] = {}
    for key, source in sources.items():
        z = model.sample_latent(settings.n_samples, source=source, seed=settings.seed)
        with stages.stage(f"{source} samples: greedy decoding", len(z)) as step:
            decoded[key] = _decode(model, z, step, settings.batch_size)
        if settings.beam_width > 1:
            with stages.stage(f"{source} samples: beam search ({settings.beam_width})", len(z)) as step:
                decoded[f"{key}_beam"] = _decode(model, z, step, settings.batch_size, settings.beam_width)
    return decoded


def _distribution(
    samples: list[str | None], reference: list[str], train: set[str] | None, settings: EvaluationSettings,
    stages: Stages, png: str | Path | None, device: str, progress: bool | None, cache: bool | str | Path,
) -> dict[str, Any]:  # fmt: skip
    """FCD and the MOSES metrics of the samples against the reference; for the MOSES protocol also
    the 5k-vs-5k numbers and their floors (two disjoint, seeded draws of the reference)."""
    from molks.metrics import distribution_metrics, molecule_set

    bars = showing(progress)
    options = {"device": device, "processes": settings.processes, "progress": bars}
    with stages.stage(f"FCD and MOSES metrics of {len(samples):,} samples against {len(reference):,} molecules"):
        metrics = distribution_metrics(samples, reference, train, fcd=settings.fcd, png=png, reference_cache=cache,
                                       **options)  # fmt: skip
    out = {f"prior_{name}": metrics[name] for name in DISTRIBUTION_KEYS}
    out.update(n_reference=metrics["n_reference"], properties_png=metrics["png"])
    if settings.protocol != "moses":
        return out
    size = settings.split_size
    if len(reference) < 2 * size:
        raise EvaluationError(f"the {size:,}-vs-{size:,} floors need at least {2 * size:,} reference molecules, "
                              f"got {len(reference):,}")  # fmt: skip
    chosen = random.Random(settings.seed).sample(range(len(reference)), 2 * size)
    with stages.stage(f"{size:,} samples against {size:,} reference molecules, and the floor"):
        first = molecule_set([reference[i] for i in chosen[:size]], filters=True, fcd=settings.fcd, cache=cache,
                             description="reference half 1", **options)  # fmt: skip
        second = molecule_set([reference[i] for i in chosen[size:]], fcd=settings.fcd, cache=cache,
                              description="reference half 2", **options)  # fmt: skip
        split = distribution_metrics(samples[:size], first, fcd=settings.fcd, **options)
        floor = distribution_metrics(first, second, fcd=settings.fcd, **options)
    out["split_size"] = size
    out.update({f"prior_{name}_5k": split[name] for name in SPLIT_KEYS})
    out.update({f"floor_{name}_5k": floor[name] for name in SPLIT_KEYS})
    return out


def _draw(model: LatentModel, samples: list[str | None], png: str | Path | None) -> str | None:
    """Draw up to 24 valid samples into ``png`` (molecules only); the path written, or None."""
    if png is None or not model.is_molecular:  # structures are drawn; a table of expressions is not
        return None
    from molks.drawing import DrawingError

    try:
        return str(model.domain.draw([t for t in samples if model.domain.is_valid(t)], png, max_items=24))
    except DrawingError:
        return None  # no valid sample to draw


def format_report(result: dict[str, Any]) -> str:
    """The result of :func:`evaluate` as aligned ``name  value`` lines (fractions as percentages),
    the seconds of each stage last."""
    percent = {"reconstruction", "reconstruction_unfinished", "reconstruction_sampled", "reconstruction_beam",
               "prior_filters"} | {
        f"{p}_{m}" for p in SAMPLE_SOURCES for m in SAMPLE_KEYS
    } | {f"prior_unique@{k}" for k in (1000, 10000)}
    stages = result.get("seconds_by_stage") or {}
    width = max(len(k) for k in [*result, *(f"  {name}" for name in stages)])
    lines = []
    for key, value in result.items():
        if key == "seconds_by_stage":
            continue
        if value is None:
            shown = "-"
        elif key in percent:
            shown = f"{100 * value:.1f}%"
        elif isinstance(value, float):
            shown = f"{value:.4g}" if math.isfinite(value) else str(value)
        else:
            shown = str(value)
        lines.append(f"{key:<{width}}  {shown}")
    lines += [f"{'  ' + name:<{width}}  {seconds:.1f} s" for name, seconds in stages.items()]
    return "\n".join(lines)
