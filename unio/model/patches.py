"""Continuous image (or spectrogram) inputs to the encoder: a patch stem.

Unified-IO 1 feeds the encoder raw pixel patches through one linear projection; most vision encoders
since use a few strided convolutions first ("Early convolutions help transformers see better", Xiao et
al. 2021). `PatchStem` implements both, plus an optional absolute 2-D position embedding (learned, as
in ViT / Florence-2, or fixed sine-cosine, as in DETR / Pix2Seq / MAE) on top of the 2-D rotary the
encoder already applies to grid tokens (rotary only sees offsets between tokens; an absolute
embedding tells each patch where it is in the image, which coordinate outputs need).

    kind=linear   pixels of each p x p patch (C*p*p values) -> Linear -> d_model
    kind=conv     log2(p) conv3x3 stride 2 + GELU (widths conv_width, 2x, 4x, ...) -> Linear -> d_model
    kind=pretrained   a frozen pretrained ViT's patch features -> LayerNorm -> Linear -> d_model
                  (`PretrainedStem`, unio/model/vision_encoder.py; ``pretrained`` = its config)

Inputs are ``[B, C, H, W]``, uint8 (0..255) or float in [0, 1]; both are mapped to [-1, 1]. The output
is ``[B, N, d_model]`` with ``N = (H / p) * (W / p)`` patches in row-major order; `grid_indices` gives
their (row, col), which is what the id stream must carry for them (`placeholder_span`). A log-mel
spectrogram ``[B, 1, mels, frames]`` goes through the same stem with ``channels=1`` and
``image_size=[mels, frames]`` (values scaled to [0, 1] by the caller) and ``modality="audio"``
(``ModelConfig.audio_stem``: its placeholders are ``<audio>`` ids of modality ``audio``).

How the encoder uses it (the contract, also in `UnifiedTransformer.encode` and docs/model.md): an
image in the encoder input is a *placeholder span* of N tokens with id ``placeholder_id`` (the
``<image>`` bracket id), modality ``image``, 1-D positions as usual and (row, col) = the patch grid
position. Ordinary ``<image>`` brackets have row -1, so a placeholder is ``id == placeholder_id and row
>= 0``. The encoder replaces the token embedding of the placeholders, in row-major batch order, by the
stem's patch embeddings (the modality embedding is still added).

Initialisation: the final projection and a learned position table are N(0, ``init_std``) like every
matrix of the model; the convolutions keep PyTorch's default (Kaiming-uniform) init; the sine table is
scaled to rms ``init_std`` so it starts at the size of a token embedding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unio.model.vision_encoder import VisionEncoderConfig, unit_range_images
from unio.vocab import CORE_SPECIAL_TOKENS, MODALITIES

STEM_KINDS = ("linear", "conv", "pretrained")
POSITION_KINDS = ("none", "learned", "sine")
PATCH_MODALITIES = ("image", "audio")  # what a stem may embed
# `Vocabulary.default` puts the core special tokens first, so this is `vocab.token_id("<image>")`;
# `build_model` checks it against the actual vocabulary.
IMAGE_PLACEHOLDER_ID = CORE_SPECIAL_TOKENS.index("<image>")
IMAGE_MODALITY = MODALITIES.index("image")


@dataclass
class PatchStemConfig:
    """Options of a `PatchStem` (``ModelConfig.patch_stem``; a nested dict in conf/model/*.yaml)."""

    kind: str = "conv"  # linear (Unified-IO 1 pixel-patch projection) | conv (strided 3x3 convs, then linear)
    patch_size: int = 8  # pixels per patch side; a power of two for kind=conv
    # input side, or [height, width]; a multiple of patch_size (typed Any: OmegaConf has no int|list)
    image_size: Any = 64
    channels: int = 3  # 3 for RGB, 1 for a spectrogram or a mask
    position: str = "sine"  # absolute 2-D position embedding: none | learned | sine (probe (b), results.md)
    conv_width: int = 32  # channels of the first conv (kind=conv); doubled by every further conv
    # convs per stage (kind=conv): the stride-2 conv, then conv_depth - 1 residual stride-1 3x3 convs.
    # A wider view per patch; on the colour probe 2 was no better than 1 (docs/results.md)
    conv_depth: int = 1
    # LayerNorm over each patch's features before the projection (probes: docs/results.md); without it
    # a conv stem's output starts ~5x smaller than the position table and the model barely sees it
    feature_norm: bool = True
    placeholder_id: int = IMAGE_PLACEHOLDER_ID  # id of the placeholder tokens in the encoder input
    modality: str = "image"  # the placeholders' modality: image (ModelConfig.patch_stem) | audio (audio_stem)
    # kind=pretrained only: a VisionEncoderConfig (or its dict): the frozen ViT and its local weights file.
    # patch_size/image_size/channels must equal the encoder's, and position must be none (the ViT has
    # its own absolute positions; `from_dict` defaults it to none for this kind)
    pretrained: Any = None

    def __post_init__(self) -> None:
        if self.kind not in STEM_KINDS:
            raise ValueError(f"PatchStemConfig.kind must be one of {STEM_KINDS}, got {self.kind!r}")
        if isinstance(self.pretrained, Mapping):
            self.pretrained = VisionEncoderConfig.from_dict(self.pretrained, "PatchStemConfig.pretrained")
        if (self.kind == "pretrained") != (self.pretrained is not None):
            raise ValueError(
                "PatchStemConfig.pretrained (the vision encoder's config) is required for kind=pretrained "
                f"and only then; got kind={self.kind!r}, pretrained={self.pretrained!r}"
            )
        if self.pretrained is not None:
            enc = self.pretrained
            mine = (self.patch_size, self.size, self.channels, self.position)
            theirs = (enc.patch_size, enc.size, enc.channels, "none")
            if mine != theirs:
                raise ValueError(
                    "PatchStemConfig (patch_size, image_size, channels, position) must be "
                    f"{theirs} for kind=pretrained (the encoder's; position comes from its pos_embed), "
                    f"got {mine}"
                )
        if self.modality not in PATCH_MODALITIES:
            raise ValueError(
                f"PatchStemConfig.modality must be one of {PATCH_MODALITIES}, got {self.modality!r}"
            )
        if self.position not in POSITION_KINDS:
            raise ValueError(
                f"PatchStemConfig.position must be one of {POSITION_KINDS}, got {self.position!r}"
            )
        for name in ("patch_size", "channels", "conv_width", "conv_depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"PatchStemConfig.{name} must be a positive integer, got {value!r}")
        if self.kind == "conv" and self.patch_size & (self.patch_size - 1):
            raise ValueError(
                f"PatchStemConfig.patch_size must be a power of two for kind=conv, got {self.patch_size}"
            )
        for side in self.size:
            if side <= 0 or side % self.patch_size:
                raise ValueError(
                    f"PatchStemConfig.image_size {self.image_size!r} must be positive multiples of "
                    f"patch_size {self.patch_size}"
                )

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the input."""
        if isinstance(self.image_size, int):
            return self.image_size, self.image_size
        if len(self.image_size) != 2:
            raise ValueError(
                f"PatchStemConfig.image_size must be an int or [height, width], got {self.image_size!r}"
            )
        return int(self.image_size[0]), int(self.image_size[1])

    @property
    def grid_shape(self) -> tuple[int, int]:
        h, w = self.size
        return h // self.patch_size, w // self.patch_size

    @property
    def num_patches(self) -> int:
        rows, cols = self.grid_shape
        return rows * cols

    def conv_widths(self) -> list[int]:
        """Output channels of the stride-2 convolutions (kind=conv; empty for linear)."""
        if self.kind != "conv":
            return []
        return [self.conv_width * 2**i for i in range(int(math.log2(self.patch_size)))]

    def num_parameters(self, d_model: int) -> int:
        """Exact parameter count of the stem for a model of width ``d_model`` (kind=pretrained: the
        frozen encoder's parameters included)."""
        if self.kind == "pretrained":
            width = self.pretrained.width
            norm = 2 * width if self.feature_norm else 0
            return self.pretrained.num_parameters() + width * d_model + norm
        count, c_in = 0, self.channels
        for width in self.conv_widths():
            count += c_in * width * 9 + width + (self.conv_depth - 1) * (width * width * 9 + width)
            c_in = width
        features = c_in if self.kind == "conv" else self.channels * self.patch_size**2
        count += features * d_model
        if self.feature_norm:
            count += 2 * features
        if self.position == "learned":
            count += self.num_patches * d_model
        return count

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "patch_stem") -> PatchStemConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {unknown}; PatchStemConfig has {sorted(known)}")
        values = dict(data)
        if values.get("kind") == "pretrained":
            values.setdefault("position", "none")
        if not isinstance(values.get("image_size", 0), int):
            values["image_size"] = [int(v) for v in values["image_size"]]
        return cls(**values)


def sine_position_table(rows: int, cols: int, dim: int) -> Tensor:
    """Fixed 2-D sine-cosine table ``[rows * cols, dim]`` (MAE style): the first half of the channels
    encodes the row, the second half the column, each as sin/cos pairs over geometric frequencies."""
    if dim % 4:
        raise ValueError(f"sine position table: dim must be a multiple of 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    r, c = torch.meshgrid(
        torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64), indexing="ij"
    )
    parts = []
    for pos in (r.reshape(-1), c.reshape(-1)):
        angle = pos[:, None] * omega[None]
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=1).float()


class PatchStem(nn.Module):
    """Images ``[B, C, H, W]`` -> patch embeddings ``[B, N, d_model]`` (see the module docstring)."""

    def __init__(self, config: PatchStemConfig, d_model: int, init_std: float = 0.02) -> None:
        super().__init__()
        if config.kind == "pretrained":
            raise ValueError("PatchStem: kind=pretrained is a PretrainedStem (unio/model/vision_encoder.py)")
        self.config, self.d_model, self.init_std = config, d_model, init_std
        p, c_in = config.patch_size, config.channels
        convs, refines = [], []
        for width in config.conv_widths():
            convs.append(nn.Conv2d(c_in, width, kernel_size=3, stride=2, padding=1))
            stage = [nn.Conv2d(width, width, kernel_size=3, padding=1) for _ in range(config.conv_depth - 1)]
            refines.append(nn.ModuleList(stage))
            c_in = width
        self.convs = nn.ModuleList(convs)
        self.refines = nn.ModuleList(refines)  # per stage: the residual stride-1 convs (conv_depth - 1)
        features = c_in if config.kind == "conv" else config.channels * p * p
        self.norm = nn.LayerNorm(features) if config.feature_norm else None
        self.proj = nn.Linear(features, d_model, bias=False)
        rows, cols = config.grid_shape
        self.content_scale = init_std * math.sqrt(features)  # rms of a projected unit-variance feature
        self.position: nn.Parameter | None = None
        if config.position == "learned":
            self.position = nn.Parameter(torch.zeros(rows * cols, d_model))
        elif config.position == "sine":
            # as large as the patch content at init (a unit-variance feature through an N(0, init_std)
            # projection): weaker, "where" is drowned by "what" and boxes learn slowly (probe box)
            table = sine_position_table(rows, cols, d_model) * (self.content_scale * math.sqrt(2))
            self.register_buffer("sine", table, persistent=False)
        grid = torch.arange(rows * cols)
        self.register_buffer("grid_rows", grid // cols, persistent=False)
        self.register_buffer("grid_cols", grid % cols, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The init of the module docstring (`UnifiedTransformer` calls it after its own init)."""
        nn.init.normal_(self.proj.weight, mean=0.0, std=self.init_std)
        if self.position is not None:
            nn.init.normal_(self.position, mean=0.0, std=self.content_scale)
        for conv in self.convs:  # variance-preserving through GELU (PyTorch's default shrinks ~2x a layer)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        for stage in self.refines:  # residual branches start small so a stage starts as its strided conv
            for conv in stage:
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                conv.weight.data.mul_(0.5)
                nn.init.zeros_(conv.bias)
        if self.norm is not None:
            self.norm.reset_parameters()

    def grid_indices(self) -> tuple[Tensor, Tensor]:
        """(row, col) of each of the N output patches, LongTensor[N] each (row-major)."""
        return self.grid_rows, self.grid_cols

    def forward(self, images: Tensor) -> Tensor:
        cfg = self.config
        x = unit_range_images(images, (cfg.channels, *cfg.size), self.proj.weight.dtype, "PatchStem")
        x = x * 2.0 - 1.0
        if cfg.kind == "conv":
            for conv, stage in zip(self.convs, self.refines):
                x = F.gelu(conv(x))
                for refine in stage:
                    x = x + F.gelu(refine(x))
            x = x.flatten(2).transpose(1, 2)  # [B, N, width]
        else:
            x = F.unfold(x, kernel_size=cfg.patch_size, stride=cfg.patch_size).transpose(1, 2)
        if self.norm is not None:
            x = self.norm(x)
        x = self.proj(x)
        if self.position is not None:
            x = x + self.position
        elif cfg.position == "sine":
            x = x + self.sine
        return x


def placeholder_span(config: PatchStemConfig, start_position: int = 0) -> dict[str, Tensor]:
    """Encoder-side tokens of one image: ``{"ids", "modality", "position", "row", "col"}``, LongTensor[N]
    each, positions ``start_position ..``. Concatenate them with the rest of the input's tokens."""
    rows, cols = config.grid_shape
    n = rows * cols
    grid = torch.arange(n)
    return {
        "ids": torch.full((n,), config.placeholder_id, dtype=torch.long),
        "modality": torch.full((n,), MODALITIES.index(config.modality), dtype=torch.long),
        "position": torch.arange(start_position, start_position + n),
        "row": grid // cols,
        "col": grid % cols,
    }


def _stem_geometry(task: Any) -> tuple[str, tuple[int, int], int] | None:
    """(stem field, (height, width), patch size) a task's patch input needs; None for code inputs."""
    if getattr(task, "input_repr", None) != "patches":
        return None
    if task.condition == "audio":
        return "audio_stem", (task.n_mels, task.num_frames), task.patch_size
    return "patch_stem", (task.input_size, task.input_size), task.patch_size


def check_task_inputs(
    patch_stem: PatchStemConfig | None,
    audio_stem: PatchStemConfig | None,
    tasks: Mapping[str, Any],
    where: str,
) -> None:
    """Refuse tasks whose patch inputs the model's stems cannot embed (no stem, or another input or
    patch size): the error names the task, both geometries and the fields that set them. `tasks` maps
    a name (e.g. ``"shapes/classify"``) to a configured `unio.tasks.Task`. Returns the stem fields
    ("patch_stem", "audio_stem") some task uses."""
    stems = {"patch_stem": patch_stem, "audio_stem": audio_stem}
    used: set[str] = set()
    for name, task in tasks.items():
        need = _stem_geometry(task)
        if need is None:
            continue
        field_name, size, patch = need
        used.add(field_name)
        sizes = "n_mels, num_frames" if field_name == "audio_stem" else "input_size"
        stem = stems[field_name]
        if stem is None:
            raise ValueError(
                f"{where}: task {name} takes {field_name.split('_')[0]} patches ({sizes} {size}, patch_size "
                f"{patch}) but model.{field_name} is null: give the model a stem "
                f"(model.{field_name}={{kind: conv, image_size: {list(size)}, patch_size: {patch}}}) or set the "
                "task's input_repr: codes"
            )
        if (stem.size, stem.patch_size) != (size, patch):
            raise ValueError(
                f"{where}: task {name} takes patches of {list(size)} ({sizes}) with patch_size {patch}, but "
                f"model.{field_name} has image_size {list(stem.size)}, patch_size {stem.patch_size}: set the "
                f"task's {sizes}/patch_size or model.{field_name}.image_size/patch_size so they agree"
            )
    return used


def task_input_options(
    patch_stem: PatchStemConfig | None, audio_stem: PatchStemConfig | None, task_cls: Any
) -> dict:
    """`make_task` options that fit a task class's inputs to a model's stems: patches at the stem's
    geometry when the model has the stem, else codes (for tasks built outside a run's data config)."""
    if not getattr(task_cls, "patch_inputs", False):
        return {}
    if task_cls.condition == "audio":
        if audio_stem is None:
            return {"input_repr": "codes"}
        mels, frames = audio_stem.size
        return {
            "input_repr": "patches",
            "n_mels": mels,
            "num_frames": frames,
            "patch_size": audio_stem.patch_size,
        }
    if patch_stem is None:
        return {"input_repr": "codes"}
    height, width = patch_stem.size
    if height != width:  # tasks stretch images to a square
        return {"input_repr": "codes"}
    return {"input_repr": "patches", "input_size": height, "patch_size": patch_stem.patch_size}
