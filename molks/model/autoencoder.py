"""The autoencoder: encoder -> latent regulariser -> decoder, with the grammar-masked loss.

One module for every model in molks: the method (``regularizer="gmm"``) and the
baselines (vae, cv-vae, rae, wae) differ only in the regulariser; the
character-level model is the same network over a token grammar
(:func:`molks.model.characters.character_grammar`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from molks.grammar import Grammar
from molks.model.masked import GrammarTensors, masked_log_softmax, sequence_cross_entropy
from molks.model.networks import NetworkConfig, make_decoder, make_encoder
from molks.model.regularizers import LatentRegularizer, make_regularizer

__all__ = ["Autoencoder", "ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model (its weights aside); JSON-ready via :meth:`to_dict`.

    network: shapes (vocabulary C, sequence length L, latent size D, layers).
    regularizer: name (gmm, vae, cv-vae, rae, wae) and options.
    batch_size: the training batch size (the GMM loss weights are estimated for it).
    lambda_rec: weight of the masked reconstruction cross-entropy.
    grammar_hash: SHA-256 of the grammar text the production indices refer to.
    """

    network: NetworkConfig
    regularizer: str
    batch_size: int
    regularizer_options: dict[str, Any] = field(default_factory=dict)
    lambda_rec: float = 1.0
    grammar_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.network.to_dict(),
            "regularizer": self.regularizer,
            "batch_size": self.batch_size,
            "regularizer_options": dict(self.regularizer_options),
            "lambda_rec": self.lambda_rec,
            "grammar_hash": self.grammar_hash,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        data["network"] = NetworkConfig.from_dict(data["network"])
        return cls(**data)


class Autoencoder(nn.Module):
    """Production sequences [B, L] -> codes [B, D] -> logits [B, L, C].

    >>> model = Autoencoder(config, grammar)
    >>> terms = model(batch)                 # {"total", "rec", + the regulariser's terms}
    >>> z = model.encode(batch)              # [B, D], deterministic (the mean for VAEs)
    >>> ids, finished = model.decode(z)      # [B, L], [B]
    """

    def __init__(self, config: ModelConfig, grammar: Grammar) -> None:
        super().__init__()
        if config.grammar_hash and config.grammar_hash != grammar.content_hash:
            raise ValueError(
                f"the model was built for grammar {config.grammar_hash[:12]}..., not {grammar.name} "
                f"({grammar.content_hash[:12]}...)"
            )
        if config.network.n_outputs != grammar.n_outputs:
            raise ValueError(
                f"network has {config.network.n_outputs} outputs but grammar {grammar.name} has {grammar.n_outputs}"
            )
        self.config = config
        self.grammar = grammar
        self.regularizer: LatentRegularizer = make_regularizer(
            config.regularizer, config.network.latent_dim, config.batch_size, **config.regularizer_options
        )
        self.encoder = make_encoder(config.network, variational=self.regularizer.encoder_outputs == 2)
        self.decoder = make_decoder(config.network)
        self.tensors = GrammarTensors.from_grammar(grammar)

    @property
    def max_length(self) -> int:
        return self.config.network.max_length

    @property
    def latent_dim(self) -> int:
        return self.config.network.latent_dim

    def forward(self, x: Tensor, gather: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor]:
        """Loss terms of a batch of padded production sequences x [B, L]: "total", "rec", the
        regulariser's named terms and "exact", the fraction of x that greedy decoding of the
        codes would return exactly (all scalars; "exact" carries no gradient).

        ``gather`` (distributed training) concatenates a per-process tensor [B, D] over all
        processes with gradients, so that the regulariser's batch statistics (KS, CV, MMD) are those
        of the global batch, exactly as in a single process.
        """
        short = self.trim(x)
        mean, logvar = self.encoder(x if self.config.network.encoder == "conv" else short)
        z = self.regularizer.latent(mean, logvar)
        if self.config.network.decoder == "autoregressive":
            # Steps after the batch's longest derivation are padding whose masked loss is exactly
            # 0, so cutting them changes nothing but the time (about a third of it on MOSES).
            x = short
        logits = self.decoder(z, x)  # x is fed back (teacher forcing) by an autoregressive decoder
        logp = masked_log_softmax(logits, x, self.tensors.masks, self.tensors.lhs_of)
        rec = sequence_cross_entropy(logp, x).mean()
        # Greedy masked decoding returns x exactly when, fed the true prefix, the allowed output
        # with the highest score is the true one at every step: exact reconstruction for free.
        exact = (logp.detach().argmax(-1) == x).all(dim=1).float().mean()
        if gather is not None:
            z, mean = gather(z), gather(mean)
            logvar = None if logvar is None else gather(logvar)
        reg = self.regularizer.loss(z, mean, logvar)
        terms = {name: value for name, value in reg.items() if name != "total"}
        return {"total": self.config.lambda_rec * rec + reg["total"], "rec": rec, **terms, "exact": exact}

    def trim(self, x: Tensor) -> Tensor:
        """x [B, L] cut after the batch's longest derivation: [B, L'] (padding only follows)."""
        longest = int((x != self.tensors.padding_index).sum(1).max()) if x.numel() else 1
        return x[:, : max(longest, 1)]

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Deterministic codes [B, D] of sequences x [B, L] (the encoder mean)."""
        mean, _ = self.encoder(x if self.config.network.encoder == "conv" else self.trim(x))
        return mean

    @torch.no_grad()
    def decode(
        self,
        z: Tensor,
        greedy: bool = True,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        repeats: int = 1,
    ) -> tuple[Tensor, Tensor]:
        """Grammar-valid production ids [B * repeats, L] and finished flags [B * repeats] for codes
        z [B, D], each decoded ``repeats`` times (consecutive rows)."""
        return self.decoder.decode(
            z, self.tensors, greedy=greedy, temperature=temperature, generator=generator, repeats=repeats
        )

    @torch.no_grad()
    def beam_search(self, z: Tensor, beam_width: int) -> tuple[Tensor, Tensor, Tensor]:
        """Beam search of width K over each code z [B, D]: ids [B, K + 1, L], finished [B, K + 1]
        and log-probabilities [B, K + 1] of the K beams and the greedy derivation, finished and
        most probable first (``molks.model.masked.beam_search_steps``)."""
        return self.decoder.beam_search(z, self.tensors, beam_width)
