"""The trainer: run directory contract, exact resume (kill -9 included), faults, optimizer rules."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tests.train_helpers import compose_train, run_cli, tiny_overrides, train_losses
from unio.model.checkpoint import load_model
from unio.model.transformer import ModelConfig, UnifiedTransformer
from unio.train import checkpoint as ckpt
from unio.train.optim import OptimConfig, learning_rate, parameter_groups
from unio.train.trainer import NonFiniteLossError, train


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One pretokenized tiny cache for the module (the first run builds it, the others hit it)."""
    return tmp_path_factory.mktemp("cache")


def test_run_directory_contract(tmp_path, cache_dir):
    cfg = compose_train(
        tiny_overrides(
            tmp_path,
            cache_dir,
            "trainer.max_steps=6",
            "trainer.checkpoint_every=3",
            "trainer.val_every=3",
            "trainer.keep_last=1",
        )
    )
    result = train(cfg)
    run = result.run_dir
    assert result.status == "completed" and result.steps == 6 and result.final_step == 6
    assert (run / "config.yaml").read_text().count("max_steps: 6") == 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r.get("split") != "val"]
    assert [r["step"] for r in train_records] == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu"):
        assert all(math.isfinite(r[key]) for r in train_records), key
    assert any(k.startswith("loss/task/shapes/") for k in train_records[0])
    assert any(k.startswith("loss/segment/") for k in train_records[0])
    val = [r for r in records if r.get("split") == "val"]
    assert [r["step"] for r in val] == [3, 6] and "loss/task/shapes_val/caption" in val[0]
    # checkpoints: keep_last=1 plus the best by validation loss; `latest` names the newest
    kept = [p.name for p in ckpt.list_checkpoints(run)]
    assert kept[-1] == "step-0000006" and (run / "checkpoints" / "latest").read_text().strip() == kept[-1]
    state = json.loads((run / "checkpoints/step-0000006/trainer_state.json").read_text())
    assert state["step"] == 6 and len(state["rng"]) == 1 and len(state["mixture"]) == 1
    optim = torch.load(run / "checkpoints/step-0000006/optimizer.pt", weights_only=True)
    assert optim["state"]
    model, tok = load_model(run / "checkpoints/step-0000006")
    assert isinstance(model, UnifiedTransformer) and tok.fingerprints() == state_fingerprints(run)
    assert (run / "loss_curve.png").stat().st_size > 1000
    # a second run reuses the pretokenized cache and, with resume=auto, has nothing left to do
    again = train(cfg)
    assert again.steps == 0 and again.final_step == 6


def state_fingerprints(run):
    return json.loads((run / "tokenizers/tokenizers.json").read_text())["fingerprints"]


def test_loss_falls(tmp_path, cache_dir):
    cfg = compose_train(
        tiny_overrides(
            tmp_path,
            cache_dir,
            "trainer.max_steps=40",
            "trainer.checkpoint_every=1000",
            "trainer.val_every=0",
            "optim.lr=3e-3",
        )
    )
    result = train(cfg)
    assert result.last_loss < 0.7 * result.first_loss, (result.first_loss, result.last_loss)


