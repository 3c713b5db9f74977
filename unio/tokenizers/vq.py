"""The VQ autoencoder family shared by the image, mask and audio tokenizers.

A convolutional encoder maps a [B, C, H, W] tensor to a [B, D, H/f, W/f] latent grid, a quantizer from
vector-quantize-pytorch turns every latent vector into a code index, and a mirrored decoder maps the
quantized grid back. Built for speed on CPU: the first layer is a space-to-depth rearrangement (no
full-resolution convolutions), channels stay modest and tensors use channels_last.

Quantizers (``QuantizerConfig.kind``):
- ``vq``:  VectorQuantize with cosine similarity, EMA codebook, k-means init and dead-code replacement whose
           threshold scales with the tokens per batch and the codebook size.
- ``fsq``: finite scalar quantisation (no codebook, so no dead codes); codebook size = prod(levels).
- ``lfq``: lookup-free quantisation (binary codes, entropy loss); codebook size must be a power of two.
- ``rvq``: ResidualVQ; each latent position gives ``num_quantizers`` codes, laid side by side along the
           width, so the token grid is (h, w * num_quantizers).
Quantisation always runs in fp32, also under autocast (the bf16 code collapse reported for FSQ).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from vector_quantize_pytorch import FSQ, LFQ, ResidualVQ, VectorQuantize

QUANTIZER_KINDS = ("vq", "fsq", "lfq", "rvq")


@dataclass
class QuantizerConfig:
    kind: str = "vq"
    codebook_size: int = 1024  # vq, lfq, rvq (fsq derives it from levels)
    levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])  # fsq only
    num_quantizers: int = 2  # rvq only
    use_cosine_sim: bool = True  # vq / rvq
    ema_decay: float = 0.99  # vq / rvq
    kmeans_init: bool = True  # vq / rvq
    commitment_weight: float = 0.25  # vq / rvq
    # Dead-code threshold = dead_code_ratio * (expected hits per code per batch); expected hits are
    # tokens_per_batch / codebook_size, so the threshold follows batch and codebook size.
    dead_code_ratio: float = 0.1
    tokens_per_batch: int = 0  # set by the trainer; 0 disables replacement (inference)
    entropy_loss_weight: float = 0.1  # lfq only
    # fsq only: weight of (log L - entropy) of each latent dimension's level histogram (soft, over the
    # batch). Pushes every dimension to use all its levels, which lifts the usage of the joint codebook.
    fsq_entropy_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in QUANTIZER_KINDS:
            raise ValueError(f"quantizer.kind={self.kind!r}: expected one of {QUANTIZER_KINDS}")
        if self.kind == "lfq" and not math.log2(self.codebook_size).is_integer():
            raise ValueError(f"quantizer.codebook_size={self.codebook_size}: lfq needs a power of two")
        if self.kind == "fsq" and any(level < 3 for level in self.levels):
            raise ValueError(f"quantizer.levels={self.levels}: every fsq level must be >= 3")

    @property
    def num_codes(self) -> int:
        return math.prod(self.levels) if self.kind == "fsq" else self.codebook_size

    @property
    def dead_code_threshold(self) -> float:
        if self.tokens_per_batch <= 0:
            return 0.0
        return self.dead_code_ratio * self.tokens_per_batch / self.num_codes


@dataclass
class AutoencoderConfig:
    in_channels: int = 3
    out_channels: int = 3
    downsample: int = 8  # total factor f: 4, 8 or 16
    space_to_depth: int = 2  # the first factor, done by PixelUnshuffle (no full-resolution convs)
    channels: int = 64  # width right after space-to-depth
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 2])  # one entry per resolution level
    num_res_blocks: int = 1  # per level, encoder; the decoder gets one more
    latent_dim: int = 16
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def __post_init__(self) -> None:
        if self.downsample not in (4, 8, 16):
            raise ValueError(f"autoencoder.downsample={self.downsample}: expected 4, 8 or 16")
        strided = self.downsample // self.space_to_depth
        if self.downsample % self.space_to_depth or 2 ** (len(self.channel_mult) - 1) != strided:
            raise ValueError(
                f"autoencoder: downsample={self.downsample} needs space_to_depth * 2**(len(channel_mult)-1) "
                f"== downsample, got space_to_depth={self.space_to_depth}, channel_mult={self.channel_mult}"
            )


def config_from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build a (nested) config dataclass from plain data; unknown keys raise, naming the field."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown} for {cls.__name__}; valid: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            value = config_from_dict(hint, value, f"{where}.{key}")
        elif isinstance(value, Sequence) and not isinstance(value, str) and typing.get_origin(hint) is list:
            value = list(value)
        elif hint is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kwargs[key] = value
    return cls(**kwargs)


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(32, channels // 4), channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(32, channels // 4), channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        widths = [cfg.channels * m for m in cfg.channel_mult]
        layers: list[nn.Module] = [
            nn.PixelUnshuffle(cfg.space_to_depth),
            nn.Conv2d(cfg.in_channels * cfg.space_to_depth**2, widths[0], 3, padding=1),
        ]
        for level, width in enumerate(widths):
            if level > 0:
                layers.append(nn.Conv2d(widths[level - 1], width, 4, stride=2, padding=1))
            layers.extend(ResBlock(width) for _ in range(cfg.num_res_blocks))
        layers += [nn.GroupNorm(min(32, widths[-1] // 4), widths[-1]), nn.SiLU()]
        layers.append(nn.Conv2d(widths[-1], cfg.latent_dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        widths = [cfg.channels * m for m in cfg.channel_mult][::-1]
        layers: list[nn.Module] = [nn.Conv2d(cfg.latent_dim, widths[0], 3, padding=1)]
        for level, width in enumerate(widths):
            if level > 0:  # learned 2x upsampling: conv to 4x channels, then depth-to-space
                layers += [nn.Conv2d(widths[level - 1], width * 4, 3, padding=1), nn.PixelShuffle(2)]
            layers.extend(ResBlock(width) for _ in range(cfg.num_res_blocks + 1))
        layers += [nn.GroupNorm(min(32, widths[-1] // 4), widths[-1]), nn.SiLU()]
        layers += [
            nn.Conv2d(widths[-1], cfg.out_channels * cfg.space_to_depth**2, 3, padding=1),
            nn.PixelShuffle(cfg.space_to_depth),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


@dataclass
class QuantizerOutput:
    quantized: Tensor  # [B, D, h, w] float32
    codes: Tensor  # [B, h, w * q] long
    aux_loss: Tensor  # scalar (commitment / entropy); 0 for fsq


class Quantizer(nn.Module):
    """Uniform wrapper: [B, D, h, w] latents <-> [B, h, w*q] code grids, always in fp32."""

    def __init__(self, cfg: QuantizerConfig, dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.codebook_size = cfg.num_codes
        self.codes_per_position = cfg.num_quantizers if cfg.kind == "rvq" else 1
        vq_kwargs = dict(
            use_cosine_sim=cfg.use_cosine_sim,
            decay=cfg.ema_decay,
            kmeans_init=cfg.kmeans_init,
            kmeans_iters=10,
            commitment_weight=cfg.commitment_weight,
            threshold_ema_dead_code=cfg.dead_code_threshold,
        )
        if cfg.kind == "vq":
            self.impl = VectorQuantize(dim=dim, codebook_size=cfg.codebook_size, **vq_kwargs)
        elif cfg.kind == "rvq":
            self.impl = ResidualVQ(
                dim=dim, codebook_size=cfg.codebook_size, num_quantizers=cfg.num_quantizers, **vq_kwargs
            )
        elif cfg.kind == "fsq":
            self.impl = FSQ(levels=list(cfg.levels), dim=dim)
        else:  # lfq: its inputs must be roughly unit scale, so a learned projection + layernorm feeds it
            self.pre_norm = nn.LayerNorm(dim)
            self.impl = LFQ(
                dim=dim, codebook_size=cfg.codebook_size, entropy_loss_weight=cfg.entropy_loss_weight
            )

    def forward(self, z: Tensor) -> QuantizerOutput:
        b, _, h, w = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            x = rearrange(z.float(), "b d h w -> b (h w) d")
            if self.cfg.kind == "lfq":
                x = self.pre_norm(x)
            if self.cfg.kind == "fsq":
                quantized, indices = self.impl(x)
                aux = (
                    self.fsq_entropy_penalty(x)
                    if self.training and self.cfg.fsq_entropy_weight > 0
                    else x.new_zeros(())
                )
            else:
                quantized, indices, aux = self.impl(x)
                aux = aux.sum()
        codes = rearrange(indices.long().reshape(b, h * w, -1), "b (h w) q -> b h (w q)", h=h)
        quantized = rearrange(quantized, "b (h w) d -> b d h w", h=h)
        return QuantizerOutput(quantized=quantized, codes=codes, aux_loss=aux)

    def fsq_entropy_penalty(self, x: Tensor) -> Tensor:
        """Soft per-dimension level histograms of FSQ's bounded (pre-rounding) values -> entropy deficit."""
        fsq = self.impl
        z = fsq.project_in(x).reshape(-1, len(self.cfg.levels))
        levels = fsq._levels.to(z.dtype)
        # the bound of FSQ.bound(): tanh squashes each dimension onto (-L/2, L/2) around integer levels
        half_l = (levels - 1) * (1 + 1e-3) / 2
        offset = torch.where(fsq._levels % 2 == 0, 0.5, 0.0)
        bounded = torch.tanh(z + torch.atanh(offset / half_l)) * half_l - offset
        penalty = z.new_zeros(())
        for d, num_levels in enumerate(self.cfg.levels):
            positions = torch.arange(num_levels, dtype=z.dtype, device=z.device) - num_levels // 2
            probs = torch.softmax(-((bounded[:, d, None] - positions) ** 2) / 0.5, dim=-1).mean(0)
            entropy = -(probs * probs.clamp(min=1e-9).log()).sum()
            penalty = penalty + math.log(num_levels) - entropy
        return self.cfg.fsq_entropy_weight * penalty

    @torch.no_grad()
    def codes_to_latents(self, codes: Tensor) -> Tensor:
        """[B, h, w*q] long -> [B, D, h, w] float32."""
        q = self.codes_per_position
        h, wq = codes.shape[-2:]
        if wq % q:
            raise ValueError(f"codes width {wq} is not a multiple of num_quantizers={q}")
        if codes.min() < 0 or codes.max() >= self.codebook_size:
            raise ValueError(
                f"codes out of range [0, {self.codebook_size}): min {int(codes.min())}, max {int(codes.max())}"
            )
        flat = rearrange(codes, "b h (w q) -> b (h w) q", q=q)
        with torch.autocast(device_type=codes.device.type, enabled=False):
            if self.cfg.kind == "vq":
                out = self.impl.get_output_from_indices(flat[..., 0])
            elif self.cfg.kind == "rvq":
                out = self.impl.get_output_from_indices(flat)
            else:
                out = self.impl.indices_to_codes(flat[..., 0])
        return rearrange(out.float(), "b (h w) d -> b d h w", h=h)


