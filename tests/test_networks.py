"""Encoder / decoder networks and their configurations."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from molks.model.networks import (
    GrammarDecoder,
    GrammarEncoder,
    NetworkConfig,
    NetworkConfigError,
    network_config,
)


def tiny_config(n_outputs: int = 13, max_length: int = 20, latent_dim: int = 4) -> NetworkConfig:
    return NetworkConfig(
        n_outputs=n_outputs,
        max_length=max_length,
        latent_dim=latent_dim,
        conv_channels=(3, 5),
        conv_kernels=(3, 4),
        dense_size=16,
        decoder_dense_size=8,
        gru_layers=2,
        gru_hidden=12,
    )


def test_paper_presets_match_the_gvae_architectures() -> None:
    mol = network_config("paper", "molecules", n_outputs=80, max_length=277)
    assert (mol.conv_channels, mol.conv_kernels) == ((9, 9, 10), (9, 9, 11))
    assert (mol.dense_size, mol.gru_layers, mol.gru_hidden, mol.latent_dim) == (435, 3, 501, 56)
    expr = network_config("paper", "expressions", n_outputs=12, max_length=15)
    assert (expr.conv_channels, expr.conv_kernels) == ((2, 3, 4), (2, 3, 4))
    assert (expr.dense_size, expr.gru_layers, expr.gru_hidden, expr.latent_dim) == (100, 3, 100, 25)
    assert network_config("small", "molecules", 80, 120, latent_dim=10).latent_dim == 10


def test_unknown_preset_or_kind_is_a_clear_error() -> None:
    with pytest.raises(NetworkConfigError, match="unknown network preset 'huge'"):
        network_config("huge", "molecules", 80, 100)
    with pytest.raises(NetworkConfigError, match="unknown data kind 'proteins'"):
        network_config("paper", "proteins", 80, 100)


def test_kernels_longer_than_sequences_are_rejected() -> None:
    # paper expression kernels 2, 3, 4 consume 6 steps: 7 is the shortest usable length.
    assert network_config("paper", "expressions", 12, 7).conv_output_length == 1
    with pytest.raises(NetworkConfigError, match="at least 7 steps, but max_length is 6"):
        network_config("paper", "expressions", 12, 6)
    with pytest.raises(NetworkConfigError, match="same length"):
        dataclasses.replace(tiny_config(), conv_kernels=(3,))
    with pytest.raises(NetworkConfigError, match="activation"):
        dataclasses.replace(tiny_config(), activation="sigmoidish")


def test_config_round_trips_through_json() -> None:
    config = network_config("small", "molecules", 81, 120)
    data = json.loads(json.dumps(dataclasses.asdict(config)))
    assert NetworkConfig.from_dict(data) == config
    with pytest.raises(NetworkConfigError, match="unknown NetworkConfig keys"):
        NetworkConfig.from_dict({**data, "dropout": 0.1})


def test_decoder_choice_defaults_and_old_configs() -> None:
    assert network_config("small", "molecules", 81, 120).decoder == "autoregressive"
    assert network_config("paper", "molecules", 81, 120, decoder="repeat").decoder == "repeat"
    # A config.json written before the choice existed describes a repeat decoder.
    old = {k: v for k, v in network_config("small", "molecules", 81, 120).to_dict().items() if k != "decoder"}
    assert NetworkConfig.from_dict(old).decoder == "repeat"
    with pytest.raises(NetworkConfigError, match="unknown decoder 'transformer'"):
        dataclasses.replace(tiny_config(), decoder="transformer")


def test_shapes_and_index_input_equals_one_hot_input() -> None:
    torch.manual_seed(0)
    config = tiny_config()
    x = torch.randint(0, config.n_outputs, (5, config.max_length), dtype=torch.int16)
    encoder = GrammarEncoder(config)
    mean, logvar = encoder(x)
    assert mean.shape == (5, config.latent_dim) and logvar is None
    mean_1h, _ = encoder(F.one_hot(x.long(), config.n_outputs).float())
    torch.testing.assert_close(mean, mean_1h)

    vmean, vlogvar = GrammarEncoder(config, variational=True)(x)
    assert vmean.shape == vlogvar.shape == (5, config.latent_dim)

    logits = GrammarDecoder(config)(mean)
    assert logits.shape == (5, config.max_length, config.n_outputs)


def test_bad_inputs_are_rejected() -> None:
    config = tiny_config()
    encoder, decoder = GrammarEncoder(config), GrammarDecoder(config)
    with pytest.raises(ValueError, match=r"values must lie in \[0, 13\)"):
        encoder(torch.full((2, config.max_length), 13))
    with pytest.raises(ValueError, match="shape"):
        encoder(torch.zeros(2, config.max_length + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        encoder(torch.zeros(2, config.max_length, config.n_outputs - 1))
    with pytest.raises(ValueError, match="latent codes"):
        decoder(torch.zeros(2, config.latent_dim + 1))


def test_decoder_loss_trains_the_encoder() -> None:
    torch.manual_seed(0)
    config = tiny_config()
    encoder, decoder = GrammarEncoder(config, variational=True), GrammarDecoder(config)
    x = torch.randint(0, config.n_outputs, (8, config.max_length))
    mean, logvar = encoder(x)
    logits = decoder(mean + logvar.exp().sqrt() * torch.randn_like(mean))
    F.cross_entropy(logits.transpose(1, 2), x).backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name

    # Adam on sequences that only the encoder can tell apart (each repeats its own symbol)
    # drives the loss well below log(8), the best a decoder ignoring the code can do.
    x = torch.arange(8).unsqueeze(1).expand(8, config.max_length)
    params = list(encoder.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = F.cross_entropy(decoder(encoder(x)[0]).transpose(1, 2), x)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * math.log(8) < losses[0]


def test_networks_are_generic_in_the_vocabulary_size() -> None:
    # A character vocabulary (the CVAE baseline) reuses the same modules.
    config = network_config("small", "molecules", n_outputs=35, max_length=60, latent_dim=8)
    chars = torch.randint(0, 35, (3, 60))
    mean, _ = GrammarEncoder(config)(chars)
    assert GrammarDecoder(config)(mean).shape == (3, 60, 35)


def test_feedback_dropout_hides_fed_back_outputs_only_in_training() -> None:
    from molks.model.networks import AutoregressiveGrammarDecoder

    with pytest.raises(NetworkConfigError, match="feedback_dropout must lie in"):
        dataclasses.replace(tiny_config(), feedback_dropout=1.0)
    with pytest.raises(NetworkConfigError, match="needs the autoregressive decoder"):
        dataclasses.replace(tiny_config(), decoder="repeat", feedback_dropout=0.2)
    torch.manual_seed(0)
    decoder = AutoregressiveGrammarDecoder(dataclasses.replace(tiny_config(), feedback_dropout=0.5))
    z = torch.randn(4, decoder.config.latent_dim)
    targets = torch.randint(0, decoder.config.n_outputs, (4, decoder.config.max_length))
    decoder.eval()
    reference = decoder(z, targets)
    assert torch.equal(decoder(z, targets), reference)  # no dropout when evaluating
    decoder.train()
    dropped = decoder(z, targets)
    # Step 0 always sees the start symbol, so it is unchanged; later steps see hidden inputs.
    assert torch.allclose(dropped[:, 0], reference[:, 0], atol=1e-6)
    assert not torch.allclose(dropped, reference, atol=1e-4)


@pytest.mark.parametrize("encoder", ["gru", "transformer"])
def test_sequence_encoders_read_each_sequence_only_to_its_end(encoder: str) -> None:
    # The code of a sequence must not depend on how much padding its batch carries (a batch is
    # cut after its longest derivation), nor on the other sequences of the batch.
    from molks.model.networks import make_encoder

    config = dataclasses.replace(tiny_config(), encoder=encoder, encoder_size=32, encoder_layers=2)
    torch.manual_seed(0)
    encoder_net = make_encoder(config).eval()
    pad = config.n_outputs - 1
    short = torch.tensor([[1, 2, 3, 4] + [pad] * 16])
    long = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 1, 2, 3] + [pad] * 10])
    alone, _ = encoder_net(short[:, :4])
    padded, _ = encoder_net(short)
    together, _ = encoder_net(torch.cat([short, long]))
    assert alone.shape == (1, config.latent_dim)
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone[0], together[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(together[0], together[1])


def test_encoder_choice_is_validated_and_old_configs_load_as_conv() -> None:
    with pytest.raises(NetworkConfigError, match="unknown encoder"):
        dataclasses.replace(tiny_config(), encoder="lstm")
    with pytest.raises(NetworkConfigError, match="multiple of 32"):
        dataclasses.replace(tiny_config(), encoder="transformer", encoder_size=40)
    old = {k: v for k, v in tiny_config().to_dict().items() if not k.startswith("encoder")}
    assert NetworkConfig.from_dict(old).encoder == "conv"
    # Kernels longer than the sequence only matter to the convolutions.
    short = dataclasses.replace(tiny_config(), max_length=4, encoder="gru")
    assert short.encoder == "gru"


@pytest.mark.parametrize("encoder", ["conv", "gru"])
def test_cutting_a_batch_after_its_longest_derivation_leaves_the_loss_unchanged(encoder: str) -> None:
    from molks.grammar import Grammar
    from molks.grammar import pad_sequences
    from molks.model.autoencoder import Autoencoder, ModelConfig

    grammar = Grammar.load("smiles")
    ids = [grammar.parse(s) for s in ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]]
    length = max(map(len, ids)) + 25  # far more padding than any derivation needs
    network = dataclasses.replace(
        network_config("small", "molecules", grammar.n_outputs, length, latent_dim=6),
        encoder=encoder, conv_channels=(4, 4, 4), encoder_size=16, gru_hidden=32, gru_layers=1,
    )
    torch.manual_seed(0)
    model = Autoencoder(ModelConfig(network, "gmm", 3, {"n_components": 2}, grammar_hash=grammar.content_hash), grammar)
    x = torch.as_tensor(pad_sequences(ids, length, grammar.padding_index)).long()
    assert model.trim(x).shape == (3, max(map(len, ids)))
    cut = model(x)
    model.trim = lambda batch: batch  # the whole padded length
    full = model(x)
    for name in ("total", "rec", "exact"):
        torch.testing.assert_close(cut[name], full[name], atol=1e-4, rtol=1e-5)
