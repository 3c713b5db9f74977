"""Explicit training loop for the image / mask / audio VQ tokenizers.

One step: batch -> ``tokenizer.training_loss`` (optionally under bf16 autocast; quantisation stays fp32)
-> AdamW with linear warmup and cosine decay -> optional PatchGAN step (images). Codebook usage,
perplexity and dead codes are measured over a sliding window of recent batches, so collapse is visible
while it happens. The schedule is driven by ``progress = max(step / steps, elapsed / max_minutes)``, so a
time-boxed run still anneals its learning rate to the end.

Outputs in ``out_dir``: ``checkpoint.pt`` (atomic, loaded with ``weights_only=True``; resume continues
from it), ``samples/step_*.png`` reconstruction pictures, ``train_log.jsonl``, and the final tokenizer in
``out_dir/tokenizer`` (the safetensors format of ``unio.tokenizers.saved``), and ``bad_samples.json``
when ``tokenizer_data.on_bad_sample=skip`` left files out. A run that fails before its first checkpoint
removes the folders it created: no empty ``out_dir`` is left behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from unio.data.tokenizer_datasets import TokenizerDataConfig, build_tokenizer_dataset
from unio.pictures import preview_picture
from unio.tokenizers.image import ImageAdversarialLoss, VGGPerceptualLoss
from unio.tokenizers.saved import build_tokenizer, save_pretrained
from unio.tokenizers.vq import GridTokenizer


@dataclass
class WandbConfig:
    mode: str = "offline"  # online | offline | disabled
    project: str = "unio-tokenizers"
    name: str | None = None


@dataclass
class TokenizerTrainConfig:
    out_dir: str = "artifacts/tokenizers/run"
    steps: int = 2000
    max_minutes: float | None = None  # time budget; the schedule anneals to it
    # "wall": wall-clock time. "cpu": process CPU time / budget_cores, i.e. the wall time the same work
    # would take on budget_cores cores of its own; use it on a machine shared with other jobs.
    budget_clock: str = "wall"
    budget_cores: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    grad_clip: float = 1.0
    precision: str = "fp32"  # fp32 | bf16 (autocast; quantisation stays fp32)
    device: str = "cpu"
    num_threads: int = 2
    num_workers: int = 0
    seed: int = 0
    log_every: int = 25
    picture_every: int = 500
    checkpoint_every: int = 200
    usage_window: int = 20  # batches over which usage / perplexity / dead codes are measured
    resume: bool = True
    progress_bar: bool = True
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def __post_init__(self) -> None:
        if self.budget_clock not in ("wall", "cpu"):
            raise ValueError(f"train.budget_clock={self.budget_clock!r}: expected wall or cpu")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"train.precision={self.precision!r}: expected fp32 or bf16")
        if self.wandb.mode not in ("online", "offline", "disabled"):
            raise ValueError(f"train.wandb.mode={self.wandb.mode!r}: expected online, offline or disabled")


@dataclass
class TrainResult:
    tokenizer: GridTokenizer
    out_dir: Path
    steps: int
    minutes: float
    last_metrics: dict[str, float]


def lr_factor(step: int, progress: float, cfg: TokenizerTrainConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine


class CodeUsage:
    """Code histogram over the last ``window`` batches."""

    def __init__(self, codebook_size: int, window: int) -> None:
        self.codebook_size = codebook_size
        self.recent: deque[Tensor] = deque(maxlen=window)

    def update(self, codes: Tensor) -> None:
        self.recent.append(torch.bincount(codes.flatten().cpu(), minlength=self.codebook_size))

    def stats(self) -> dict[str, float]:
        counts = torch.stack(list(self.recent)).sum(0).double()
        p = counts / counts.sum().clamp(min=1)
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        used = int((counts > 0).sum())
        return {
            "usage": used / self.codebook_size,
            "perplexity": float(entropy.exp()),
            "dead_codes": float(self.codebook_size - used),
        }


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _infinite(loader: DataLoader):
    while True:
        yield from loader


def _batch_input(batch: Any) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, list | tuple):  # audio: (waveforms, lengths)
        return batch[0], batch[1]
    return batch, None


def _start_wandb(cfg: TokenizerTrainConfig, out_dir: Path, config: dict[str, Any]):
    if cfg.wandb.mode == "disabled":
        return None
    import wandb

    return wandb.init(
        project=cfg.wandb.project,
        name=cfg.wandb.name or out_dir.name,
        mode=cfg.wandb.mode,
        dir=str(out_dir),
        config=config,
    )


def _first_missing(path: Path) -> Path | None:
    """The outermost directory of `path` (itself or an ancestor) that does not exist yet."""
    path = path.absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def train_tokenizer(
    kind: str, tokenizer_config: dict[str, Any], data_cfg: TokenizerDataConfig, cfg: TokenizerTrainConfig
) -> TrainResult:
    """Train (or resume) a tokenizer; returns it with the directory holding checkpoints and the result.
    If it fails before writing a checkpoint, the directories it created are removed again."""
    created = _first_missing(Path(cfg.out_dir))
    try:
        return _train_tokenizer(kind, tokenizer_config, data_cfg, cfg)
    except BaseException:
        if created is not None and not (Path(cfg.out_dir) / "checkpoint.pt").exists():
            shutil.rmtree(created, ignore_errors=True)
        raise


def _train_tokenizer(
    kind: str, tokenizer_config: dict[str, Any], data_cfg: TokenizerDataConfig, cfg: TokenizerTrainConfig
) -> TrainResult:
    torch.set_num_threads(cfg.num_threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out_dir = Path(cfg.out_dir)
    device = torch.device(cfg.device)

    probe = build_tokenizer(kind, tokenizer_config)  # to learn the grid size for the dead-code threshold
    tokens_per_batch = cfg.batch_size * probe.num_tokens // probe.autoencoder.quantizer.codes_per_position
    tokenizer_config = json.loads(json.dumps(tokenizer_config))
    tokenizer_config["autoencoder"]["quantizer"]["tokens_per_batch"] = tokens_per_batch
    tokenizer = build_tokenizer(kind, tokenizer_config).to(device)
    del probe

    dataset = build_tokenizer_dataset(data_cfg, tokenizer, train=True)
    if len(dataset) < cfg.batch_size:
        raise ValueError(f"training set has {len(dataset)} items, fewer than batch_size={cfg.batch_size}")
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    report = getattr(dataset, "bad_samples", None)
    if report is not None and len(report):
        report.write_json(out_dir / "bad_samples.json")
        print(report.summary())
    loader = DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True, num_workers=cfg.num_workers
    )

    decay = [p for n, p in tokenizer.named_parameters() if p.ndim > 1 and p.requires_grad]
    no_decay = [p for n, p in tokenizer.named_parameters() if p.ndim <= 1 and p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=tuple(cfg.betas),
    )
    loss_cfg = getattr(tokenizer.cfg, "loss", None)
    adversary = disc_optimizer = perceptual = None
    if kind == "image" and loss_cfg.gan_weight > 0:
        adversary = ImageAdversarialLoss(loss_cfg).to(device)
        disc_optimizer = torch.optim.AdamW(adversary.parameters(), lr=loss_cfg.disc_lr, betas=(0.5, 0.9))
    if kind == "image" and loss_cfg.perceptual_weight > 0:
        if not loss_cfg.perceptual_weights_path:
            raise ValueError(
                "tokenizer.loss.perceptual_weight > 0 needs tokenizer.loss.perceptual_weights_path"
            )
        perceptual = VGGPerceptualLoss.from_file(loss_cfg.perceptual_weights_path).to(device)

    run_config = {"kind": kind, "tokenizer": tokenizer_config, "data": asdict(data_cfg), "train": asdict(cfg)}
    run_config["data_counts"] = getattr(dataset, "counts", {})
    step, elapsed_before = 0, 0.0
    ckpt_path = out_dir / "checkpoint.pt"
    if cfg.resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        if ckpt["tokenizer_config"] != tokenizer_config or ckpt["kind"] != kind:
            raise ValueError(
                f"{ckpt_path} was written for a different tokenizer config; use a new out_dir or resume=false"
            )
        tokenizer.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if adversary is not None and "adversary" in ckpt:
            adversary.load_state_dict(ckpt["adversary"])
            disc_optimizer.load_state_dict(ckpt["disc_optimizer"])
        step, elapsed_before = ckpt["step"], ckpt["elapsed"]
        torch.set_rng_state(ckpt["torch_rng"].cpu())
        random.seed(cfg.seed + step)

    def save_checkpoint() -> None:
        state = {
            "kind": kind,
            "tokenizer_config": tokenizer_config,
            "model": tokenizer.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "elapsed": elapsed_before + clock() - start,
            "torch_rng": torch.get_rng_state(),
            "fingerprint": tokenizer.fingerprint,
        }
        if adversary is not None:
            state["adversary"] = adversary.state_dict()
            state["disc_optimizer"] = disc_optimizer.state_dict()
        atomic_torch_save(state, ckpt_path)

    run = _start_wandb(cfg, out_dir, run_config)
    usage = CodeUsage(tokenizer.codebook_size, cfg.usage_window)
    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if cfg.precision == "bf16"
        else contextlib.nullcontext()
    )
    budget = cfg.max_minutes * 60 if cfg.max_minutes else None

    def clock() -> float:
        return time.process_time() / cfg.budget_cores if cfg.budget_clock == "cpu" else time.time()

    start, wall_start = clock(), time.time()
    progress = max(step / cfg.steps, (elapsed_before / budget) if budget else 0.0)
    bar = tqdm(
        total=cfg.steps,
        initial=step,
        disable=not cfg.progress_bar,
        desc=f"{kind} tokenizer",
        dynamic_ncols=True,
    )
    last: dict[str, float] = {}
    log_file = (out_dir / "train_log.jsonl").open("a")
    batches = _infinite(loader)
    tokenizer.train()
    try:
        while progress < 1.0:
            batch, lengths = _batch_input(next(batches))
            batch = batch.to(device)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, progress, cfg)
            with autocast:
                out = (
                    tokenizer.training_loss(batch, lengths)
                    if kind == "audio"
                    else tokenizer.training_loss(batch, perceptual)
                )
                loss = out.loss
                if adversary is not None and adversary.active(step):
                    g_loss, g_weight = adversary.generator_loss(
                        out.reconstruction, out.loss, tokenizer.last_layer_weight()
                    )
                    loss = loss + g_loss
                    out.parts["gan_g"], out.parts["gan_weight"] = g_loss.detach(), g_weight
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss is {loss.item()} at step {step}; lower train.lr or use precision=fp32"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(tokenizer.parameters(), cfg.grad_clip)
            optimizer.step()
            if adversary is not None and adversary.active(step):
                with autocast:
                    d_loss = adversary.discriminator_loss(out.target, out.reconstruction)
                disc_optimizer.zero_grad(set_to_none=True)
                d_loss.backward()
                disc_optimizer.step()
                out.parts["gan_d"] = d_loss.detach()
            usage.update(out.codes)
            step += 1
            elapsed = elapsed_before + clock() - start
            progress = max(step / cfg.steps, elapsed / budget if budget else 0.0)
            bar.update(1)
            if step % cfg.log_every == 0 or progress >= 1.0:
                last = {k: float(v) for k, v in out.parts.items()}
                last.update(
                    loss=float(loss.detach()), grad_norm=float(grad_norm), lr=optimizer.param_groups[0]["lr"]
                )
                last.update(usage.stats())
                last["minutes"] = elapsed / 60  # on the budget clock
                last["wall_minutes"] = (time.time() - wall_start) / 60  # this session only
                if kind == "image":
                    mse = ((out.reconstruction.detach().float().clamp(-1, 1) - out.target) / 2).pow(2).mean()
                    last["psnr"] = float(10 * torch.log10(1.0 / mse.clamp(min=1e-10)))
                bar.set_postfix({k: f"{last[k]:.4g}" for k in ("loss", "usage", "perplexity") if k in last})
                log_file.write(json.dumps({"step": step, **last}) + "\n")
                log_file.flush()
                if run is not None:
                    run.log({f"train/{k}": v for k, v in last.items()}, step=step)
            if step % cfg.picture_every == 0 or progress >= 1.0:
                picture = preview_picture(tokenizer, out.target, out.reconstruction)
                picture.save(out_dir / "samples" / f"step_{step:06d}.png")
                if run is not None:
                    import wandb

                    run.log({"train/reconstructions": wandb.Image(picture)}, step=step)
            if step % cfg.checkpoint_every == 0:
                save_checkpoint()
    finally:
        bar.close()
        log_file.close()
    save_checkpoint()
    tokenizer.eval()
    save_pretrained(tokenizer, out_dir / "tokenizer")
    if run is not None:
        run.finish()
    return TrainResult(tokenizer, out_dir, step, (elapsed_before + clock() - start) / 60, last)
