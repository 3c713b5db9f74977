"""Rate and distortion of the image / mask / audio tokenizers, with a JPEG baseline for images.

Metrics: PSNR and SSIM (images in [0, 1]), codebook usage (fraction of codes used on the evaluation set),
code perplexity, bits per pixel (or per second of audio) at the fixed rate ``tokens * log2(K)`` and at
the entropy of the empirical code distribution (what an ideal entropy coder of i.i.d. codes would need),
mask IoU, mel L1 distance in dB and spectral convergence.

JPEG at equal bits per pixel: for every image, the highest pillow JPEG quality whose size fits the
tokenizer's fixed-rate budget. Two sizes are reported: the whole file, and the entropy-coded scan only
(headers, quantisation and Huffman tables excluded), because at 64x64 the headers alone cost more than
a whole token grid.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from unio.data.io import save_wav
from unio.pictures import preview_picture
from unio.tokenizers.mask import mask_iou
from unio.tokenizers.vq import GridTokenizer


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-item PSNR in dB of [B, ...] tensors."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse.clamp(min=1e-12))


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-item SSIM (Wang et al. 2004, Gaussian window, averaged over channels) of [B, C, H, W]."""
    coords = torch.arange(window, dtype=torch.float32) - window // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = (g / g.sum()).to(x.device)
    channels = x.shape[1]
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, window, window)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, kernel, groups=channels)

    x, y = x.float(), y.float()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)


def code_statistics(codes: Tensor, codebook_size: int) -> dict[str, float]:
    """Usage (fraction of the codebook used), perplexity and entropy (bits) of a set of codes."""
    counts = torch.bincount(codes.flatten().cpu(), minlength=codebook_size).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    entropy_bits = float(-(nz * nz.log2()).sum())
    return {
        "usage": float((counts > 0).sum()) / codebook_size,
        "perplexity": 2.0**entropy_bits,
        "code_entropy_bits": entropy_bits,
    }


def jpeg_scan_bytes(data: bytes) -> int:
    """Bytes of entropy-coded data in a baseline JPEG: everything after the SOS header, minus EOI."""
    pos = 2  # after SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("malformed JPEG: expected a marker")
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # start of scan
            return len(data) - (pos + 2 + length) - 2
        pos += 2 + length
    raise ValueError("malformed JPEG: no start-of-scan marker")


