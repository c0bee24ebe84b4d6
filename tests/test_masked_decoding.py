"""Grammar masks in the loss and in batched decoding, on the bundled grammars."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from molks.grammar import Grammar, GrammarError
from molks.model.masked import (
    GrammarTensors,
    MaskedDecoder,
    beam_search_steps,
    decode_logits,
    decode_logits_reference,
    grammar_cross_entropy,
    grammar_cross_entropy_per_sequence,
    grammar_tensors,
    masked_log_softmax,
)
from molks.model.networks import AutoregressiveGrammarDecoder, GrammarDecoder, network_config


# name -> (kind, max_length, texts the grammar parses)
GRAMMARS = {
    "smiles": ("molecules", 80, ["CCO", "c1ccccc1C(=O)N", "C[C@@H](N)C(=O)O"]),
    "arithmetic": ("expressions", 15, ["x * sin( x ) + 3 / 2", "exp( x )", "1"]),
}


@pytest.fixture(scope="module", params=sorted(GRAMMARS))
def grammar(request: pytest.FixtureRequest) -> Grammar:
    return Grammar.load(request.param)


def toy_tensors() -> GrammarTensors:
    """S -> A B (0) | 'x' (1);  A -> 'a' (2) | 'c' (3) | 'd' (4);  B -> 'b' (5);  padding 6."""
    masks = torch.zeros(4, 7, dtype=torch.bool)
    masks[0, [0, 1]] = True
    masks[1, [2, 3, 4]] = True
    masks[2, 5] = True
    masks[3, 6] = True
    return GrammarTensors(masks, lhs=[0, 0, 1, 1, 1, 2], rhs_nonterminals=[(1, 2), (), (), (), (), ()])


def make_decoder(grammar: Grammar) -> GrammarDecoder:
    """A randomly initialised decoder, narrower than the presets to keep the tests fast."""
    kind, max_length, _ = GRAMMARS[grammar.name]
    config = network_config("small", kind, grammar.n_outputs, max_length)
    return GrammarDecoder(dataclasses.replace(config, gru_layers=1, gru_hidden=32))


def decoder_logits(grammar: Grammar, n: int, seed: int) -> torch.Tensor:
    """Logits of a randomly initialised decoder on random codes: [n, L, C]."""
    torch.manual_seed(seed)
    decoder = make_decoder(grammar)
    config = decoder.config
    with torch.no_grad():
        logits = decoder(3 * torch.randn(n, config.latent_dim))
    # An untrained decoder is nearly constant over codes: add noise so sequences differ.
    return logits + 2 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(seed))


def test_tensors_follow_the_grammar(grammar: Grammar) -> None:
    t = grammar_tensors(grammar)
    assert torch.equal(t.masks, grammar.masks())
    assert t.lhs_of.tolist() == list(grammar.lhs) + [len(grammar.nonterminals)]
    assert t.padding_index == grammar.padding_index and t.start == grammar.start
    for i, rhs in enumerate(grammar.rhs_nonterminals):
        n = int(t.rhs_count[i])
        assert t.rhs_reversed[i, :n].tolist() == list(reversed(rhs))
    assert t.rhs_count[grammar.padding_index] == 0


def test_parsed_sequences_decode_back_to_their_text(grammar: Grammar) -> None:
    # Logits that favour a true derivation must decode to exactly that derivation.
    _, max_length, texts = GRAMMARS[grammar.name]
    tensors = grammar_tensors(grammar)
    ids = [grammar.parse(text) for text in texts]
    targets = torch.tensor([s + [grammar.padding_index] * (max_length - len(s)) for s in ids])
    logits = 5 * F.one_hot(targets, grammar.n_outputs).float() + torch.randn(*targets.shape, grammar.n_outputs)
    decoded, finished = decode_logits(logits, tensors)
    assert finished.all()
    assert torch.equal(decoded, targets)
    assert [grammar.derive(row.tolist()) for row in decoded] == [grammar.derive(s) for s in ids]


def test_batched_greedy_decoding_is_grammatical_and_equals_the_reference(grammar: Grammar) -> None:
    tensors = grammar_tensors(grammar)
    logits = decoder_logits(grammar, n=64, seed=1)
    ids, finished = decode_logits(logits, tensors)
    ref_ids, ref_finished = decode_logits_reference(logits, tensors)
    assert torch.equal(ids, ref_ids) and torch.equal(finished, ref_finished)
    assert ids.shape == logits.shape[:2] and ids.dtype == torch.long
    assert 0 < int(finished.sum())  # the check below must see finished sequences
    for row, done in zip(ids.tolist(), finished.tolist()):
        if done:
            text = grammar.derive(row)  # raises GrammarError if not a complete derivation
            assert grammar.parse(text) == [i for i in row if i != grammar.padding_index]
            first_pad = row.index(grammar.padding_index) if grammar.padding_index in row else len(row)
            assert all(i == grammar.padding_index for i in row[first_pad:])
        else:
            assert grammar.padding_index not in row  # the stack never emptied
            with pytest.raises(GrammarError):
                grammar.derive(row)


def test_sampling_is_grammatical_and_reproducible(grammar: Grammar) -> None:
    tensors = grammar_tensors(grammar)
    logits = decoder_logits(grammar, n=64, seed=2)

    def sample(seed: int, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(seed)
        return decode_logits(logits, tensors, greedy=False, temperature=temperature, generator=gen)

    ids_a, fin_a = sample(7)
    ids_b, fin_b = sample(7)
    assert torch.equal(ids_a, ids_b) and torch.equal(fin_a, fin_b)
    assert not torch.equal(sample(8)[0], ids_a)
    for row, done in zip(ids_a.tolist(), fin_a.tolist()):
        if done:
            grammar.derive(row)
    # A very low temperature is greedy decoding.
    assert torch.equal(sample(9, temperature=1e-6)[0], decode_logits(logits, tensors)[0])
    with pytest.raises(ValueError, match="temperature must be positive"):
        sample(7, temperature=0.0)


def test_masked_decoder_module(grammar: Grammar) -> None:
    torch.manual_seed(3)
    decoder = make_decoder(grammar)
    masked = MaskedDecoder(decoder, grammar_tensors(grammar))
    z = torch.randn(4, decoder.config.latent_dim)
    ids, finished = masked(z)
    with torch.no_grad():
        expected = decode_logits_reference(decoder(z), masked.tensors)
    assert torch.equal(ids, expected[0]) and torch.equal(finished, expected[1])


def test_grammar_cross_entropy_matches_a_manual_computation() -> None:
    t = toy_tensors()
    # Derivation S -> A B, A -> 'c', B -> 'b', then padding.
    targets = torch.tensor([[0, 3, 5, 6]])
    logits = torch.tensor([[[0.5, -1.0, 2.0, 0.0, 0.0, 0.0, 0.0],
                            [0.0, 0.0, 1.0, 2.0, -0.5, 0.0, 3.0],
                            [9.0, 0.0, 0.0, 0.0, 0.0, 0.7, 0.0],
                            [0.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.1]]])
    # Allowed: {0, 1} at position 0, {2, 3, 4} at 1, only {5} at 2, only padding at 3.
    manual = -(0.5 - math.log(math.exp(0.5) + math.exp(-1.0)))
    manual += -(2.0 - math.log(math.exp(1.0) + math.exp(2.0) + math.exp(-0.5)))
    loss = grammar_cross_entropy(logits, targets, t.masks, t.lhs_of)
    assert loss.item() == pytest.approx(manual, rel=1e-6)
    assert t.cross_entropy(logits, targets).item() == pytest.approx(manual, rel=1e-6)

    logp = masked_log_softmax(logits, targets, t.masks, t.lhs_of)
    assert torch.isinf(logp[0, 0, 2:]).all() and torch.isfinite(logp[0, 0, :2]).all()
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(1, 4))

    # Batch reduction: sum over positions, mean over sequences.
    two = torch.cat([logits, logits.flip(1)])
    per_seq = grammar_cross_entropy_per_sequence(two, targets.expand(2, 4), t.masks, t.lhs_of)
    assert per_seq.shape == (2,)
    assert grammar_cross_entropy(two, targets.expand(2, 4), t.masks, t.lhs_of).item() == pytest.approx(
        per_seq.mean().item()
    )


def test_grammar_cross_entropy_prefers_the_targets_and_has_finite_gradients(grammar: Grammar) -> None:
    _, max_length, texts = GRAMMARS[grammar.name]
    t = grammar_tensors(grammar)
    targets = torch.tensor(
        [s + [grammar.padding_index] * (max_length - len(s)) for s in map(grammar.parse, texts)]
    )
    noise = torch.randn(*targets.shape, grammar.n_outputs, generator=torch.Generator().manual_seed(0))
    good = (noise + 4 * F.one_hot(targets, grammar.n_outputs)).requires_grad_()
    loss_good = t.cross_entropy(good, targets)
    assert loss_good < t.cross_entropy(noise, targets)
    # The mask only removes competitors, so it never raises the loss over the plain cross-entropy.
    plain = F.cross_entropy(good.transpose(1, 2), targets, reduction="sum") / len(texts)
    assert loss_good <= plain
    loss_good.backward()
    assert torch.isfinite(good.grad).all()


def test_bad_arguments_are_rejected() -> None:
    t = toy_tensors()
    logits = torch.zeros(2, 4, 7)
    with pytest.raises(ValueError, match="targets must have shape"):
        grammar_cross_entropy(logits, torch.zeros(2, 3, dtype=torch.long), t.masks, t.lhs_of)
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 7\)"):
        grammar_cross_entropy(logits, torch.full((2, 4), 7), t.masks, t.lhs_of)
    with pytest.raises(ValueError, match="8 outputs but the grammar 7"):
        decode_logits(torch.zeros(2, 4, 8), t)
    with pytest.raises(ValueError, match="lhs has 5 entries"):
        GrammarTensors(t.masks, lhs=[0, 0, 1, 1, 1], rhs_nonterminals=[()] * 6)
    with pytest.raises(ValueError, match="own left-hand side"):
        GrammarTensors(t.masks, lhs=[0, 1, 1, 1, 1, 2], rhs_nonterminals=[()] * 6)


# The autoregressive decoder: the same masked selection, fed back one step at a time.


def make_autoregressive(grammar: Grammar, seed: int = 0) -> AutoregressiveGrammarDecoder:
    kind, max_length, _ = GRAMMARS[grammar.name]
    config = network_config("small", kind, grammar.n_outputs, max_length, decoder="autoregressive")
    torch.manual_seed(seed)
    decoder = AutoregressiveGrammarDecoder(dataclasses.replace(config, gru_layers=2, gru_hidden=32)).eval()
    with torch.no_grad():  # an untrained decoder is nearly constant: sharpen its output layer
        decoder.out.weight.mul_(20)
    return decoder


def test_autoregressive_decoding_agrees_with_teacher_forcing(grammar: Grammar) -> None:
    # Feeding the decoded sequence back in one teacher-forced pass gives logits whose masked
    # argmax is that same sequence: training and decoding compute the same function.
    decoder = make_autoregressive(grammar)
    tensors = grammar_tensors(grammar)
    z = 3 * torch.randn(64, decoder.config.latent_dim, generator=torch.Generator().manual_seed(1))
    ids, finished = decoder.decode(z, tensors)
    with torch.no_grad():
        forced = decoder(z, ids)
    again, again_finished = decode_logits(forced, tensors)
    assert torch.equal(again, ids) and torch.equal(again_finished, finished)
    assert len({tuple(row) for row in ids.tolist()}) > 1  # the codes matter


def test_autoregressive_decoding_is_always_grammatical(grammar: Grammar) -> None:
    decoder = make_autoregressive(grammar, seed=2)
    tensors = grammar_tensors(grammar)
    z = 3 * torch.randn(200, decoder.config.latent_dim, generator=torch.Generator().manual_seed(3))
    ids, finished = decoder.decode(z, tensors, greedy=False, temperature=1.5, generator=torch.Generator().manual_seed(4))
    assert finished.any()
    for row, done in zip(ids.tolist(), finished.tolist()):
        if done:
            text = grammar.derive(row)
            assert grammar.parse(text) == row[: len(grammar.parse(text))]
        else:
            with pytest.raises(GrammarError):
                grammar.derive(row)


@pytest.mark.parametrize("autoregressive", [False, True])
def test_repeated_decoding_keeps_each_codes_rows_together(grammar: Grammar, autoregressive: bool) -> None:
    decoder = make_autoregressive(grammar) if autoregressive else make_decoder(grammar).eval()
    tensors = grammar_tensors(grammar)
    z = 3 * torch.randn(5, decoder.config.latent_dim, generator=torch.Generator().manual_seed(5))
    greedy, _ = decoder.decode(z, tensors)
    repeated, _ = decoder.decode(z, tensors, repeats=3)
    assert torch.equal(repeated, greedy.repeat_interleave(3, dim=0))
    sampled, _ = decoder.decode(z, tensors, greedy=False, generator=torch.Generator().manual_seed(6), repeats=4)
    assert sampled.shape == (20, decoder.config.max_length)


def test_autoregressive_decoder_needs_targets_in_training(grammar: Grammar) -> None:
    decoder = make_autoregressive(grammar)
    z = torch.zeros(2, decoder.config.latent_dim)
    with pytest.raises(ValueError, match="needs the target sequences"):
        decoder(z)
    length = decoder.config.max_length
    with pytest.raises(ValueError, match="targets must have shape"):
        decoder(z, torch.zeros(2, length + 1, dtype=torch.long))  # longer than the model allows
    with pytest.raises(ValueError, match="targets must have shape"):
        decoder(z, torch.zeros(3, length, dtype=torch.long))  # not one row per code
    # A batch cut after its longest derivation is fine: the first steps are the same.
    full = decoder(z, torch.zeros(2, length, dtype=torch.long))
    torch.testing.assert_close(decoder(z, torch.zeros(2, 3, dtype=torch.long)), full[:, :3])


# ----------------------------------------------------------------------------------------------
# Beam search
# ----------------------------------------------------------------------------------------------


def chain_tensors() -> GrammarTensors:
    """S -> 'a' S (0) | 'b' (1) | 'c' (2);  padding 3. Derivations: a^n b, a^n c."""
    masks = torch.zeros(2, 4, dtype=torch.bool)
    masks[0, [0, 1, 2]] = True
    masks[1, 3] = True
    return GrammarTensors(masks, lhs=[0, 0, 0], rhs_nonterminals=[(0,), (), ()])


def masked_log_likelihood(logits: torch.Tensor, ids: torch.Tensor, tensors: GrammarTensors) -> torch.Tensor:
    """log p(ids) [N] under masked logits [N, L, C] (the same masks as the training loss)."""
    return -grammar_cross_entropy_per_sequence(logits, ids, tensors.masks, tensors.lhs_of)


def test_a_wide_beam_finds_every_derivation_in_order_of_probability() -> None:
    # Fixed logits over 4 steps: the grammar has 2 * 4 - 1 = 7 complete derivations and at most
    # 3 live prefixes a step, so a beam of 12 never drops one: the search is exhaustive.
    tensors = chain_tensors()
    length = 4
    logits = torch.randn(3, length, 4, generator=torch.Generator().manual_seed(0))
    ids, finished, scores = beam_search_steps(_FixedLogitsStepper(logits, 12), 3, length, tensors, 12)
    for b in range(3):
        complete = []
        for n in range(length):  # a^n then b or c, padded
            for last in (1, 2):
                row = torch.tensor([0] * n + [last] + [3] * (length - n - 1))
                complete.append((float(masked_log_likelihood(logits[b : b + 1], row[None], tensors)), row.tolist()))
        complete.sort(key=lambda pair: -pair[0])
        found = [(float(s), row) for s, row, done in zip(scores[b], ids[b].tolist(), finished[b]) if done]
        assert [row for _, row in found] == [row for _, row in complete]
        assert [s for s, _ in found] == pytest.approx([s for s, _ in complete], abs=1e-5)
        assert bool(finished[b, : len(found)].all())  # finished first, best first (compared above)


class _FixedLogitsStepper:
    """Logits [B, L, C] given in advance, each code's row repeated for its K beams and greedy row."""

    def __init__(self, logits: torch.Tensor, beam_width: int) -> None:
        self.logits = logits.repeat_interleave(beam_width + 1, dim=0)

    def __call__(self, t: int, previous: torch.Tensor | None) -> torch.Tensor:
        return self.logits[:, t]

    def select(self, rows: torch.Tensor) -> None:
        self.logits = self.logits[rows]