def test_exact_resume_after_kill_9(tmp_path, cache_dir):
    common = ["trainer.max_steps=8", "trainer.checkpoint_every=4", "trainer.val_every=0"]
    train(compose_train(tiny_overrides(tmp_path, cache_dir, *common, run="straight")))
    killed = run_cli(
        tiny_overrides(tmp_path, cache_dir, *common, "trainer.fault.kill_at_step=6", run="killed")
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "killed")] == ["step-0000004"]
    resumed = run_cli(tiny_overrides(tmp_path, cache_dir, *common, run="killed"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    a, b = train_losses(tmp_path / "straight"), train_losses(tmp_path / "killed")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    assert [a[s] for s in sorted(a)] == [b[s] for s in sorted(b)]  # identical, data order included


def test_checkpoint_killed_mid_write_is_never_loaded(tmp_path, cache_dir):
    common = ["trainer.max_steps=6", "trainer.checkpoint_every=2", "trainer.val_every=0"]
    killed = run_cli(
        tiny_overrides(tmp_path, cache_dir, *common, "trainer.fault.kill_in_checkpoint_at_step=4")
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    root = tmp_path / "run" / "checkpoints"
    assert (root / ".tmp-step-0000004").is_dir() and not (root / "step-0000004").exists()
    assert ckpt.find_latest(tmp_path / "run").name == "step-0000002"
    resumed = run_cli(tiny_overrides(tmp_path, cache_dir, *common))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "step-0000002" in resumed.stdout and not (root / ".tmp-step-0000004").exists()
    assert sorted(train_losses(tmp_path / "run")) == list(range(1, 7))


def test_sigterm_checkpoints_and_resumes(tmp_path, cache_dir):
    overrides = ["trainer.max_steps=6", "trainer.checkpoint_every=100", "trainer.val_every=0"]
    cfg = compose_train(tiny_overrides(tmp_path, cache_dir, *overrides, "trainer.fault.sigterm_at_step=3"))
    result = train(cfg)
    assert result.status == "preempted" and result.final_step == 3
    assert ckpt.find_latest(result.run_dir).name == "step-0000003"
    events = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "preempted"
    again = train(compose_train(tiny_overrides(tmp_path, cache_dir, *overrides)))
    assert again.status == "completed" and again.steps == 3 and again.final_step == 6


def test_nan_step_is_skipped_and_counted(tmp_path, cache_dir):
    cfg = compose_train(
        tiny_overrides(
            tmp_path,
            cache_dir,
            "trainer.max_steps=5",
            "trainer.val_every=0",
            "trainer.fault.nan_at_steps=[2]",
        )
    )
    result = train(cfg)
    assert result.nonfinite_steps == 1 and math.isfinite(result.last_loss)
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "nonfinite_loss" and r["step"] == 3 for r in records)
    state = json.loads((ckpt.find_latest(result.run_dir) / "trainer_state.json").read_text())
    assert state["nonfinite_steps"] == 1


def test_consecutive_nans_abort_naming_the_step(tmp_path, cache_dir):
    cfg = compose_train(
        tiny_overrides(
            tmp_path,
            cache_dir,
            "trainer.max_steps=6",
            "trainer.val_every=0",
            "trainer.max_nonfinite=3",
            "trainer.fault.nan_at_steps=[0,1,2]",
        )
    )
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        train(cfg)


def test_fingerprint_mismatch_is_refused(tmp_path, cache_dir):
    first = train(
        compose_train(tiny_overrides(tmp_path, cache_dir, "trainer.max_steps=2", "trainer.val_every=0"))
    )
    checkpoint = ckpt.find_latest(first.run_dir)
    other = compose_train(
        tiny_overrides(
            tmp_path,
            cache_dir,
            "trainer.max_steps=4",
            "tokenizers.coord_bins=500",
            f"resume={checkpoint}",
            run="other",
        )
    )
    with pytest.raises(ValueError, match=r"coords: checkpoint \w+ vs configured \w+"):
        train(other)
    same_dir = compose_train(
        tiny_overrides(tmp_path, cache_dir, "trainer.max_steps=4", "tokenizers.coord_bins=500")
    )
    with pytest.raises(ValueError, match="holds other tokenizers"):
        train(same_dir)


def test_model_mismatch_is_refused(tmp_path, cache_dir):
    """Another head count has the same weight shapes: resuming it must fail, not load silently."""
    first = train(
        compose_train(tiny_overrides(tmp_path, cache_dir, "trainer.max_steps=2", "trainer.val_every=0"))
    )
    heads = ckpt.read_model_config(ckpt.find_latest(first.run_dir)).n_heads
    again = compose_train(
        tiny_overrides(tmp_path, cache_dir, "trainer.max_steps=4", f"model.n_heads={heads * 2}")
    )
    with pytest.raises(
        ValueError, match=rf"holds another model \(n_heads: checkpoint {heads} vs configured {heads * 2}\)"
    ):
        train(again)
    # a training-only field may change on resume
    resumed = train(
        compose_train(
            tiny_overrides(
                tmp_path,
                cache_dir,
                "trainer.max_steps=3",
                "trainer.val_every=0",
                "model.condition_dropout=0.1",
            )
        )
    )
    assert (resumed.final_step, resumed.steps) == (3, 1)


def test_partial_checkpoints_are_ignored(tmp_path):
    root = tmp_path / "checkpoints"
    (root / "step-0000002").mkdir(parents=True)
    (root / "step-0000002" / "trainer_state.json").write_text("{}")
    (root / "step-0000004").mkdir()  # no trainer_state.json: incomplete
    (root / ".tmp-step-0000006").mkdir()
    (root / "latest").write_text("step-0000004\n")
    assert ckpt.find_latest(tmp_path).name == "step-0000002"
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-0000002"]


def test_no_weight_decay_on_norms_and_embeddings():
    model = UnifiedTransformer(
        ModelConfig(vocab_size=64, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32)
    )
    decay, keep = parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    kept = {names[id(p)] for p in keep["params"]}
    assert {"embed.weight", "modality_embed.weight"} <= kept
    assert all("norm" in n or "embed" in n for n in kept)
    assert all(p.ndim == 2 for p in decay["params"]) and decay["weight_decay"] == 0.1


def test_learning_rate_schedule():
    cfg = OptimConfig(lr=1.0, warmup_steps=10, decay="cosine", min_lr_ratio=0.1)
    assert learning_rate(0, cfg, 110) == pytest.approx(0.1)
    assert learning_rate(9, cfg, 110) == pytest.approx(1.0)
    assert learning_rate(60, cfg, 110) == pytest.approx(0.55)
    assert learning_rate(110, cfg, 110) == pytest.approx(0.1)
    linear = OptimConfig(lr=1.0, warmup_steps=0, decay="linear", min_lr_ratio=0.0)
    assert learning_rate(50, linear, 100) == pytest.approx(0.5)


def test_activation_checkpointing_gives_the_same_losses(tmp_path, cache_dir):
    common = ["trainer.max_steps=3", "trainer.val_every=0"]
    plain = train(compose_train(tiny_overrides(tmp_path, cache_dir, *common, run="plain")))
    checkpointed = train(
        compose_train(
            tiny_overrides(tmp_path, cache_dir, *common, "trainer.activation_checkpointing=true", run="ac")
        )
    )
    a, b = train_losses(plain.run_dir), train_losses(checkpointed.run_dir)
    assert a.keys() == b.keys() and all(a[s] == pytest.approx(b[s], rel=1e-5) for s in a)
    # the checkpoint wrapper leaves no trace in the saved weights: they load into a plain model
    model, _ = load_model(checkpointed.checkpoint)
    assert not any("_checkpoint_wrapped_module" in k for k in model.state_dict())


@pytest.mark.slow
def test_compiled_training_matches_eager(tmp_path, cache_dir):
    common = ["trainer.max_steps=2", "trainer.val_every=0"]
    eager = train(compose_train(tiny_overrides(tmp_path, cache_dir, *common, run="eager")))
    compiled = train(
        compose_train(tiny_overrides(tmp_path, cache_dir, *common, "trainer.compile=true", run="compiled"))
    )
    a, b = train_losses(eager.run_dir), train_losses(compiled.run_dir)
    assert all(a[s] == pytest.approx(b[s], rel=1e-4) for s in a)


def test_slurm_launcher_preset_composes():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import scripts.train  # noqa: F401
    from tests.conftest import CONF_DIR

    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs the slurm extra")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=unio_slurm", "dist=fsdp"], return_hydra_config=True)
    assert cfg.hydra.launcher.tasks_per_node == 8 and cfg.hydra.launcher.signal_delay_s == 120
    assert cfg.dist.strategy == "fsdp"


