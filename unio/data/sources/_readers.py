"""File readers shared by the sources. Every failure becomes a `BadSampleError` naming file and field.

WAV files are parsed here directly (RIFF chunks) so 8/16/24/32-bit PCM and 32/64-bit float files all
load without extra audio libraries.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from unio.data.bad_samples import CORRUPT_FILE, MISSING_FILE, BadSampleError

_PCM, _FLOAT, _EXTENSIBLE = 1, 3, 0xFFFE


def image_to_array(image: Image.Image) -> np.ndarray:
    """PIL image -> HxWx3 uint8 (greyscale repeated, alpha dropped over black)."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_image(
    path: str | Path, field: str = "image", record_id: str = "", data: bytes | None = None
) -> np.ndarray:
    """Decode an image file (or its bytes) to HxWx3 uint8."""
    if data is None and not Path(path).is_file():
        raise BadSampleError(path, field, MISSING_FILE, record_id=record_id)
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as image:
            image.load()  # decode fully now: truncated files fail here, not later
            return image_to_array(image)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise BadSampleError(path, field, CORRUPT_FILE, str(error), record_id) from error


def _decode_wav(data: bytes) -> tuple[np.ndarray, int]:
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
    width = bits // 8
    usable = len(samples) - len(samples) % (width * channels)
    raw = samples[:usable]
    if tag == _PCM and bits == 8:
        audio = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif tag == _PCM and bits == 16:
        audio = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif tag == _PCM and bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        audio = (np.where(value >= 1 << 23, value - (1 << 24), value)).astype(np.float32) / float(1 << 23)
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


def read_wav(
    path: str | Path, field: str = "audio", record_id: str = "", data: bytes | None = None
) -> tuple[np.ndarray, int]:
    """Decode a WAV file (or its bytes) to (float32 mono samples in [-1, 1], sample rate)."""
    if data is None:
        if not Path(path).is_file():
            raise BadSampleError(path, field, MISSING_FILE, record_id=record_id)
        data = Path(path).read_bytes()
    try:
        audio, rate = _decode_wav(data)
    except (ValueError, struct.error) as error:
        raise BadSampleError(path, field, CORRUPT_FILE, str(error), record_id) from error
    if len(audio) == 0:
        raise BadSampleError(path, field, CORRUPT_FILE, "no samples", record_id)
    return audio, rate


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write float audio in [-1, 1] as 16-bit PCM mono (used by tests and examples)."""
    pcm = (np.clip(np.asarray(audio, dtype=np.float32), -1, 1) * 32767).astype("<i2").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(pcm), b"WAVE", b"fmt ", 16, _PCM, 1,
                         sample_rate, sample_rate * 2, 2, 16, b"data", len(pcm))  # fmt: skip
    Path(path).write_bytes(header + pcm)
