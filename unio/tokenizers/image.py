"""Image tokenizer: RGB images <-> LongTensor[B, H/f, W/f] code grids.

Inputs may be PIL images (resized on the shorter side and centre-cropped to ``resolution``), uint8 arrays
[H, W, 3] / [B, H, W, 3], uint8 tensors [B, 3, H, W] or float tensors [B, 3, H, W] in [0, 1]. Arrays and
tensors must already be ``resolution`` x ``resolution``. Internally pixels live in [-1, 1].

Training loss: L1 + L2 reconstruction + quantizer loss, optionally a perceptual loss on a VGG16 feature
stack whose weights come from a local safetensors file (never downloaded), and a hinge PatchGAN loss
with delayed start and adaptive weight (``ImageAdversarialLoss``, driven by the trainer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import Tensor, nn

from unio.tokenizers.vq import AutoencoderConfig, GridTokenizer, TrainingLoss


@dataclass
class ImageLossConfig:
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    perceptual_weight: float = 0.0
    perceptual_weights_path: str | None = None  # torchvision-layout VGG16 `features.*` in safetensors
    gan_weight: float = 0.0  # 0 disables the discriminator entirely
    gan_start_step: int = 2000
    disc_channels: int = 64
    disc_layers: int = 3
    disc_lr: float = 2e-4


@dataclass
class ImageTokenizerConfig:
    resolution: int = 64
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    loss: ImageLossConfig = field(default_factory=ImageLossConfig)

    def __post_init__(self) -> None:
        if self.autoencoder.in_channels != 3 or self.autoencoder.out_channels != 3:
            raise ValueError("image tokenizer: autoencoder.in_channels and out_channels must be 3 (RGB)")


def pil_to_square(img: Image.Image, resolution: int) -> Image.Image:
    """Resize so the shorter side is ``resolution`` (bicubic), then centre-crop a square."""
    img = img.convert("RGB")
    w, h = img.size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    img = img.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - resolution) // 2, (nh - resolution) // 2
    return img.crop((left, top, left + resolution, top + resolution))


class ImageTokenizer(GridTokenizer):
    kind = "image"
    config_class = ImageTokenizerConfig

    @property
    def input_size(self) -> tuple[int, int]:
        return self.cfg.resolution, self.cfg.resolution

    def preprocess(self, images: object) -> Tensor:
        """Any supported image input -> float [B, 3, R, R] in [-1, 1] on the tokenizer's device."""
        r = self.cfg.resolution
        if isinstance(images, Image.Image):
            images = [images]
        if isinstance(images, list | tuple):
            if not images or not all(isinstance(i, Image.Image) for i in images):
                raise TypeError("image list must be a non-empty list of PIL images")
            images = np.stack([np.asarray(pil_to_square(i, r)) for i in images])
        if isinstance(images, np.ndarray):
            if images.dtype != np.uint8:
                raise TypeError(
                    f"image arrays must be uint8 [H, W, 3] or [B, H, W, 3], got dtype {images.dtype}"
                )
            arr = images[None] if images.ndim == 3 else images
            if arr.ndim != 4 or arr.shape[-1] != 3:
                raise ValueError(
                    f"image array shape {images.shape}: expected [H, W, 3] or [B, H, W, 3] (RGB)"
                )
            images = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
        if not isinstance(images, Tensor):
            raise TypeError(f"unsupported image input type {type(images).__name__}")
        x = images[None] if images.ndim == 3 else images
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"image tensor shape {tuple(images.shape)}: expected [B, 3, H, W] with 3 channels"
            )
        if tuple(x.shape[-2:]) != (r, r):
            raise ValueError(
                f"image size {tuple(x.shape[-2:])}: this tokenizer expects {r}x{r} (resize first)"
            )
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif not x.dtype.is_floating_point:
            raise TypeError(f"image tensors must be uint8 or float in [0, 1], got {x.dtype}")
        if not torch.isfinite(x).all():
            raise ValueError("image tensor contains NaN or infinite pixels")
        return (x.float() * 2.0 - 1.0).to(self.device)

    def encode(self, images: object) -> Tensor:
        """Images -> LongTensor[B, h, w] codes."""
        return self.autoencoder.encode(self.preprocess(images))

    def decode(self, codes: Tensor) -> Tensor:
        """Codes [B, h, w] -> float images [B, 3, R, R] in [0, 1]."""
        out = self.autoencoder.decode(self.check_codes(codes))
        return ((out.float() + 1.0) / 2.0).clamp(0.0, 1.0).contiguous()

    def decode_to_pil(self, codes: Tensor) -> list[Image.Image]:
        pixels = (self.decode(codes) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(p) for p in pixels]

    def training_loss(self, batch: Tensor, perceptual: VGGPerceptualLoss | None = None) -> TrainingLoss:
        """``batch``: float [B, 3, R, R] in [-1, 1] (what the datasets yield)."""
        out = self.autoencoder(batch)
        recon = out.reconstruction.float()
        l1 = (recon - batch).abs().mean()
        l2 = (recon - batch).pow(2).mean()
        loss = self.cfg.loss.l1_weight * l1 + self.cfg.loss.l2_weight * l2 + out.aux_loss
        parts = {"l1": l1.detach(), "l2": l2.detach(), "quantizer": out.aux_loss.detach()}
        if perceptual is not None and self.cfg.loss.perceptual_weight > 0:
            p = perceptual(recon, batch)
            loss = loss + self.cfg.loss.perceptual_weight * p
            parts["perceptual"] = p.detach()
        return TrainingLoss(loss=loss, parts=parts, target=batch, reconstruction=recon, codes=out.codes)

    def last_layer_weight(self) -> Tensor:
        """Weight of the decoder's output conv: the adaptive GAN weight balances gradients there."""
        return self.autoencoder.decoder.net[-2].weight


VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)
VGG16_TAPS = (3, 8, 15, 22)  # relu1_2, relu2_2, relu3_3, relu4_3 in torchvision's `features` numbering


class VGGPerceptualLoss(nn.Module):
    """Mean L2 distance of unit-normalised VGG16 features; weights only from a local safetensors file."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU()]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path) -> VGGPerceptualLoss:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"perceptual_weights_path: no such file {path} (weights are never downloaded)"
            )
        state = {k: v for k, v in load_file(str(path)).items() if k.startswith("features.")}
        model = cls()
        missing, _ = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k.startswith("features.")]
        if missing:
            raise ValueError(f"perceptual weights {path} lack VGG16 tensors: {missing[:4]}...")
        return model.eval()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """x, y in [-1, 1]."""
        h = torch.cat([x, y]).add(1.0).div(2.0).sub(self.mean).div(self.std)
        total = h.new_zeros(())
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in VGG16_TAPS:
                a, b = F.normalize(h, dim=1).chunk(2)
                total = total + (a - b).pow(2).sum(1).mean()
            if i >= VGG16_TAPS[-1]:
                break
        return total


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix) discriminator: one real/fake logit per receptive-field patch."""

    def __init__(self, channels: int = 64, layers: int = 3) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, layers):
            nxt = channels * min(2**i, 8)
            mods += [nn.Conv2d(width, nxt, 4, 2, 1), nn.GroupNorm(min(32, nxt // 4), nxt), nn.LeakyReLU(0.2)]
            width = nxt
        mods.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ImageAdversarialLoss(nn.Module):
    """Hinge GAN loss with a delayed start and the VQGAN adaptive weight."""

    def __init__(self, cfg: ImageLossConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.discriminator = PatchDiscriminator(cfg.disc_channels, cfg.disc_layers)

    def active(self, step: int) -> bool:
        return self.cfg.gan_weight > 0 and step >= self.cfg.gan_start_step

    def generator_loss(
        self, fake: Tensor, reconstruction_loss: Tensor, last_layer: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Returns (weighted generator loss, adaptive weight). Keeps the graph for the main backward."""
        g_loss = -self.discriminator(fake).mean()
        rec_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
        gan_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
        weight = (rec_grad.norm() / (gan_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()
        return self.cfg.gan_weight * weight * g_loss, weight

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> Tensor:
        real_logits = self.discriminator(real.detach())
        fake_logits = self.discriminator(fake.detach())
        return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())
