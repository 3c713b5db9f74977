"""Data pipeline benchmark: can the pretokenized loader feed training with room to spare?

Pretokenizes the shapes world for several tasks (tiny tokenizers unless paths are given), then
measures, on this machine:
- loader samples/s: mixture sampling + Arrow row reads + collation into model batches
  (one process, `num_workers=0`, the way training consumes it);
- train samples/s: forward + backward + AdamW step of the model preset (`small` by default) on those
  same batches, with batches prefetched so only the step is timed.
The loader must be >= 20x faster than training. Last line: one JSON object.

python scripts/bench_data.py                       # small preset, tiny tokenizers
python scripts/bench_data.py model_preset=tiny steps=3    # quick smoke run
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

import unio.cli
from unio.data.collate import Collator
from unio.data.mixture import Mixture, MixtureConfig
from unio.data.pretokenize import DatasetEntry, PretokenizeConfig, load_pretokenized, pretokenize
from unio.data.sources.shapes import ShapesConfig, ShapesSource
from unio.model.loss import SequenceLoss
from unio.model.presets import load_model_preset
from unio.model.transformer import ModelConfig, build_model
from unio.tasks.bundle import GridTokenizerConfig, Tokenizers, TokenizersConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
TASKS = ("caption", "vqa", "classify", "detect", "ground", "region_caption", "refseg", "span_corruption")


@dataclass
class BenchDataConfig:
    model_preset: str = "small"  # a preset in conf/model/, or the path of a model config .yaml
    records: int = 512  # shapes-world records to pretokenize
    image_size: int = 64
    batch_size: int = 16
    loader_batches: int = 200
    steps: int = 5  # timed training steps (after one warm-up step)
    cache_dir: str | None = None  # None: a temporary directory
    tokenizers: TokenizersConfig = field(
        default_factory=lambda: TokenizersConfig(
            image=GridTokenizerConfig(tiny_seed=0), mask=GridTokenizerConfig(tiny_seed=0)
        )
    )
    seed: int = 0


ConfigStore.instance().store(name="bench_data_schema", node=BenchDataConfig)


def loader_rate(loader_iter, batches: int, batch_size: int) -> tuple[float, list[dict]]:
    next(loader_iter)  # first batch pays for opening the Arrow files
    start = time.perf_counter()
    kept = [next(loader_iter) for _ in range(batches)]
    return batches * batch_size / (time.perf_counter() - start), kept


def train_rate(cfg: BenchDataConfig, tok: Tokenizers, batches: list[dict]) -> tuple[float, ModelConfig]:
    model = build_model(load_model_preset(cfg.model_preset), tok.vocab)
    model_cfg = model.config
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = SequenceLoss(tok.vocab)

    def step(batch: dict) -> None:
        logits = model.forward_batch(batch)
        loss = loss_fn(logits, batch["targets"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    batches = itertools.cycle(batches)
    step(next(batches))  # warm-up: allocator, optimiser state
    start = time.perf_counter()
    for _ in range(cfg.steps):
        step(next(batches))
    return cfg.steps * cfg.batch_size / (time.perf_counter() - start), model_cfg


def run(cfg: BenchDataConfig) -> dict[str, float]:
    torch.manual_seed(cfg.seed)
    tok = Tokenizers.from_config(cfg.tokenizers)
    entry = DatasetEntry(
        source={"kind": "shapes", "num_records": cfg.records, "image_size": cfg.image_size, "seed": cfg.seed},
        tasks={name: {} for name in TASKS},
    )
    with tempfile.TemporaryDirectory() as tmp:
        pre = PretokenizeConfig(cache_dir=cfg.cache_dir or tmp, data={"shapes": entry}, seed=cfg.seed)
        source = ShapesSource(ShapesConfig(num_records=cfg.records, image_size=cfg.image_size, seed=cfg.seed))
        start = time.perf_counter()
        pretokenize(pre, tok, sources={"shapes": source}, log=lambda _: None, progress=False)
        pretokenize_seconds = time.perf_counter() - start

        components = load_pretokenized(pre.cache_dir, pre.data, tok)
        mixture = Mixture(components, MixtureConfig(seed=cfg.seed))
        collate = Collator(tok.vocab.bos_id, tok.vocab.pad_id)
        loader = DataLoader(mixture, batch_size=cfg.batch_size, collate_fn=collate, num_workers=0)
        loader_samples, batches = loader_rate(iter(loader), cfg.loader_batches, cfg.batch_size)
        train_samples, model_cfg = train_rate(cfg, tok, batches[: max(cfg.steps, 1)])

    input_len = sum(b["input_mask"].sum().item() for b in batches) / (len(batches) * cfg.batch_size)
    target_len = sum(b["decoder_mask"].sum().item() for b in batches) / (len(batches) * cfg.batch_size)
    return {
        "model": cfg.model_preset,
        "model_parameters": model_cfg.num_parameters(),
        "batch_size": cfg.batch_size,
        "mean_input_tokens": round(input_len, 1),
        "mean_target_tokens": round(target_len, 1),
        "pretokenize_seconds": round(pretokenize_seconds, 2),
        "pretokenize_records_per_s": round(cfg.records / pretokenize_seconds, 1),
        "loader_samples_per_s": round(loader_samples, 1),
        "train_samples_per_s": round(train_samples, 2),
        "loader_to_train_ratio": round(loader_samples / train_samples, 1),
    }


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="bench_data")
def hydra_main(cfg) -> None:
    config: BenchDataConfig = OmegaConf.to_object(cfg)
    result = run(config)
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result))


main = unio.cli.entry(hydra_main)


if __name__ == "__main__":
    main()