@pytest.mark.parametrize("autoregressive", [False, True])
def test_beam_search_of_width_one_is_greedy_decoding(grammar: Grammar, autoregressive: bool) -> None:
    decoder = make_autoregressive(grammar) if autoregressive else make_decoder(grammar).eval()
    tensors = grammar_tensors(grammar)
    z = 3 * torch.randn(16, decoder.config.latent_dim, generator=torch.Generator().manual_seed(7))
    greedy, finished = decoder.decode(z, tensors)
    ids, beam_finished, _ = decoder.beam_search(z, tensors, 1)
    assert torch.equal(ids[:, 0], greedy) and torch.equal(beam_finished[:, 0], finished)


@pytest.mark.parametrize("autoregressive", [False, True])
def test_beam_scores_are_the_decoders_log_likelihoods(grammar: Grammar, autoregressive: bool) -> None:
    # Teacher forcing each beam's sequence gives back its score: the decoder state was reordered
    # with its beam at every step, and each beam is a derivation of the grammar.
    decoder = make_autoregressive(grammar, seed=3) if autoregressive else make_decoder(grammar).eval()
    tensors = grammar_tensors(grammar)
    z = 3 * torch.randn(6, decoder.config.latent_dim, generator=torch.Generator().manual_seed(8))
    k = 5
    ids, finished, scores = decoder.beam_search(z, tensors, k)
    assert ids.shape == (6, k + 1, decoder.config.max_length) and finished.any()
    flat = ids.reshape(6 * (k + 1), -1)
    with torch.no_grad():
        logits = decoder(z.repeat_interleave(k + 1, dim=0), flat).float() if autoregressive else decoder(z).float().repeat_interleave(k + 1, dim=0)
    kept = torch.isfinite(scores)  # a greedy row that repeats a beam is dropped at -inf
    assert masked_log_likelihood(logits, flat, tensors).reshape(6, k + 1)[kept] == pytest.approx(scores[kept], abs=1e-3)
    for row, done in zip(flat.tolist(), finished.reshape(-1).tolist()):
        if done:
            assert grammar.parse(grammar.derive(row)) == [i for i in row if i != tensors.padding_index]
    # Finished beams come first, and the best of them is at least as probable as greedy decoding.
    assert torch.all(finished[:, :-1].int() >= finished[:, 1:].int())
    greedy, greedy_finished = decoder.decode(z, tensors)
    with torch.no_grad():
        greedy_logits = decoder(z, greedy).float() if autoregressive else decoder(z).float()
        greedy_scores = masked_log_likelihood(greedy_logits, greedy, tensors)
    assert torch.all(finished[:, 0] >= greedy_finished)
    done = greedy_finished
    assert torch.all(scores[done, 0] >= greedy_scores[done] - 1e-4)
    for b in range(6):  # greedy decoding's derivation is one of the candidates
        assert any(torch.equal(row, greedy[b]) for row, s in zip(ids[b], scores[b]) if torch.isfinite(s))


def test_beam_search_rejects_a_width_below_one() -> None:
    with pytest.raises(ValueError, match="beam_width"):
        beam_search_steps(_FixedLogitsStepper(torch.zeros(1, 3, 4), 1), 1, 3, chain_tensors(), 0)
