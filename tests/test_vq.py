"""The VQ autoencoder family: every quantizer's shapes/dtypes, fp32 quantisation under autocast, configs."""

from __future__ import annotations

import pytest
import torch

from unio.tokenizers.vq import AutoencoderConfig, QuantizerConfig, VQAutoencoder, config_from_dict

QUANTIZERS = {
    "vq": QuantizerConfig(kind="vq", codebook_size=64, tokens_per_batch=32),
    "fsq": QuantizerConfig(kind="fsq", levels=[5, 5, 3]),
    "lfq": QuantizerConfig(kind="lfq", codebook_size=64),
    "rvq": QuantizerConfig(kind="rvq", codebook_size=64, num_quantizers=2, tokens_per_batch=32),
}


def tiny(quantizer: QuantizerConfig, downsample: int = 4) -> VQAutoencoder:
    torch.manual_seed(0)
    levels = {4: [1, 2], 8: [1, 2, 2], 16: [1, 2, 2, 2]}[downsample]
    cfg = AutoencoderConfig(
        downsample=downsample, channels=8, channel_mult=levels, latent_dim=6, quantizer=quantizer
    )
    return VQAutoencoder(cfg)


@pytest.mark.parametrize("kind", sorted(QUANTIZERS))
def test_encode_decode_shapes_and_dtypes(kind: str) -> None:
    model = tiny(QUANTIZERS[kind])
    x = torch.randn(2, 3, 16, 16)
    out = model(x)  # training-mode forward (k-means init, EMA) first
    q = 2 if kind == "rvq" else 1
    assert out.reconstruction.shape == x.shape and out.reconstruction.dtype == torch.float32
    assert out.codes.shape == (2, 4, 4 * q) and out.codes.dtype == torch.long
    assert out.aux_loss.ndim == 0
    model.eval()
    codes = model.encode(x)
    assert codes.shape == (2, 4, 4 * q) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < model.codebook_size
    assert model.grid_shape(16, 16) == (4, 4 * q)
    recon = model.decode(codes)
    assert recon.shape == x.shape and recon.dtype == torch.float32
    # decoding the codes reproduces the forward pass's reconstruction from the same codes
    torch.testing.assert_close(recon, model(x).reconstruction, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("downsample", [8, 16])
def test_downsampling_factors(downsample: int) -> None:
    model = tiny(QUANTIZERS["fsq"], downsample).eval()
    assert model.encode(torch.randn(1, 3, 32, 32)).shape == (1, 32 // downsample, 32 // downsample)


@pytest.mark.parametrize("kind", sorted(QUANTIZERS))
def test_quantisation_runs_in_fp32_under_bf16_autocast(kind: str) -> None:
    model = tiny(QUANTIZERS[kind])
    model(torch.randn(2, 3, 16, 16))  # init codebooks outside autocast
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    reference = model.encode(x)
    z = model.encoder(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = model.quantizer(z)
        codes = model.encode(x)
    assert q.quantized.dtype == torch.float32
    # bf16 autocast must not change the codes of fp32 latents
    torch.testing.assert_close(model.quantizer(z).codes, q.codes)
    assert (codes == reference).float().mean() > 0.9  # encoder convs do run in bf16


def test_fsq_codebook_size_and_vq_dead_code_threshold() -> None:
    assert QuantizerConfig(kind="fsq", levels=[8, 5, 5, 5]).num_codes == 1000
    cfg = QuantizerConfig(kind="vq", codebook_size=1024, tokens_per_batch=64 * 256, dead_code_ratio=0.1)
    assert cfg.dead_code_threshold == pytest.approx(0.1 * 64 * 256 / 1024)
    assert QuantizerConfig(kind="vq").dead_code_threshold == 0.0  # inference: no replacement


def test_codes_out_of_range_raise() -> None:
    model = tiny(QUANTIZERS["fsq"]).eval()
    with pytest.raises(ValueError, match="out of range"):
        model.decode(torch.full((1, 4, 4), model.codebook_size))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"quantizer": QuantizerConfig(kind="vq"), "downsample": 6}, "downsample=6"),
        ({"quantizer": QuantizerConfig(kind="vq"), "downsample": 8, "channel_mult": [1, 2]}, "channel_mult"),
    ],
)
def test_bad_autoencoder_config_raises(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AutoencoderConfig(**kwargs)


def test_bad_quantizer_config_raises() -> None:
    with pytest.raises(ValueError, match="kind"):
        QuantizerConfig(kind="pq")
    with pytest.raises(ValueError, match="power of two"):
        QuantizerConfig(kind="lfq", codebook_size=1000)
    with pytest.raises(ValueError, match="levels"):
        QuantizerConfig(kind="fsq", levels=[2, 5])


def test_config_from_dict_is_strict_and_nested() -> None:
    cfg = config_from_dict(
        AutoencoderConfig, {"latent_dim": 4, "quantizer": {"kind": "fsq", "levels": [5, 5]}}
    )
    assert cfg.quantizer.num_codes == 25
    with pytest.raises(ValueError, match=r"quantizer.*codebok_size"):
        config_from_dict(AutoencoderConfig, {"quantizer": {"codebok_size": 5}})


def test_fsq_entropy_penalty_rewards_using_every_level() -> None:
    quantizer = VQAutoencoder(
        AutoencoderConfig(
            downsample=4,
            channels=8,
            channel_mult=[1, 2],
            latent_dim=4,
            quantizer=QuantizerConfig(kind="fsq", levels=[8, 5, 5, 5], fsq_entropy_weight=1.0),
        )
    ).quantizer
    torch.manual_seed(0)
    narrow = quantizer(0.2 * torch.randn(4, 4, 8, 8)).aux_loss
    spread = quantizer(torch.randn(4, 4, 8, 8)).aux_loss
    assert float(narrow) > 1.0 > 0.3 > float(spread) >= 0.0
    quantizer.eval()
    assert float(quantizer(torch.randn(4, 4, 8, 8)).aux_loss) == 0.0  # a training-only regulariser