def test_launch_environment(monkeypatch):
    from unio.train import distributed

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(key, raising=False)
    assert distributed._launch_env() == (0, 1, 0)
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_NTASKS", "16")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert distributed._launch_env() == (5, 16, 1)
    monkeypatch.setenv("RANK", "3")  # torchrun's variables win inside an srun allocation
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert distributed._launch_env() == (3, 4, 3)
    monkeypatch.setenv("SLURM_JOB_NODELIST", "gpu[017-020],gpu031")
    monkeypatch.setenv("PATH", "/nonexistent")  # no scontrol: parse the node list
    assert distributed._slurm_master_addr() == "gpu017"


def test_memory_estimate_is_consistent():
    from unio.model.presets import load_model_preset
    from unio.train.memory import estimate_training_memory, largest_batch

    cfg = load_model_preset("base")
    est = estimate_training_memory(cfg, 32, 512, 256)
    assert est.parameters == cfg.num_parameters()
    assert est.optimizer_gb == pytest.approx(2 * est.weights_gb)
    assert est.activations_checkpointed_gb < est.activations_gb
    assert estimate_training_memory(cfg, 64, 512, 256).activations_gb == pytest.approx(2 * est.activations_gb)
    fits = largest_batch(cfg, 512, 256, 80.0, checkpointing=False)
    assert estimate_training_memory(cfg, fits, 512, 256).total_gb <= 80.0
    assert estimate_training_memory(cfg, fits + 1, 512, 256).total_gb > 80.0
    assert largest_batch(cfg, 512, 256, 80.0, checkpointing=True) > fits


