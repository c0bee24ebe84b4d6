"""Grammar masks: in the reconstruction loss, and in batched grammar-valid decoding.

Notation: P productions, padding index P, C = P + 1 outputs, A nonterminals; mask row A is
the "empty stack" row that allows only padding.

Loss (as GVAE trains): at each position of the *true* sequence, the allowed outputs are the
productions whose left-hand side equals that of the true production there (padding positions
allow only padding); logits outside that set are removed before the softmax.

Decoding: a stack of nonterminals per sequence, held as one [B, S] tensor plus a stack
pointer [B], so the only Python loop is over time steps. At step t the top nonterminal is
popped (empty stack -> row A), the logits at t are masked by its row, a production is chosen
(argmax, or a Gumbel-max sample at a temperature) and its right-hand-side nonterminals are
pushed in reverse order, so the leftmost one is expanded next (leftmost derivation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import torch
from torch import nn

if TYPE_CHECKING:  # only for type hints: molks.grammar imports nltk
    from molks.grammar import Grammar

__all__ = [
    "GrammarTensors",
    "MaskedDecoder",
    "Stepper",
    "beam_search_steps",
    "decode_logits",
    "decode_logits_reference",
    "decode_steps",
    "grammar_cross_entropy",
    "grammar_cross_entropy_per_sequence",
    "grammar_tensors",
    "masked_log_softmax",
    "sequence_cross_entropy",
]


class GrammarTensors(nn.Module):
    """The tensors masked training and decoding need, built once from a grammar.

    Buffers (move with ``.to(device)``):
        masks [A+1, C] bool: row a = outputs allowed with nonterminal a on top; row A = empty stack.
        lhs_of [C] long: the mask row of each output (its lhs; A for padding).
        rhs_reversed [C, R] long: rhs nonterminals of each output, right to left, padded with 0.
        rhs_count [C] long: number of rhs nonterminals (0 for padding).
    ``start`` is the start nonterminal's index; ``empty_row`` is A.
    """

    masks: torch.Tensor
    lhs_of: torch.Tensor
    rhs_reversed: torch.Tensor
    rhs_count: torch.Tensor

    def __init__(
        self,
        masks: torch.Tensor,
        lhs: Sequence[int],
        rhs_nonterminals: Sequence[Sequence[int]],
        start: int = 0,
    ) -> None:
        super().__init__()
        masks = torch.as_tensor(masks, dtype=torch.bool)
        if masks.dim() != 2:
            raise ValueError(f"masks must be 2-D [A+1, C], got shape {list(masks.shape)}")
        n_rows, n_outputs = masks.shape
        n_nonterminals = n_rows - 1
        n_productions = n_outputs - 1
        if n_nonterminals < 1 or n_productions < 1:
            raise ValueError(f"masks of shape {list(masks.shape)} leave no nonterminal or no production")
        if len(lhs) != n_productions or len(rhs_nonterminals) != n_productions:
            raise ValueError(
                f"masks have {n_outputs} outputs (so {n_productions} productions + padding) but lhs has "
                f"{len(lhs)} entries and rhs_nonterminals {len(rhs_nonterminals)}"
            )
        if not 0 <= start < n_nonterminals:
            raise ValueError(f"start {start} is not a nonterminal index in [0, {n_nonterminals})")
        for name, values in (("lhs", lhs), ("rhs_nonterminals", [a for r in rhs_nonterminals for a in r])):
            bad = [a for a in values if not 0 <= a < n_nonterminals]
            if bad:
                raise ValueError(f"{name} holds nonterminal indices outside [0, {n_nonterminals}): {bad[:5]}")
        lhs_of = torch.tensor(list(lhs) + [n_nonterminals], dtype=torch.long)
        # Each output must be allowed in its own row, or the loss of a true sequence is infinite.
        if not bool(masks[lhs_of, torch.arange(n_outputs)].all()):
            raise ValueError("masks do not allow every production under its own left-hand side")
        if bool(masks[:, -1][:-1].any()) or not bool(masks[-1, -1]) or bool(masks[-1, :-1].any()):
            raise ValueError("padding must be allowed exactly in the last (empty stack) mask row")
        width = max((len(r) for r in rhs_nonterminals), default=0)
        rhs_reversed = torch.zeros(n_outputs, width, dtype=torch.long)
        rhs_count = torch.zeros(n_outputs, dtype=torch.long)
        for i, rhs in enumerate(rhs_nonterminals):
            rhs_count[i] = len(rhs)
            if rhs:
                rhs_reversed[i, : len(rhs)] = torch.tensor(list(reversed(rhs)), dtype=torch.long)
        self.register_buffer("masks", masks.clone())
        self.register_buffer("lhs_of", lhs_of)
        self.register_buffer("rhs_reversed", rhs_reversed)
        self.register_buffer("rhs_count", rhs_count)
        self.start = int(start)
        self.empty_row = n_nonterminals
        self.n_outputs = n_outputs
        self.padding_index = n_productions

    @classmethod
    def from_grammar(cls, grammar: "Grammar") -> "GrammarTensors":
        return cls(grammar.masks(), grammar.lhs, grammar.rhs_nonterminals, grammar.start)

    def cross_entropy(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``grammar_cross_entropy`` with this grammar's masks."""
        return grammar_cross_entropy(logits, targets, self.masks, self.lhs_of)

    def decode(
        self,
        logits: torch.Tensor,
        greedy: bool = True,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``decode_logits`` with this grammar's tensors."""
        return decode_logits(logits, self, greedy=greedy, temperature=temperature, generator=generator)


def grammar_tensors(grammar: "Grammar") -> GrammarTensors:
    """Masks, lhs rows and reversed rhs nonterminals of a ``molks.grammar.Grammar``."""
    return GrammarTensors.from_grammar(grammar)


def _check_logits_targets(logits: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape [B, L, C], got {list(logits.shape)}")
    if targets.shape != logits.shape[:2]:
        raise ValueError(f"targets must have shape {list(logits.shape[:2])}, got {list(targets.shape)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"targets must be integer production indices, got dtype {targets.dtype}")
    if logits.shape[2] != masks.shape[1]:
        raise ValueError(f"logits have {logits.shape[2]} outputs but the masks {masks.shape[1]}")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[2]):
        raise ValueError(f"targets must lie in [0, {logits.shape[2]})")


def masked_log_softmax(
    logits: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor, lhs_of: torch.Tensor
) -> torch.Tensor:
    """Log-probabilities renormalised over the outputs the grammar allows at each true position.

    logits [B, L, C], targets [B, L] integer, masks [A+1, C] bool, lhs_of [C] long.
    Returns [B, L, C]; disallowed outputs are -inf (the target itself is always allowed).
    """
    _check_logits_targets(logits, targets, masks)
    allowed = masks[lhs_of[targets.long()]]  # [B, L, C]
    return logits.masked_fill(~allowed, float("-inf")).log_softmax(dim=-1)


def grammar_cross_entropy_per_sequence(
    logits: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor, lhs_of: torch.Tensor
) -> torch.Tensor:
    """Masked cross-entropy of each sequence, summed over its L positions: [B]."""
    return sequence_cross_entropy(masked_log_softmax(logits, targets, masks, lhs_of), targets)


def sequence_cross_entropy(logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each sequence from log-probabilities logp [B, L, C] of targets [B, L]: [B]."""
    return -logp.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1).sum(dim=-1)


def grammar_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor, lhs_of: torch.Tensor
) -> torch.Tensor:
    """Masked cross-entropy, summed over positions and averaged over the batch (as GVAE): scalar.

    Padding positions count too, as in GVAE; with only padding allowed there they add 0.
    """
    return grammar_cross_entropy_per_sequence(logits, targets, masks, lhs_of).mean()


def _check_logits(logits: torch.Tensor, tensors: GrammarTensors) -> None:
    if logits.dim() != 3:
        raise ValueError(f"logits must have shape [B, L, C], got {list(logits.shape)}")
    if logits.shape[2] != tensors.n_outputs:
        raise ValueError(f"logits have {logits.shape[2]} outputs but the grammar {tensors.n_outputs}")


@torch.no_grad()
def decode_logits(
    logits: torch.Tensor,
    tensors: GrammarTensors,
    greedy: bool = True,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grammar-valid production sequences from decoder logits, batched on the logits' device.

    logits [B, L, C]; ``tensors`` on the same device. greedy: argmax; otherwise a sample from
    softmax(logits / temperature) over the allowed outputs (Gumbel-max, noise from
    ``generator``, which must live on the logits' device).
    Returns ids [B, L] long and finished [B] bool (False: the stack was not empty after L
    steps, so ids is a truncated, incomplete derivation).
    """
    _check_logits(logits, tensors)
    batch, length, _ = logits.shape
    return decode_steps(
        lambda t, previous: logits[:, t], batch, length, tensors, greedy, temperature, generator, logits.device
    )


@torch.no_grad()
def decode_steps(
    next_logits: Callable[[int, torch.Tensor | None], torch.Tensor],
    batch: int,
    length: int,
    tensors: GrammarTensors,
    greedy: bool = True,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The masked selection loop, for decoders that produce their logits one step at a time.

    ``next_logits(t, previous)`` returns the logits [B, C] of step t, given the outputs chosen
    at step t - 1 (``previous`` [B] long; None at t = 0): an autoregressive decoder feeds them
    back, a non-autoregressive one ignores them. Returns ids [B, L] long and finished [B] bool
    as :func:`decode_logits` does.
    """
    if not greedy and not temperature > 0:
        raise ValueError(f"sampling temperature must be positive, got {temperature}")
    stacks = _Stacks(tensors, batch, length, torch.device(device))
    ids = torch.full((batch, length), tensors.padding_index, dtype=torch.long, device=stacks.device)
    choice: torch.Tensor | None = None
    for t in range(length):
        if t % 8 == 0 and t and stacks.all_empty():
            break  # every derivation is complete: the rest is padding
        top = stacks.pop()
        step = _checked_step(next_logits(t, choice), batch, tensors, t)
        step = step.masked_fill(~tensors.masks[top], float("-inf"))
        if not greedy:
            u = torch.rand(step.shape, generator=generator, device=stacks.device, dtype=step.dtype)
            step = step / temperature - torch.log(-torch.log(u.clamp_(min=torch.finfo(step.dtype).tiny)))
        choice = step.argmax(dim=-1)
        ids[:, t] = choice
        stacks.push(choice)
    return ids, stacks.ptr == 0


class Stepper(Protocol):
    """What a decoder gives masked decoding: the logits of step t, one step at a time.

    ``stepper(t, previous)`` returns logits [N, C] of step t, given the outputs chosen at step
    t - 1 (``previous`` [N] long; None at t = 0). Beam search also calls ``select(rows)``: keep
    the rows ``rows`` [N] long (with repeats) of whatever state the stepper holds, in that order.
    """

    def __call__(self, t: int, previous: torch.Tensor | None) -> torch.Tensor: ...

    def select(self, rows: torch.Tensor) -> None: ...


class _Stacks:
    """The nonterminal stacks of N derivations as one [N, S] tensor and a stack pointer [N]."""

    def __init__(self, tensors: GrammarTensors, n: int, length: int, device: torch.device) -> None:
        self.tensors = tensors
        self.device = device
        width = tensors.rhs_reversed.shape[1]
        # Each step pops one and pushes at most `width`, so the depth never exceeds this.
        depth = 1 + length * max(width - 1, 0)
        self.trash = depth  # an extra column that absorbs the writes of unused rhs slots
        self.stack = torch.zeros(n, depth + 1, dtype=torch.long, device=device)
        self.stack[:, 0] = tensors.start
        self.ptr = torch.ones(n, dtype=torch.long, device=device)
        self.rows = torch.arange(n, device=device)
        self.offsets = torch.arange(width, device=device)
        self.empty_row = torch.full((n,), tensors.empty_row, dtype=torch.long, device=device)

    def all_empty(self) -> bool:
        return not bool((self.ptr > 0).any())

    def pop(self) -> torch.Tensor:
        """Pop every nonempty stack: the mask row of each derivation [N] (empty stack: row A)."""
        nonempty = self.ptr > 0
        top = torch.where(nonempty, self.stack[self.rows, (self.ptr - 1).clamp(min=0)], self.empty_row)
        self.ptr = self.ptr - nonempty.long()
        return top

    def push(self, choice: torch.Tensor) -> None:
        """Push the rhs nonterminals of the chosen outputs [N], leftmost on top."""
        count = self.tensors.rhs_count[choice]
        slots = torch.where(self.offsets < count.unsqueeze(1), self.ptr.unsqueeze(1) + self.offsets, self.trash)
        self.stack.scatter_(1, slots, self.tensors.rhs_reversed[choice])
        self.ptr = self.ptr + count

    def select(self, rows: torch.Tensor) -> None:
        self.stack = self.stack[rows]
        self.ptr = self.ptr[rows]


def _checked_step(step: torch.Tensor, n: int, tensors: GrammarTensors, t: int) -> torch.Tensor:
    if step.shape != (n, tensors.n_outputs):
        raise ValueError(f"step {t}: logits must have shape [{n}, {tensors.n_outputs}], got {list(step.shape)}")
    return step


@torch.no_grad()
def beam_search_steps(
    stepper: Stepper,
    batch: int,
    length: int,
    tensors: GrammarTensors,
    beam_width: int,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The most probable grammar-valid derivations a beam of ``beam_width`` finds for each of ``batch`` codes.

    ``stepper`` decodes batch * (beam_width + 1) rows, rows b * (K + 1) ... b * (K + 1) + K
    belonging to code b (so it starts from each code repeated K + 1 times): K beams, and the
    greedy derivation, kept beside them because a beam can prune the greedy path before it
    ends and never find anything as probable. A score is the sum of the masked log-probabilities;
    a finished derivation continues with padding at no cost, so it keeps its place.
    Returns K + 1 candidates per code, the beams and the greedy derivation (where it equals a
    beam, it is dropped: unfinished, score -inf): ids [batch, K + 1, L] long, finished
    [batch, K + 1] bool and scores [batch, K + 1] float, the finished first, each group most
    probable first. So the best finished candidate is never less probable than greedy
    decoding's, the greedy derivation is always among them, and beam_width = 1 is greedy decoding.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be at least 1, got {beam_width}")
    device = torch.device(device)
    k, c = beam_width, tensors.n_outputs
    n = batch * (k + 1)
    stacks = _Stacks(tensors, n, length, device)
    scores = torch.full((batch, k + 1), float("-inf"), device=device)
    scores[:, 0] = scores[:, k] = 0.0  # the beams start identical: keep one, or step 0 picks k copies
    base = (torch.arange(batch, device=device) * (k + 1)).unsqueeze(1)
    parents = torch.zeros(length, n, dtype=torch.long, device=device)
    choices = torch.full((length, n), tensors.padding_index, dtype=torch.long, device=device)
    choice: torch.Tensor | None = None
    steps = length
    for t in range(length):
        if t % 8 == 0 and t and stacks.all_empty():
            steps = t
            break
        top = stacks.pop()
        step = _checked_step(stepper(t, choice), n, tensors, t)
        logp = step.float().masked_fill(~tensors.masks[top], float("-inf")).log_softmax(dim=-1).view(batch, k + 1, c)
        beam_scores, index = (scores[:, :k, None] + logp[:, :k]).reshape(batch, k * c).topk(k, dim=1)
        greedy_logp, greedy_choice = logp[:, k].max(dim=-1)
        scores = torch.cat([beam_scores, (scores[:, k] + greedy_logp).unsqueeze(1)], dim=1)
        rows = torch.cat([base + index // c, base + k], dim=1).reshape(n)
        choice = torch.cat([index % c, greedy_choice.unsqueeze(1)], dim=1).reshape(n)
        stacks.select(rows)
        stepper.select(rows)
        stacks.push(choice)
        parents[t], choices[t] = rows, choice
    # Follow each final row back through its parents.
    ids = torch.full((n, length), tensors.padding_index, dtype=torch.long, device=device)
    row = torch.arange(n, device=device)
    for t in range(steps - 1, -1, -1):
        ids[:, t] = choices[t, row]
        row = parents[t, row]
    ids = ids.view(batch, k + 1, length)
    finished = (stacks.ptr == 0).view(batch, k + 1) & torch.isfinite(scores)
    # The greedy row competes with the beams unless one of them is the same derivation (a beam
    # at -inf, filler where fewer than K prefixes exist, may repeat any derivation: not those).
    duplicate = ((ids[:, :k] == ids[:, k:]).all(dim=-1) & torch.isfinite(scores[:, :k])).any(dim=1)
    scores[:, k] = scores[:, k].masked_fill(duplicate, float("-inf"))
    finished[:, k] &= ~duplicate
    # Finished first (an unfinished score is only a prefix's), then most probable first.
    by_score = scores.argsort(dim=1, descending=True, stable=True)
    order = by_score.gather(1, finished.gather(1, by_score).long().argsort(dim=1, descending=True, stable=True))
    return ids.gather(1, order.unsqueeze(-1).expand(-1, -1, length)), finished.gather(1, order), scores.gather(1, order)


@torch.no_grad()
def decode_logits_reference(logits: torch.Tensor, tensors: GrammarTensors) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy masked decoding one sequence at a time with a Python list as the stack.

    Slow on purpose: the plain statement of the algorithm, to test ``decode_logits`` against.
    Same inputs and outputs as ``decode_logits(logits, tensors, greedy=True)``.
    """
    _check_logits(logits, tensors)
    masks = tensors.masks.cpu()
    rhs = [
        tensors.rhs_reversed[i, :n].tolist()[::-1] for i, n in enumerate(tensors.rhs_count.tolist())
    ]
    logits_cpu = logits.detach().cpu()
    batch, length, _ = logits.shape
    ids = torch.empty(batch, length, dtype=torch.long)
    finished = torch.empty(batch, dtype=torch.bool)
    for b in range(batch):
        stack = [tensors.start]
        for t in range(length):
            top = stack.pop() if stack else tensors.empty_row
            choice = int(logits_cpu[b, t].masked_fill(~masks[top], float("-inf")).argmax())
            ids[b, t] = choice
            stack.extend(reversed(rhs[choice]))  # leftmost rhs nonterminal ends on top
        finished[b] = not stack
    return ids.to(logits.device), finished.to(logits.device)


class MaskedDecoder(nn.Module):
    """A decoder network plus grammar tensors: latent codes -> grammar-valid production ids.

    ``decoder`` maps z [B, D] to logits [B, L, C] (e.g. ``GrammarDecoder``).
    """

    def __init__(self, decoder: nn.Module, tensors: GrammarTensors) -> None:
        super().__init__()
        self.decoder = decoder
        self.tensors = tensors

    @torch.no_grad()
    def forward(
        self,
        z: torch.Tensor,
        greedy: bool = True,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """z [B, D] -> ids [B, L] long, finished [B] bool."""
        logits = self.decoder(z)
        return decode_logits(logits, self.tensors, greedy=greedy, temperature=temperature, generator=generator)
