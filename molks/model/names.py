"""The names a user picks a model's parts by: network presets, regularisers, encoders, decoders and
the sources of latent points; and the evaluation protocols.

One list of each, used alike by the model code (which checks a name against it) and the command
line (which builds its choices from it), so the two cannot drift apart. The objects behind the names
-- ``molks.model.networks.PRESETS``, ``molks.model.regularizers.REGULARIZERS`` -- need torch; these
lists do not, so that ``molks --help`` and option parsing never import torch.
"""

from __future__ import annotations

__all__ = ["DECODERS", "ENCODERS", "EVALUATION_PROTOCOLS", "LATENT_SOURCES", "PRESET_NAMES", "REGULARIZER_NAMES"]

PRESET_NAMES = ("fast", "small", "paper", "tiny")
"""The network presets (the keys of ``molks.model.networks.PRESETS``, in this order)."""

REGULARIZER_NAMES = ("gmm", "vae", "cv-vae", "rae", "wae")
"""The method (``gmm``) and the baselines (the keys of ``molks.model.regularizers.REGULARIZERS``, in this order)."""

ENCODERS = ("conv", "gru", "transformer")
"""Encoder kinds (``NetworkConfig.encoder``)."""

DECODERS = ("repeat", "autoregressive")
"""Decoder kinds (``NetworkConfig.decoder``)."""

LATENT_SOURCES = ("prior", "ex-post", "kde", "between")
"""Where ``LatentModel.sample_latent`` draws from: the model's prior, the GMM fitted on the training
codes, the kernel density on held-out codes, or points between neighbouring held-out codes."""

EVALUATION_PROTOCOLS = ("quick", "moses")
"""How much ``molks evaluate`` measures (``molks.evaluation.EvaluationSettings.protocol``): a quick
look, or the MOSES protocol."""
