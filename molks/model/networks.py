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

from molks.model.masked import GrammarTensors, decode_steps

__all__ = [
    "ACTIVATIONS",
    "AutoregressiveGrammarDecoder",
    "DECODERS",
    "GrammarDecoder",
    "GrammarEncoder",
    "KINDS",
    "MaskedDecoding",
    "NetworkConfig",
    "NetworkConfigError",
    "PRESETS",
    "make_decoder",
    "network_config",
    "one_hot_inputs",
]


class NetworkConfigError(ValueError):
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
DECODERS = ("repeat", "autoregressive")


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

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists: normalise so equality and hashing work.
        object.__setattr__(self, "conv_channels", tuple(int(c) for c in self.conv_channels))
        object.__setattr__(self, "conv_kernels", tuple(int(k) for k in self.conv_kernels))
        self.validate()

    def validate(self) -> None:
        positive = {
            "n_outputs": self.n_outputs,
            "max_length": self.max_length,
            "latent_dim": self.latent_dim,
            "dense_size": self.dense_size,
            "decoder_dense_size": self.decoder_dense_size,
            "gru_layers": self.gru_layers,
            "gru_hidden": self.gru_hidden,
        }
        for name, value in positive.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise NetworkConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.n_outputs < 2:
            raise NetworkConfigError(f"n_outputs must be at least 2, got {self.n_outputs}")
        if len(self.conv_channels) != len(self.conv_kernels):
            raise NetworkConfigError(
                f"conv_channels {self.conv_channels} and conv_kernels {self.conv_kernels} "
                "must have the same length (one entry per convolution)"
            )
        if not self.conv_channels:
            raise NetworkConfigError("the encoder needs at least one convolution")
        if any(c < 1 for c in self.conv_channels) or any(k < 1 for k in self.conv_kernels):
            raise NetworkConfigError(
                f"convolution channels and kernel sizes must be positive, got "
                f"{self.conv_channels} / {self.conv_kernels}"
            )
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
        if self.conv_output_length < 1:
            raise NetworkConfigError(
                f"convolutions with kernels {self.conv_kernels} need sequences of at least "
                f"{self.max_length - self.conv_output_length + 1} steps, but max_length is "
                f"{self.max_length}; use a longer max_length or smaller kernels"
            )

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


