"""A tiny, fast `unio-train` configuration for tests: composed from conf/train.yaml like the CLI does,
with a 1+1-layer model and a few dozen shapes-world records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR, REPO_ROOT

TINY = [
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_encoder_layers=1",
    "model.n_decoder_layers=1",
    "model.d_ff=64",
    "data.shapes.source.num_records=48",
    "data.shapes.source.image_size=32",
    "data.shapes_val.source.num_records=12",
    "data.shapes_val.source.image_size=32",
    "~data.shapes.tasks.keypoints",  # keeps the tiny set small; keypoints need persons
    "~data.shapes.tasks.region_caption",
    "~data.shapes.tasks.refseg",
    "~data.shapes_val.tasks.vqa",
    "~data.shapes_val.tasks.ground",
    "shard_size=64",
    "max_input_len=256",
    "max_target_len=256",
    "trainer.batch_size=8",
    "trainer.log_every=1",
    "trainer.val_examples=8",
    "trainer.val_batch_size=8",
    "trainer.progress_bar=false",
    "trainer.num_threads=1",
    "trainer.peak_flops=1e11",
    "optim.warmup_steps=2",
    "logger=none",
]


def tiny_overrides(tmp_path: Path, cache_dir: Path, *extra: str, run: str = "run") -> list[str]:
    return [*TINY, f"cache_dir={cache_dir}", f"run_dir={tmp_path / run}", *extra]


def compose_train(overrides: list[str]):
    """The TrainConfig `unio-train <overrides>` would run."""
    import scripts.train  # noqa: F401  (registers the schema)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return OmegaConf.to_object(cfg)


def run_cli(overrides: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """`unio-train <overrides>` in a fresh process (for kill -9 and signal tests)."""
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "scripts.train", *overrides],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def train_losses(run_dir: Path) -> dict[int, float]:
    """step -> training loss from metrics.jsonl."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("split") != "val" and record.get("loss") is not None:
            out[record["step"]] = record["loss"]
    return out
