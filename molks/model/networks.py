"""Encoder and decoder networks over one-hot sequences (productions or characters).

Shapes follow the Grammar VAE (Kusner et al., 2017): the encoder is a stack of
valid (unpadded) 1D convolutions, a flatten and a dense layer; the decoder maps
a code to a dense vector, repeats it over the time steps and runs stacked GRUs.
That decoder (``decoder="repeat"``, the published one) is not autoregressive, so
decoding a batch is one forward pass followed by the masked selection in
``molks.model.masked``. ``decoder="autoregressive"`` also feeds the previous
production back at every step (teacher forcing in training, the chosen production
in decoding) and starts its GRUs from the code: the same masks and loss, but a far
lower reconstruction loss and far more valid samples for the same training time
(benchmarks/RESULTS.md).

Both networks are generic in the vocabulary size ``n_outputs`` (C), so the
character-level baseline reuses them with a character vocabulary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from molks.checks import MAX_LATENT_DIM, MAX_LAYER_SIZE, MAX_LAYERS, MAX_SEQUENCE_LENGTH, is_int
from molks.errors import InputError
from molks.model.masked import GrammarTensors, Stepper, beam_search_steps, decode_steps
from molks.model.names import DECODERS, ENCODERS, PRESET_NAMES

__all__ = [
    "ACTIVATIONS",
    "AutoregressiveGrammarDecoder",
    "DECODERS",
    "GrammarDecoder",
    "ENCODERS",
    "GrammarEncoder",
    "RecurrentGrammarEncoder",
    "SequenceEncoder",
    "TransformerGrammarEncoder",
    "KINDS",
    "MaskedDecoding",
    "NetworkConfig",
    "NetworkConfigError",
    "PRESETS",
    "make_decoder",
    "make_encoder",
    "network_config",
    "one_hot_inputs",
]


class NetworkConfigError(InputError):
    """A network configuration is invalid (unknown preset, kernels too long, ...)."""


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}

KINDS = ("molecules", "expressions")

# The largest value of each size of a network (molks.checks: far above any real model).
_SIZE_BOUNDS = {
    "n_outputs": MAX_LAYER_SIZE,
    "max_length": MAX_SEQUENCE_LENGTH,
    "latent_dim": MAX_LATENT_DIM,
    "dense_size": MAX_LAYER_SIZE,
    "decoder_dense_size": MAX_LAYER_SIZE,
    "gru_layers": MAX_LAYERS,
    "gru_hidden": MAX_LAYER_SIZE,
    "encoder_size": MAX_LAYER_SIZE,
    "encoder_layers": MAX_LAYERS,
}


@dataclass(frozen=True)
class NetworkConfig:
    """Shapes of the encoder and decoder; ``dataclasses.asdict`` gives a JSON-ready dict.

    n_outputs: C, width of the one-hot input and of the decoder logits (productions + padding,
        or characters). max_length: L, number of time steps. latent_dim: D.
    conv_channels / conv_kernels: one entry per encoder convolution (valid padding, stride 1).
    dense_size: the encoder's dense layer after flattening.
    decoder_dense_size: the decoder's dense layer before repetition over time (GVAE uses D).
    gru_layers / gru_hidden: the decoder's stacked GRUs.
    activation: name in ``ACTIVATIONS`` used after convolutions and dense layers.
    decoder: "autoregressive" (the previous output fed back at every step; the default, because
        it learns far faster) or "repeat" (GVAE: the code repeated over time, the published
        architecture); see the module notes.
    feedback_dropout: autoregressive decoder only, the probability that a fed-back production is
        hidden in training (replaced by the start symbol), so that the decoder has to read more
        from the code than from its own previous outputs (word dropout, Bowman et al. 2016).
    encoder: "conv" (the Grammar VAE's convolutions over the one-hot sequence, which need all L
        steps), "gru" (a bidirectional GRU over production embeddings, reading each sequence only
        to its end) or "transformer" (self-attention over production and position embeddings,
        mean-pooled over the sequence's own steps).
    encoder_size / encoder_layers: hidden size per direction and layers of the GRU encoder, or
        model width and layers of the transformer encoder (the conv encoder ignores both).
    """

    n_outputs: int
    max_length: int
    latent_dim: int
    conv_channels: tuple[int, ...]
    conv_kernels: tuple[int, ...]
    dense_size: int
    decoder_dense_size: int
    gru_layers: int
    gru_hidden: int
    activation: str = "relu"
    decoder: str = "autoregressive"
    feedback_dropout: float = 0.0
    encoder: str = "conv"
    encoder_size: int = 256
    encoder_layers: int = 1

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists: normalise so equality and hashing work.
        object.__setattr__(self, "conv_channels", tuple(int(c) for c in self.conv_channels))
        object.__setattr__(self, "conv_kernels", tuple(int(k) for k in self.conv_kernels))
        self.validate()

    def validate(self) -> None:
        # Upper bounds too: a run's config.json is read before any weights, and a size edited to
        # 10**9 would otherwise end in the allocator (molks.checks holds the bounds).
        for name, maximum in _SIZE_BOUNDS.items():
            value = getattr(self, name)
            if not is_int(value) or not 1 <= value <= maximum:
                raise NetworkConfigError(f"{name} must be an integer from 1 to {maximum:,}, got {value!r}")
        if self.n_outputs < 2:
            raise NetworkConfigError(f"n_outputs must be at least 2, got {self.n_outputs}")
        if len(self.conv_channels) != len(self.conv_kernels):
            raise NetworkConfigError(
                f"conv_channels {self.conv_channels} and conv_kernels {self.conv_kernels} "
                "must have the same length (one entry per convolution)"
            )
        if not self.conv_channels:
            raise NetworkConfigError("the encoder needs at least one convolution")
        for name in ("conv_channels", "conv_kernels"):
            if not all(1 <= size <= MAX_LAYER_SIZE for size in getattr(self, name)):
                raise NetworkConfigError(f"{name} must be integers from 1 to {MAX_LAYER_SIZE:,}, got {list(getattr(self, name))}")
        if self.activation not in ACTIVATIONS:
            raise NetworkConfigError(
                f"unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}"
            )
        if self.decoder not in DECODERS:
            raise NetworkConfigError(f"unknown decoder {self.decoder!r}; choose one of {list(DECODERS)}")
        if not 0.0 <= self.feedback_dropout < 1.0:
            raise NetworkConfigError(f"feedback_dropout must lie in [0, 1), got {self.feedback_dropout!r}")
        if self.feedback_dropout and self.decoder != "autoregressive":
            raise NetworkConfigError("feedback_dropout needs the autoregressive decoder (the repeat decoder feeds nothing back)")
        if self.encoder not in ENCODERS:
            raise NetworkConfigError(f"unknown encoder {self.encoder!r}; choose one of {list(ENCODERS)}")
        if self.encoder == "transformer" and self.encoder_size % TRANSFORMER_HEAD_SIZE:
            raise NetworkConfigError(
                f"the transformer encoder's width (encoder_size) must be a multiple of {TRANSFORMER_HEAD_SIZE}, "
                f"got {self.encoder_size}"
            )
        if self.encoder == "conv" and self.conv_output_length < 1:
            raise NetworkConfigError(
                f"convolutions with kernels {self.conv_kernels} need sequences of at least "
                f"{self.max_length - self.conv_output_length + 1} steps, but max_length is "
                f"{self.max_length}; use a longer max_length or smaller kernels"
            )

    @property
    def length_free(self) -> bool:
        """Whether the weights' shapes do not depend on ``max_length`` (the GRU encoder; the conv
        encoder's dense layer and the transformer's position table do), so that a trained network
        can be fine-tuned on longer sequences."""
        return self.encoder == "gru"

    @property
    def conv_output_length(self) -> int:
        """Time steps left after the valid convolutions: L - sum(k - 1)."""
        return self.max_length - sum(k - 1 for k in self.conv_kernels)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        d = asdict(self)
        d["conv_channels"] = list(self.conv_channels)
        d["conv_kernels"] = list(self.conv_kernels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NetworkConfig":
        """Inverse of ``to_dict`` / ``asdict``; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise NetworkConfigError(f"unknown NetworkConfig keys: {sorted(unknown)}")
        # Configs written before the decoder was a choice all used the repeat decoder.
        return cls(**{"decoder": "repeat", **data})


