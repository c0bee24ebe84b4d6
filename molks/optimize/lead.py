"""Lead optimisation: improve given molecules while they stay similar to where they started.

>>> import molks
>>> from molks.optimize.lead import LeadConfig, optimize_leads
>>> summary = optimize_leads(molks.load("moses"), ["CCOc1ccccc1O", "CC(=O)Nc1ccc(O)cc1"], "leads-out",
...                          "logp", LeadConfig(min_similarity=0.4, budget=60))

For each starting molecule s, in input order (the similarity-constrained optimisation of the JT-VAE
paper, Jin et al. 2018, with molks's latent space):

    encode s -> z0 [D]; score s
    first rounds, until ``initial`` codes are tried: ``batch_size`` codes z0 + r_i * sigma * e_i a round,
              e_i ~ N(0, I) [D], the radii r_i evenly spaced in (0, ``radius``], sigma [D] the
              standard deviation of the model's prior
    then:     ``method="bo"``: an exact GP (:mod:`molks.optimize.surrogate`) on every code tried so
              far and the value of what it decoded to, and ``batch_size`` codes maximising qLogEI
              (:func:`molks.optimize.acquisition.propose`) in a TuRBO trust region around the best
              code, inside the box z0 +- 2 * radius * sigma; ``method="random"``: more random rounds
    each round decodes its codes (greedy, or a beam search of ``beam_width``), keeps the molecules,
    and scores those not seen before (canonical SMILES) with the target, while the budget lasts

``budget`` is the per-molecule oracle budget: the number of distinct molecules scored besides the
start (a repeat, the start included, is not scored again and costs nothing; ``max_rounds`` bounds
the rounds when decodings keep repeating).
The value the GP sees for a code is the objective of its molecule minus ``PENALTY`` per unit of
similarity below ``min_similarity`` (an invalid decoding gets the worst value so far), so the trust
region moves towards molecules that are better *and* similar enough.

A molecule succeeds when some decoded molecule other than itself (canonical SMILES) has Tanimoto
similarity >= ``min_similarity`` (:mod:`molks.optimize.similarity`) and a better score; ``best`` is the
best such molecule, ``improvement`` its objective minus the start's (positive is better, in the
target's own direction), 0 for a failure. A starting molecule the model cannot encode (not a
molecule, a token outside the grammar, a derivation longer than the model allows) or the target
cannot score is a failure with its reason: never dropped.

The target is scored through :mod:`molks.optimize.guard`, as the single-objective loop scores it: a
user function runs in a worker process of its own, and a call that raises, exits, crashes or passes
``target_timeout`` scores its molecules as failed (their candidate rows say why, the molecule's
result lists the failed calls, the log says so) and the search goes on; ``MAX_FAILED_CALLS`` failed
calls in a row stop the run with a :class:`~molks.optimize.targets.TargetError` naming the target,
the molecules done saved (the one in progress is done again on resume).

Resumable (:mod:`molks.optimize.lead_state`): each molecule's result (with all its candidates) is
written atomically to ``molecules/NNNNN.json`` as soon as it is done, and ``lead.json`` records
what the run is (settings, target, model and starting molecules), the target's failed calls and
the SHA-256 of each result, with its own SHA-256 in ``lead.sha256``: files altered on disk are
refused on resume. ``resume=True`` goes on after the last molecule done, and a molecule's search
depends only on (seed, its index), so a resumed run writes the tables an uninterrupted one writes.
The report (:mod:`molks.optimize.lead_report`) is rendered from those files: ``leads.csv``,
``candidates.csv``, ``pairs.png`` and ``summary.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from molks.api import LatentModel
from molks.domain import MOLECULES
from molks.files import file_sha256, folder_lock
from molks.optimize.acquisition import AcquisitionConfig, TrustRegion, propose
from molks.optimize.guard import DEFAULT_TIMEOUT, TargetRunner, open_target
from molks.optimize.lead_report import write_lead_report
from molks.optimize.lead_state import LEAD_FILE, LeadError, LeadState, read_records
from molks.optimize.similarity import DEFAULT_FINGERPRINT, FINGERPRINTS, SimilarityTo
from molks.optimize.surrogate import SurrogateConfig, SurrogateError, fit_surrogate
from molks.optimize.targets import Target
from molks.progress import progress_bar, showing

__all__ = ["LEAD_FILE", "METHODS", "PENALTY", "LeadConfig", "LeadError", "optimize_leads", "read_records"]

logger = logging.getLogger("molks.optimize")

LEAD_VERSION = 1
METHODS = ("bo", "random")
PENALTY = 10.0  # value lost per unit of similarity below the threshold, in the target's units
PRIOR_SAMPLES = 4096  # prior draws (seed 0) whose per-dimension sd scales the neighbourhood


@dataclass(frozen=True)
class LeadConfig:
    """Settings of a lead optimisation.

    min_similarity: the Tanimoto threshold delta in [0, 1]. budget: distinct molecules scored per
    starting molecule. batch_size: codes decoded per round. initial: codes drawn at random before
    the GP proposes (TuRBO's initial design). radius: the neighbourhood's scale in prior standard
    deviations (round 1 spreads up to it; the box is twice it). method: "bo" or
    "random". beam_width: 1 decodes greedily, K > 1 by a beam search of K. fingerprint: one of
    :data:`~molks.optimize.similarity.FINGERPRINTS`. max_rounds: rounds per molecule at most
    (None: 2 x the rounds the budget needs, plus 2). threads: torch threads while it runs (None:
    leave as is). target_timeout: seconds one call of a user target may take
    (:mod:`molks.optimize.guard`).
    """

    min_similarity: float = 0.4
    budget: int = 100
    batch_size: int = 20
    initial: int = 20
    radius: float = 0.5
    method: str = "bo"
    beam_width: int = 1
    fingerprint: str = DEFAULT_FINGERPRINT
    max_rounds: int | None = None
    seed: int = 0
    threads: int | None = 1
    target_timeout: float = DEFAULT_TIMEOUT
    surrogate: SurrogateConfig = field(default_factory=lambda: SurrogateConfig(maxiter=100, warm_start=False))
    acquisition: AcquisitionConfig = field(default_factory=lambda: AcquisitionConfig(maxiter=50, tr_length=0.5))

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_similarity <= 1.0:
            raise LeadError(f"min_similarity must lie in [0, 1], got {self.min_similarity}", option="--min-similarity")
        for name, option in (("budget", "--budget"), ("batch_size", "--batch-size"), ("beam_width", "--beam-width")):
            if int(getattr(self, name)) < 1:
                raise LeadError(f"must be at least 1, got {getattr(self, name)}", option=option)
        if self.initial < 0:
            raise LeadError(f"initial must be >= 0, got {self.initial}")
        if not self.radius > 0:
            raise LeadError(f"radius must be positive, got {self.radius}")
        if self.method not in METHODS:
            raise LeadError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}", option="--method")
        if self.fingerprint not in FINGERPRINTS:
            raise LeadError(f"unknown fingerprint {self.fingerprint!r}; choose one of {', '.join(FINGERPRINTS)}")
        if self.max_rounds is not None and self.max_rounds < 1:
            raise LeadError(f"max_rounds must be at least 1 (or None), got {self.max_rounds}")
        if self.threads is not None and self.threads < 1:
            raise LeadError(f"threads must be at least 1 (or None), got {self.threads}")
        if not 0 < self.target_timeout < math.inf:
            raise LeadError(f"must be a positive number of seconds, got {self.target_timeout}", option="--target-timeout")

    @property
    def rounds(self) -> int:
        """Rounds per molecule at most."""
        return self.max_rounds or 2 * math.ceil(self.budget / self.batch_size) + 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share (all but the threads and the target's timeout)."""
        d = self.to_dict()
        del d["threads"], d["target_timeout"]
        # Lead optimisation never restarts its regions (a few rounds per molecule): the restart
        # settings are not part of a lead run, and runs saved before they existed still resume.
        for key in ("restarts", "restart_yield"):
            d["acquisition"].pop(key, None)
        return d


# ---------------------------------------------------------------- the run


def optimize_leads(
    model: LatentModel,
    starts: Sequence[str],
    out_dir: str | os.PathLike[str],
    target: Target | str | TargetRunner = "logp",
    config: LeadConfig = LeadConfig(),
    *,
    resume: bool = False,
    source: str = "",
    progress: bool | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Optimise each molecule of ``starts`` in its latent neighbourhood; returns the summary
    (``summary.json``). ``resume``: go on with the run in ``out_dir``, which must have been
    started with the same molecules, model, target and settings; without it a run already in
    ``out_dir`` is an error. ``source``: where the molecules came from (shown in the summary).
    ``target``: a built-in name, ``"package.module:function"`` (run in a worker process), a
    :class:`Target`, or a runner from :func:`~molks.optimize.guard.open_target` (left open for the
    caller to close)."""
    if isinstance(starts, str):
        raise LeadError("pass a list of SMILES strings, not a single string")
    starts = list(starts)
    if not starts:
        raise LeadError("no starting molecules")
    if not model.domain.molecular:
        raise LeadError(f"lead optimisation needs a model of molecules; {model.run_dir} works on {model.domain.name}")
    out = Path(out_dir)
    runner = target if isinstance(target, TargetRunner) else open_target(target, config.target_timeout)
    before = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        with folder_lock(out, "write a lead optimisation"):
            return _run(model, starts, out, runner, config, resume, source, progress, log or logger.info)
    finally:
        torch.set_num_threads(before)
        if runner is not target:
            runner.close()


def _identity(model: LatentModel, starts: list[str], target: Target, config: LeadConfig) -> dict[str, Any]:
    weights = model.run_dir / "model.safetensors"
    return {
        "version": LEAD_VERSION,
        "target": target.name,
        "maximize": target.maximize,
        "model_sha256": file_sha256(weights) if weights.is_file() else None,
        "starts_sha256": hashlib.sha256("\n".join(starts).encode()).hexdigest(),
        "molecules": len(starts),
        "config": config.identity(),
    }


def _run(
    model: LatentModel,
    starts: list[str],
    out: Path,
    runner: TargetRunner,
    config: LeadConfig,
    resume: bool,
    source: str,
    progress: bool | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    target = runner.target
    runner.check([s for s in starts if MOLECULES.is_valid(s)][:2])  # a broken target: found before anything is written
    state = _open_state(out, _identity(model, starts, target, config), source, resume)
    records = state.records(len(starts), log)
    if records:
        log(f"resuming {out}: {len(records)} of {len(starts)} molecules done")
    _restore_failures(state, runner, log)
    codes, kept, failures = model.encode(starts, errors="skip")
    code_of = {i: codes[j] for j, i in enumerate(kept)}
    reasons = dict(failures)
    sigma = model.sample_latent(PRIOR_SAMPLES, source="prior", seed=0).double().std(dim=0)
    started = time.perf_counter()
    summary = write_lead_report(out, starts, records, target, config, source, draw=False)
    bar = None
    if showing(progress) and len(records) < len(starts):
        bar = progress_bar(len(starts), "lead optimisation", progress, initial=len(records), unit="mol")
    with contextlib.ExitStack() as stack:
        if bar is not None:
            from tqdm.contrib.logging import logging_redirect_tqdm

            stack.enter_context(logging_redirect_tqdm())
            stack.callback(bar.close)
        for index, start in enumerate(starts):
            if index in records:
                continue
            if index in code_of:
                record = _search(model, index, start, code_of[index].double(), sigma, runner, config)
            else:
                record = _failure(index, start, f"not encoded: {reasons.get(index, 'unknown reason')}")
            _count_failures(state, runner, record["target_failures"], log)
            if runner.exhausted:  # saved first: --resume goes on once the target is mended
                state.save()
                raise runner.stopping_error(state.failures.last, f"the run stopped at molecule {index + 1} of "
                                            f"{len(starts)} (done again on --resume), saved in {out}")  # fmt: skip
            state.save_record(record)
            records[index] = record
            summary = write_lead_report(out, starts, records, target, config, source, draw=False)
            _report(record, len(starts), summary, bar, log)
    summary = write_lead_report(out, starts, records, target, config, source, draw=True)
    log(f"lead optimisation: {summary['successes']}/{summary['molecules']} succeeded, mean improvement "
        f"{summary['improvement_all']['mean']:.3f} (failures as 0), {time.perf_counter() - started:.0f} s")  # fmt: skip
    return summary


def _open_state(out: Path, identity: dict[str, Any], source: str, resume: bool) -> LeadState:
    """The run's state: a new one (saved now), or, with ``resume``, the one in ``out`` if it is this run's."""
    if not (out / LEAD_FILE).exists():
        state = LeadState(out, identity, source)
        state.save()
        return state
    if not resume:
        raise LeadError(f"{out} already holds a lead optimisation; pass --resume to continue it or choose another --out")
    state = LeadState.load(out)  # lead.json altered since it was written: refused
    if state.identity != identity:
        saved = state.identity
        diff = sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))
        raise LeadError(f"--resume: {out} was started with different {', '.join(diff)}; use another --out")
    return state


def _restore_failures(state: LeadState, runner: TargetRunner, log: Callable[[str], None]) -> None:
    """Go on counting the target's failed calls in a row where the saved run left off (a run they
    stopped starts again from 0: the target is presumably mended)."""
    if state.failures.in_a_row >= runner.max_failed_calls:
        log(f"the target failed {state.failures.in_a_row} calls in a row when the run stopped (the last: "
            f"{state.failures.last}); trying it again")  # fmt: skip
        state.failures.in_a_row = 0
    runner.failed_in_a_row = state.failures.in_a_row


def _count_failures(state: LeadState, runner: TargetRunner, failed_calls: list[str], log: Callable[[str], None]) -> None:
    """Add one molecule's failed calls of the target to the run's count (saved with its result)."""
    state.failures.calls += len(failed_calls)
    state.failures.in_a_row = runner.failed_in_a_row
    if failed_calls:
        state.failures.last = failed_calls[-1]
    if failed_calls and not runner.exhausted:
        log(f"the target failed {len(failed_calls)} calls on this molecule, their molecules scored as failed "
            f"(the last: {failed_calls[-1]}); the run goes on")  # fmt: skip


def _report(record: dict[str, Any], total: int, summary: dict[str, Any], bar: Any, log: Callable[[str], None]) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix_str(f"success {summary['successes']}/{summary['done']}")
    what = (
        f"improvement {record['improvement']:.3f} at similarity {record['similarity']:.2f}"
        if record["success"]
        else f"no success ({record['reason']})"
    )
    log(f"molecule {record['index'] + 1}/{total}: {what}; {record['scored']} scored in {record['seconds']:.1f} s")


# ---------------------------------------------------------------- one molecule


def _failure(index: int, start: str, reason: str, start_score: float | None = None) -> dict[str, Any]:
    return {
        "index": index, "start": start, "best": "", "similarity": None, "improvement": 0.0, "success": False,
        "start_score": start_score, "best_score": None, "scored": 0, "rounds": 0, "bo_rounds": 0, "seconds": 0.0,
        "reason": reason, "candidates": [], "target_failures": [],
    }  # fmt: skip


class _Neighbourhood:
    """What one molecule's search has seen: the codes tried [N, D] and their values [N], the
    distinct molecules scored (canonical SMILES -> candidate row), the oracle calls left, and the
    reasons of the target's failed calls."""

    def __init__(
        self, start: str, start_score: float, start_value: float, z0: Tensor, runner: TargetRunner, config: LeadConfig
    ) -> None:
        self.start = MOLECULES.canonical(start)
        self.runner = runner
        self.target = runner.target
        self.failed_calls: list[str] = []
        self.config = config
        self.similarity = SimilarityTo(start, config.fingerprint)
        self.start_value = start_value
        self.X: list[Tensor] = [z0]
        self.Y: list[float] = [start_value]
        # The start is known (round 0): decoding it again costs no oracle call and is no candidate.
        self.seen: dict[str, dict[str, Any]] = {
            str(self.start): {"round": 0, "smiles": self.start, "score": start_score, "value": start_value, "similarity": 1.0}
        }
        self.left = config.budget

    def value(self, row: dict[str, Any]) -> float:
        """What the GP maximises: the objective, less PENALTY per unit of missing similarity."""
        return row["value"] - PENALTY * max(0.0, self.config.min_similarity - row["similarity"])

    def add(self, codes: Tensor, decoded: list[str | None], round_: int) -> None:
        """Score the new molecules among ``decoded`` (the decodings of ``codes`` [B, D]) while the
        budget lasts, and record every code whose value is known."""
        canon = [MOLECULES.canonical(text) for text in decoded]
        new = list(dict.fromkeys(c for c in canon if c is not None and c not in self.seen))[: self.left]
        if new:
            scores = self.runner.score(new, 1)  # a failed call: its molecules unscored, with the reason
            self.failed_calls.extend(scores.failed_calls)
            values = self.target.objective([None if t is None else t["score"] for t in scores.terms])
            sims = self.similarity(new)
            for smiles, t, failure, value, sim in zip(new, scores.terms, scores.failures, values, sims):
                self.left -= 1
                row = {"round": round_, "smiles": smiles, "score": None, "value": None, "similarity": sim}
                if failure is not None:
                    row["failure"] = failure
                elif t is not None and value is not None and sim is not None:
                    row.update(score=t["score"], value=value)
                self.seen[smiles] = row
        fill = min(self.Y)
        for z, c in zip(codes, canon):
            if c is None:
                self.X.append(z)
                self.Y.append(fill)
            elif c in self.seen:
                row = self.seen[c]
                self.X.append(z)
                self.Y.append(fill if row["value"] is None else self.value(row))

    def best(self) -> dict[str, Any] | None:
        """The best scored molecule other than the start that is similar enough and better than it."""
        ok = [
            r for r in self.seen.values()
            if r["value"] is not None and r["smiles"] != self.start
            and r["similarity"] >= self.config.min_similarity and r["value"] > self.start_value
        ]  # fmt: skip
        return max(ok, key=lambda r: r["value"], default=None)


def _search(
    model: LatentModel, index: int, start: str, z0: Tensor, sigma: Tensor, runner: TargetRunner, config: LeadConfig
) -> dict[str, Any]:
    """Search the neighbourhood of ``start``'s code z0 [D] (sigma [D]: the prior's sd per dimension).
    It ends early when the target has failed too many calls in a row (``runner.exhausted``)."""
    t0 = time.perf_counter()
    scores = runner.score([start], 1)
    terms = scores.terms[0]
    value = runner.target.objective([None if terms is None else terms["score"]])[0]
    if terms is None or value is None:
        failed = scores.failures[0]  # a failed call, or a score that is not a finite number
        why = f"not scored: {failed}" if failed else f"the target {runner.target.name!r} cannot score it"
        return {**_failure(index, start, why), "target_failures": scores.failed_calls}
    seed = config.seed * 1_000_003 + index
    generator = torch.Generator().manual_seed(seed)
    hood = _Neighbourhood(start, terms["score"], value, z0, runner, config)
    half = 2.0 * config.radius * sigma
    box = torch.stack([z0 - half, z0 + half])  # [2, D]
    region = TrustRegion(config.acquisition.tr_length)
    rounds = bo_rounds = 0
    while hood.left > 0 and rounds < config.rounds and not runner.exhausted:
        rounds += 1
        codes = None
        if config.method == "bo" and len(hood.X) > config.initial:  # X: z0 and the codes tried
            codes = _proposal(hood, box, region, config, seed * 1_009 + rounds)
            bo_rounds += codes is not None
        if codes is None:
            codes = _random_codes(z0, sigma, box, config, generator)
        best_before = max(hood.Y)
        decoded = model.decode(codes.float(), beam_width=config.beam_width)
        hood.add(codes, decoded, rounds)
        region.update(max(hood.Y) > best_before, config.acquisition)
    return _result(index, start, terms["score"], hood, (rounds, bo_rounds), time.perf_counter() - t0)


def _random_codes(z0: Tensor, sigma: Tensor, box: Tensor, config: LeadConfig, generator: torch.Generator) -> Tensor:
    """``batch_size`` codes [B, D] at radii evenly spaced in (0, radius] prior sds around z0 [D]."""
    radii = torch.linspace(config.radius / config.batch_size, config.radius, config.batch_size, dtype=torch.float64)
    noise = torch.randn(config.batch_size, len(z0), generator=generator, dtype=torch.float64)
    return torch.minimum(torch.maximum(z0 + radii[:, None] * sigma * noise, box[0]), box[1])


def _proposal(hood: _Neighbourhood, box: Tensor, region: TrustRegion, config: LeadConfig, seed: int) -> Tensor | None:
    """``batch_size`` codes [B, D] maximising qLogEI in the trust region (None when the values do
    not yet support a GP: fewer than 3 points or all equal; the round is then a random one)."""
    X, Y = torch.stack(hood.X), torch.tensor(hood.Y, dtype=torch.float64)
    if len(Y) < 3 or float(Y.max() - Y.min()) < 1e-9:
        return None
    acquisition = AcquisitionConfig(**{**config.acquisition.to_dict(), "q": config.batch_size, "region": "trust-region"})
    try:
        surrogate = fit_surrogate(X, Y, box, config.surrogate, seed=seed, kind="exact")
    except SurrogateError:
        return None
    return propose(surrogate.model, X, Y, box, acquisition, seed=seed, trust_region=region).X.to(torch.float64)


def _result(
    index: int, start: str, start_score: float, hood: _Neighbourhood, rounds: tuple[int, int], seconds: float
) -> dict[str, Any]:
    """The result of one search; ``rounds``: (rounds in all, rounds proposed by the GP)."""
    best = hood.best()
    candidates = [
        {k: row[k] for k in ("round", "smiles", "score", "similarity")}
        | {"feasible": row["similarity"] is not None and row["similarity"] >= hood.config.min_similarity}
        | ({"failure": row["failure"]} if "failure" in row else {})
        for row in hood.seen.values()
        if row["round"] > 0
    ]
    scored = hood.config.budget - hood.left
    common = {"index": index, "start": start, "start_score": start_score, "scored": scored, "rounds": rounds[0],
              "bo_rounds": rounds[1], "seconds": seconds, "candidates": candidates,
              "target_failures": hood.failed_calls}  # fmt: skip
    if best is None:
        similar = sum(c["feasible"] and c["smiles"] != hood.start for c in candidates)
        reason = (
            f"none of {scored} decoded molecules is similar enough (>= {hood.config.min_similarity})"
            if not similar
            else f"none of the {similar} similar decoded molecules scores better"
        )
        return {**_failure(index, start, reason, start_score), **common}
    return {
        **common, "best": best["smiles"], "similarity": best["similarity"], "improvement": best["value"] - hood.start_value,
        "success": True, "best_score": best["score"], "reason": "",
    }  # fmt: skip
