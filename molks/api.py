"""The Python API over a trained run: ``molks.load(run_dir)`` -> :class:`LatentModel`.

>>> m = molks.load("runs/moses")
>>> z = m.encode(["CCO", "c1ccccc1"])        # tensor [2, D]
>>> m.decode(z)                              # ['CCO', 'c1ccccc1'] (None where unfinished)
>>> z, smiles = m.sample(10, component=3)    # decoded prior samples
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple, overload

import numpy as np
import torch

from molks.checks import (
    MAX_BATCH_SIZE,
    OptionError,
    check_batch_size,
    check_beam_width,
    check_int,
    check_sample_count,
    check_seed,
)
from molks.codes import CodesError
from molks.decoding import DEFAULT_BEAM_WIDTH
from molks.devices import resolve_device
from molks.domain import Domain, ItemError, domain_for_grammar, domain_of_config
from molks.grammar import Grammar, GrammarError, pad_sequences
from molks.grammar.cfg import not_text
from molks.grammar.errors import NotTextError
from molks.model.autoencoder import Autoencoder, ModelConfig
from molks.model.between import BetweenCodes, between_noise
from molks.model.names import LATENT_SOURCES
from molks.model.prior import PriorError
from molks.model.regularizers import KDE_CODES, ExPostGMM
from molks.runs import RunDir
from molks.training.checkpoint import CheckpointError, load_checkpoint, verify_weights

__all__ = ["Encoding", "LatentModel", "load"]


class Encoding(NamedTuple):
    """What ``LatentModel.encode(texts, errors="skip")`` returns."""

    codes: torch.Tensor
    """[M, D] float32 on the CPU: the codes of the texts that could be encoded, in input order."""
    kept: list[int]
    """The M indices (into the input) of those texts."""
    failures: list[tuple[int, str]]
    """(index, reason) of every text that could not be encoded."""


class LatentModel:
    """A trained model ready to encode text, decode latent points and sample its prior.

    ``domain``: what its items are (:mod:`molks.domain`); default: its grammar's.
    """

    def __init__(
        self, model: Autoencoder, run_dir: Path, ex_post: ExPostGMM | None, device: torch.device, domain: Domain | None = None,
        kde: ExPostGMM | None = None,
    ) -> None:
        self.model = model.eval()
        self.run_dir = run_dir
        self.ex_post = ex_post
        self.kde = kde
        """The kernel density on held-out codes (``ex_post_kde.safetensors``; :meth:`fit_kde`), if any."""
        self._between: BetweenCodes | None = None
        self.device = device
        self.domain = domain if domain is not None else domain_for_grammar(model.grammar)

    @property
    def default_source(self) -> str:
        """Where :meth:`sample` draws when not told: between neighbouring held-out codes when the run
        has a kernel density (its codes; it samples like the data, :mod:`molks.model.between`), else
        the prior."""
        return "between" if self.kde is not None else "prior"

    @property
    def between(self) -> BetweenCodes | None:
        """The sampler between neighbouring codes of the kernel density (:mod:`molks.model.between`),
        if the run has a kernel density of at least two codes."""
        if self._between is None and self.kde is not None and self.kde.n_components >= 2:
            self._between = BetweenCodes(self.kde.means, between_noise(self.model.regularizer))
        return self._between

    @property
    def grammar(self) -> Grammar:
        return self.model.grammar

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def is_molecular(self) -> bool:
        return self.domain.molecular

    def __repr__(self) -> str:
        c = self.model.config
        return f"LatentModel({str(self.run_dir)!r}, regularizer={c.regularizer!r}, latent_dim={self.latent_dim}, grammar={self.grammar.name!r})"

    def sequences(self, texts: Sequence[str], canonicalize: bool = True) -> torch.Tensor:
        """Padded production ids [N, L] of ``texts`` (SMILES are canonicalised with RDKit first)."""
        if isinstance(texts, str):
            raise NotTextError("pass a list of strings, not a single string")
        if canonicalize:
            texts = [_prepared(self.domain, text, i) for i, text in enumerate(texts)]
        ids = []
        for i, text in enumerate(texts):
            try:
                ids.append(self.grammar.parse(text))
            except GrammarError as err:
                raise GrammarError(err.reason, position=err.position, item=i) from None
        return torch.from_numpy(pad_sequences(ids, self.model.max_length, self.grammar.padding_index))

    @overload
    def encode(self, texts: Sequence[str], batch_size: int = ..., errors: Literal["raise"] = ...) -> torch.Tensor: ...

    @overload
    def encode(self, texts: Sequence[str], batch_size: int = ..., *, errors: Literal["skip"]) -> Encoding: ...

    @torch.no_grad()
    def encode(
        self, texts: Sequence[str], batch_size: int = 1024, errors: Literal["raise", "skip"] = "raise"
    ) -> torch.Tensor | Encoding:
        """Latent codes [N, D] (float32, on the CPU) of SMILES strings or expressions.

        ``errors="raise"``: the first text that cannot be encoded (an invalid SMILES, a token outside
        the grammar, no parse, a derivation longer than the model allows) is a GrammarError naming
        its index. ``errors="skip"``: an :class:`Encoding` -- the codes [M, D] of the texts that
        encode, their indices, and (index, reason) of the others.
        """
        check_batch_size(batch_size)
        if errors == "raise":
            return self._codes(self.sequences(texts), batch_size)
        if errors != "skip":
            raise OptionError(f"errors must be 'raise' or 'skip', got {errors!r}")
        kept, x, failures = self._encodable(texts)
        return Encoding(self._codes(x, batch_size), kept, failures)

    def _encodable(self, texts: Sequence[str]) -> tuple[list[int], torch.Tensor, list[tuple[int, str]]]:
        """(kept indices, their padded sequences [M, L], failures). All texts go through
        :meth:`sequences` in one call; only when that fails are they checked one by one."""
        if isinstance(texts, str):
            raise NotTextError("pass a list of strings, not a single string")
        try:
            return list(range(len(texts))), self.sequences(list(texts)), []
        except GrammarError:
            pass
        kept, rows, failures = [], [], []
        for i, text in enumerate(texts):
            try:
                rows.append(self.sequences([text]))
                kept.append(i)
            except GrammarError as err:
                failures.append((i, err.reason))  # without the "item 0: " of the one-text call
        x = torch.cat(rows) if rows else torch.empty(0, self.model.max_length, dtype=torch.long)
        return kept, x, failures

    def _codes(self, x: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Codes [N, D] (CPU, float32) of padded sequences [N, L], in batches on the model's device."""
        if not len(x):
            return torch.empty(0, self.latent_dim)
        # Batches of similar lengths: each is cut after its longest derivation, and a code does
        # not depend on the padding (the networks read each sequence to its own end).
        order = (x != self.model.tensors.padding_index).sum(dim=1).argsort(stable=True)
        codes = torch.empty(len(x), self.latent_dim)
        for i in range(0, len(x), batch_size):
            rows = order[i : i + batch_size]
            codes[rows] = self.model.encode(x[rows].to(self.device)).float().cpu()
        return codes

    @torch.no_grad()
    def decode(
        self,
        z: torch.Tensor,
        *,
        temperature: float | None = None,
        generator: torch.Generator | None = None,
        batch_size: int = 1024,
        beam_width: int = 1,
    ) -> list[str | None]:
        """Strings decoded from codes z [N, D]; None where decoding hit the length limit.

        ``temperature`` None: deterministic, greedy (``beam_width`` 1) or by a beam search; a number
        > 0: each production sampled at that temperature (with ``generator``), never with a beam.
        ``beam_width`` K > 1: a beam search of width K proposes candidates for each code
        (``decode_beams``) and the encoder chooses: of the valid ones (``is_valid``), the one
        whose own code is nearest z. Where none is valid, the most probable complete one. Greedy
        decoding's result is among the candidates, so a code whose greedy decoding is valid
        decodes to a valid item (``molks.decoding`` says why and what it buys).
        """
        check_batch_size(batch_size)
        check_beam_width(beam_width)
        if temperature is not None and not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
                                            and temperature > 0):  # fmt: skip
            raise OptionError(f"must be a number > 0, got {temperature!r}", option="temperature")
        z = self._checked_codes(z)
        if beam_width > 1:
            if temperature is not None:
                raise OptionError("beam search is deterministic: give a temperature or a beam_width > 1, not both",
                                  option="temperature")  # fmt: skip
            beams = self.decode_beams(z, beam_width, batch_size=batch_size)
            return self._nearest_valid(z, beams, batch_size)
        out: list[str | None] = []
        for i in range(0, len(z), batch_size):
            ids, finished = self.model.decode(
                z[i : i + batch_size].to(self.device), greedy=temperature is None,
                temperature=1.0 if temperature is None else temperature, generator=generator,
            )  # fmt: skip
            for row, done in zip(ids.cpu().tolist(), finished.cpu().tolist()):
                out.append(self.grammar.derive(row) if done else None)
        return out

    @torch.no_grad()
    def decode_beams(
        self, z: torch.Tensor, beam_width: int = 8, batch_size: int = 1024
    ) -> list[list[tuple[str | None, float]]]:
        """The decodings a beam search of ``beam_width`` finds for each code z [N, D] (its K beams
        and the greedy decoding, without repeats), complete ones first, each most probable first,
        as (string or None where unfinished, log-probability under the decoder)."""
        check_batch_size(batch_size)
        check_beam_width(beam_width)
        z = self._checked_codes(z)
        chunk = max(1, batch_size // beam_width)
        out: list[list[tuple[str | None, float]]] = []
        for i in range(0, len(z), chunk):
            ids, finished, scores = self.model.beam_search(z[i : i + chunk].to(self.device), beam_width)
            for rows, done, logp in zip(ids.cpu().tolist(), finished.cpu().tolist(), scores.cpu().tolist()):
                out.append([(self.grammar.derive(r) if d else None, s)
                            for r, d, s in zip(rows, done, logp) if s != float("-inf")])  # fmt: skip
        return out

    def _nearest_valid(
        self, z: torch.Tensor, beams: list[list[tuple[str | None, float]]], batch_size: int
    ) -> list[str | None]:
        """For each code z [N, D]: the valid candidate of its beams whose code is nearest z."""
        owners: list[int] = []
        candidates: list[str] = []
        chosen: list[str | None] = []  # likeliest valid, else likeliest complete: kept where no candidate encodes
        for i, found in enumerate(beams):
            complete = [t for t, _ in found if t is not None]
            valid = list(dict.fromkeys(t for t in complete if self.is_valid(t)))  # each checked once
            chosen.append(valid[0] if valid else complete[0] if complete else None)
            owners += [i] * len(valid)
            candidates += valid
        if not candidates:
            return chosen
        # Length-sorted batches of 256 encode 1.5x as fast as 1,024 on one CPU thread (measured).
        codes, kept, _ = self.encode(candidates, min(batch_size, 256), errors="skip")
        distance = ((codes - z[[owners[j] for j in kept]]) ** 2).sum(dim=1).tolist()
        best: dict[int, float] = {}
        for j, d in zip(kept, distance):  # candidates arrive in likelihood order: ties keep the likelier
            owner = owners[j]
            if d < best.get(owner, float("inf")):
                best[owner], chosen[owner] = d, candidates[j]
        return chosen

    def _checked_codes(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` as float32 [N, D]; another shape, or NaN or infinite values (which decode to
        garbage or None silently), are refused as ``molks decode`` refuses them in a codes file."""
        try:
            z = torch.as_tensor(z, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as err:
            raise CodesError(f"latent points must be numbers of shape [N, {self.latent_dim}] ({err})") from None
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise CodesError(f"latent points must have shape [N, {self.latent_dim}], got {list(z.shape)}")
        bad = (~torch.isfinite(z)).any(dim=1).nonzero().flatten().tolist()
        if bad:
            raise CodesError("latent points contain NaN or infinite values", item=bad[0])
        return z

    @torch.no_grad()
    def decode_robust(
        self, z: torch.Tensor, n_samples: int = 100, temperature: float = 1.0, seed: int = 0
    ) -> list[str | None]:
        """For each code [N, D]: the most frequent valid string among greedy + ``n_samples`` sampled decodings.

        The repeat (GVAE) decoder runs once per code and only the masked selection is repeated;
        the autoregressive one decodes the code ``n_samples`` times in one batch.
        """
        check_int(n_samples, "n_samples", 0, MAX_BATCH_SIZE)  # decoded as one batch per code
        z = torch.as_tensor(z, dtype=torch.float32)
        # Not check_seed: the optimisation passes seeds derived from (seed, iteration), beyond 32 bits.
        generator = torch.Generator(device=self.device).manual_seed(seed)
        greedy = self.decode(z)
        results: list[str | None] = []
        for i in range(len(z)):
            ids, finished = self.model.decode(
                z[i : i + 1].to(self.device), greedy=False, temperature=temperature, generator=generator, repeats=n_samples
            )
            candidates = [greedy[i]] + [
                self.grammar.derive(row) for row, done in zip(ids.cpu().tolist(), finished.cpu().tolist()) if done
            ]
            counts = Counter(c for c in candidates if c is not None and self.is_valid(c))
            results.append(counts.most_common(1)[0][0] if counts else greedy[i])
        return results

    def is_valid(self, text: str) -> bool:
        """Whether ``text`` is an item of the model's domain: a molecule RDKit reads into at least
        one atom, or a sentence of the grammar (:mod:`molks.domain`)."""
        return self.domain.is_valid(text)

    @torch.no_grad()
    def sample_latent(
        self, n: int, component: int | None = None, source: str | None = None, seed: int | None = None
    ) -> torch.Tensor:
        """n latent points [n, D] from ``source``: the model's prior (``"prior"``), the ex-post GMM
        fitted on the training codes (``"ex-post"``), the kernel density on held-out codes (``"kde"``)
        or points between neighbouring held-out codes (``"between"``, :attr:`between`); default
        :attr:`default_source`, or the prior when a ``component`` is given (prior and ex-post GMM
        only): draw from that mixture component."""
        check_sample_count(n)
        if source is None:  # a component is a mixture's: with one given, the prior's
            source = "prior" if component is not None else self.default_source
        generator = torch.Generator().manual_seed(check_seed(seed)) if seed is not None else None
        if source not in LATENT_SOURCES:
            raise PriorError(f"source must be one of {', '.join(map(repr, LATENT_SOURCES))}, got {source!r}")
        if source == "prior":
            return self.model.regularizer.to("cpu").sample_prior(n, component=component, generator=generator).float()
        if component is not None and source in ("kde", "between"):
            raise PriorError(f"--component picks a mixture component of the prior or the ex-post GMM, not of the {source} sampler")
        if source == "ex-post":
            if self.ex_post is None:
                raise PriorError(f"{self.run_dir} has no ex-post GMM ({RunDir.EX_POST})")
            return self.ex_post.sample(n, component=component, generator=generator).float()
        if self.kde is None:
            raise PriorError(f"{self.run_dir} has no kernel density ({RunDir.KDE}), whose codes the {source} sampler "
                             "draws around (molks kde RUN HELD_OUT.smi fits one)")  # fmt: skip
        if source == "kde":
            return self.kde.sample(n, generator=generator).float()
        if self.between is None:
            raise PriorError(f"the kernel density of {self.run_dir} holds one code: nothing to sample between")
        return self.between.sample(n, generator=generator)

    def fit_kde(
        self, texts: Sequence[str], bandwidth: float | None = None, max_codes: int = KDE_CODES, seed: int = 0,
        save: bool = True,
    ) -> Encoding:
        """Fit the kernel density that :meth:`sample` then draws from by default: a Gaussian kernel of
        sd ``bandwidth`` on the codes of ``texts`` (at most ``max_codes`` of them, a seeded random
        choice), molecules the model was not trained on (a validation split or other held-out data:
        around its training codes a decoder returns its training molecules). Items that cannot be
        encoded are skipped (the returned :class:`Encoding` says which and why). ``save``: write it
        to the run directory (``ex_post_kde.safetensors``), which a shipped model refuses.
        ``bandwidth`` None: :func:`molks.model.regularizers.kde_bandwidth` of the model."""
        from molks.model.regularizers import fit_ex_post_kde, kde_bandwidth

        check_sample_count(max_codes, "max_codes")
        run = RunDir(self.run_dir)
        if save and run.is_shipped:
            raise CheckpointError(f"{self.run_dir} is a model shipped with molks: copy the folder and fit the kernel density there")
        texts = list(texts)
        if len(texts) > max_codes:
            keep = np.random.default_rng(check_seed(seed)).choice(len(texts), max_codes, replace=False)
            texts = [texts[i] for i in sorted(keep)]
        encoding = self.encode(texts, errors="skip")
        if not len(encoding.codes):
            raise GrammarError(f"none of the {len(texts)} items could be encoded, so there is no kernel density to fit")
        bandwidth = kde_bandwidth(self.model.regularizer) if bandwidth is None else bandwidth
        kde = fit_ex_post_kde(encoding.codes, bandwidth)
        if save:
            run.write_kde(kde, bandwidth, source="held-out items")
        self.kde, self._between = kde, None  # the between sampler follows the new codes
        return encoding

    def sample(
        self,
        n: int,
        component: int | None = None,
        temperature: float | None = None,
        source: str | None = None,
        seed: int | None = None,
        beam_width: int = DEFAULT_BEAM_WIDTH,
    ) -> tuple[torch.Tensor, list[str | None]]:
        """Draw n latent points [n, D] and decode them: by a beam search of ``beam_width``
        (1: greedy; ``molks.decoding``), or sampled at ``temperature`` when one is given."""
        check_beam_width(beam_width)  # before the draw: a bad width is refused at once
        z = self.sample_latent(n, component=component, source=source, seed=seed)
        if temperature is None:
            return z, self.decode(z, beam_width=beam_width)
        generator = torch.Generator(device=self.device).manual_seed(seed or 0)
        return z, self.decode(z, temperature=temperature, generator=generator)


def load(name_or_path: str | os.PathLike[str], device: str = "cpu") -> LatentModel:
    """Load a trained run directory (or a model shipped with molks, e.g. ``"moses"``)."""
    run_dir = RunDir.resolve(name_or_path)
    run = run_dir.path
    doc = run_dir.read_config()
    # Checked as the weights are: every size and option within its bound (molks.checks) before
    # anything is built, so that a config.json edited to max_length 10**9 is refused, not allocated.
    try:
        config = ModelConfig.from_dict(doc["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{run_dir.config_file}: invalid run configuration ({err})") from None
    grammar = run_dir.read_grammar(doc)
    torch_device = resolve_device(device)
    try:  # the regulariser checks its options (components, batch size) before it allocates
        model = Autoencoder(config, grammar)
    except ValueError as err:
        raise CheckpointError(f"{run_dir.config_file}: invalid run configuration ({err})") from None
    state, _, _ = load_checkpoint(run_dir.weights)  # a damaged file: "corrupt", said first
    verify_weights(run_dir.weights)  # weights altered on disk since training: refused, not used
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{run_dir.weights}: does not fit the configured model ({err})") from None
    ex_post = run_dir.read_ex_post()
    if ex_post is not None and hasattr(model.regularizer, "ex_post"):
        model.regularizer.ex_post = ex_post  # RAE samples through it
    kde = run_dir.read_kde()
    if kde is not None and kde[0].dim != model.latent_dim:
        raise CheckpointError(f"codes of dimension {kde[0].dim}, the model's are {model.latent_dim}", path=run_dir.kde_file)
    return LatentModel(model.to(torch_device), run, ex_post, torch_device, domain_of_config(doc, grammar),
                       kde=None if kde is None else kde[0])  # fmt: skip


def _prepared(domain: Domain, text: str, index: int) -> str:
    """``domain.prepare(text)``; an invalid item is a GrammarError of item ``index``, as a text the
    grammar cannot parse is (callers skip both alike)."""
    if not isinstance(text, str):  # None or a number in the list: that item's failure, not a crash
        err = not_text(text)
        raise type(err)(err.reason, item=index)
    try:
        return domain.prepare(text)
    except ItemError as err:
        raise GrammarError(err.reason, item=index) from None
