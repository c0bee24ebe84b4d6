"""The saved state of an optimisation run (``state.safetensors``): the source of truth for resuming
it and for rendering its report.

Every value in it is a value to maximise: the target's direction is applied once, when scores
become values (:meth:`molks.optimize.targets.Target.objective`), and the rows keep the scores as
the target gave them, for the report. A run of several targets
(:mod:`molks.optimize.multiobjective`) has values [N, M], rows with each target's score under its
name, and ``meta.objectives``: the targets, their directions and the reference point of the
hypervolume, fixed when the run started.

The run's metadata is a :class:`RunMeta`, saved in the file's JSON meta with the keys states have
always had (``identity``, ``completed``, ``iterations``, ``trust_region``, ...; :meth:`RunMeta.to_json`),
so states written before this class existed resume, and new ones are read by older molks. Keys
added over time (``molecular``, ``domain``, ``oracle_calls``, ``settings``, ``pool.file_sha256``)
are optional, and so is each row's ``call`` (derived where missing, :func:`derive_call_indices`);
a state without a key every version wrote, or with a value of the wrong type, is a
:class:`~molks.training.checkpoint.CheckpointError` naming the file and the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from molks.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["EFFORT_SETTINGS", "STATE_FILE", "STATE_VERSION", "ObjectivesRecord", "OptimizationState", "PoolRecord",
           "RunIdentity", "RunMeta", "comparable_settings", "derive_call_indices"]

STATE_FILE = "state.safetensors"
STATE_VERSION = 1


EFFORT_SETTINGS = (("surrogate", "maxiter"), ("acquisition", "maxiter"), ("acquisition", "raw_samples"))
"""Settings of a run's config that say how long an optimiser works at each step, not what the run
is: the L-BFGS iterations of the GP fit and of the proposal, and the random batches the proposal's
L-BFGS starts are chosen from. A run may resume with others (as with
another number of threads: the rounds after differ a little, the run is the same), so their
defaults can follow measurements without stranding saved runs."""


def comparable_settings(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config (``OptimizeConfig.identity()``, saved or new) without :data:`EFFORT_SETTINGS`."""
    out = dict(config)
    for section, key in EFFORT_SETTINGS:
        if isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k != key}
    return out


@dataclass(frozen=True)
class RunIdentity:
    """What a run is, fixed when it starts: a resume with another identity is refused.

    target, maximize: the target's name and direction (a list of each for several targets).
    model_sha256: of the model's ``model.safetensors`` (None: the model has no such file).
    config: ``OptimizeConfig.identity()``, the settings a resume must share, compared key by key
        (without :data:`EFFORT_SETTINGS`, which states saved before may hold).
    """

    target: str | list[str]
    maximize: bool | list[bool]
    model_sha256: str | None
    config: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "maximize": self.maximize, "model_sha256": self.model_sha256, "config": self.config}

    @classmethod
    def from_json(cls, data: Any) -> RunIdentity:
        data = _checked(data, dict, "identity")
        target = _value(data, "target", (str, list), "identity")
        maximize = _value(data, "maximize", list if isinstance(target, list) else bool, "identity")
        if isinstance(target, list):  # several targets: a name and a direction each
            _items(target, str, "identity.target")
            _items(maximize, bool, "identity.maximize")
        return cls(target, maximize, _value(data, "model_sha256", (str, type(None)), "identity"),
                   comparable_settings(_value(data, "config", dict, "identity")))  # fmt: skip


@dataclass(frozen=True)
class PoolRecord:
    """The starting pool: where it came from (``source``, the SHA-256 of its file, None where it was
    not read from a file), how many strings were kept, and the SHA-256 of those strings."""

    source: str
    size: int
    sha256: str
    file_sha256: str | None = None  # states before a resume compared pool files have none

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "size": self.size, "sha256": self.sha256, "file_sha256": self.file_sha256}

    @classmethod
    def from_json(cls, data: Any) -> PoolRecord:
        data = _checked(data, dict, "pool")
        return cls(_value(data, "source", str, "pool"), _value(data, "size", int, "pool"), _value(data, "sha256", str, "pool"),
                   _value(data, "file_sha256", (str, type(None)), "pool", default=None))  # fmt: skip


