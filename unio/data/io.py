"""Low-level readers and writers for images and WAV files, with errors that name the file.

Only pillow, numpy and the standard library: no audio backends, no downloads. WAV files are parsed
directly (RIFF chunks), so 8/16/24/32-bit integer PCM and 32/64-bit float files (plain or
WAVE_FORMAT_EXTENSIBLE) all load. Sources wrap these in the bad-sample policy
(`unio/data/sources/_readers.py`); tokenizer training and evaluation use them directly.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from unio.atomic import atomic_write_bytes

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


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


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """WAV bytes -> (float32 mono samples in [-1, 1], sample rate). Raises ValueError on bad files."""
    if len(data) == 0:
        raise ValueError("empty file")
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos, fmt, samples = 12, None, None
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise ValueError("fmt chunk too short")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == _EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            samples = body
        pos += 8 + size + (size & 1)  # chunks are word aligned
    if fmt is None or samples is None:
        raise ValueError("missing fmt or data chunk")
    tag, channels, rate, bits = fmt
    if channels < 1 or rate <= 0:
        raise ValueError(f"invalid header: {channels} channels at {rate} Hz")
    width = max(bits // 8, 1)
    raw = samples[: len(samples) - len(samples) % (width * channels)]
    if tag == _PCM and bits == 8:  # 8-bit WAV is unsigned
        audio = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif tag == _PCM and bits == 16:
        audio = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif tag == _PCM and bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        audio = np.where(value >= 1 << 23, value - (1 << 24), value).astype(np.float32) / float(1 << 23)
    elif tag == _PCM and bits == 32:
        audio = np.frombuffer(raw, "<i4").astype(np.float32) / float(1 << 31)
    elif tag == _FLOAT and bits in (32, 64):
        audio = np.frombuffer(raw, "<f4" if bits == 32 else "<f8").astype(np.float32)
    else:
        raise ValueError(f"unsupported WAV encoding (format tag {tag}, {bits} bits)")
    audio = audio.reshape(-1, channels).mean(axis=1)  # mono
    if not np.isfinite(audio).all():
        raise ValueError("non-finite samples")
    return np.ascontiguousarray(np.clip(audio, -1.0, 1.0), dtype=np.float32), int(rate)


def load_wav(path: str | Path) -> tuple[torch.Tensor, int]:
    """Read a WAV file as mono float32 in [-1, 1]; returns (Tensor[T], sample_rate)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    try:
        audio, rate = decode_wav(path.read_bytes())
    except (ValueError, struct.error) as err:
        raise ValueError(f"cannot read WAV {path}: {err}") from err
    return torch.from_numpy(audio), rate


def encode_wav(samples: torch.Tensor | np.ndarray, sample_rate: int) -> bytes:
    """Mono float samples in [-1, 1] -> 16-bit PCM WAV bytes."""
    if isinstance(samples, torch.Tensor):
        samples = samples.detach().float().cpu().numpy()
    pcm = (np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1, 1) * 32767).round().astype("<i2")
    data = pcm.tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, _PCM, 1,
                         int(sample_rate), int(sample_rate) * 2, 2, 16, b"data", len(data))  # fmt: skip
    return header + data


def save_wav(path: str | Path, samples: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Write mono float samples in [-1, 1] as 16-bit PCM, atomically (temp file + rename)."""
    atomic_write_bytes(path, encode_wav(samples, sample_rate))
