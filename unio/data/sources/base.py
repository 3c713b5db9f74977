"""What every source is: an indexable, lazily loading sequence of `Record`s with a bad-sample policy.

- `source[i]` loads record i, or raises `BadSampleError` if its files are broken (whatever the policy;
  it is the strict, raw access).
- `source.get(i)` applies the policy: returns the record, raises (`raise`), or returns None after
  adding the record to `source.bad_samples` (`skip`). Use it in map-style pipelines.
- `iter(source)` yields the good records under the policy and logs the summary when it ends.

Problems visible in the annotations are found while indexing (the constructor): under `skip` those
records never enter the index, under `raise` the constructor raises. Subclasses call `self.reject(...)`
for them, and raise `BadSampleError` from `load` for problems found when reading files.

A bad annotation inside a record (one box, one category, one mask) goes through
`self.bad_annotation(error)` first, which applies `on_bad_annotation` (unio/data/bad_samples.py): drop
and count just that annotation (default), make the whole record bad (`drop_record`), or stop (`raise`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

from unio.data.bad_samples import (
    BOX_OUTSIDE_IMAGE,
    DEGENERATE_BOX,
    BadSampleError,
    BadSampleReport,
    check_annotation_policy,
    check_policy,
)
from unio.data.record import Record

log = logging.getLogger(__name__)


class Source:
    """Base class: subclasses fill `self._index` (anything per record) and implement `load`."""

    kind = "source"

    def __init__(self, on_bad_sample: str, description: str, on_bad_annotation: str | None = None) -> None:
        self.on_bad_sample = check_policy(on_bad_sample)
        # None: the source has no per-annotation labels (a bad annotation is a bad record)
        self.on_bad_annotation = (
            check_annotation_policy(on_bad_annotation) if on_bad_annotation is not None else None
        )
        self.description = description
        self.bad_samples = BadSampleReport(f"{self.kind} {description}")
        self._index: list = []

    # -- subclass interface -----------------------------------------------------------------------
    def load(self, index: int) -> Record:
        raise NotImplementedError

    def reject(self, error: BadSampleError) -> None:
        """A record found bad while indexing: raise now, or note it and leave it out of the index."""
        if self.on_bad_sample == "raise" or error.fatal:
            raise error
        self.bad_samples.add(error)

    def bad_annotation(self, error: BadSampleError) -> None:
        """One bad annotation of a record, under `on_bad_annotation`: returns after noting the drop
        (`drop_annotation`); raises `error` for the record's policy to handle (`drop_record`), or
        marked fatal so that no policy skips it (`raise`)."""
        if self.on_bad_annotation == "drop_annotation":
            self.bad_samples.add_annotation(error)
            return
        if self.on_bad_annotation == "raise":
            error.fatal = True
        raise error

    # -- public access ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> Record:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.kind} {self.description}: index {index} out of range (len {len(self)})")
        return self.load(index % len(self))

    def get(self, index: int) -> Record | None:
        try:
            return self[index]
        except BadSampleError as error:
            if self.on_bad_sample == "raise" or error.fatal:
                raise
            self.bad_samples.add(error)
            return None

    def __iter__(self) -> Iterator[Record]:
        for i in range(len(self)):
            record = self.get(i)
            if record is not None:
                yield record
        if len(self.bad_samples):
            log.warning("%s", self.bad_samples.summary())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r}, {len(self)} records, on_bad_sample={self.on_bad_sample!r}, on_bad_annotation={self.on_bad_annotation!r})"


def require_path(path: str | None, field: str, kind: str, is_dir: bool = False) -> Path:
    """A configured path that must exist; a clear error naming the config field if it does not."""
    if not path:
        raise ValueError(f"{kind} source: config field {field!r} is required")
    resolved = Path(path).expanduser()
    exists = resolved.is_dir() if is_dir else resolved.is_file()
    if not exists:
        what = "directory" if is_dir else "file"
        raise FileNotFoundError(f"{kind} source: config field {field!r}: {what} not found: {resolved}")
    return resolved


def checked_box(
    box: tuple[float, float, float, float],
    image_size: tuple[int, int],
    tolerance: float,
    path: str | Path,
    field: str,
    record_id: str,
) -> tuple[float, float, float, float]:
    """Validate an xyxy box against a (w, h) image; clip overshoot up to `tolerance` pixels.

    Annotation tools often overshoot the border by a pixel; more than `tolerance` is a bad sample.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = image_size
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise BadSampleError(path, field, DEGENERATE_BOX, f"non-finite {[x1, y1, x2, y2]}", record_id)
    if x2 <= x1 or y2 <= y1:
        raise BadSampleError(path, field, DEGENERATE_BOX, f"{[x1, y1, x2, y2]} has no area", record_id)
    if x1 < -tolerance or y1 < -tolerance or x2 > w + tolerance or y2 > h + tolerance:
        raise BadSampleError(
            path, field, BOX_OUTSIDE_IMAGE, f"{[x1, y1, x2, y2]} exceeds the {w}x{h} image", record_id
        )
    x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
    y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
    if x2 <= x1 or y2 <= y1:
        raise BadSampleError(path, field, DEGENERATE_BOX, "no area left inside the image", record_id)
    return x1, y1, x2, y2