@dataclass(frozen=True)
class ObjectivesRecord:
    """A run of several targets: their names and directions, and the reference point (values to
    maximise) of the hypervolume, fixed from the starting pool by ``reference_rule``, whose
    hypervolume is ``pool_hypervolume``."""

    names: list[str]
    maximize: list[bool]
    reference_point: list[float]
    reference_rule: str
    pool_hypervolume: float

    def to_json(self) -> dict[str, Any]:
        return {"names": self.names, "maximize": self.maximize, "reference_point": self.reference_point,
                "reference_rule": self.reference_rule, "pool_hypervolume": self.pool_hypervolume}  # fmt: skip

    @classmethod
    def from_json(cls, data: Any) -> ObjectivesRecord:
        data = _checked(data, dict, "objectives")
        names = _items(_value(data, "names", list, "objectives"), str, "objectives.names")
        maximize = _items(_value(data, "maximize", list, "objectives"), bool, "objectives.maximize")
        point = _items(_value(data, "reference_point", list, "objectives"), float, "objectives.reference_point")
        if not len(names) == len(maximize) == len(point):
            raise ValueError(f"objectives: {len(names)} names, {len(maximize)} directions, {len(point)} reference values")
        return cls(names, maximize, point, _value(data, "reference_rule", str, "objectives"),
                   _value(data, "pool_hypervolume", float, "objectives"))  # fmt: skip


@dataclass(kw_only=True)
class RunMeta:
    """What an optimisation state holds besides its tensors and rows.

    What the run is, fixed when it starts: ``identity``; the run's ``domain`` (a
    :func:`~molks.domain.domain_named` name; None in states written before it was saved, which say
    ``molecular`` instead; see :meth:`domain_name`); ``objectives`` of a run of several targets
    (None: one target).

    The starting pool, iteration 0: ``pool``; ``fill_value``, the value an invalid proposal gets (a
    list, one per target, for several targets); ``surrogate_kind``, the GP kind every fit uses
    (``"auto"`` resolved by the held-out metrics); ``heldout``, those metrics as
    :func:`~molks.optimize.surrogate.heldout_metrics` gives them (per target for several targets;
    None: not computed); ``pool_seconds``, the time encoding and scoring it took.

    Progress, updated after every iteration: ``completed`` iterations; ``oracle_calls``, distinct
    items scored so far, the pool's included (None: a state from before they were counted);
    ``trust_region``, ``TrustRegion.to_dict()`` of the region the next iteration starts from;
    ``iterations``, one record per completed iteration (proposals, valid, best so far, timings,
    oracle calls, failures ...), written to summary.json as saved.

    The call that last ran it: ``settings``, ``{"target", **OptimizeConfig.to_dict()}`` (None: a
    state from before they were saved).

    ``unknown``: keys this molks does not know (a later molks's), kept so that saving loses nothing.
    """

    identity: RunIdentity
    domain: str | None = None
    molecular: bool | None = None  # what states said before "domain"; still written for their readers
    objectives: ObjectivesRecord | None = None

    pool: PoolRecord
    fill_value: float | list[float]
    surrogate_kind: str
    heldout: dict[str, Any] | None = None
    pool_seconds: float = 0.0

    completed: int = 0
    oracle_calls: int | None = None
    # A dict, not an acquisition.TrustRegion: this module stays free of botorch (reports and PMO
    # metrics read states without it).
    trust_region: dict[str, Any]
    iterations: list[dict[str, Any]] = field(default_factory=list)

    settings: dict[str, Any] | None = None

    unknown: dict[str, Any] = field(default_factory=dict)

    def domain_name(self) -> str:
        """The run's domain; a state written before it was saved has ``molecular``, and one older
        still (neither) is taken as text, the rule reports have always applied."""
        return self.domain or ("molecules" if self.molecular else "text")

    def to_json(self) -> dict[str, Any]:
        """The JSON meta of ``state.safetensors``: the keys and order states have always had; the
        optional ones only where set, as the state they were read from had them."""
        meta: dict[str, Any] = {"version": STATE_VERSION, "identity": self.identity.to_json()}
        meta |= _set(molecular=self.molecular, domain=self.domain)
        meta |= {"completed": self.completed, **_set(oracle_calls=self.oracle_calls), "fill_value": self.fill_value,
                 "pool": self.pool.to_json(), "surrogate_kind": self.surrogate_kind, "trust_region": self.trust_region,
                 "iterations": self.iterations, "pool_seconds": self.pool_seconds, "heldout": self.heldout}  # fmt: skip
        meta |= _set(objectives=None if self.objectives is None else self.objectives.to_json(), settings=self.settings)
        return {**meta, **{k: v for k, v in self.unknown.items() if k not in meta}}

    @classmethod
    def from_json(cls, meta: Mapping[str, Any]) -> RunMeta:
        """The metadata of a state's JSON meta (``version`` and ``rows`` are the state's, not read
        here); a KeyError naming a missing key, or a TypeError or ValueError naming a damaged one."""
        fill = _value(meta, "fill_value", (float, list), "")
        if isinstance(fill, list):
            fill = _items(fill, float, "fill_value")
        objectives = meta.get("objectives")
        return cls(
            identity=RunIdentity.from_json(_value(meta, "identity", dict, "")),
            domain=_value(meta, "domain", (str, type(None)), "", default=None),
            molecular=_value(meta, "molecular", (bool, type(None)), "", default=None),
            objectives=None if objectives is None else ObjectivesRecord.from_json(objectives),
            pool=PoolRecord.from_json(_value(meta, "pool", dict, "")),
            fill_value=fill,
            surrogate_kind=_value(meta, "surrogate_kind", str, ""),
            heldout=_value(meta, "heldout", (dict, type(None)), "", default=None),
            pool_seconds=_value(meta, "pool_seconds", float, ""),
            completed=_value(meta, "completed", int, ""),
            oracle_calls=_value(meta, "oracle_calls", (int, type(None)), "", default=None),
            trust_region=_value(meta, "trust_region", dict, ""),
            iterations=_items(_value(meta, "iterations", list, ""), dict, "iterations"),
            settings=_value(meta, "settings", (dict, type(None)), "", default=None),
            unknown={k: v for k, v in meta.items() if k not in _KNOWN},
        )