@dataclass(frozen=True)
class _Preset:
    """Sizes of a preset for one data kind; n_outputs and max_length come from the data."""

    latent_dim: int
    conv_channels: tuple[int, ...]
    conv_kernels: tuple[int, ...]
    dense_size: int
    decoder_dense_size: int | None  # None: same as latent_dim (GVAE)
    gru_layers: int
    gru_hidden: int
    activation: str = field(default="relu")
    encoder: str = "conv"
    encoder_size: int = 256
    encoder_layers: int = 1


# "paper": the GVAE / Shape-your-Space architectures (GVAE's model_zinc.py and model_eq.py).
# "small": the GVAE's shapes sized for ~20k molecules on a 2-core CPU.
# "fast": a bidirectional-GRU encoder and a one-layer GRU decoder: on the CPU it trains 1.5x as
#   many molecules per second as "small" and learns more per molecule (benchmarks/RESULTS.md).
# "tiny": a few thousand weights that train in seconds (tests, the quick demo, smoke runs); it
#   decodes poorly.
PRESETS: dict[str, dict[str, _Preset]] = {  # the names and their order: molks.model.names.PRESET_NAMES
    "fast": {
        "molecules": _Preset(56, (9, 9, 10), (9, 9, 11), 256, None, 1, 256, encoder="gru", encoder_size=128),
        "expressions": _Preset(25, (2, 3, 4), (2, 3, 4), 100, None, 2, 64),
    },
    "small": {
        "molecules": _Preset(56, (9, 9, 10), (9, 9, 11), 256, None, 2, 256),
        "expressions": _Preset(25, (2, 3, 4), (2, 3, 4), 100, None, 2, 64),
    },
    "paper": {
        "molecules": _Preset(56, (9, 9, 10), (9, 9, 11), 435, None, 3, 501),
        "expressions": _Preset(25, (2, 3, 4), (2, 3, 4), 100, None, 3, 100),
    },
    "tiny": {
        "molecules": _Preset(8, (8, 8), (5, 5), 32, 16, 1, 32),
        "expressions": _Preset(8, (8, 8), (5, 5), 32, 16, 1, 32),
    },
}


