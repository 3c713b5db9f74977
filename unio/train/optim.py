"""AdamW with the usual exclusions, and the learning-rate schedule.

Weight decay applies to matrices of linear and convolution layers only: norm scales, biases and every
embedding table (tokens, modalities, positions) are not decayed, as in GPT-2/T5/nanoGPT practice
(decaying the tied token embedding pulls rare-token rows to zero). AdamW is torch's fused
implementation when the parameters' device supports it (CPU and CUDA in recent torch), else foreach.

Schedule: linear warmup from 0 to `lr` over `warmup_steps`, then `decay` to `min_lr_ratio * lr` at
`max_steps`: `cosine` (half cosine), `linear`, or `constant` (no decay). The learning rate is a pure
function of the step, so resuming needs no scheduler state beyond the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

DECAYS = ("cosine", "linear", "constant")


@dataclass
class OptimConfig:
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1
    fused: bool | None = None  # None: fused when available
    grad_clip: float = 1.0  # max global gradient norm (0 = no clipping)
    warmup_steps: int = 100
    decay: str = "cosine"
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two values in [0, 1), got {self.betas}")
        if self.decay not in DECAYS:
            raise ValueError(f"optim.decay must be one of {DECAYS}, got {self.decay!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("optim.warmup_steps, optim.grad_clip and optim.weight_decay must be >= 0")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed matrices, and everything else (norms, biases, embeddings)."""
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, keep = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if id(param) in no_decay or param.ndim < 2 or name.endswith("position_embed"):
            keep.append(param)
        else:
            decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": keep, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    groups = parameter_groups(model, cfg.weight_decay)
    device = next(model.parameters()).device
    fused = cfg.fused
    if fused is None:
        fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused or None, foreach=None
    )


def learning_rate(step: int, cfg: OptimConfig, max_steps: int) -> float:
    """The learning rate for optimizer step `step` (0-based)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.decay == "constant":
        return cfg.lr
    span = max(1, max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    floor = cfg.min_lr_ratio * cfg.lr
    if cfg.decay == "linear":
        return floor + (cfg.lr - floor) * (1 - progress)
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
