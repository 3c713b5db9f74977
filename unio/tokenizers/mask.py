"""Mask tokenizer: binary masks (instance or referring) <-> LongTensor[B, H/f, W/f] code grids.

Inputs: bool / uint8 / float masks shaped [H, W], [B, H, W] or [B, 1, H, W] at ``resolution``; float values
must lie in [0, 1] (soft masks are accepted, thresholded targets are not required). The decoder predicts
logits; ``decode`` returns bool masks (probability > 0.5). Training loss: BCE + Dice + quantizer loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from unio.tokenizers.vq import AutoencoderConfig, GridTokenizer, TrainingLoss


@dataclass
class MaskLossConfig:
    bce_weight: float = 1.0
    dice_weight: float = 1.0


@dataclass
class MaskTokenizerConfig:
    resolution: int = 64
    autoencoder: AutoencoderConfig = field(
        default_factory=lambda: AutoencoderConfig(in_channels=1, out_channels=1, downsample=8)
    )
    loss: MaskLossConfig = field(default_factory=MaskLossConfig)

    def __post_init__(self) -> None:
        if self.autoencoder.in_channels != 1 or self.autoencoder.out_channels != 1:
            raise ValueError("mask tokenizer: autoencoder.in_channels and out_channels must be 1")


def dice_loss(logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    return (1.0 - (2.0 * inter + eps) / (prob.sum(1) + target.sum(1) + eps)).mean()


def mask_iou(pred: Tensor, target: Tensor) -> Tensor:
    """Per-item IoU of boolean masks [B, ...]; two empty masks count as IoU 1."""
    pred, target = pred.flatten(1).bool(), target.flatten(1).bool()
    inter = (pred & target).sum(1).float()
    union = (pred | target).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


class MaskTokenizer(GridTokenizer):
    kind = "mask"
    config_class = MaskTokenizerConfig

    @property
    def input_size(self) -> tuple[int, int]:
        return self.cfg.resolution, self.cfg.resolution

    def preprocess(self, masks: object) -> Tensor:
        """Masks -> float [B, 1, R, R] in {0, 1}-ish range [0, 1] on the tokenizer's device."""
        if isinstance(masks, np.ndarray):
            masks = torch.from_numpy(np.ascontiguousarray(masks))
        if not isinstance(masks, Tensor):
            raise TypeError(f"masks must be a numpy array or tensor, got {type(masks).__name__}")
        m = masks
        if m.ndim == 2:
            m = m[None, None]
        elif m.ndim == 3:
            m = m[:, None]
        if m.ndim != 4 or m.shape[1] != 1:
            raise ValueError(
                f"mask shape {tuple(masks.shape)}: expected [H, W], [B, H, W] or [B, 1, H, W] (1 channel)"
            )
        r = self.cfg.resolution
        if tuple(m.shape[-2:]) != (r, r):
            raise ValueError(f"mask size {tuple(m.shape[-2:])}: this tokenizer expects {r}x{r}")
        m = m.float()
        if not torch.isfinite(m).all():
            raise ValueError("mask contains NaN or infinite values")
        if m.numel() and (m.min() < 0 or m.max() > 1):
            raise ValueError(f"mask values must lie in [0, 1], got [{float(m.min())}, {float(m.max())}]")
        return m.to(self.device)

    def model_input(self, masks: Tensor) -> Tensor:
        return masks * 2.0 - 1.0  # centred input helps the first conv

    def encode(self, masks: object) -> Tensor:
        """Masks -> LongTensor[B, h, w] codes."""
        return self.autoencoder.encode(self.model_input(self.preprocess(masks)))

    def decode_logits(self, codes: Tensor) -> Tensor:
        return self.autoencoder.decode(self.check_codes(codes)).float()[:, 0]

    def decode(self, codes: Tensor) -> Tensor:
        """Codes [B, h, w] -> bool masks [B, R, R]."""
        return self.decode_logits(codes) > 0

    def training_loss(self, batch: Tensor, *_: object) -> TrainingLoss:
        """``batch``: float [B, 1, R, R] with values in {0, 1} (what the datasets yield)."""
        out = self.autoencoder(self.model_input(batch))
        logits = out.reconstruction.float()
        bce = F.binary_cross_entropy_with_logits(logits, batch)
        dice = dice_loss(logits, batch)
        loss = self.cfg.loss.bce_weight * bce + self.cfg.loss.dice_weight * dice + out.aux_loss
        iou = mask_iou(logits > 0, batch > 0.5).mean()
        parts = {"bce": bce.detach(), "dice": dice.detach(), "quantizer": out.aux_loss.detach(), "iou": iou}
        return TrainingLoss(loss=loss, parts=parts, target=batch, reconstruction=logits, codes=out.codes)
