"""``molks train``: a dataset file -> a trained run directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from molks.cli.common import choices, fail_cleanly
from molks.model.names import DECODERS, ENCODERS, PRESET_NAMES, REGULARIZER_NAMES
from molks.training.spec import GMM_DEFAULTS, TrainConfig, TrainingSpec, train_from_file

__all__ = ["Decoder", "Encoder", "Preset", "Regularizer", "train_command"]


# typer's choices, built from the library's lists (torch-free: molks.model.names).
Preset = choices("Preset", PRESET_NAMES)
Regularizer = choices("Regularizer", REGULARIZER_NAMES)
Encoder = choices("Encoder", ENCODERS)
Decoder = choices("Decoder", DECODERS)


@fail_cleanly
def train_command(
    data: Annotated[str, typer.Argument(help="Training file (.smi/.txt/.csv/.tsv, optionally .gz) or an embedded dataset: moses-sample, expressions.")],
    grammar: Annotated[str, typer.Option(help="smiles, arithmetic, characters (the character-level baseline) or a .cfg path.")] = TrainingSpec.grammar,
    regularizer: Annotated[Regularizer, typer.Option(help="gmm (the method), or a baseline: vae, cv-vae, rae, wae.")] = Regularizer(TrainingSpec.regularizer),
    preset: Annotated[Preset, typer.Option(help="Network: fast (GRU encoder and decoder, the best learner per CPU minute), small (the GVAE shapes, CPU-sized), paper (the published architecture) or tiny (seconds to train, for smoke runs).")] = Preset(TrainingSpec.preset),
    latent_dim: Annotated[Optional[int], typer.Option(help="Latent size D (default: the preset's).")] = None,
    encoder: Annotated[Optional[Encoder], typer.Option(help="conv (GVAE's convolutions), gru (bidirectional GRU) or transformer (default: the preset's).")] = None,
    decoder: Annotated[Decoder, typer.Option(help="autoregressive (feeds the previous production back) or repeat (GVAE: the code repeated over time, the published architecture).")] = Decoder(TrainingSpec.decoder),
    feedback_dropout: Annotated[float, typer.Option(help="Autoregressive decoder: probability of hiding a fed-back production in training.")] = TrainingSpec.feedback_dropout,
    components: Annotated[int, typer.Option(help="GMM prior components K (gmm only).")] = GMM_DEFAULTS["n_components"],
    sigma: Annotated[float, typer.Option(help="Shared standard deviation of the GMM components (gmm only).")] = GMM_DEFAULTS["sigma"],
    lambda_rec: Annotated[float, typer.Option(help="Weight of the reconstruction loss.")] = TrainingSpec.lambda_rec,
    option: Annotated[Optional[list[str]], typer.Option(help="Extra regulariser option KEY=VALUE (VALUE is JSON), repeatable.")] = None,
    epochs: Annotated[int, typer.Option(help="Maximum epochs (early stopping may end sooner).")] = TrainConfig.epochs,
    batch_size: Annotated[int, typer.Option(help="Global batch size (also the one the GMM loss weights are estimated for).")] = TrainConfig.batch_size,
    learning_rate: Annotated[float, typer.Option(help="AdamW learning rate.")] = TrainConfig.learning_rate,
    patience: Annotated[int, typer.Option(help="Epochs without validation improvement before stopping.")] = TrainConfig.patience,
    column: Annotated[Optional[str], typer.Option(help="CSV/TSV column holding the strings.")] = None,
    canonicalize: Annotated[bool, typer.Option(help="Canonicalise SMILES with RDKit first.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = TrainConfig.device,
    seed: Annotated[int, typer.Option(help="Seed of the split, initialisation and batches.")] = TrainConfig.seed,
    out: Annotated[Optional[Path], typer.Option(help="Run directory (default runs/<data>-<regularizer>).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint (the last finished epoch, or the batch a mid-epoch checkpoint reached).")] = False,
    init_from: Annotated[Optional[str], typer.Option(help="Start from the network weights of this run (or shipped model, e.g. moses): fine-tune with new regulariser or training options.")] = None,
    checkpoint_minutes: Annotated[float, typer.Option(help="Also checkpoint inside an epoch every this many minutes (0: after every batch), so that a kill loses at most that much.")] = TrainConfig.checkpoint_minutes,
) -> None:
    """Train a grammar autoencoder with the KS/CV Gaussian-mixture regulariser (or a baseline)."""
    options = dict(_parse_option(o) for o in option or [])
    if regularizer.value == "gmm":
        options = {"n_components": components, "sigma": sigma, **options}
    spec = TrainingSpec(
        grammar=grammar, regularizer=regularizer.value, preset=preset.value, latent_dim=latent_dim,
        encoder=encoder.value if encoder else None, decoder=decoder.value, feedback_dropout=feedback_dropout,
        regularizer_options=options, lambda_rec=lambda_rec,
        train=TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, patience=patience,
                          seed=seed, device=device, checkpoint_minutes=checkpoint_minutes),
    )  # fmt: skip
    run = train_from_file(data, spec, out, resume=resume, init_from=init_from, column=column, canonicalize=canonicalize,
                          log=lambda message: typer.echo(message, err=True))  # fmt: skip
    typer.echo(str(run))


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        from molks.model.regularizers import RegularizerError

        raise RegularizerError("expected KEY=VALUE", option=f"--option {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value
