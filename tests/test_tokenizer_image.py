"""Image tokenizer: inputs, bad inputs, overfitting one batch, save/load, losses, metrics, JPEG baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from unio.eval.tokenizer_metrics import code_statistics, jpeg_at_bpp, jpeg_scan_bytes, psnr, ssim
from unio.tokenizers.image import (
    ImageAdversarialLoss,
    ImageLossConfig,
    ImageTokenizer,
    ImageTokenizerConfig,
    VGGPerceptualLoss,
)
from unio.tokenizers.saved import from_pretrained, read_saved_config, save_pretrained
from unio.tokenizers.vq import AutoencoderConfig, QuantizerConfig


def tiny_image_tokenizer(kind: str = "vq", resolution: int = 16) -> ImageTokenizer:
    torch.manual_seed(0)
    quantizer = QuantizerConfig(kind=kind, codebook_size=64, levels=[8, 8, 8], tokens_per_batch=128)
    auto = AutoencoderConfig(
        downsample=4,
        channels=16,
        channel_mult=[1, 2],
        latent_dim=3 if kind == "fsq" else 8,
        quantizer=quantizer,
    )
    return ImageTokenizer(ImageTokenizerConfig(resolution=resolution, autoencoder=auto))


@pytest.fixture(scope="module")
def tokenizer() -> ImageTokenizer:
    tok = tiny_image_tokenizer()
    tok.training_loss(torch.rand(8, 3, 16, 16) * 2 - 1)  # k-means init of the codebook
    return tok.eval()


def test_accepts_pil_uint8_and_float_inputs(tokenizer: ImageTokenizer) -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    from_array = tokenizer.encode(array)
    assert from_array.shape == (1, 4, 4) and from_array.dtype == torch.long
    assert tokenizer.grid_shape == (4, 4) and tokenizer.codebook_size == 64
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    assert torch.equal(tokenizer.encode(tensor), from_array)  # uint8 [3, H, W]
    assert torch.equal(tokenizer.encode(tensor.float() / 255), from_array)  # float in [0, 1]
    assert torch.equal(tokenizer.encode(Image.fromarray(array)), from_array)  # PIL at the right size
    big = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))
    assert tokenizer.encode([big, big]).shape == (2, 4, 4)  # PIL gets resized + centre-cropped
    images = tokenizer.decode(from_array)
    assert images.shape == (1, 3, 16, 16) and images.dtype == torch.float32
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert tokenizer.decode_to_pil(from_array[0])[0].size == (16, 16)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (torch.rand(1, 4, 16, 16), ValueError, "3 channels"),
        (np.zeros((16, 16, 4), dtype=np.uint8), ValueError, "RGB"),
        (torch.rand(1, 3, 20, 20), ValueError, "expects 16x16"),
        (torch.full((1, 3, 16, 16), float("nan")), ValueError, "NaN"),
        (np.zeros((16, 16, 3), dtype=np.float32), TypeError, "uint8"),
        ([], TypeError, "non-empty"),
        ("image.png", TypeError, "unsupported"),
    ],
)
def test_bad_inputs_raise_clear_errors(
    tokenizer: ImageTokenizer, bad: object, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        tokenizer.encode(bad)


def test_bad_codes_raise(tokenizer: ImageTokenizer) -> None:
    with pytest.raises(ValueError, match=r"expected \[B, 4, 4\]"):
        tokenizer.decode(torch.zeros(1, 5, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        tokenizer.decode(torch.zeros(1, 4, 4))


def test_rgb_is_required_by_the_config() -> None:
    with pytest.raises(ValueError, match="RGB"):
        ImageTokenizerConfig(autoencoder=AutoencoderConfig(in_channels=1))


@pytest.mark.parametrize("kind", ["vq", "fsq"])
def test_tiny_tokenizer_overfits_one_batch(kind: str) -> None:
    tok = ImageTokenizer(
        ImageTokenizerConfig(
            resolution=8,
            autoencoder=AutoencoderConfig(
                downsample=4,
                channels=16,
                channel_mult=[1, 2],
                latent_dim=3 if kind == "fsq" else 8,
                quantizer=QuantizerConfig(kind=kind, codebook_size=64, levels=[8, 8, 8], tokens_per_batch=32),
            ),
        )
    )
    torch.manual_seed(0)
    batch = torch.rand(8, 3, 8, 8) * 2 - 1
    optimizer = torch.optim.AdamW(tok.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        out = tok.training_loss(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert min(losses[-5:]) < losses[0] / 10


def test_save_load_gives_identical_codes_and_fingerprint(tokenizer: ImageTokenizer, tmp_path: Path) -> None:
    images = torch.rand(3, 3, 16, 16)
    save_pretrained(tokenizer, tmp_path / "tok")
    meta = read_saved_config(tmp_path / "tok")
    assert meta["codebook_size"] == 64 and meta["grid_shape"] == [4, 4] and meta["kind"] == "image"
    loaded = from_pretrained(tmp_path / "tok")
    assert isinstance(loaded, ImageTokenizer)
    assert torch.equal(loaded.encode(images), tokenizer.encode(images))
    assert loaded.fingerprint == tokenizer.fingerprint == meta["fingerprint"]
    torch.testing.assert_close(
        loaded.decode(tokenizer.encode(images)), tokenizer.decode(tokenizer.encode(images))
    )
    other = tiny_image_tokenizer()
    assert other.fingerprint != tokenizer.fingerprint  # weights differ (no k-means init yet)


def test_from_pretrained_rejects_tampered_weights(tokenizer: ImageTokenizer, tmp_path: Path) -> None:
    save_pretrained(tokenizer, tmp_path / "tok")
    state = {k: v.clone(memory_format=torch.contiguous_format) for k, v in tokenizer.state_dict().items()}
    key = next(k for k in state if k.endswith("weight"))
    state[key] = state[key] + 1
    save_file(state, str(tmp_path / "tok" / "model.safetensors"))
    with pytest.raises(ValueError, match="fingerprint"):
        from_pretrained(tmp_path / "tok")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        from_pretrained(tmp_path / "missing")


def test_perceptual_loss_loads_local_weights_only(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        VGGPerceptualLoss.from_file(tmp_path / "vgg.safetensors")
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in VGGPerceptualLoss().features.state_dict().items()}
    save_file(state, str(tmp_path / "vgg.safetensors"))
    loss_fn = VGGPerceptualLoss.from_file(tmp_path / "vgg.safetensors")
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert float(loss_fn(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss_fn(x, -x)) > 0
    tok = tiny_image_tokenizer()
    tok.cfg.loss.perceptual_weight = 0.5
    out = tok.training_loss(x.expand(4, -1, -1, -1), loss_fn)
    assert "perceptual" in out.parts


def test_adversarial_loss_has_delayed_start_and_adaptive_weight() -> None:
    tok = tiny_image_tokenizer()
    adversary = ImageAdversarialLoss(
        ImageLossConfig(gan_weight=0.1, gan_start_step=5, disc_channels=8, disc_layers=2)
    )
    assert not adversary.active(4) and adversary.active(5)
    out = tok.training_loss(torch.rand(4, 3, 16, 16) * 2 - 1)
    g_loss, weight = adversary.generator_loss(out.reconstruction, out.loss, tok.last_layer_weight())
    assert g_loss.requires_grad and float(weight) >= 0
    (out.loss + g_loss).backward()
    d_loss = adversary.discriminator_loss(out.target, out.reconstruction)
    assert d_loss.item() > 0


def test_psnr_ssim_and_code_statistics() -> None:
    x = torch.rand(2, 3, 16, 16)
    assert torch.all(psnr(x, x) > 100)
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert 15 < float(psnr(noisy, x).mean()) < 25
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    assert float(ssim(noisy, x).mean()) < 0.95
    stats = code_statistics(torch.tensor([0, 1, 2, 3]), codebook_size=8)
    assert stats["usage"] == 0.5 and stats["perplexity"] == pytest.approx(4.0)


def test_jpeg_at_equal_bpp_respects_the_budget() -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((64, 64, 3)) * 64 + np.linspace(0, 160, 64)[None, :, None]).astype(np.uint8)
    decoded, bpp, quality = jpeg_at_bpp(image, target_bpp=2.0, scan_only=True)
    assert decoded.shape == image.shape and bpp <= 2.0 and 1 <= quality <= 95
    _, file_bpp, _ = jpeg_at_bpp(image, target_bpp=100.0, scan_only=False)
    _, scan_bpp, _ = jpeg_at_bpp(image, target_bpp=100.0, scan_only=True)
    assert scan_bpp < file_bpp  # headers are excluded from the scan size
    with pytest.raises(ValueError, match="marker"):
        jpeg_scan_bytes(b"\xff\xd8\x00\x00")
