"""Low-level readers for images and WAV files, with errors that name the file.

Only pillow, numpy and the standard-library ``wave`` module: no audio backends, no downloads.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


def load_image(path: str | Path) -> Image.Image:
    """Decode an image file to an RGB PIL image (uint8 pixels); raises naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot decode image {path}: {err}") from err


def load_wav(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read a PCM WAV file as mono float32 in [-1, 1]; returns (Tensor[T], sample_rate).

    8/16/24/32-bit integer PCM; multi-channel files are averaged to mono.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as err:
        raise ValueError(f"cannot read WAV {path} (only uncompressed PCM is supported): {err}") from err
    if width == 1:  # 8-bit WAV is unsigned
        samples = (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        raw = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        samples = ints.astype(np.float32) / float(1 << 23)
    elif width == 4:
        samples = np.frombuffer(frames, dtype="<i4").astype(np.float32) / float(1 << 31)
    else:
        raise ValueError(f"unsupported WAV sample width {width} bytes in {path}")
    if channels > 1:
        samples = samples[: len(samples) // channels * channels].reshape(-1, channels).mean(axis=1)
    return torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)), rate


def save_wav(path: str | Path, samples: torch.Tensor, sample_rate: int) -> None:
    """Write mono float samples in [-1, 1] as 16-bit PCM, atomically (temp file + rename)."""
    path = Path(path)
    data = samples.detach().float().cpu().clamp(-1.0, 1.0).numpy()
    pcm = (data * 32767.0).round().astype("<i2").tobytes()
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(int(sample_rate))
        wav.writeframes(pcm)
    tmp.replace(path)