def network_config(
    preset: str,
    kind: str,
    n_outputs: int,
    max_length: int,
    latent_dim: int | None = None,
    decoder: str = "autoregressive",
    feedback_dropout: float = 0.0,
    encoder: str | None = None,
) -> NetworkConfig:
    """The ``NetworkConfig`` of a named preset for a data kind ("molecules" or "expressions").

    latent_dim overrides the preset's latent size (the decoder's first dense layer follows it
    when the preset ties them, as GVAE does); encoder overrides the preset's encoder; decoder
    and feedback_dropout as in ``NetworkConfig``.
    """
    if preset not in PRESET_NAMES:
        raise NetworkConfigError(f"unknown network preset {preset!r}; choose one of {list(PRESET_NAMES)}")
    if kind not in PRESETS[preset]:
        raise NetworkConfigError(
            f"unknown data kind {kind!r} for preset {preset!r}; choose one of {sorted(PRESETS[preset])}"
        )
    p = PRESETS[preset][kind]
    latent = p.latent_dim if latent_dim is None else latent_dim
    return NetworkConfig(
        n_outputs=n_outputs,
        max_length=max_length,
        latent_dim=latent,
        conv_channels=p.conv_channels,
        conv_kernels=p.conv_kernels,
        dense_size=p.dense_size,
        decoder_dense_size=latent if p.decoder_dense_size is None else p.decoder_dense_size,
        gru_layers=p.gru_layers,
        gru_hidden=p.gru_hidden,
        activation=p.activation,
        decoder=decoder,
        feedback_dropout=feedback_dropout,
        encoder=p.encoder if encoder is None else encoder,
        encoder_size=p.encoder_size,
        encoder_layers=p.encoder_layers,
    )


