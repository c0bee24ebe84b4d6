"""Scoring targets for latent-space optimisation.

A target scores a batch of texts (SMILES strings or arithmetic expressions):
``score(texts: list[str]) -> list[float | None]``, where ``None`` marks an
invalid input (a SMILES RDKit cannot read, a text the grammar cannot parse).
:class:`Target` adds what an optimiser needs to know about those numbers:
their direction (``maximize``) and what the GVAE protocol assigns to an
invalid input (``invalid_score``). :meth:`Target.objective` turns scores into
the values to maximise: the one place the direction is applied.

Every target also gives named score terms per text (:meth:`Target.score_terms`):
``{"score": main score, other terms...}``, the columns of an optimisation's
results. ``logp`` gives its three raw terms (``logp``, ``sa``, ``cycle``) beside the
score; a target without terms of its own gives ``{"score": value}``.

Built-in targets (``get_target(spec)``):

- ``"logp"``: normalised penalised logP of the GVAE protocol (maximise).
- ``"qed"``: RDKit's quantitative estimate of drug-likeness (maximise).
- the other 19 objectives of the PMO benchmark that need only RDKit, named as PMO names them
  (``"celecoxib_rediscovery"``, ``"median1"``, ``"osimertinib_mpo"``, ``"deco_hop"``, ...; all in
  [0, 1], maximise): :mod:`molks.optimize.pmo`.
- ``"expression"``: symbolic regression of ``1/3 + x + sin(x*x)``; the score is
  the GVAE's ``log(1 + mean(min(squared error, 1000)))``, *lower is better*
  (``maximize=False``; :meth:`Target.objective` negates it).
- ``"package.module:function"``: a user function ``list[str] -> list[float | None]``
  (maximised unless the function has an attribute ``maximize = False``). Everything that can go
  wrong with it -- a module that is missing, has a syntax error or fails on import, a function that
  is missing or takes other arguments, a call that raises, returns the wrong length or something
  other than numbers and None -- is a :class:`TargetError` naming the target and the reason;
  :func:`check_target` calls it once on a couple of strings before an optimisation starts.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TypedDict, TypeVar

import numpy as np
from nltk.grammar import Production
from rdkit import Chem
from rdkit.Chem import QED, Crippen

from molks.chemistry import sa_score
from molks.dataset.molecules import read_smiles
from molks.errors import InputError
from molks.grammar import Grammar, GrammarError
from molks.optimize.pmo import PMO_OBJECTIVES, PmoScore
from molks.workers import BrokenProcessPool, crashing_item, map_in_workers

__all__ = [
    "Target",
    "TargetError",
    "Terms",
    "BUILTIN_TARGETS",
    "TARGET_CONTRACT",
    "check_target",
    "get_target",
    "score_many",
    "score_terms_many",
    "penalized_logp",
    "penalized_logp_terms",
    "PenalizedLogPTerms",
    "qed",
    "expression_score",
    "EXPRESSION_WORST",
]

ScoreFn = Callable[[list[str]], list[float | None]]
Terms = dict[str, float]
"""Named score terms of one text: ``"score"`` (the main score, what is optimised) and any others."""
TermsFn = Callable[[list[str]], list[Terms | None]]


class TargetError(InputError):
    """A target spec cannot be resolved, or a target function misbehaves."""


@dataclass(frozen=True)
class Target:
    """A scoring function plus what an optimiser needs to know about its values.

    ``score(texts)`` returns one ``float | None`` per text (``None``: invalid input).
    ``maximize``: whether larger scores are better.
    ``invalid_score``: the score the protocol gives an invalid input, or ``None``
    when invalid inputs are left out of the optimiser's data instead.
    ``terms``: named score terms per text (:data:`Terms`, ``None``: invalid), whose ``"score"``
    equals ``score``'s; ``None``: the score is the only term.
    """

    name: str
    score: ScoreFn
    maximize: bool = True
    invalid_score: float | None = None
    terms: TermsFn | None = None

    def score_terms(self, texts: list[str]) -> list[Terms | None]:
        """Named score terms per text: ``{"score": ..., other terms}``; ``None`` where invalid."""
        return self.terms_function(texts)

    @property
    def terms_function(self) -> TermsFn:
        """``terms``, or the score as the one term (a function that pickles when ``score`` does)."""
        return self.terms if self.terms is not None else _ScoreAsTerms(self.score)

    def objective(self, scores: Sequence[float | None]) -> list[float | None]:
        """Scores turned into values to maximise: ``None`` -> ``invalid_score``, negated if minimising.

        ``None`` remains only where ``invalid_score`` is ``None`` (the point should be dropped).
        """
        sign = 1.0 if self.maximize else -1.0
        out: list[float | None] = []
        for value in scores:
            if value is None:
                value = self.invalid_score
            out.append(None if value is None else sign * value)
        return out


# ---------------------------------------------------------------- molecules

# ZINC-250k means and standard deviations of the three terms, from the GVAE code.
_LOGP_MEAN, _LOGP_STD = 2.4570953396190123, 1.434324401111988
_SA_MEAN, _SA_STD = -3.0525811293166134, 0.8347207269356862  # statistics of -SA
_CYCLE_MEAN, _CYCLE_STD = -0.0485696876403053, 0.2860212110245455


class PenalizedLogPTerms(TypedDict):
    """The columns a molecule's score is made of (for result tables)."""

    logp: float  # Crippen MolLogP
    sa: float  # synthetic accessibility, 1 (easy) .. 10 (hard)
    cycle: float  # -max(0, largest ring size - 6)
    score: float  # the normalised sum


