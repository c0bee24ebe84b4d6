"""How molks turns a latent code into one string, and the default it hands out.

Three ways, all grammar-masked (``molks.model.masked``):

* greedy: the most probable production at every step (``beam_width=1``): the Grammar VAE's
  decoding and what "greedy reconstruction" in the literature means;
* sampled: productions drawn at a temperature (``temperature=t``; None, the default, is greedy);
* beam search (``beam_width=K``): a beam search of width K proposes candidates (its K beams
  and the greedy derivation), and the encoder chooses among the valid ones: the one whose own
  code is nearest z, the candidate the autoencoder itself maps back to this point (the most
  probable complete one when none is valid). A code's greedy decoding is often one wrong
  ring-closure digit or aromatic atom away from a molecule, and the likeliest valid candidate
  is often a near miss of the molecule the code came from; the beam keeps the alternatives and
  the encoder tells them apart. Measured on the shipped ``moses`` model in
  ``benchmarks/RESULTS.md`` (``benchmarks/beam_decoding.py``).

What molks gives users as molecules (``molks sample``, ``molks decode``, ``LatentModel.sample``,
the distribution metrics of ``molks evaluate``, the proposals of ``molks optimize`` and
``molks benchmark pmo``) is decoded with :data:`DEFAULT_BEAM_WIDTH`;
``LatentModel.decode`` stays greedy unless asked, as the primitive the field's numbers use.
Torch-free, so the command line can read the default before it imports torch.
"""

from __future__ import annotations

__all__ = ["DEFAULT_BEAM_WIDTH"]

DEFAULT_BEAM_WIDTH = 8
