"""What happens to a record whose files or annotations are broken: `on_bad_sample: raise | skip`.

- `raise` (the default): the first bad record stops the run with a `BadSampleError` that names the
  file, the field and the offending value.
- `skip`: the record is left out, and the source's `BadSampleReport` keeps one entry per skipped
  record (id, file, field, reason). The report is logged as a summary when an iteration ends and can
  be written to JSON; nothing is dropped without a trace.

A bad annotation inside a good record (one box outside the image among good ones, an unknown
category on one object) follows `on_bad_annotation`:
- `drop_annotation` (the default): only that annotation is dropped, and the report counts it
  (`dropped_annotations`); the record keeps its good boxes, masks and captions. A record left with
  nothing is then an "empty annotations" bad record.
- `drop_record`: the whole record is bad and follows `on_bad_sample` (raise, or skip and report).
- `raise`: stop at the first bad annotation, whatever `on_bad_sample` says.

Sources find annotation problems (box outside the image, unknown category, empty annotations, ...)
while indexing, and file problems (missing or corrupt image/audio, wrong sample rate, size mismatch)
when a record is loaded.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

POLICIES = ("raise", "skip")
ANNOTATION_POLICIES = ("drop_annotation", "drop_record", "raise")

# Reasons used by the built-in sources; reports group skipped records by them.
MISSING_FILE = "missing file"
CORRUPT_FILE = "corrupt file"
BOX_OUTSIDE_IMAGE = "box outside image"
DEGENERATE_BOX = "degenerate box"
EMPTY_ANNOTATIONS = "empty annotations"
UNKNOWN_CATEGORY = "unknown category"
WRONG_SAMPLE_RATE = "wrong sample rate"
SIZE_MISMATCH = "image size mismatch"
MALFORMED = "malformed annotation"


class BadSampleError(ValueError):
    """A record that cannot be used as-is. The message names the file, the field and the value."""

    def __init__(
        self, path: str | Path, field: str, reason: str, detail: str = "", record_id: str = ""
    ) -> None:
        self.path = str(path)
        self.field = field
        self.reason = reason
        self.detail = detail
        self.record_id = record_id
        self.fatal = False  # set under on_bad_annotation=raise: no policy skips it
        record = f" (record {record_id!r})" if record_id else ""
        detail_text = f": {detail}" if detail else ""
        super().__init__(f"{self.path}{record}: field {field!r}: {reason}{detail_text}")

    def __reduce__(self) -> tuple:
        """Picklable with its fields, so it crosses from a `num_proc` worker intact."""
        args = (self.path, self.field, self.reason, self.detail, self.record_id)
        return type(self), args, {"fatal": self.fatal}


@dataclass(frozen=True)
class SkippedRecord:
    record_id: str
    path: str
    field: str
    reason: str
    detail: str


def check_policy(on_bad_sample: str) -> str:
    if on_bad_sample not in POLICIES:
        raise ValueError(f"on_bad_sample must be one of {POLICIES}, got {on_bad_sample!r}")
    return on_bad_sample


def check_annotation_policy(on_bad_annotation: str) -> str:
    if on_bad_annotation not in ANNOTATION_POLICIES:
        raise ValueError(f"on_bad_annotation must be one of {ANNOTATION_POLICIES}, got {on_bad_annotation!r}")
    return on_bad_annotation


class BadSampleReport:
    """Every record a source skipped, with its reason (one entry per (record, reason)), and every
    annotation dropped from a kept record (`on_bad_annotation: drop_annotation`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: dict[tuple[str, str, str], SkippedRecord] = {}
        self._annotations: dict[tuple[str, str, str, str], SkippedRecord] = {}

    def add(self, error: BadSampleError) -> None:
        entry = SkippedRecord(error.record_id, error.path, error.field, error.reason, error.detail)
        self._entries.setdefault((entry.record_id, entry.path, entry.reason), entry)

    def add_annotation(self, error: BadSampleError) -> None:
        """An annotation dropped from a record that is kept."""
        entry = SkippedRecord(error.record_id, error.path, error.field, error.reason, error.detail)
        self._annotations.setdefault((entry.record_id, entry.path, entry.field, entry.reason), entry)

    @property
    def dropped_annotations(self) -> list[SkippedRecord]:
        return list(self._annotations.values())

    def annotation_counts(self) -> dict[str, int]:
        """Number of dropped annotations per reason, most frequent first."""
        return dict(Counter(e.reason for e in self._annotations.values()).most_common())

    def difference(self, other: BadSampleReport) -> BadSampleReport:
        """The entries of this report that `other` does not hold (e.g. what one shard added)."""
        new = BadSampleReport(self.name)
        new._entries = {k: e for k, e in self._entries.items() if k not in other._entries}
        new._annotations = {k: e for k, e in self._annotations.items() if k not in other._annotations}
        return new

    def copy(self) -> BadSampleReport:
        report = BadSampleReport(self.name)
        report.merge(self)
        return report

    @property
    def entries(self) -> list[SkippedRecord]:
        return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def counts(self) -> dict[str, int]:
        """Number of skipped records per reason, most frequent first."""
        return dict(Counter(e.reason for e in self._entries.values()).most_common())

    def merge(self, other: BadSampleReport) -> None:
        """Fold in a report from another worker process (e.g. `datasets.map(num_proc=...)`)."""
        for key, entry in other._entries.items():
            self._entries.setdefault(key, entry)
        for key, entry in other._annotations.items():
            self._annotations.setdefault(key, entry)

    def first(self, count: int = 3) -> str:
        """The first `count` skipped records on one line: "path [field] (detail); ..."."""
        shown = [
            f"{e.path} [{e.field}]" + (f" ({e.detail})" if e.detail else "") for e in self.entries[:count]
        ]
        more = f"; ... {len(self) - count} more in bad_samples.json" if len(self) > count else ""
        return "; ".join(shown) + more

    def summary(self, examples_per_reason: int = 3) -> str:
        dropped = self.annotation_counts()
        dropped_text = (
            f"; dropped {len(self._annotations)} bad annotations from kept records ("
            + ", ".join(f"{reason}: {n}" for reason, n in dropped.items())
            + ")"
            if dropped
            else ""
        )
        if not self._entries:
            return f"{self.name}: no records skipped{dropped_text}"
        lines = [f"{self.name}: skipped {len(self)} bad records{dropped_text}"]
        for reason, count in self.counts().items():
            lines.append(f"  {reason}: {count}")
            shown = [e for e in self._entries.values() if e.reason == reason][:examples_per_reason]
            for e in shown:
                detail = f" ({e.detail})" if e.detail else ""
                lines.append(f"    {e.path} [{e.field}]{detail}")
            if count > len(shown):
                lines.append(f"    ... and {count - len(shown)} more (write_json() lists them all)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "counts": self.counts(),
            "skipped": [asdict(e) for e in self.entries],
            "dropped_annotation_counts": self.annotation_counts(),
            "dropped_annotations": [asdict(e) for e in self.dropped_annotations],
        }

    @classmethod
    def from_dict(cls, data: dict) -> BadSampleReport:
        report = cls(data["name"])
        for e in data["skipped"]:
            report.add(BadSampleError(e["path"], e["field"], e["reason"], e["detail"], e["record_id"]))
        for e in data.get("dropped_annotations", []):
            report.add_annotation(
                BadSampleError(e["path"], e["field"], e["reason"], e["detail"], e["record_id"])
            )
        return report

    def write_json(self, path: str | Path) -> None:
        """Write the full list atomically (temp file in the same directory, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_dict(), f, indent=1)
        os.replace(tmp, path)