def _largest_ring(mol: Chem.Mol) -> int:
    """Size of the largest ring in RDKit's smallest set of smallest rings (0 without rings).

    The GVAE code takes the largest cycle of networkx.cycle_basis (a fundamental cycle
    basis from a spanning tree). The SSSR is a *minimum* cycle basis, and by the
    matroid (greedy) property its largest cycle is the smallest possible over all
    cycle bases, so the two agree whenever the fundamental basis happens to consist
    of smallest rings: molecules without rings, isolated and spiro rings, and
    macrocycles (one cycle per ring system) always agree. For some fused and
    bridged systems (adamantane, peri-fused tricycles) networkx reports a larger
    cycle, and which one depends on the atom order and the networkx version,
    so the same molecule written two ways could get two scores; the SSSR does
    not have that defect. On 20,000 MOSES molecules the two differ for 0.3%.
    """
    rings = mol.GetRingInfo().AtomRings()
    return max((len(ring) for ring in rings), default=0)


def _terms(mol: Chem.Mol) -> PenalizedLogPTerms:
    logp = Crippen.MolLogP(mol)
    sa = sa_score(mol)
    cycle = float(-max(0, _largest_ring(mol) - 6))
    score = (
        (logp - _LOGP_MEAN) / _LOGP_STD
        + (-sa - _SA_MEAN) / _SA_STD
        + (cycle - _CYCLE_MEAN) / _CYCLE_STD
    )
    return PenalizedLogPTerms(logp=logp, sa=sa, cycle=cycle, score=score)


def penalized_logp_terms(smiles: str) -> PenalizedLogPTerms | None:
    """Normalised penalised logP and its three raw terms; None for an invalid SMILES."""
    mol = read_smiles(smiles)
    return None if mol is None else _terms(mol)


def penalized_logp(smiles: str) -> float | None:
    """Normalised penalised logP (GVAE protocol); None for an invalid SMILES.

    >>> round(penalized_logp("CCCCCCCCCCC"), 2)
    3.85
    """
    terms = penalized_logp_terms(smiles)
    return None if terms is None else terms["score"]


def qed(smiles: str) -> float | None:
    """RDKit's QED (0..1, higher is more drug-like); None for an invalid SMILES."""
    mol = read_smiles(smiles)
    return None if mol is None else QED.qed(mol)


def _penalized_logp_batch(smiles: list[str]) -> list[float | None]:
    return [penalized_logp(s) for s in smiles]


def _penalized_logp_terms_batch(smiles: list[str]) -> list[Terms | None]:
    return [None if t is None else dict(t) for t in map(penalized_logp_terms, smiles)]


def _qed_batch(smiles: list[str]) -> list[float | None]:
    return [qed(s) for s in smiles]


def _sa_batch(smiles: list[str]) -> list[float | None]:
    mols = [read_smiles(s) for s in smiles]
    return [None if mol is None else sa_score(mol) for mol in mols]


# ---------------------------------------------------------------- expressions

EXPRESSION_WORST = 1000.0  # the GVAE's cap on the pointwise squared error
_EXPRESSION_X = np.linspace(-10.0, 10.0, 1000)
_EXPRESSION_Y = 1.0 / 3.0 + _EXPRESSION_X + np.sin(_EXPRESSION_X * _EXPRESSION_X)

# The arithmetic grammar chains every operator at one level (S -> S '+' T | S '*' T | ...),
# so its tree reads "x + 1 * 2" as (x + 1) * 2. The GVAE scored the text with Python's
# eval, i.e. with * and / binding tighter than +, and so does this evaluator: a node's
# value is a pair (sum of the finished terms or None, current product term), and an
# operator chain folds into it left to right exactly as Python evaluates the text.
_Value = tuple[np.ndarray | None, np.ndarray]  # each array: values over the 1000 points of x
_Step = Callable[[list[_Value]], _Value]