@pytest.mark.slow
def test_wandb_offline_run_is_written(tmp_path, cache_dir, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the logger's own default: offline
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    result = train(
        compose_train(
            tiny_overrides(tmp_path, cache_dir, "trainer.max_steps=2", "trainer.val_every=0", "logger=wandb")
        )
    )
    runs = list((result.run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_gradient_accumulation_matches_one_big_batch(tmp_path, cache_dir):
    common = ["trainer.max_steps=3", "trainer.val_every=0", "trainer.batch_size=8"]
    one = train(compose_train(tiny_overrides(tmp_path, cache_dir, *common, run="one")))
    two = train(
        compose_train(tiny_overrides(tmp_path, cache_dir, *common, "trainer.grad_accum=2", run="two"))
    )
    a, b = train_losses(one.run_dir), train_losses(two.run_dir)
    assert a.keys() == b.keys() and all(a[s] == pytest.approx(b[s], rel=1e-5) for s in a)


@pytest.mark.slow
def test_trainer_benchmark_smoke(tmp_path):
    from unio.train.benchmark import BenchTrainConfig, run_benchmark

    result = run_benchmark(
        BenchTrainConfig(model_preset="tiny", records=32, steps=2, rounds=1, cache_dir=str(tmp_path)),
        log=lambda _: None,
    )
    assert result["trainer_tokens_per_s"] > 0 and result["bare_step_tokens_per_s"] > 0
    assert result["trainer_efficiency"] == result["round_ratios"][0] and 0 < result["mfu"] < 1


def test_packed_batches_train_like_unpacked_ones(tmp_path, cache_dir):
    """Packing puts several examples in a row; block-diagonal attention keeps them apart, so the loss
    of each step is the same as without packing."""
    common = ["trainer.max_steps=3", "trainer.val_every=0"]
    plain = train(compose_train(tiny_overrides(tmp_path, cache_dir, *common, run="plain")))
    packed = train(
        compose_train(tiny_overrides(tmp_path, cache_dir, *common, "trainer.pack=true", run="packed"))
    )
    a, b = train_losses(plain.run_dir), train_losses(packed.run_dir)
    assert a.keys() == b.keys() and all(a[s] == pytest.approx(b[s], rel=1e-4) for s in a)


def test_stems_take_part_in_every_step_for_ddp_and_fsdp():
    """A micro-batch without images still runs the stems on an empty batch, so every parameter gets a
    (zero) gradient: DDP and FSDP ranks then all reduce the same parameters (a rank whose micro-batch
    had no image used to abort the two-process run)."""
    from unio.model import ModelConfig, build_model
    from unio.train.trainer import _model_inputs
    from unio.vocab import Vocabulary

    vocab = Vocabulary.default(text_size=100)
    stem = {"kind": "conv", "patch_size": 8, "image_size": 16}
    audio = {"kind": "conv", "patch_size": 16, "image_size": [16, 32]}
    config = ModelConfig(d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=64,
                         patch_stem=stem, audio_stem=audio)  # fmt: skip
    model = build_model(config, vocab)
    ids = torch.tensor([[vocab.offset("text") + 3, vocab.offset("text") + 4]])
    batch = {"input_ids": ids, "decoder_input_ids": ids, "targets": ids}
    for side in ("input", "decoder"):
        batch.update({f"{side}_modality": torch.zeros_like(ids), f"{side}_row": -torch.ones_like(ids)})
        batch.update({f"{side}_col": -torch.ones_like(ids), f"{side}_position": torch.arange(2)[None]})
        batch[f"{side}_mask"] = torch.ones_like(ids, dtype=torch.bool)
    inputs = _model_inputs(batch, model.config)
    assert inputs["input_images"].shape == (0, 3, 16, 16) and inputs["input_audio"].shape == (0, 1, 16, 32)
    assert "input_images" not in _model_inputs(batch)  # evaluation: no empty batches
    model(**inputs).sum().backward()
    for name, p in model.named_parameters():
        if name.startswith(("patch_stem", "audio_stem")):
            assert p.grad is not None and not p.grad.any(), name