_KNOWN = frozenset({"version", "rows", "identity", "molecular", "domain", "completed", "oracle_calls", "fill_value",
                    "pool", "surrogate_kind", "trust_region", "iterations", "pool_seconds", "heldout", "objectives",
                    "settings"})  # fmt: skip
_REQUIRED: Any = object()


def _set(**values: Any) -> dict[str, Any]:
    """The given keys whose value is not None (optional keys are left out, not written as null)."""
    return {k: v for k, v in values.items() if v is not None}


def _value(
    data: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], where: str, default: Any = _REQUIRED
) -> Any:
    """``data[key]`` checked to be of ``kinds`` (``float``: any JSON number, returned as a float;
    ``int`` is never a bool); ``default`` where it is missing, else a KeyError naming it."""
    name = f"{where}.{key}" if where else key
    if key not in data:
        if default is _REQUIRED:
            raise KeyError(name)
        return default
    return _checked(data[key], kinds, name)


def _items(values: list[Any], kind: type, name: str) -> list[Any]:
    """``values`` with every item checked to be a ``kind`` (floats returned as floats)."""
    return [_checked(v, kind, f"{name}[{i}]") for i, v in enumerate(values)]


def _checked(value: Any, kinds: type | tuple[type, ...], name: str) -> Any:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    # JSON has one kind of number and bool is an int in Python: a float field takes any number, an
    # int field no bool (a damaged value must not pass as 0 or 1).
    if float in kinds and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
        return value
    names = " or ".join(_JSON_NAMES.get(k, k.__name__) for k in kinds)
    raise TypeError(f"{name} is {_JSON_NAMES.get(type(value), type(value).__name__)} {value!r:.60}, not {names}")


_JSON_NAMES: dict[type, str] = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
                                bool: "a boolean", type(None): "null"}  # fmt: skip