def _collapse(value: _Value) -> np.ndarray:
    total, term = value
    return term if total is None else total + term


def _add(v: list[_Value]) -> _Value:
    return _collapse(v[0]), _collapse(v[1])


def _multiply(v: list[_Value]) -> _Value:
    return v[0][0], v[0][1] * _collapse(v[1])


def _divide(v: list[_Value]) -> _Value:
    return v[0][0], v[0][1] / _collapse(v[1])


_BINARY: dict[str, _Step] = {"+": _add, "*": _multiply, "/": _divide}
_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {"(": lambda a: a, "sin(": np.sin, "exp(": np.exp}


def _step(production: Production) -> tuple[int, _Step]:
    """(number of children, evaluation) for one production of the arithmetic grammar."""
    rhs = production.rhs()
    terminals = [s for s in rhs if isinstance(s, str)]
    arity = len(rhs) - len(terminals)
    if arity == 2 and len(terminals) == 1 and terminals[0] in _BINARY:
        return 2, _BINARY[terminals[0]]
    if arity == 1 and not terminals:
        return 1, lambda v: v[0]
    if arity == 1 and len(terminals) == 2 and terminals[1] == ")" and terminals[0] in _UNARY:
        fn = _UNARY[terminals[0]]
        return 1, lambda v: (None, fn(_collapse(v[0])))
    if arity == 0 and terminals == ["x"]:
        return 0, lambda v: (None, _EXPRESSION_X)
    if arity == 0 and len(terminals) == 1:
        try:
            constant = np.full_like(_EXPRESSION_X, float(terminals[0]))
        except ValueError:
            pass
        else:
            return 0, lambda v: (None, constant)
    raise TargetError(f"cannot evaluate production {production}: not a rule of the arithmetic grammar")


@cache
def _arithmetic() -> tuple[Grammar, list[tuple[int, _Step]]]:
    """The bundled arithmetic grammar and one evaluation step per production (once per process)."""
    grammar = Grammar.load("arithmetic")
    return grammar, [_step(p) for p in grammar.productions]


def _evaluate(ids: list[int], steps: list[tuple[int, _Step]]) -> np.ndarray:
    """Values over x of the parse tree whose leftmost derivation is ``ids``.

    The derivation lists the tree in pre-order, so walking it backwards finds every
    node's children already evaluated on the stack, leftmost child on top.
    """
    stack: list[_Value] = []
    for pid in reversed(ids):
        arity, step = steps[pid]
        children = [stack.pop() for _ in range(arity)]
        stack.append(step(children))
    (value,) = stack
    return _collapse(value)


def expression_score(text: str) -> float | None:
    """GVAE symbolic-regression score of an expression; lower is better, 0 is a perfect fit.

    ``log(1 + mean(min((f(x) - target(x))**2, 1000)))`` over 1000 points evenly spaced in
    [-10, 10], target ``1/3 + x + sin(x*x)``. Tokens are separated by spaces, e.g.
    ``"x * sin( x ) + 3 / 2"``; * and / bind tighter than + (see ``_add``). A text the
    grammar cannot parse gives None (the target's ``invalid_score`` is ``log(1001)``); an
    expression whose score is not finite (NaN anywhere, e.g. from ``inf / inf``) scores
    ``log(1001)``, as in the GVAE code.
    """
    grammar, steps = _arithmetic()
    try:
        ids = grammar.parse(text)
    except GrammarError:
        return None
    with np.errstate(all="ignore"):  # overflow to inf and inf / inf are scored, not warned about
        error = np.minimum((_evaluate(ids, steps) - _EXPRESSION_Y) ** 2, EXPRESSION_WORST)
        score = float(np.log1p(np.mean(error)))
    return score if math.isfinite(score) else math.log1p(EXPRESSION_WORST)


def _expression_batch(texts: list[str]) -> list[float | None]:
    return [expression_score(t) for t in texts]


# ---------------------------------------------------------------- resolving specs


@dataclass(frozen=True)
class _ScoreAsTerms:
    """A score function as a terms function, ``{"score": value}`` per text (a class: it pickles)."""

    score: ScoreFn

    def __call__(self, texts: list[str]) -> list[Terms | None]:
        return [None if value is None else {"score": value} for value in self.score(texts)]


