"""MNIST-style digits from IDX files (optionally .gz) or a CSV (optionally .gz) of label + 784 pixels.

Images become 28x28x3 uint8 (grey repeated), label = the digit as a string. A file whose header or
sizes do not match is an error for the whole source (always raised); a CSV row with the wrong
number of values, pixels outside 0-255 or a label outside `classes` is a bad sample.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unio.data.bad_samples import MALFORMED, UNKNOWN_CATEGORY, BadSampleError
from unio.data.record import Record
from unio.data.sources.base import Source, require_path


@dataclass
class MnistConfig:
    images: str | None = None  # IDX images (t10k-images-idx3-ubyte[.gz])
    labels: str | None = None  # IDX labels
    path: str | None = None  # alternatively: a CSV (or .csv.gz) of rows with the label and the pixels
    label_column: int = -1  # CSV column of the label: 0 (Kaggle layout) or -1 (label last)
    image_side: int = 28
    classes: list[str] = field(default_factory=lambda: [str(d) for d in range(10)])
    on_bad_sample: str = "raise"


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (unsigned byte data): magic 0x00 0x00 0x08 ndim, big-endian dims, data."""
    try:
        with _open(path) as f:
            data = f.read()
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"mnist source: cannot read {path}: {error}") from error
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"mnist source: {path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"mnist source: {path} has {body.size} values, header says {dims}")
    return body.reshape(dims)


class MnistSource(Source):
    kind = "mnist"

    def __init__(self, config: MnistConfig) -> None:
        super().__init__(config.on_bad_sample, str(config.path or config.images))
        self.config = config
        side = config.image_side
        if config.path:
            self.path = require_path(config.path, "path", "mnist")
            with _open(self.path) as f:
                lines = f.read().decode().splitlines()
            rows: list[tuple[int, str]] = []
            for line_number, line in enumerate(lines, start=1):
                if line_number == 1 and not line.split(",")[0].strip().lstrip("-").isdigit():
                    continue  # header row
                if line.count(",") != side * side:
                    self.reject(BadSampleError(self.path, f"line {line_number}", MALFORMED,
                                               f"{line.count(',') + 1} values, expected {side * side + 1}",
                                               f"{self.path.name}:{line_number}"))  # fmt: skip
                    continue
                rows.append((line_number, line))
            try:  # fast path: numpy parses every row at once
                table = np.loadtxt([line for _, line in rows], delimiter=",", dtype=np.float64, ndmin=2)
            except ValueError:
                table = None
            for i, (line_number, line) in enumerate(rows):
                record_id = f"{self.path.name}:{line_number}"
                try:
                    numbers = table[i] if table is not None else np.array(line.split(","), dtype=np.float64)
                    if not np.array_equal(numbers, np.round(numbers)):
                        raise ValueError("values must be whole numbers")
                    self._add(numbers.astype(np.int64), record_id, f"line {line_number}")
                except BadSampleError as error:
                    self.reject(error)
                except ValueError as error:
                    self.reject(
                        BadSampleError(self.path, f"line {line_number}", MALFORMED, str(error), record_id)
                    )
        elif config.images and config.labels:
            self.path = require_path(config.images, "images", "mnist")
            images = read_idx(self.path)
            labels = read_idx(require_path(config.labels, "labels", "mnist"))
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise ValueError(
                    f"mnist source: images {images.shape} and labels {labels.shape} do not match"
                )
            if images.shape[1:] != (config.image_side, config.image_side):
                raise ValueError(
                    f"mnist source: images are {images.shape[1:]}, config image_side is {config.image_side}"
                )
            for i, (image, label) in enumerate(zip(images, labels)):  # IDX bytes are always 0-255
                record_id = f"{self.path.name}:{i}"
                if str(label) not in self.config.classes:
                    self.reject(BadSampleError(config.labels, f"item {i} label", UNKNOWN_CATEGORY,
                                               f"{str(label)!r} not in {self.config.classes}", record_id))  # fmt: skip
                    continue
                self._index.append((record_id, str(label), image))
        else:
            raise ValueError("mnist source: set config field 'path' (CSV), or both 'images' and 'labels'")

    def _add(self, numbers: np.ndarray, record_id: str, field: str) -> None:
        column = self.config.label_column % len(numbers)
        label = str(numbers[column])
        pixels = np.concatenate([numbers[:column], numbers[column + 1 :]])
        if label not in self.config.classes:
            raise BadSampleError(
                self.path,
                f"{field} label",
                UNKNOWN_CATEGORY,
                f"{label!r} not in {self.config.classes}",
                record_id,
            )
        if pixels.min() < 0 or pixels.max() > 255:
            raise BadSampleError(self.path, f"{field} pixels", MALFORMED, "values outside 0-255", record_id)
        side = self.config.image_side
        self._index.append((record_id, label, pixels.astype(np.uint8).reshape(side, side)))

    def load(self, index: int) -> Record:
        record_id, label, pixels = self._index[index]
        image = np.repeat(pixels[:, :, None], 3, axis=2)
        return Record(id=record_id, source=str(self.path), image=image, label=label)