# "paper": the GVAE / Shape-your-Space architectures (GVAE's model_zinc.py and model_eq.py).
# "small": sized for ~20k molecules on a 2-core CPU (about 1 min per epoch, see the module notes).
PRESETS: dict[str, dict[str, _Preset]] = {
    "paper": {
        "molecules": _Preset(56, (9, 9, 10), (9, 9, 11), 435, None, 3, 501),
        "expressions": _Preset(25, (2, 3, 4), (2, 3, 4), 100, None, 3, 100),
    },
    "small": {
        "molecules": _Preset(56, (9, 9, 10), (9, 9, 11), 256, None, 2, 256),
        "expressions": _Preset(25, (2, 3, 4), (2, 3, 4), 100, None, 2, 64),
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
) -> NetworkConfig:
    """The ``NetworkConfig`` of a named preset for a data kind ("molecules" or "expressions").

    latent_dim overrides the preset's latent size (the decoder's first dense layer follows it
    when the preset ties them, as GVAE does); decoder and feedback_dropout as in ``NetworkConfig``.
    """
    if preset not in PRESETS:
        raise NetworkConfigError(f"unknown network preset {preset!r}; choose one of {sorted(PRESETS)}")
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


class GrammarEncoder(nn.Module):
    """One-hot sequence -> convolutions -> flatten -> dense -> (mean, logvar or None).

    Input: [B, L, C] one-hot (float) or [B, L] integer indices. Output: mean [B, D] and,
    when ``variational`` (VAE-style baselines), logvar [B, D]; otherwise None.
    """

    def __init__(self, config: NetworkConfig, variational: bool = False) -> None:
        super().__init__()
        self.config = config
        self.variational = variational
        self.encoder_outputs = 2 if variational else 1
        act = ACTIVATIONS[config.activation]
        layers: list[nn.Module] = []
        in_ch = config.n_outputs
        for ch, k in zip(config.conv_channels, config.conv_kernels):
            layers += [nn.Conv1d(in_ch, ch, k), act()]
            in_ch = ch
        self.convs = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Linear(in_ch * config.conv_output_length, config.dense_size), act())
        # One head for mean and logvar: a single matmul, split afterwards.
        self.head = nn.Linear(config.dense_size, config.latent_dim * self.encoder_outputs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        c = self.config
        h = one_hot_inputs(x, c.n_outputs, c.max_length, self.head.weight.dtype)
        h = self.convs(h.transpose(1, 2))  # Conv1d wants [B, C, L]
        h = self.dense(h.flatten(1))
        out = self.head(h)
        if self.variational:
            mean, logvar = out.chunk(2, dim=-1)
            return mean, logvar
        return out, None


class MaskedDecoding(nn.Module):
    """What both decoders share: grammar-masked decoding (``decode``) through ``decode_steps``.

    A subclass provides ``config`` and ``stepper(z, repeats)``, the function that gives the logits
    [B * repeats, C] of step t given the outputs chosen at step t - 1.
    """

    config: NetworkConfig

    def stepper(self, z: torch.Tensor, repeats: int) -> Callable[[int, torch.Tensor | None], torch.Tensor]:
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

    def stepper(self, z: torch.Tensor, repeats: int) -> Callable[[int, torch.Tensor | None], torch.Tensor]:
        # The logits are computed once per code; only the selection is repeated.
        logits = self(z).float().repeat_interleave(repeats, dim=0)
        return lambda t, previous: logits[:, t]


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
        """Teacher-forced logits [B, L, C] of codes z [B, D] for the true sequences targets [B, L]."""
        c = self.config
        if targets is None:
            raise ValueError("the autoregressive decoder needs the target sequences [B, L] in training")
        if targets.shape != (len(z), c.max_length):
            raise ValueError(f"targets must have shape [{len(z)}, {c.max_length}], got {list(targets.shape)}")
        h, state = self.start(z)
        targets = targets.long()  # datasets keep sequences compact (int16)
        previous = torch.cat([torch.full_like(targets[:, :1], self.start_index), targets[:, :-1]], dim=1)
        if self.training and c.feedback_dropout > 0:
            hidden = torch.rand(previous.shape, device=previous.device) < c.feedback_dropout
            previous = previous.masked_fill(hidden, self.start_index)
        inputs = torch.cat([h.unsqueeze(1).expand(-1, c.max_length, -1), self.embed(previous)], dim=-1)
        out, _ = self.gru(inputs, state)
        return self.out(out)

    def stepper(self, z: torch.Tensor, repeats: int) -> Callable[[int, torch.Tensor | None], torch.Tensor]:
        h, state = self.start(z.repeat_interleave(repeats, dim=0))
        first = torch.full((len(h),), self.start_index, dtype=torch.long, device=h.device)

        def next_logits(t: int, previous: torch.Tensor | None) -> torch.Tensor:
            nonlocal state
            logits, state = self.step(h, state, first if previous is None else previous)
            return logits

        return next_logits


def make_decoder(config: NetworkConfig) -> GrammarDecoder | AutoregressiveGrammarDecoder:
    """The decoder network that ``config.decoder`` names."""
    return AutoregressiveGrammarDecoder(config) if config.decoder == "autoregressive" else GrammarDecoder(config)


def _check_codes(z: torch.Tensor, config: NetworkConfig) -> torch.Tensor:
    if z.dim() != 2 or z.shape[1] != config.latent_dim:
        raise ValueError(f"latent codes must have shape [B, {config.latent_dim}], got {list(z.shape)}")
    return z