@dataclass(frozen=True)
class _CheckedScore:
    """A user score function with its output checked: one real number or None per input.

    A module-level class (not a closure) so that it pickles by reference for worker processes.
    """

    fn: ScoreFn
    spec: str

    def __call__(self, texts: list[str]) -> list[float | None]:
        try:
            values = self.fn(list(texts))
        except Exception as err:  # the user's code: any exception is the target's fault, said in one line
            raise TargetError(f"target {self.spec!r} raised {_exception_line(err)} {_on(texts)}") from err
        if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
            raise TargetError(f"target {self.spec!r} returned {type(values).__name__}, not a list of scores")
        try:
            values = list(values)
        except Exception as err:  # a generator that raises, say
            raise TargetError(f"target {self.spec!r} raised {_exception_line(err)} {_on(texts)}") from err
        if len(values) != len(texts):
            raise TargetError(f"target {self.spec!r} returned {len(values)} scores for {len(texts)} inputs")
        out: list[float | None] = []
        for text, value in zip(texts, values):
            if value is None:
                out.append(None)
                continue
            try:
                if isinstance(value, (str, bytes, bool, np.bool_)):  # float("1.5") and float(True) work, but mean a bug
                    raise TypeError
                number = float(value)
            except (TypeError, ValueError):
                raise TargetError(
                    f"target {self.spec!r} scored {text!r} as {value!r}, which is neither a number nor None"
                ) from None
            out.append(number)  # NaN, inf, 1e300: kept, for the optimiser to name (molks.optimize.guard)
        return out


BUILTIN_TARGETS: dict[str, Target] = {
    "logp": Target("logp", _penalized_logp_batch, maximize=True, invalid_score=None, terms=_penalized_logp_terms_batch),
    "qed": Target("qed", _qed_batch, maximize=True, invalid_score=None),
    # RDKit Contrib's synthetic accessibility, 1 (easy) .. 10 (hard): minimised (enters BO as -SA).
    "sa": Target("sa", _sa_batch, maximize=False, invalid_score=None),
    "expression": Target(
        "expression", _expression_batch, maximize=False, invalid_score=math.log1p(EXPRESSION_WORST)
    ),
}
BUILTIN_TARGETS.update({  # the PMO objectives, named as PMO names them ("qed" is the one above: RDKit's QED)
    name: Target(name, PmoScore(name), maximize=True, invalid_score=None)
    for name in PMO_OBJECTIVES
    if name not in BUILTIN_TARGETS
})


