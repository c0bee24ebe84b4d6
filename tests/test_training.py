"""Training for real on tiny data: the loss falls, resume equals an uninterrupted run,
two-process DDP agrees with one process, and broken checkpoints fail clearly."""

from __future__ import annotations

import csv
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from conftest import train_tiny
from molks.training.checkpoint import CheckpointError, load_checkpoint
from molks.devices import DeviceError, resolve_device
from molks.training.trainer import TrainingError, split_indices
from molks.runs import RunDir


def _weights(run: Path, name: str = "checkpoints/last.safetensors") -> dict[str, torch.Tensor]:
    return load_checkpoint(run / name)[0]


def test_training_lowers_the_loss_and_writes_its_files(tiny_run: Path) -> None:
    rows = list(csv.DictReader((tiny_run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[-1]["train_total"]) < float(rows[0]["train_total"])
    assert float(rows[-1]["val_rec"]) < float(rows[0]["val_rec"])
    for name in ("config.json", "grammar.cfg", "model.safetensors", "loss_curves.png", "train.smi.gz", "validation.smi", "ex_post_gmm.safetensors"):
        assert (tiny_run / name).is_file(), name
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["model"]["network"]["max_length"] > 0
    assert config["grammar"]["hash"] == config["model"]["grammar_hash"]
    assert (tiny_run / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path: Path, moses_smiles: list[str]) -> None:
    texts = moses_smiles[:200]
    straight = train_tiny(tmp_path / "straight", texts, epochs=3)
    # "Killed" after epoch 2: a run asked for 2 epochs stops exactly where a kill during epoch 3 would leave it.
    interrupted = train_tiny(tmp_path / "resumed", texts, epochs=2)
    with pytest.raises(TrainingError, match="already holds a run"):
        train_tiny(interrupted, texts, epochs=3)
    train_tiny(interrupted, texts, epochs=3, resume=True)
    a, b = _weights(straight), _weights(interrupted)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert (straight / "metrics.csv").read_text().count("\n") == (interrupted / "metrics.csv").read_text().count("\n") == 4
    assert json.loads((interrupted / "config.json").read_text())["train"]["epochs"] == 3  # the resumed run's own


@pytest.mark.parametrize("regularizer", ["gmm", "vae"])  # vae: the random state is part of the checkpoint
def test_a_kill_inside_an_epoch_resumes_at_the_batch_it_reached(
    tmp_path: Path, moses_smiles: list[str], monkeypatch: pytest.MonkeyPatch, regularizer: str
) -> None:
    from molks.training import trainer

    texts = moses_smiles[:200]  # 180 for training: 5 batches of 32 an epoch
    straight = train_tiny(tmp_path / "straight", texts, regularizer=regularizer, epochs=2, checkpoint_minutes=0)
    real_step, steps = trainer.train_step, []

    def killed_in_epoch_two(*args: object, **kwargs: object) -> object:
        if len(steps) == 5 + 3:  # batches 1-3 of epoch 2 are done and checkpointed
            raise KeyboardInterrupt
        steps.append(1)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_tiny(tmp_path / "killed", texts, regularizer=regularizer, epochs=2, checkpoint_minutes=0)
    monkeypatch.setattr(trainer, "train_step", real_step)
    _, meta, _ = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.safetensors")
    assert meta["state"]["epoch"] == 1 and meta["state"]["partial"]["batches"] == 3
    resumed_steps: list[int] = []
    monkeypatch.setattr(trainer, "train_step", lambda *a, **k: resumed_steps.append(1) or real_step(*a, **k))
    train_tiny(tmp_path / "killed", texts, regularizer=regularizer, epochs=2, resume=True, checkpoint_minutes=5)
    assert len(resumed_steps) == 2  # only batches 4 and 5 of epoch 2 ran again
    a, b = _weights(straight), _weights(tmp_path / "killed")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    rows = [list(csv.DictReader((run / "metrics.csv").open())) for run in (straight, tmp_path / "killed")]
    for key in ("train_total", "train_rec", "val_total"):
        assert [r[key] for r in rows[0]] == [r[key] for r in rows[1]], key
    assert "partial" not in load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.safetensors")[1]["state"]


def test_resume_rejects_a_different_model(tmp_path: Path, tiny_run: Path, moses_smiles: list[str]) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    with pytest.raises(TrainingError, match="different model"):
        train_tiny(run, moses_smiles[:320], regularizer="vae", resume=True)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path, tiny_run: Path) -> None:
    import shutil

    import molks

    run = tmp_path / "corrupt"
    shutil.copytree(tiny_run, run)
    (run / "model.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        molks.load(run)
    data = (tiny_run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])  # truncated by a crash
    with pytest.raises(CheckpointError, match="model.safetensors"):
        molks.load(run)
    with pytest.raises(CheckpointError, match="not a molks run"):
        molks.load(tmp_path / "nowhere")


def test_missing_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, run: str, texts: list[str]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        train_tiny(Path(run), texts, epochs=1, device="cpu")
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def test_two_process_ddp_agrees_with_one_process(tmp_path: Path, moses_smiles: list[str]) -> None:
    texts = moses_smiles[:160]
    single = train_tiny(tmp_path / "single", texts, epochs=1, device="cpu")
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp"), texts), nprocs=2, start_method="spawn")
    a, b = _weights(single), _weights(tmp_path / "ddp")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def test_autoregressive_decoder_learns_to_reconstruct(moses_smiles: list[str]) -> None:
    # Teacher forcing through Autoencoder.forward and step-wise masked decoding through
    # Autoencoder.decode: a few hundred steps on 8 molecules reconstruct them exactly.
    from molks.grammar import pad_sequences
    from molks.grammar import Grammar
    from molks.model.autoencoder import Autoencoder, ModelConfig
    from molks.model.networks import NetworkConfig

    grammar = Grammar.load("smiles")
    texts = moses_smiles[:8]
    ids = [grammar.parse(t) for t in texts]
    length = max(map(len, ids))
    network = NetworkConfig(
        n_outputs=grammar.n_outputs, max_length=length, latent_dim=8, conv_channels=(8, 8), conv_kernels=(5, 5),
        dense_size=64, decoder_dense_size=32, gru_layers=1, gru_hidden=96, decoder="autoregressive",
    )
    torch.manual_seed(0)
    model = Autoencoder(ModelConfig(network, "gmm", 8, {"n_components": 2}, grammar_hash=grammar.content_hash), grammar)
    x = torch.as_tensor(pad_sequences(ids, length, grammar.padding_index)).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(model(x)["rec"].detach())
    agreement = []
    for step in range(300):
        optimizer.zero_grad()
        model(x)["rec"].backward()
        optimizer.step()
        if step % 25 == 0:  # "exact" (one teacher-forced pass) is the greedy reconstruction rate
            model.eval()
            decoded, done = model.decode(model.encode(x))
            matches = sum(bool(d) and grammar.derive(row) == text for row, d, text in zip(decoded.tolist(), done, texts))
            agreement.append((round(float(model(x)["exact"]) * len(texts)), matches))
            model.train()
    assert all(predicted == found for predicted, found in agreement), agreement
    assert len({found for _, found in agreement}) > 2  # seen at several levels, not only 0 and 8
    model.eval()
    decoded, finished = model.decode(model.encode(x))
    assert finished.all()
    assert [grammar.derive(row) for row in decoded.tolist()] == texts
    assert float(model(x)["rec"].detach()) < first / 20


def test_split_is_seeded_and_validation_batches_span_a_sorted_file() -> None:
    train_idx, val_idx = split_indices(1000, 0.1, seed=0)
    assert len(val_idx) == 100 and sorted(train_idx.tolist() + val_idx.tolist()) == list(range(1000))
    assert val_idx.tolist() == split_indices(1000, 0.1, seed=0)[1].tolist()
    assert val_idx.tolist() != split_indices(1000, 0.1, seed=1)[1].tolist()
    # Validation batches are taken in this order: on a sorted file each must still be a random
    # sample (KS/CV are batch statistics), not a run of neighbouring lines.
    first_batch = val_idx[:32]
    assert first_batch.max() - first_batch.min() > 500


def test_resume_accepts_a_run_written_before_an_option_existed(tmp_path: Path, moses_smiles: list[str]) -> None:
    # A config.json from an older molks lacks options added since; they take their defaults.
    texts = moses_smiles[:96]
    run = train_tiny(tmp_path / "old", texts, epochs=1)
    config = json.loads((run / "config.json").read_text())
    del config["model"]["network"]["feedback_dropout"]
    (run / "config.json").write_text(json.dumps(config))
    train_tiny(run, texts, epochs=2, resume=True)
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    # A real difference is still refused.
    config["model"]["network"]["feedback_dropout"] = 0.5
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(TrainingError, match="different model configuration"):
        train_tiny(run, texts, epochs=3, resume=True)


def test_training_without_a_terminal_logs_progress_within_each_epoch(
    tmp_path: Path, moses_smiles: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from molks.grammar import pad_sequences
    from molks.grammar import Grammar
    from molks.model.autoencoder import ModelConfig
    from molks.model.networks import NetworkConfig
    from molks.training import trainer
    from molks.training.spec import TrainConfig

    monkeypatch.setattr(trainer, "PROGRESS_LINE_SECONDS", 0.0)  # a line after every batch
    monkeypatch.setattr(trainer, "showing", lambda enabled: False)  # no terminal, even under pytest -s
    grammar = Grammar.load("smiles")
    ids = [grammar.parse(t) for t in moses_smiles[:96]]
    length = max(map(len, ids))
    network = NetworkConfig(
        n_outputs=grammar.n_outputs, max_length=length, latent_dim=4, conv_channels=(4,), conv_kernels=(3,),
        dense_size=8, decoder_dense_size=8, gru_layers=1, gru_hidden=8,
    )
    lines: list[str] = []
    trainer.train(
        tmp_path / "run", pad_sequences(ids, length, grammar.padding_index), moses_smiles[:96], grammar,
        ModelConfig(network, "gmm", 32, grammar_hash=grammar.content_hash),
        TrainConfig(epochs=1, batch_size=32), progress=None, log=lines.append,
    )
    within = [line for line in lines if "batches" in line]
    assert len(within) == 2  # 86 training molecules: 2 batches of 32
    assert within[0].startswith("epoch 1: 1/2 batches,") and "molecules/s" in within[0] and "min left" in within[0]


def test_init_from_fine_tunes_the_networks_with_new_regulariser_options(
    tmp_path: Path, tiny_run: Path, moses_smiles: list[str]
) -> None:
    from molks.training.checkpoint import load_checkpoint
    from molks.training.spec import TrainConfig, TrainingSpec, train_from_file

    source, _, _ = load_checkpoint(tiny_run / "model.safetensors")
    data = tmp_path / "data.smi"
    data.write_text("".join(f"{t}\n" for t in moses_smiles[:300]))
    spec = TrainingSpec(preset="tiny", regularizer_options={"latent_noise": 0.5, "projections": 4},
                        train=TrainConfig(batch_size=32, epochs=1, seed=0, learning_rate=1e-12))  # fmt: skip
    run = train_from_file(data, spec, tmp_path / "tuned", init_from=tiny_run, processes=1, use_cache=False,
                          progress=False, log=lambda _: None)  # fmt: skip
    tuned, _, _ = load_checkpoint(run / "model.safetensors")
    # A learning rate of 1e-12 leaves the networks where they started: the source run's weights.
    for key, value in source.items():
        if not key.startswith("regularizer."):
            assert torch.allclose(tuned[key], value, atol=1e-6), key
    config = json.loads((run / "config.json").read_text())
    assert config["init_from"]["run"] == str(tiny_run)
    assert config["init_from"]["epoch"] is not None
    assert config["model"]["regularizer_options"]["latent_noise"] == 0.5
    # Its sequences keep the source network's length, whatever the new data's longest derivation.
    assert config["model"]["network"]["max_length"] == json.loads((tiny_run / "config.json").read_text())["model"]["network"]["max_length"]
    # Resumed with --init-from naming a source whose weights have changed since (as when a shipped
    # model is replaced by this run's own weights), the run still records where it started.
    longer = TrainingSpec(preset="tiny", regularizer_options=spec.regularizer_options,
                          train=TrainConfig(batch_size=32, epochs=2, seed=0, learning_rate=1e-12))  # fmt: skip
    train_from_file(data, longer, run, init_from=run, resume=True, processes=1, use_cache=False,
                    progress=False, log=lambda _: None)  # fmt: skip
    resumed = json.loads((run / "config.json").read_text())
    assert resumed["init_from"] == config["init_from"] and len(RunDir(run).read_metrics()) == 2


def test_init_from_a_gru_encoder_takes_the_new_datas_longer_sequences(tmp_path: Path, moses_smiles: list[str]) -> None:
    """The GRU encoder's weights fit any length: fine-tuning on longer molecules (ZINC's, say) keeps
    them instead of skipping them, and the tuned model encodes and decodes at the new length."""
    from molks.api import load
    from molks.grammar import Grammar
    from molks.training.spec import TrainConfig, TrainingSpec, train_from_file

    grammar = Grammar.load("smiles")
    ordered = sorted(moses_smiles[:400], key=lambda t: len(grammar.parse(t)))
    short, long = ordered[:200], ordered[200:]
    spec = TrainingSpec(preset="tiny", encoder="gru", train=TrainConfig(batch_size=32, epochs=1, seed=0))
    for name, texts in (("short", short), ("long", long)):
        (tmp_path / f"{name}.smi").write_text("".join(f"{t}\n" for t in texts))
    source = train_from_file(tmp_path / "short.smi", spec, tmp_path / "source", processes=1, use_cache=False,
                             progress=False, log=lambda _: None)  # fmt: skip
    skipped: list[str] = []
    tuned = train_from_file(tmp_path / "long.smi", spec, tmp_path / "tuned", init_from=source, processes=1,
                            use_cache=False, progress=False, log=skipped.append)  # fmt: skip
    length = max(len(grammar.parse(t)) for t in long)
    assert json.loads((source / "config.json").read_text())["model"]["network"]["max_length"] < length
    assert json.loads((tuned / "config.json").read_text())["model"]["network"]["max_length"] == length
    assert not any(line.startswith("skipped") for line in skipped)
    model = load(tuned)
    assert model.encode([ordered[-1]]).shape == (1, 8)


def test_init_from_refuses_another_network(tmp_path: Path, tiny_run: Path, moses_smiles: list[str]) -> None:
    from molks.training.spec import TrainConfig, TrainingError, TrainingSpec, train_from_file

    data = tmp_path / "data.smi"
    data.write_text("".join(f"{t}\n" for t in moses_smiles[:300]))
    spec = TrainingSpec(preset="tiny", latent_dim=3, train=TrainConfig(batch_size=32, epochs=1))
    with pytest.raises(TrainingError, match="network differs"):
        train_from_file(data, spec, tmp_path / "other", init_from=tiny_run, processes=1, use_cache=False,
                        progress=False, log=lambda _: None)  # fmt: skip
    assert not (tmp_path / "other").exists()


def test_the_run_state_keeps_the_checkpoint_keys_so_old_checkpoints_resume(tiny_run: Path) -> None:
    """The state a checkpoint's meta holds is read into the run's state and written back unchanged,
    key for key, both at an epoch's end and inside one (what molks wrote before the state had a type)."""
    from molks.training.run_state import RunState

    saved = load_checkpoint(tiny_run / "checkpoints" / "last.safetensors")[1]["state"]
    assert list(saved) == ["epoch", "best_val", "bad_epochs", "history", "stopped"]
    state, partial = RunState.from_meta(saved)
    assert partial is None and state.epoch == 2 == len(state.history) and state.to_meta() == saved
    reached = {"epoch": 2, "batches": 3, "sums": {"total": 1.5}, "seconds": 4.0, "random": {"cpu": "AAAA"}}
    inside = json.loads(json.dumps({**saved, "epoch": 1, "best_val": float("inf"), "history": [], "partial": reached}))
    state, partial = RunState.from_meta(inside)
    assert partial == reached and json.dumps(state.to_meta(partial)) == json.dumps(inside)


def test_a_checkpoint_without_a_readable_run_state_is_a_clear_error(
    tmp_path: Path, tiny_run: Path, moses_smiles: list[str]
) -> None:
    import shutil

    from molks.training.checkpoint import save_weights

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    checkpoint = run / "checkpoints" / "last.safetensors"
    tensors, meta, optimizer = load_checkpoint(checkpoint)
    del meta["state"]["epoch"]  # written by something else than molks train, with a valid checksum
    save_weights(checkpoint, tensors, meta, optimizer)
    with pytest.raises(CheckpointError, match=r"last.safetensors: its epoch state is unreadable \(KeyError: 'epoch'\)"):
        train_tiny(run, moses_smiles[:320], epochs=3, resume=True)
