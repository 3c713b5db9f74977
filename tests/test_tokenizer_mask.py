"""Mask tokenizer: inputs, IoU, losses, bad inputs, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from unio.tokenizers.mask import MaskTokenizer, MaskTokenizerConfig, dice_loss, mask_iou
from unio.tokenizers.saved import from_pretrained, save_pretrained
from unio.tokenizers.vq import AutoencoderConfig, QuantizerConfig


@pytest.fixture(scope="module")
def tokenizer() -> MaskTokenizer:
    torch.manual_seed(0)
    auto = AutoencoderConfig(
        in_channels=1,
        out_channels=1,
        downsample=4,
        channels=8,
        channel_mult=[1, 2],
        latent_dim=4,
        quantizer=QuantizerConfig(kind="vq", codebook_size=16, tokens_per_batch=64),
    )
    tok = MaskTokenizer(MaskTokenizerConfig(resolution=16, autoencoder=auto))
    tok.training_loss((torch.rand(4, 1, 16, 16) > 0.5).float())
    return tok.eval()


def test_encode_decode_shapes_for_every_input_layout(tokenizer: MaskTokenizer) -> None:
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:12, 3:9] = True
    codes = tokenizer.encode(mask)
    assert codes.shape == (1, 4, 4) and codes.dtype == torch.long
    batch = torch.from_numpy(mask)[None].expand(3, -1, -1)
    assert tokenizer.encode(batch).shape == (3, 4, 4)
    assert torch.equal(tokenizer.encode(batch[:, None].to(torch.uint8)), tokenizer.encode(batch))
    decoded = tokenizer.decode(codes)
    assert decoded.shape == (1, 16, 16) and decoded.dtype == torch.bool


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (torch.zeros(1, 2, 16, 16), ValueError, "1 channel"),
        (torch.zeros(1, 16, 8), ValueError, "expects 16x16"),
        (torch.full((16, 16), float("nan")), ValueError, "NaN"),
        (torch.full((16, 16), 3.0), ValueError, r"\[0, 1\]"),
        ([[0, 1]], TypeError, "numpy array or tensor"),
    ],
)
def test_bad_masks_raise(tokenizer: MaskTokenizer, bad: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        tokenizer.encode(bad)


def test_iou_and_dice() -> None:
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    b = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2], b[0, :1] = True, True
    torch.testing.assert_close(mask_iou(a, b), torch.tensor([0.5, 1.0]))  # empty vs empty counts as 1
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    assert float(dice_loss(target * 40 - 20, target)) < 0.01
    assert float(dice_loss(20 - target * 40, target)) > 0.9


def test_save_load_identical_codes(tokenizer: MaskTokenizer, tmp_path: Path) -> None:
    masks = torch.rand(2, 16, 16) > 0.5
    save_pretrained(tokenizer, tmp_path)
    loaded = from_pretrained(tmp_path)
    assert isinstance(loaded, MaskTokenizer)
    assert torch.equal(loaded.encode(masks), tokenizer.encode(masks))
    assert loaded.fingerprint == tokenizer.fingerprint