def one_hot_inputs(x: torch.Tensor, n_outputs: int, max_length: int, dtype: torch.dtype) -> torch.Tensor:
    """Check an input batch and return it one-hot as [B, L, C] of ``dtype``.

    x: [B, L] integer indices in [0, C) or [B, L, C] one-hot (any float dtype).
    """
    if x.dtype in (torch.bool,) or x.is_floating_point():
        if x.dim() != 3 or x.shape[1:] != (max_length, n_outputs):
            raise ValueError(
                f"one-hot input must have shape [B, {max_length}, {n_outputs}], got {list(x.shape)}"
            )
        return x.to(dtype)
    if x.is_complex():
        raise ValueError("complex input is not supported")
    if x.dim() != 2 or x.shape[1] != max_length:
        raise ValueError(f"index input must have shape [B, {max_length}], got {list(x.shape)}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= n_outputs):
        raise ValueError(
            f"index input values must lie in [0, {n_outputs}), got range "
            f"[{int(x.min())}, {int(x.max())}]"
        )
    return F.one_hot(x.long(), n_outputs).to(dtype)


TRANSFORMER_HEAD_SIZE = 32  # width of one attention head of the transformer encoder


class SequenceEncoder(nn.Module):
    """What every encoder shares: features [B, F] of a batch -> dense -> (mean, logvar or None).

    A subclass sets ``features`` (the batch -> [B, F] part) and calls ``_build_head(F)``.
    Output: mean [B, D] and, when ``variational`` (VAE-style baselines), logvar [B, D].
    """

    config: NetworkConfig

    def __init__(self, config: NetworkConfig, variational: bool) -> None:
        super().__init__()
        self.config = config
        self.variational = variational
        self.encoder_outputs = 2 if variational else 1

    def _build_head(self, n_features: int) -> None:
        act = ACTIVATIONS[self.config.activation]
        self.dense = nn.Sequential(nn.Linear(n_features, self.config.dense_size), act())
        # One head for mean and logvar: a single matmul, split afterwards.
        self.head = nn.Linear(self.config.dense_size, self.config.latent_dim * self.encoder_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.head(self.dense(self.features(x)))
        if self.variational:
            mean, logvar = out.chunk(2, dim=-1)
            return mean, logvar
        return out, None


class GrammarEncoder(SequenceEncoder):
    """One-hot sequence [B, L, C] (or indices [B, L]) -> valid convolutions -> flatten -> dense.

    The Grammar VAE's encoder: it sees all L steps, padding included.
    """

    def __init__(self, config: NetworkConfig, variational: bool = False) -> None:
        super().__init__(config, variational)
        act = ACTIVATIONS[config.activation]
        layers: list[nn.Module] = []
        in_ch = config.n_outputs
        for ch, k in zip(config.conv_channels, config.conv_kernels):
            layers += [nn.Conv1d(in_ch, ch, k), act()]
            in_ch = ch
        self.convs = nn.Sequential(*layers)
        self._build_head(in_ch * config.conv_output_length)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        h = one_hot_inputs(x, c.n_outputs, c.max_length, self.head.weight.dtype)
        return self.convs(h.transpose(1, 2)).flatten(1)  # Conv1d wants [B, C, L]


def sequence_indices(x: torch.Tensor, config: NetworkConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices [B, L'] (L' <= L; one-hot [B, L', C] is accepted too) and their lengths [B].

    A sequence's length is its number of non-padding steps (padding, the last output, only
    follows the derivation), at least 1.
    """
    if x.is_floating_point() or x.dtype == torch.bool:
        if x.dim() != 3 or x.shape[2] != config.n_outputs:
            raise ValueError(f"one-hot input must have shape [B, L, {config.n_outputs}], got {list(x.shape)}")
        x = x.argmax(-1)
    if x.dim() != 2 or not 1 <= x.shape[1] <= config.max_length:
        raise ValueError(f"index input must have shape [B, L] with 1 <= L <= {config.max_length}, got {list(x.shape)}")
    x = x.long()
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= config.n_outputs):
        raise ValueError(f"index input values must lie in [0, {config.n_outputs}), got range [{int(x.min())}, {int(x.max())}]")
    lengths = (x != config.n_outputs - 1).sum(1).clamp_min(1)
    return x, lengths


class RecurrentGrammarEncoder(SequenceEncoder):
    """Production embeddings -> a bidirectional GRU, each sequence read only to its own end ->
    the last states of both directions [B, 2H] -> dense.

    The backward direction reads each sequence reversed within its own length, so both
    directions are plain left-to-right GRUs over batches padded at the end: padding never reaches
    the code (a sequence gets the same code in any batch), and the GRUs keep torch's fused CPU
    kernels, which packed sequences lose (2x slower on a 2-core CPU).
    """

    def __init__(self, config: NetworkConfig, variational: bool = False) -> None:
        super().__init__(config, variational)
        size, layers = config.encoder_size, config.encoder_layers
        self.embed = nn.Embedding(config.n_outputs, size)
        self.forward_gru = nn.GRU(size, size, num_layers=layers, batch_first=True)
        self.backward_gru = nn.GRU(size, size, num_layers=layers, batch_first=True)
        self._build_head(2 * size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x, lengths = sequence_indices(x, self.config)
        steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # [1, L']
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, self.config.encoder_size)
        # Step t of the reversed sequence is step length - 1 - t; padding stays where it is.
        reverse = torch.where(steps < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - steps, steps)
        ahead, _ = self.forward_gru(self.embed(x))
        behind, _ = self.backward_gru(self.embed(x.gather(1, reverse)))
        return torch.cat([ahead.gather(1, last)[:, 0], behind.gather(1, last)[:, 0]], dim=-1)


class TransformerGrammarEncoder(SequenceEncoder):
    """Production + position embeddings -> pre-norm self-attention layers (padding masked) ->
    mean over the sequence's own steps [B, E] -> dense."""

    def __init__(self, config: NetworkConfig, variational: bool = False) -> None:
        super().__init__(config, variational)
        width = config.encoder_size
        self.embed = nn.Embedding(config.n_outputs, width)
        self.position = nn.Embedding(config.max_length, width)
        layer = nn.TransformerEncoderLayer(
            width, width // TRANSFORMER_HEAD_SIZE, dim_feedforward=2 * width, dropout=0.0,
            activation="gelu", batch_first=True, norm_first=True,
        )
        # enable_nested_tensor off: the nested fast path changes results with the batch's padding.
        self.layers = nn.TransformerEncoder(layer, config.encoder_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self._build_head(width)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x, lengths = sequence_indices(x, self.config)
        steps = torch.arange(x.shape[1], device=x.device)
        valid = steps.unsqueeze(0) < lengths.unsqueeze(1)  # [B, L']
        h = self.layers(self.embed(x) + self.position(steps), src_key_padding_mask=~valid)
        h = self.norm(h) * valid.unsqueeze(-1)
        return h.sum(1) / lengths.unsqueeze(1)


def make_encoder(config: NetworkConfig, variational: bool = False) -> SequenceEncoder:
    """The encoder network that ``config.encoder`` names."""
    kinds = {"conv": GrammarEncoder, "gru": RecurrentGrammarEncoder, "transformer": TransformerGrammarEncoder}
    return kinds[config.encoder](config, variational)


class MaskedDecoding(nn.Module):
    """What both decoders share: grammar-masked decoding (``decode``) through ``decode_steps``.

    A subclass provides ``config`` and ``stepper(z, repeats)``, the function that gives the logits
    [B * repeats, C] of step t given the outputs chosen at step t - 1.
    """

    config: NetworkConfig

    def stepper(self, z: torch.Tensor, repeats: int) -> Stepper:
        raise NotImplementedError

    @torch.no_grad()
    def decode(
        self,
        z: torch.Tensor,
        tensors: GrammarTensors,
        greedy: bool = True,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        repeats: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked decoding of z [B, D], each code ``repeats`` times (rows i*repeats ...
        (i+1)*repeats - 1 belong to code i): ids [B * repeats, L], finished [B * repeats]."""
        return decode_steps(
            self.stepper(z, repeats), len(z) * repeats, self.config.max_length, tensors,
            greedy, temperature, generator, z.device,
        )

    @torch.no_grad()
    def beam_search(
        self, z: torch.Tensor, tensors: GrammarTensors, beam_width: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Beam search of width K over each code z [B, D]: the K beams and the greedy derivation,
        ids [B, K + 1, L], finished [B, K + 1] and log-probabilities [B, K + 1], finished and most
        probable first (``beam_search_steps``)."""
        return beam_search_steps(
            self.stepper(z, beam_width + 1), len(z), self.config.max_length, tensors, beam_width, z.device
        )


class _FixedLogits:
    """Stepper over logits computed in advance [N, L, C] (the repeat decoder sees no feedback)."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits

    def __call__(self, t: int, previous: torch.Tensor | None) -> torch.Tensor:
        return self.logits[:, t]

    def select(self, rows: torch.Tensor) -> None:
        self.logits = self.logits[rows]


class _RecurrentSteps:
    """Stepper of the autoregressive decoder: dense(z) [N, E] and the GRU state [layers, N, H]."""

    def __init__(self, decoder: "AutoregressiveGrammarDecoder", z: torch.Tensor) -> None:
        self.decoder = decoder
        self.h, self.state = decoder.start(z)
        self.first = torch.full((len(z),), decoder.start_index, dtype=torch.long, device=self.h.device)

    def __call__(self, t: int, previous: torch.Tensor | None) -> torch.Tensor:
        logits, self.state = self.decoder.step(self.h, self.state, self.first if previous is None else previous)
        return logits

    def select(self, rows: torch.Tensor) -> None:
        self.h, self.state = self.h[rows], self.state[:, rows]


class GrammarDecoder(MaskedDecoding):
    """z [B, D] -> dense -> repeated over L steps -> stacked GRUs -> logits [B, L, C].

    Not autoregressive: every step sees the same input, so the logits of a whole batch come
    from one forward pass (grammar masks are applied afterwards, in the loss or in decoding).
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        self.dense = nn.Sequential(
            nn.Linear(config.latent_dim, config.decoder_dense_size), ACTIVATIONS[config.activation]()
        )
        self.gru = nn.GRU(
            config.decoder_dense_size, config.gru_hidden, num_layers=config.gru_layers, batch_first=True
        )
        self.out = nn.Linear(config.gru_hidden, config.n_outputs)

    def forward(self, z: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, L, C] of codes z [B, D]; ``targets`` is ignored (nothing is fed back)."""
        h = self.dense(_check_codes(z, self.config).to(self.out.weight.dtype))
        h = h.unsqueeze(1).expand(-1, self.config.max_length, -1)
        h, _ = self.gru(h)
        return self.out(h)

    def stepper(self, z: torch.Tensor, repeats: int) -> Stepper:
        # The logits are computed once per code; only the selection is repeated.
        return _FixedLogits(self(z).float().repeat_interleave(repeats, dim=0))


class AutoregressiveGrammarDecoder(MaskedDecoding):
    """z [B, D] and the previous outputs -> stacked GRUs -> logits [B, L, C].

    Step t sees dense(z) and an embedding of the output at t - 1 (a start symbol at t = 0);
    the GRUs start from a state computed from z. Training feeds the true sequence back
    (teacher forcing: one GRU pass over all steps); decoding feeds back what the masked
    selection chose, one step at a time (``start``, then ``step``).
    """

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        act = ACTIVATIONS[config.activation]
        self.dense = nn.Sequential(nn.Linear(config.latent_dim, config.decoder_dense_size), act())
        self.start_index = config.n_outputs  # an extra embedding row: "no previous output"
        self.embed = nn.Embedding(config.n_outputs + 1, config.decoder_dense_size)
        self.initial_state = nn.Linear(config.latent_dim, config.gru_layers * config.gru_hidden)
        self.gru = nn.GRU(
            2 * config.decoder_dense_size, config.gru_hidden, num_layers=config.gru_layers, batch_first=True
        )
        self.out = nn.Linear(config.gru_hidden, config.n_outputs)

    def start(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """dense(z) [B, E] and the initial GRU state [layers, B, H]."""
        c = self.config
        z = _check_codes(z, c).to(self.out.weight.dtype)
        state = torch.tanh(self.initial_state(z)).view(len(z), c.gru_layers, c.gru_hidden).transpose(0, 1)
        return self.dense(z), state.contiguous()

    def step(
        self, h: torch.Tensor, state: torch.Tensor, previous: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One decoding step: dense(z) h [B, E], GRU state [layers, B, H] and the previous
        outputs [B] long -> logits [B, C] (float32) and the next state."""
        out, state = self.gru(torch.cat([h, self.embed(previous)], dim=-1).unsqueeze(1), state)
        return self.out(out[:, 0]).float(), state

    def forward(self, z: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits [B, L', C] of codes z [B, D] for the true sequences targets [B, L'].

        L' may be shorter than L (a batch cut after its longest derivation): the steps computed
        are the same, the GRU only stops earlier.
        """
        c = self.config
        if targets is None:
            raise ValueError("the autoregressive decoder needs the target sequences [B, L] in training")
        if targets.dim() != 2 or len(targets) != len(z) or not 1 <= targets.shape[1] <= c.max_length:
            raise ValueError(f"targets must have shape [{len(z)}, L'] with L' <= {c.max_length}, got {list(targets.shape)}")
        h, state = self.start(z)
        targets = targets.long()  # datasets keep sequences compact (int16)
        previous = torch.cat([torch.full_like(targets[:, :1], self.start_index), targets[:, :-1]], dim=1)
        if self.training and c.feedback_dropout > 0:
            hidden = torch.rand(previous.shape, device=previous.device) < c.feedback_dropout
            previous = previous.masked_fill(hidden, self.start_index)
        inputs = torch.cat([h.unsqueeze(1).expand(-1, targets.shape[1], -1), self.embed(previous)], dim=-1)
        out, _ = self.gru(inputs, state)
        return self.out(out)

    def stepper(self, z: torch.Tensor, repeats: int) -> Stepper:
        return _RecurrentSteps(self, z.repeat_interleave(repeats, dim=0))


def make_decoder(config: NetworkConfig) -> GrammarDecoder | AutoregressiveGrammarDecoder:
    """The decoder network that ``config.decoder`` names."""
    return AutoregressiveGrammarDecoder(config) if config.decoder == "autoregressive" else GrammarDecoder(config)


def _check_codes(z: torch.Tensor, config: NetworkConfig) -> torch.Tensor:
    if z.dim() != 2 or z.shape[1] != config.latent_dim:
        raise ValueError(f"latent codes must have shape [B, {config.latent_dim}], got {list(z.shape)}")
    return z
