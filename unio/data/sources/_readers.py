"""File readers shared by the sources: `unio.data.io` decoding under the bad-sample policy, so every
failure becomes a `BadSampleError` naming file and field."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from unio.data.bad_samples import CORRUPT_FILE, MISSING_FILE, BadSampleError
from unio.data.io import decode_wav


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
        # `from None`: the detail holds the decoder's message; one error, not two chained tracebacks
        raise BadSampleError(path, field, CORRUPT_FILE, str(error), record_id) from None


def read_wav(
    path: str | Path, field: str = "audio", record_id: str = "", data: bytes | None = None
) -> tuple[np.ndarray, int]:
    """Decode a WAV file (or its bytes) to (float32 mono samples in [-1, 1], sample rate)."""
    if data is None:
        if not Path(path).is_file():
            raise BadSampleError(path, field, MISSING_FILE, record_id=record_id)
        data = Path(path).read_bytes()
    try:
        audio, rate = decode_wav(data)
    except (ValueError, struct.error) as error:
        raise BadSampleError(path, field, CORRUPT_FILE, str(error), record_id) from None
    if len(audio) == 0:
        raise BadSampleError(path, field, CORRUPT_FILE, "no samples (empty data chunk)", record_id)
    return audio, rate