def jpeg_encode(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def jpeg_at_bpp(image: np.ndarray, target_bpp: float, scan_only: bool) -> tuple[np.ndarray, float, int]:
    """Highest JPEG quality (1..95) within ``target_bpp``; returns (decoded uint8, actual bpp, quality).

    If even quality 1 is over budget, quality 1 is returned with its (higher) actual bpp.
    """
    pixels = image.shape[0] * image.shape[1]

    def bpp(data: bytes) -> float:
        return 8.0 * (jpeg_scan_bytes(data) if scan_only else len(data)) / pixels

    lo, hi, best = 1, 95, None
    while lo <= hi:
        mid = (lo + hi) // 2
        data = jpeg_encode(image, mid)
        if bpp(data) <= target_bpp:
            best, lo = (data, mid), mid + 1
        else:
            hi = mid - 1
    if best is None:
        best = (jpeg_encode(image, 1), 1)
    decoded = np.asarray(Image.open(io.BytesIO(best[0])).convert("RGB"))
    return decoded, bpp(best[0]), best[1]


def mel_l1_db(ref_db: Tensor, rec_db: Tensor, frames: Tensor) -> Tensor:
    """Per-clip mean |difference| in dB over the valid frames ([B, M, F], frames [B])."""
    valid = (torch.arange(ref_db.shape[-1])[None] < frames[:, None]).float()[:, None]
    return ((ref_db - rec_db).abs() * valid).sum((1, 2)) / (valid.sum((1, 2)) * ref_db.shape[1])


def spectral_convergence(ref_db: Tensor, rec_db: Tensor, frames: Tensor) -> Tensor:
    """Per-clip ||S - S_hat||_F / ||S||_F of linear mel magnitudes over the valid frames."""
    valid = (torch.arange(ref_db.shape[-1])[None] < frames[:, None]).float()[:, None]
    ref, rec = 10 ** (ref_db / 20) * valid, 10 ** (rec_db / 20) * valid
    return (ref - rec).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp(min=1e-8)


def _mean(values: list[Tensor]) -> float:
    return float(torch.cat(values).mean()) if values else float("nan")


@torch.no_grad()
def evaluate_tokenizer(
    tokenizer: GridTokenizer,
    dataset: Dataset,
    out_dir: str | Path,
    batch_size: int = 64,
    jpeg: bool = True,
    num_audio_examples: int = 8,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate on every item of ``dataset``; writes ``report.json`` and ``reconstructions.png`` (plus
    ``audio/*.wav`` for audio) into ``out_dir`` and returns the report (``extra`` entries included)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.eval()
    kind, k = tokenizer.kind, tokenizer.codebook_size
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    all_codes: list[Tensor] = []
    per_item: dict[str, list[Tensor]] = {}
    preview: tuple[Tensor, Tensor] | None = None
    audio_written = 0

    def add(name: str, values: Tensor) -> None:
        per_item.setdefault(name, []).append(values.detach().float().cpu())

    for batch in loader:
        if kind == "audio":
            wave, samples = batch
            ref_db = tokenizer.mel_db(wave.to(tokenizer.device))
            target = tokenizer.normalise(ref_db)
            codes = tokenizer.autoencoder.encode(target)
            rec_db = tokenizer.decode_mel_db(codes)
            frames = (samples // tokenizer.cfg.audio.hop_length + 1).clamp(max=ref_db.shape[-1])
            add("mel_l1_db", mel_l1_db(ref_db.cpu(), rec_db.cpu(), frames))
            add("spectral_convergence", spectral_convergence(ref_db.cpu(), rec_db.cpu(), frames))
            recon = tokenizer.normalise(rec_db)
            if audio_written < num_audio_examples:
                audio_written += _write_audio_examples(
                    tokenizer, wave, ref_db, rec_db, samples, out_dir, audio_written, num_audio_examples
                )
        elif kind == "mask":
            target = batch.to(tokenizer.device)
            codes = tokenizer.encode(target)
            recon = tokenizer.decode_logits(codes)[:, None]
            add("iou", mask_iou(recon > 0, target > 0.5))
        else:
            target = batch.to(tokenizer.device)
            codes = tokenizer.autoencoder.encode(target)
            recon = tokenizer.decode(codes)  # [0, 1]
            original = (target + 1) / 2
            add("psnr", psnr(recon, original))
            add("ssim", ssim(recon, original))
            if jpeg:
                _jpeg_baseline(tokenizer, original, add)
            recon = recon * 2 - 1
        all_codes.append(codes.cpu())
        if preview is None:
            preview = (target.cpu(), recon.cpu())

    codes = torch.cat(all_codes)
    stats = code_statistics(codes, k)
    report: dict[str, Any] = {
        "kind": kind,
        "fingerprint": tokenizer.fingerprint,
        "num_items": int(codes.shape[0]),
        "codebook_size": k,
        "grid_shape": list(tokenizer.grid_shape),
        **stats,
    }
    bits_fixed = tokenizer.num_tokens * math.log2(k)
    bits_entropy = tokenizer.num_tokens * stats["code_entropy_bits"]
    if kind == "audio":
        seconds = tokenizer.cfg.audio.segment_samples / tokenizer.cfg.audio.sample_rate
        report["bits_per_second"] = bits_fixed / seconds
        report["bits_per_second_entropy"] = bits_entropy / seconds
    else:
        pixels = tokenizer.input_size[0] * tokenizer.input_size[1]
        report["bpp"] = bits_fixed / pixels
        report["bpp_entropy"] = bits_entropy / pixels
    report.update({name: _mean(values) for name, values in per_item.items()})
    if kind == "audio":
        report["audio_examples"] = audio_written
    report.update(extra or {})
    if preview is not None:
        preview_picture(tokenizer, *preview, n=8).save(out_dir / "reconstructions.png")
    tmp = out_dir / ".report.json.tmp"
    tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out_dir / "report.json")
    return report


def _jpeg_baseline(tokenizer: GridTokenizer, original: Tensor, add) -> None:
    pixels = original.shape[-2] * original.shape[-1]
    budget = tokenizer.num_tokens * math.log2(tokenizer.codebook_size) / pixels
    images = (original * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    for scan_only, tag in ((False, "jpeg_file"), (True, "jpeg_scan")):
        decoded, bpps, qualities = [], [], []
        for img in images:
            out, bpp, quality = jpeg_at_bpp(img, budget, scan_only)
            decoded.append(out)
            bpps.append(bpp)
            qualities.append(quality)
        dec = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).float() / 255
        add(f"{tag}_psnr", psnr(dec, original.cpu()))
        add(f"{tag}_ssim", ssim(dec, original.cpu()))
        add(f"{tag}_bpp", torch.tensor(bpps))
        add(f"{tag}_quality", torch.tensor(qualities, dtype=torch.float32))


def _write_audio_examples(tokenizer, wave, ref_db, rec_db, samples, out_dir, done: int, limit: int) -> int:
    """Original, Griffin-Lim of the original mel (vocoder-only loss) and of the tokenized mel."""
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(exist_ok=True)
    count = min(limit - done, wave.shape[0])
    rate = tokenizer.cfg.audio.sample_rate
    oracle = tokenizer.griffin_lim(ref_db[:count])
    recon = tokenizer.griffin_lim(rec_db[:count])
    for i in range(count):
        n = int(samples[i])
        save_wav(audio_dir / f"{done + i:03d}_original.wav", wave[i, :n], rate)
        save_wav(audio_dir / f"{done + i:03d}_griffinlim_of_original_mel.wav", oracle[i, :n], rate)
        save_wav(audio_dir / f"{done + i:03d}_griffinlim_of_tokens.wav", recon[i, :n], rate)
    return count
