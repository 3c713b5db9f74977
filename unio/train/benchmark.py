"""What the trainer costs on top of the model: `unio-train`'s tokens/s against bare training steps.

Both sides train the same preset on the same batches (a shapes-world mixture with image, box, mask and
text tokens, pretokenized once): the *bare* side is the loop of scripts/bench_model.py (forward, loss,
backward, clipping, fused AdamW) over batches collated in advance; the *trainer* side is `train()`
itself: mixture sampling, collation in its prefetch thread, per-task and per-segment loss accounting,
the non-finite guard, metrics.jsonl logging every `log_every` steps, and one checkpoint, whose cost is
amortised over `checkpoint_every` steps (the default config's interval; reported separately too).

Order: bare, trainer, bare, trainer, ..., bare (`rounds` trainer runs). Each trainer run is compared
with the mean of the bare runs just before and after it, and `trainer_efficiency` is the median of
those per-round ratios, so a shared machine's drifting speed does not land on one side. The first
step of each run is a warm-up and not timed. Issue target: `trainer_efficiency` >= 0.90 on `small`.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from unio.data.collate import Collator, CollatorConfig
from unio.data.mixture import Mixture
from unio.data.pretokenize import DatasetEntry, load_pretokenized
from unio.model.benchmark import matmul_peak_flops
from unio.model.loss import SequenceLoss
from unio.model.presets import load_model_preset
from unio.model.transformer import MODEL_INPUT_KEYS, build_model
from unio.tasks.bundle import GridTokenizerConfig, Tokenizers, TokenizersConfig
from unio.train.optim import build_optimizer
from unio.train.run_logger import LoggerConfig
from unio.train.trainer import TrainConfig, TrainerConfig, train

TASKS = ("caption", "vqa", "classify", "detect", "ground", "region_caption", "refseg", "text_to_image")


@dataclass
class BenchTrainConfig:
    model_preset: str = "small"  # conf/model/<name>.yaml, or a path to such a file
    records: int = 512  # shapes-world records to pretokenize
    image_size: int = 64
    batch_size: int = 8
    steps: int = 10  # timed steps per run (after one warm-up step)
    rounds: int = 3  # trainer runs, each between two bare runs
    log_every: int = 10
    checkpoint_every: int = 500  # the interval the checkpoint cost is amortised over
    cache_dir: str | None = None  # None: a temporary directory
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    seed: int = 0
    tokenizers: TokenizersConfig = field(
        default_factory=lambda: TokenizersConfig(
            image=GridTokenizerConfig(tiny_seed=0), mask=GridTokenizerConfig(tiny_seed=0)
        )
    )


def _train_config(cfg: BenchTrainConfig, cache_dir: str, run_dir: str) -> TrainConfig:
    entry = DatasetEntry(
        source={"kind": "shapes", "num_records": cfg.records, "image_size": cfg.image_size, "seed": cfg.seed},
        tasks={name: {} for name in TASKS},
    )
    trainer = TrainerConfig(
        max_steps=cfg.steps + 1,
        batch_size=cfg.batch_size,
        log_every=cfg.log_every,
        val_every=0,
        checkpoint_every=cfg.steps + 1,  # one checkpoint, at the end: timed and amortised
        progress_bar=False,
        seed=cfg.seed,
        peak_flops=1.0,  # not measured inside the trainer; this benchmark measures it once
    )
    return TrainConfig(
        cache_dir=cache_dir,
        data={"shapes": entry},
        tokenizers=cfg.tokenizers,
        model=load_model_preset(cfg.model_preset),
        trainer=trainer,
        logger=LoggerConfig(kind="none", mode="disabled"),
        run_dir=run_dir,
        resume="never",
        seed=cfg.seed,
    )


def _bare_rate(train_cfg: TrainConfig, tok: Tokenizers, steps: int) -> tuple[float, float, float]:
    """(tokens/s, input tokens per example, target tokens per example) of plain training steps on the
    batches the trainer sees."""
    tcfg = train_cfg.trainer
    components = load_pretokenized(train_cfg.cache_dir, train_cfg.data, tok)
    mixture = Mixture(components, train_cfg.mixture)
    collator = Collator(
        tok.vocab.bos_id, tok.vocab.pad_id, CollatorConfig(tcfg.pad_to_multiple, groups=tuple(components))
    )
    examples = iter(mixture)
    batches = [collator([next(examples) for _ in range(tcfg.batch_size)]) for _ in range(steps + 1)]
    torch.manual_seed(tcfg.seed)
    model = build_model(train_cfg.model, tok.vocab)
    optimizer = build_optimizer(model, train_cfg.optim)
    loss_fn = SequenceLoss(tok.vocab)

    def step(batch: dict[str, torch.Tensor]) -> None:
        logits = model(**{k: batch[k] for k in MODEL_INPUT_KEYS})
        loss_fn(logits, batch["targets"]).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(batches[0])  # warm-up
    inputs = sum(float(b["input_mask"].sum()) for b in batches[1:])
    targets = sum(float(b["decoder_mask"].sum()) for b in batches[1:])
    start = time.perf_counter()
    for batch in batches[1:]:
        step(batch)
    examples = steps * tcfg.batch_size
    return (inputs + targets) / (time.perf_counter() - start), inputs / examples, targets / examples


def run_benchmark(cfg: BenchTrainConfig, log=print) -> dict[str, Any]:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bare_rates, trainer_rates, ratios, checkpoint_seconds = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        train_cfg = _train_config(cfg, cfg.cache_dir or str(Path(tmp) / "cache"), str(Path(tmp) / "run"))
        tok = Tokenizers.from_config(cfg.tokenizers)
        # the trainer builds the cache; a throwaway 1-step run keeps that out of the timings
        warm = replace(
            train_cfg, trainer=replace(train_cfg.trainer, max_steps=1), run_dir=str(Path(tmp) / "w")
        )
        train(warm)
        bare, input_len, target_len = _bare_rate(train_cfg, tok, cfg.steps)
        bare_rates.append(bare)
        log(f"bare steps: {bare:,.0f} tokens/s")
        for r in range(cfg.rounds):
            result = train(replace(train_cfg, run_dir=str(Path(tmp) / f"run{r}")))
            timing = result.timing
            loop = timing["loop_seconds"] - timing["checkpoint_seconds"] - timing["validation_seconds"]
            per_step = loop / cfg.steps + timing["checkpoint_seconds"] / cfg.checkpoint_every
            trainer_rates.append((timing["loop_tokens"] / cfg.steps) / per_step)
            checkpoint_seconds.append(timing["checkpoint_seconds"])
            bare, _, _ = _bare_rate(train_cfg, tok, cfg.steps)
            bare_rates.append(bare)
            ratios.append(trainer_rates[-1] / ((bare_rates[-2] + bare_rates[-1]) / 2))
            log(
                f"trainer: {trainer_rates[-1]:,.0f} tokens/s; bare: {bare:,.0f} tokens/s; ratio {ratios[-1]:.3f}"
            )
    model_cfg = build_model(train_cfg.model, tok.vocab).config
    flops_per_token = model_cfg.train_flops_per_token(round(input_len), round(target_len))
    peak = matmul_peak_flops(1024, repeats=6)
    trainer_rate, bare_rate = statistics.median(trainer_rates), statistics.median(bare_rates)
    return {
        "model": cfg.model_preset,
        "parameters": model_cfg.num_parameters(),
        "batch_size": cfg.batch_size,
        "mean_input_tokens": round(input_len, 1),
        "mean_target_tokens": round(target_len, 1),
        "threads": torch.get_num_threads(),
        "rounds": cfg.rounds,
        "steps_per_run": cfg.steps,
        "bare_step_tokens_per_s": round(bare_rate, 1),
        "trainer_tokens_per_s": round(trainer_rate, 1),
        "bare_runs_tokens_per_s": [round(x, 1) for x in bare_rates],
        "trainer_runs_tokens_per_s": [round(x, 1) for x in trainer_rates],
        "round_ratios": [round(x, 3) for x in ratios],
        "checkpoint_seconds": round(statistics.median(checkpoint_seconds), 2),
        "checkpoint_every": cfg.checkpoint_every,
        "trainer_efficiency": round(statistics.median(ratios), 3),
        "peak_flops": round(peak),
        "mfu": round(trainer_rate * flops_per_token / peak, 4),
        "bare_mfu": round(bare_rate * flops_per_token / peak, 4),
    }