@dataclass
class OptimizationState:
    """Everything evaluated so far; ``rows`` align with ``X`` and ``Y``.

    X: [N, D] float64 codes. Y: [N] float64 values to maximise (an invalid proposal: the fill
    value); [N, M] for M targets optimised together. box: [2, D] the bounding box of the pool's codes. rows: per code its iteration
    (0 = the starting pool), string, valid, ``call`` (the oracle call, 1-based, that scored its
    item; None for a repeat and an invalid item; absent in states saved before it was, see
    :meth:`call_indices`), and the target's named score terms ("score" and any others; none when invalid). meta: identity, settings, completed iterations, fill value, trust
    region, timings, held-out metrics (:class:`RunMeta`). gp: the last fit's hyperparameters (a warm start).
    """

    X: torch.Tensor
    Y: torch.Tensor
    box: torch.Tensor
    rows: list[dict[str, Any]]
    meta: RunMeta
    gp: dict[str, torch.Tensor] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        tensors = {"X": self.X, "Y": self.Y, "box": self.box, **{f"gp.{k}": v for k, v in self.gp.items()}}
        save_checkpoint(path, tensors, {**self.meta.to_json(), "rows": self.rows})

    @classmethod
    def load(cls, path: Path) -> OptimizationState:
        """The state saved in ``path``; a :class:`CheckpointError` naming the file where it is not a
        state this molks reads (missing or damaged metadata, rows that do not match the tensors)."""
        tensors, meta, _ = load_checkpoint(path, finite=False)  # a target may score invalid items -inf
        try:
            rows = meta.pop("rows")
            X, Y, box = tensors["X"], tensors["Y"], tensors["box"]
        except KeyError as err:
            raise CheckpointError(f"{path}: not an optimisation state (missing {err})") from None
        if meta.get("version") != STATE_VERSION:
            raise CheckpointError(f"{path}: unsupported optimisation state (version {meta.get('version')!r}, "
                                  f"this molks reads version {STATE_VERSION})")  # fmt: skip
        try:
            run_meta = RunMeta.from_json(meta)
        except KeyError as err:
            raise CheckpointError(f"{path}: incomplete optimisation state (its metadata has no {err})") from None
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: damaged optimisation state metadata ({err})") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows) or not len(rows) == len(X) == len(Y):
            raise CheckpointError(f"{path}: inconsistent optimisation state (its rows do not match its codes and values)")
        gp = {k[len("gp."):]: v for k, v in tensors.items() if k.startswith("gp.")}
        return cls(X, Y, box, rows, run_meta, gp)

    @property
    def objectives(self) -> ObjectivesRecord | None:
        """A multi-objective run's targets, directions and reference point (None: one target)."""
        return self.meta.objectives

    def ranked(self, *, pool: bool) -> list[dict[str, Any]]:
        """The valid rows of the starting pool (``pool=True``) or of the proposals, best first
        (highest value; ties: the earlier iteration, then the earlier row). One target only: several
        have a Pareto front instead (:mod:`molks.optimize.report`)."""
        if self.Y.ndim != 1:
            raise ValueError("ranked: a run of several targets has no single best; see its Pareto front")
        values = self.Y.tolist()
        kept = [i for i, row in enumerate(self.rows) if row["valid"] and (row["iteration"] == 0) == pool]
        return [self.rows[i] for i in sorted(kept, key=lambda i: (-values[i], self.rows[i]["iteration"]))]

    def best(self, *, pool: bool) -> dict[str, Any] | None:
        """The best valid row of the pool or of the proposals (see :meth:`ranked`); None if none."""
        ranked = self.ranked(pool=pool)
        return ranked[0] if ranked else None

    def call_indices(self) -> list[int | None]:
        """Per row, the oracle call (1-based, in the order made) that scored it; None for a repeat (a
        cache hit), an invalid proposal and an empty decoding.

        Rows saved since calls were indexed hold theirs (``row["call"]``); a state saved before has
        them derived from its rows (:func:`derive_call_indices`), the order molks has always counted
        them in, so the two agree on every state."""
        if all("call" in row for row in self.rows):
            return [row["call"] for row in self.rows]
        return derive_call_indices(self.rows, self.meta)

    def term_names(self) -> list[str]:
        """The target's score terms besides "score", in the order it gives them (the extra columns
        of candidates.csv); read from the rows, so that states of every version answer."""
        names: dict[str, None] = {}
        for row in self.rows:
            names.update(dict.fromkeys(k for k in row if k not in _ROW_FIELDS))
        return list(names)


_ROW_FIELDS = ("iteration", "string", "valid", "call", "score", "failure")  # "failure": why the target failed on it


def derive_call_indices(rows: Sequence[Mapping[str, Any]], meta: RunMeta) -> list[int | None]:
    """The oracle call of each row (1-based; None: no call), counted as
    :class:`~molks.optimize.oracle.OracleLedger` counts them, for states saved without ``row["call"]``.

    The distinct items of the starting pool first, in the pool's order (pool strings the target
    could not score are calls without a row: they take the numbers after the pool's rows, which
    ``meta.oracle_calls`` and the iterations' counts give); then per iteration each proposal that is
    an item of the run's domain and was not scored before (by canonical form), once. An item whose
    scoring failed was not remembered, so a later proposal of it is a call again.
    """
    from molks.domain import domain_named  # imported on use: loading a state needs no RDKit

    domain = domain_named(meta.domain_name())
    calls: list[int | None] = [None] * len(rows)
    by_iteration: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        by_iteration.setdefault(int(row["iteration"]), []).append(i)
    known: set[str] = set()
    made = 0
    for iteration in sorted(by_iteration):
        called: dict[str, bool] = {}  # key -> scored without failure (then remembered)
        for i in by_iteration[iteration]:
            text = rows[i].get("string") or ""
            if not text or (iteration > 0 and not domain.is_valid(text)):
                continue
            key = domain.canonical(text) or text
            if key in known or key in called:
                continue
            called[key] = "failure" not in rows[i]
            made += 1
            calls[i] = made
        known.update(key for key, ok in called.items() if ok)
        if iteration == 0 and meta.oracle_calls is not None:  # the pool's calls without a row
            later = sum(int(it.get("oracle_calls", 0)) for it in meta.iterations)
            made = max(made, int(meta.oracle_calls) - later)
    return calls
