"""Frozen pretrained vision features for the encoder (Unified-IO 2 style): a ViT loaded from local weights.

Unified-IO 2 feeds its encoder the patch features of a frozen pretrained image encoder instead of
learning a stem from pixels. `PretrainedStem` does the same: a `VisionTransformer` whose weights come
from a ``.safetensors`` file the user gives (``VisionEncoderConfig.weights``; nothing is ever
downloaded), frozen, followed by a trainable LayerNorm and linear projection to ``d_model``. It has the
interface of `PatchStem` (unio/model/patches.py), so the encoder's placeholder contract is unchanged;
it is selected by ``PatchStemConfig(kind="pretrained", pretrained={...})``.

Weights: `VisionTransformer` has exactly the parameter names and shapes of timm's
``VisionTransformer`` (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``norm_pre`` when
``pre_norm``, ``blocks.{i}.norm1 / attn.qkv / attn.proj / norm2 / mlp.fc1 / mlp.fc2``, ``norm``), so a
timm ViT or CLIP ViT created with ``num_classes=0`` exports with
``safetensors.torch.save_file(model.state_dict(), path)`` (docs/model.md "Pretrained vision
features"). Loading is strict: a missing file, a missing or unexpected key or a shape that differs
from the config is a ``ValueError`` naming the file and the keys. Variants timm builds with other
modules (register tokens, LayerScale, ``fc_norm``, EVA's q/v biases, position embeddings without the
class slot) are refused by that check rather than loaded wrongly.

Computation (timm's ``forward_features``): conv patch embedding, class token prepended, learned
absolute position embedding added (the encoder's own absolute positions, so the stem adds none), the
optional pre-norm, the pre-norm transformer blocks, the final LayerNorm. ``layer`` picks the block
whose output is used: -1 (default) is the last one after the final norm; an earlier block's output
is its raw residual stream (e.g. ``layer=-2``, the penultimate features LLaVA-style models use), and
the blocks after it are not run. The class token is dropped; the ``N`` patch features go through the
trainable ``LayerNorm`` (``PatchStemConfig.feature_norm``) and ``Linear(width, d_model)``.

Frozen means: ``requires_grad=False`` (optimizers skip the parameters; unio/train/optim.py), the
encoder stays in eval mode when the model is put in train mode, and it runs under ``torch.no_grad``.
Its weights are ordinary (frozen) parameters of the model, so a unio checkpoint holds them and is
self-contained: `unio.model.checkpoint.load_model` reads them from the checkpoint's own weights file
(``weights`` pointed there with ``prefix="patch_stem.encoder."``), so the original file may move or
go once a run has saved a checkpoint. Images arrive as uint8 (or float in [0, 1]) and are normalised
with ``mean`` / ``std`` (ImageNet's by default; OpenAI CLIP uses its own, see docs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

ACTIVATIONS = ("gelu", "quick_gelu")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class VisionEncoderConfig:
    """Architecture of the pretrained ViT and where its weights are (``PatchStemConfig.pretrained``).

    The defaults are timm's ViT-B/16 at 224 px; every field must describe the weights file."""

    weights: str = ""  # path to a .safetensors file holding the ViT's state dict (required)
    # the ViT's keys in that file start with this (a unio checkpoint: "patch_stem.encoder."); "" = a
    # file of the ViT alone. Keys without it are ignored.
    prefix: str = ""
    patch_size: int = 16
    image_size: Any = 224  # input side, or [height, width]; must match pos_embed (no interpolation)
    width: int = 768  # embed_dim
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    class_token: bool = True  # a cls_token is prepended (and dropped from the output)
    pre_norm: bool = False  # LayerNorm `norm_pre` before the blocks (timm's CLIP ViTs)
    act: str = "gelu"  # MLP activation: gelu | quick_gelu (OpenAI CLIP)
    norm_eps: float = 1e-6  # timm ViTs: 1e-6; timm's OpenAI CLIP ViTs: 1e-5
    layer: int = -1  # block whose output is used; -1 = last, after the final norm
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))  # per channel, on [0, 1]
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))

    def __post_init__(self) -> None:
        if not isinstance(self.weights, str | Path) or not str(self.weights):
            raise ValueError(
                "VisionEncoderConfig.weights: the path of a .safetensors file is required "
                f"(nothing is downloaded), got {self.weights!r}"
            )
        self.weights = str(self.weights)
        for name in ("patch_size", "width", "depth", "heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"VisionEncoderConfig.{name} must be a positive integer, got {value!r}")
        if self.width % self.heads:
            raise ValueError(
                f"VisionEncoderConfig.width ({self.width}) must be divisible by heads ({self.heads})"
            )
        if self.act not in ACTIVATIONS:
            raise ValueError(f"VisionEncoderConfig.act must be one of {ACTIVATIONS}, got {self.act!r}")
        if not -self.depth <= self.layer < self.depth:
            raise ValueError(
                f"VisionEncoderConfig.layer must be in [-{self.depth}, {self.depth}) (depth {self.depth}), "
                f"got {self.layer}"
            )
        self.mean, self.std = [float(v) for v in self.mean], [float(v) for v in self.std]
        if len(self.mean) != len(self.std) or not self.mean or min(self.std) <= 0:
            raise ValueError(
                f"VisionEncoderConfig.mean/std: one value per channel, std > 0; got {self.mean}, {self.std}"
            )
        if not isinstance(self.image_size, int):
            self.image_size = [int(v) for v in self.image_size]
        for side in self.size:
            if side <= 0 or side % self.patch_size:
                raise ValueError(
                    f"VisionEncoderConfig.image_size {self.image_size!r} must be positive multiples of "
                    f"patch_size {self.patch_size}"
                )

    @property
    def channels(self) -> int:
        return len(self.mean)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the input."""
        if isinstance(self.image_size, int):
            return self.image_size, self.image_size
        if len(self.image_size) != 2:
            raise ValueError(
                f"VisionEncoderConfig.image_size must be an int or [height, width], got {self.image_size!r}"
            )
        return self.image_size[0], self.image_size[1]

    @property
    def num_patches(self) -> int:
        h, w = self.size
        return (h // self.patch_size) * (w // self.patch_size)

    @property
    def hidden(self) -> int:
        return int(self.width * self.mlp_ratio)

    def num_parameters(self) -> int:
        """Exact parameter count of the (frozen) `VisionTransformer`."""
        w, h = self.width, self.hidden
        count = self.channels * self.patch_size**2 * w + w  # patch_embed.proj
        count += (self.num_patches + self.class_token) * w + (w if self.class_token else 0)
        count += 2 * w * (self.pre_norm + 1)  # norm_pre, norm
        block = 4 * w + (3 * w * w + 3 * w) + (w * w + w) + (w * h + h) + (h * w + w)
        return count + self.depth * block

    @property
    def blocks_run(self) -> int:
        """Blocks the forward pass runs: up to and including ``layer``."""
        return self.layer + 1 if self.layer >= 0 else self.depth + self.layer + 1

    def forward_flops(self) -> float:
        """Matmul FLOPs (2 per multiply-add) of the ViT on one image, counted as
        `ModelConfig.forward_flops` counts (no norms, activations or softmax): the patch embedding, and
        per block run the qkv and output projections, attention scores and weighted sums, and the MLP."""
        n, w, tokens = self.num_patches, self.width, self.num_patches + self.class_token
        embed = n * self.channels * self.patch_size**2 * w
        block = tokens * (4 * w * w + 2 * w * self.hidden) + 2 * tokens * tokens * w
        return 2.0 * (embed + self.blocks_run * block)

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "pretrained") -> VisionEncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {unknown}; VisionEncoderConfig has {sorted(known)}")
        return cls(**dict(data))


# --------------------------------------------------------------------------------------- the ViT
def unit_range_images(
    images: Tensor, expected: tuple[int, int, int], dtype: torch.dtype, owner: str
) -> Tensor:
    """Check ``[B, C, H, W]`` against ``expected = (C, H, W)`` and map uint8 0..255 to [0, 1] (a float
    input is taken as already in [0, 1]), in `dtype`; the input contract of every patch stem."""
    if images.dim() != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"{owner}: expected images [B, {expected[0]}, {expected[1]}, {expected[2]}] "
            f"(PatchStemConfig channels/image_size), got {tuple(images.shape)}"
        )
    return images.to(dtype) / 255.0 if images.dtype == torch.uint8 else images.to(dtype)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int, act: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc1(x)
        x = F.gelu(x) if self.act == "gelu" else x * torch.sigmoid(1.702 * x)
        return self.fc2(x)


class Block(nn.Module):
    def __init__(self, cfg: VisionEncoderConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.attn = Attention(cfg.width, cfg.heads)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg.width, cfg.hidden, cfg.act)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: VisionEncoderConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cfg.channels, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, N, width], row-major


class VisionTransformer(nn.Module):
    """A plain ViT with timm's parameter names: normalised images ``[B, C, H, W]`` -> features
    ``[B, (1 +) N, width]`` of block ``config.layer`` (class token first when there is one).

    Parameters start as PyTorch's defaults (zeros for the class token and position table): the
    weights are meant to be loaded (`load_vision_encoder`)."""

    def __init__(self, config: VisionEncoderConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width)) if cfg.class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_patches + cfg.class_token, cfg.width))
        self.norm_pre = nn.LayerNorm(cfg.width, eps=cfg.norm_eps) if cfg.pre_norm else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        cfg = self.config
        x = self.patch_embed(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed
        if self.norm_pre is not None:
            x = self.norm_pre(x)
        last = cfg.layer % cfg.depth
        for block in self.blocks[: last + 1]:
            x = block(x)
        return self.norm(x) if last == cfg.depth - 1 else x


def load_vision_encoder(config: VisionEncoderConfig) -> VisionTransformer:
    """The frozen ViT of ``config`` with the weights of ``config.weights`` (strict; see the module
    docstring). Parameters are float32 (the file may hold fp16/bf16), ``requires_grad=False``, eval mode."""
    path = Path(config.weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"VisionEncoderConfig.weights: no file at {path} (export the encoder's state dict to a "
            ".safetensors file there; nothing is downloaded)"
        )
    try:
        with safe_open(str(path), framework="pt") as file:
            names = [k for k in file.keys() if k.startswith(config.prefix)]  # noqa: SIM118 (not a dict)
            tensors = {k[len(config.prefix) :]: file.get_tensor(k) for k in names}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    with torch.device("meta"):
        encoder = VisionTransformer(config)
    expected = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = sorted(
        f"{k} {tuple(tensors[k].shape)} != {expected[k]}"
        for k in set(expected) & set(tensors)
        if tuple(tensors[k].shape) != expected[k]
    )
    if missing or unexpected or shapes:
        raise ValueError(
            f"{path}: weights{f' under {config.prefix!r}' if config.prefix else ''} do not fit the "
            f"VisionEncoderConfig (width {config.width}, depth "
            f"{config.depth}, patch_size {config.patch_size}, image_size {config.image_size}, class_token "
            f"{config.class_token}, pre_norm {config.pre_norm}): missing keys {missing[:8]}, unexpected "
            f"keys {unexpected[:8]}, shape mismatches {shapes[:8]}"
        )
    dtype = torch.get_default_dtype()
    encoder.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=True, assign=True)
    return encoder.requires_grad_(False).eval()


# --------------------------------------------------------------------------------------- the stem
class PretrainedStem(nn.Module):
    """Images ``[B, C, H, W]`` -> ``[B, N, d_model]`` through the frozen ViT of
    ``config.pretrained`` and a trainable LayerNorm + projection; the interface of `PatchStem`.

    ``config`` is the `PatchStemConfig` (kind ``pretrained``), which has already checked that its
    ``patch_size`` / ``image_size`` / ``channels`` agree with the encoder's."""

    def __init__(self, config: Any, d_model: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.config, self.d_model, self.init_std = config, d_model, init_std
        enc = config.pretrained
        self.encoder = load_vision_encoder(enc)
        self.register_buffer("mean", torch.tensor(enc.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(enc.std).view(1, -1, 1, 1), persistent=False)
        self.norm = nn.LayerNorm(enc.width) if config.feature_norm else None
        self.proj = nn.Linear(enc.width, d_model, bias=False)
        rows, cols = config.grid_shape
        grid = torch.arange(rows * cols)
        self.register_buffer("grid_rows", grid // cols, persistent=False)
        self.register_buffer("grid_cols", grid % cols, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise the trainable part only (projection ~ N(0, ``init_std``), norm to identity);
        the pretrained weights are left as loaded."""
        nn.init.normal_(self.proj.weight, mean=0.0, std=self.init_std)
        if self.norm is not None:
            self.norm.reset_parameters()

    def train(self, mode: bool = True) -> PretrainedStem:
        super().train(mode)
        self.encoder.eval()  # frozen: no train-mode behaviour, whatever the parent's mode
        return self

    def grid_indices(self) -> tuple[Tensor, Tensor]:
        """(row, col) of each of the N output patches, LongTensor[N] each (row-major)."""
        return self.grid_rows, self.grid_cols

    def forward(self, images: Tensor) -> Tensor:
        cfg, dtype = self.config, self.proj.weight.dtype
        x = unit_range_images(images, (cfg.channels, *cfg.size), dtype, "PretrainedStem")
        x = (x - self.mean.to(dtype)) / self.std.to(dtype)
        with torch.no_grad():
            features = self.encoder(x)
        if self.encoder.config.class_token:
            features = features[:, 1:]
        if self.norm is not None:
            features = self.norm(features)
        return self.proj(features)