@dataclass
class AutoencoderOutput:
    reconstruction: Tensor
    codes: Tensor
    aux_loss: Tensor


class VQAutoencoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quantizer = Quantizer(cfg.quantizer, cfg.latent_dim)
        self.decoder = Decoder(cfg)
        self.to(memory_format=torch.channels_last)

    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        f = self.cfg.downsample
        if height % f or width % f:
            raise ValueError(f"input size {height}x{width} is not divisible by the downsampling factor {f}")
        return height // f, width // f * self.quantizer.codes_per_position

    def forward(self, x: Tensor) -> AutoencoderOutput:
        self.grid_shape(*x.shape[-2:])
        z = self.encoder(x.contiguous(memory_format=torch.channels_last))
        q = self.quantizer(z)
        recon = self.decoder(q.quantized.to(z.dtype).contiguous(memory_format=torch.channels_last))
        return AutoencoderOutput(reconstruction=recon, codes=q.codes, aux_loss=q.aux_loss)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        self.grid_shape(*x.shape[-2:])
        return self.quantizer(self.encoder(x.contiguous(memory_format=torch.channels_last))).codes

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        z = self.quantizer.codes_to_latents(codes)
        return self.decoder(z.contiguous(memory_format=torch.channels_last))


class GridTokenizer(nn.Module):
    """Base of the image, mask and audio tokenizers: an autoencoder plus the modality's pre/post-processing.

    Subclasses set ``kind`` and ``config_class`` and implement ``input_size`` (the [H, W] the autoencoder
    sees), ``training_loss`` and their own ``encode`` / ``decode``.
    """

    kind: typing.ClassVar[str] = ""
    config_class: typing.ClassVar[type] = object

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self.autoencoder = VQAutoencoder(cfg.autoencoder)

    @property
    def input_size(self) -> tuple[int, int]:
        raise NotImplementedError

    @property
    def codebook_size(self) -> int:
        return self.autoencoder.codebook_size

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Tokens per item as (rows, columns)."""
        return self.autoencoder.grid_shape(*self.input_size)

    @property
    def num_tokens(self) -> int:
        return self.grid_shape[0] * self.grid_shape[1]

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.cfg)

    @property
    def fingerprint(self) -> str:
        """Stable hash of kind, config and weights (16 hex chars); caches and checkpoints store it."""
        digest = hashlib.sha256()
        digest.update(json.dumps({"kind": self.kind, "config": self.config_dict()}, sort_keys=True).encode())
        for name, tensor in sorted(self.state_dict().items()):
            t = tensor.detach().cpu().clone(memory_format=torch.contiguous_format)
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return digest.hexdigest()[:16]

    @classmethod
    def from_config_dict(cls, data: dict[str, Any]) -> GridTokenizer:
        return cls(config_from_dict(cls.config_class, data, f"{cls.kind} tokenizer config"))

    def check_codes(self, codes: Tensor) -> Tensor:
        """Accept [h, w] or [B, h, w] integer codes of this tokenizer's grid; returns [B, h, w] long."""
        if not isinstance(codes, Tensor) or codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise TypeError(f"codes must be an integer tensor, got {getattr(codes, 'dtype', type(codes))}")
        if codes.ndim == 2:
            codes = codes.unsqueeze(0)
        if codes.ndim != 3 or tuple(codes.shape[1:]) != self.grid_shape:
            raise ValueError(
                f"codes shape {tuple(codes.shape)}: expected [B, {self.grid_shape[0]}, {self.grid_shape[1]}]"
            )
        return codes.long().to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


@dataclass
class TrainingLoss:
    loss: Tensor  # scalar to backpropagate
    parts: dict[str, Tensor]  # detached scalars for logging
    target: Tensor  # what the autoencoder tried to reproduce (model space)
    reconstruction: Tensor  # its output (model space)
    codes: Tensor  # [B, h, w] long