def get_target(spec: str) -> Target:
    """The target named by ``spec``: a built-in name or ``"package.module:function"``.

    A user function is imported with importlib (never evaluated from text); it takes a
    list of texts and returns one ``float | None`` per text. It is maximised unless it
    has an attribute ``maximize = False``. For :func:`score_many` with several
    processes it must be a module-level function of an importable module.
    """
    if spec in BUILTIN_TARGETS:
        return BUILTIN_TARGETS[spec]
    if ":" not in spec:
        choices = ", ".join(repr(k) for k in BUILTIN_TARGETS)
        raise TargetError(f"unknown target {spec!r}: use one of {choices} or 'package.module:function'")
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or ":" in attr:
        raise TargetError(f"target {spec!r} is not of the form 'package.module:function'")
    module = _import_target_module(spec, module_name)
    fn = module
    for part in attr.split("."):
        try:
            fn = getattr(fn, part)
        except AttributeError:
            raise TargetError(f"target {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(fn):
        raise TargetError(f"target {spec!r}: {attr!r} is a {type(fn).__name__}, not a function")
    _check_signature(spec, fn)
    maximize = getattr(fn, "maximize", True)
    if not isinstance(maximize, bool):
        raise TargetError(f"target {spec!r}: attribute 'maximize' must be True or False, not {maximize!r}")
    return Target(spec, _CheckedScore(fn, spec), maximize=maximize, invalid_score=None)


TARGET_CONTRACT = "list[str] -> list[float | None]"
"""What a user target must be: one argument, the texts; one score per text, None where it cannot score."""


def check_target(target: Target, texts: Sequence[str], n: int = 2) -> None:
    """Call ``target`` once on the first ``n`` of ``texts``, so that a target that raises, or returns the
    wrong length or types, is found before an optimisation starts (not after minutes of encoding).

    Raises :class:`TargetError` naming the target and the reason. Built-in targets are trusted.
    """
    if target.name in BUILTIN_TARGETS and target is BUILTIN_TARGETS[target.name]:
        return
    sample = [t for t in texts if isinstance(t, str)][:n]
    if sample:
        target.score(sample)


def _import_target_module(spec: str, module_name: str) -> ModuleType:
    """The module of a user target; whatever goes wrong in importing it is a TargetError naming the target."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name is not None and module_name != err.name and not module_name.startswith(f"{err.name}."):
            reason = f"module {module_name!r} imports {err.name!r}, which is not installed"
        else:
            reason = f"cannot import module {module_name!r} ({err}); is its folder on PYTHONPATH?"
        raise TargetError(f"target {spec!r}: {reason}") from err
    except SyntaxError as err:  # IndentationError too
        where = f"{err.filename}:{err.lineno}" if err.filename else f"line {err.lineno}"
        raise TargetError(f"target {spec!r}: syntax error in module {module_name!r} at {where}: {err.msg}") from err
    except (Exception, SystemExit) as err:  # the module's own code failed while being imported
        raise TargetError(f"target {spec!r}: importing module {module_name!r} raised {_exception_line(err)}") from err


def _check_signature(spec: str, fn: Callable[..., object]) -> None:
    """A target is called as ``fn(texts)``: refuse a function that cannot be called with one argument."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none: found by check_target instead
        return
    try:
        signature.bind(["C"])
    except TypeError:
        raise TargetError(
            f"target {spec!r}: its signature is {signature}, but a target is called with one argument, "
            f"the list of strings ({TARGET_CONTRACT})"
        ) from None


def _exception_line(err: BaseException) -> str:
    """``"ValueError: message"`` cut to one short line."""
    message = " ".join(str(err).split())
    if len(message) > 200:
        message = message[:200] + "..."
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def _on(texts: Sequence[str]) -> str:
    shown = ", ".join(repr(t if len(t) <= 40 else t[:40] + "...") for t in list(texts)[:2])
    more = f" and {len(texts) - 2} more" if len(texts) > 2 else ""
    return f"when scoring {len(texts)} string{'s' if len(texts) != 1 else ''} ({shown}{more})"


# ---------------------------------------------------------------- batch scoring


def score_many(
    target: Target,
    texts: Sequence[str],
    processes: int | None = None,
    *,
    min_parallel: int = 1000,
) -> list[float | None]:
    """Score many texts, in chunks over a process pool.

    ``processes``: worker count (None: all cores). With one process, or fewer than
    ``min_parallel`` texts, scoring stays in this process, which is faster than starting
    a pool for small batches. Results are in input order and equal the serial ones.
    The target's score function must pickle by reference (a module-level function of an
    importable module, as :func:`get_target` gives) to run in worker processes.
    """
    return _in_chunks(target, target.score, texts, processes, min_parallel)


def score_terms_many(
    target: Target,
    texts: Sequence[str],
    processes: int | None = None,
    *,
    min_parallel: int = 1000,
) -> list[Terms | None]:
    """:meth:`Target.score_terms` of many texts, in chunks over a process pool (as :func:`score_many`)."""
    return _in_chunks(target, target.terms_function, texts, processes, min_parallel)


_T = TypeVar("_T")


def _in_chunks(
    target: Target,
    fn: Callable[[list[str]], list[_T]],
    texts: Sequence[str],
    processes: int | None,
    min_parallel: int,
) -> list[_T]:
    """``fn(texts)``, one of ``target``'s batch functions, over chunks in worker processes when worth it."""
    if isinstance(texts, str):
        raise TargetError("score_many takes a list of texts, not one string")
    texts = list(texts)
    if processes is None:
        processes = os.cpu_count() or 1
    if processes < 1:
        raise TargetError(f"processes must be at least 1, got {processes}")
    processes = min(processes, len(texts))
    if processes <= 1 or len(texts) < min_parallel:
        return fn(texts)
    try:
        pickle.dumps(fn)
    except Exception as err:  # pickling raises several types; all mean the same here
        raise TargetError(
            f"target {target.name!r} cannot run in worker processes: its score function does not pickle "
            f"({err}); make it a module-level function of an importable module, or use processes=1"
        ) from err
    # About four chunks per worker evens out slow molecules without much messaging.
    n_chunks = min(len(texts), 4 * processes)
    bounds = np.linspace(0, len(texts), n_chunks + 1).astype(int)
    chunks = [texts[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    try:
        # Python's default start method, as before: workers forked after the first score inherit its tables.
        parts = list(map_in_workers(fn, chunks, processes, method=None))
    except BrokenProcessPool:
        found = crashing_item(fn, chunks, method=None)
        shown = "" if found is None else f" on {chunks[found[0]][found[1]][:80]!r}"
        raise TargetError(f"target {target.name!r} killed a worker process{shown}") from None
    return [value for part in parts for value in part]
