"""What happens to a record whose files or annotations are broken: `on_bad_sample: raise | skip`.

- `raise` (the default): the first bad record stops the run with a `BadSampleError` that names the
  file, the field and the offending value.
- `skip`: the record is left out, and the source's `BadSampleReport` keeps one entry per skipped
  record (id, file, field, reason). The report is logged as a summary when an iteration ends and can
  be written to JSON; nothing is dropped without a trace.

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
        record = f" (record {record_id!r})" if record_id else ""
        detail_text = f": {detail}" if detail else ""
        super().__init__(f"{self.path}{record}: field {field!r}: {reason}{detail_text}")


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


class BadSampleReport:
    """Every record a source skipped, with its reason. One entry per (record, reason)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: dict[tuple[str, str, str], SkippedRecord] = {}

    def add(self, error: BadSampleError) -> None:
        entry = SkippedRecord(error.record_id, error.path, error.field, error.reason, error.detail)
        self._entries.setdefault((entry.record_id, entry.path, entry.reason), entry)

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

    def summary(self, examples_per_reason: int = 3) -> str:
        if not self._entries:
            return f"{self.name}: no records skipped"
        lines = [f"{self.name}: skipped {len(self)} bad records"]
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
        return {"name": self.name, "counts": self.counts(), "skipped": [asdict(e) for e in self.entries]}

    @classmethod
    def from_dict(cls, data: dict) -> BadSampleReport:
        report = cls(data["name"])
        for e in data["skipped"]:
            report.add(BadSampleError(e["path"], e["field"], e["reason"], e["detail"], e["record_id"]))
        return report

    def write_json(self, path: str | Path) -> None:
        """Write the full list atomically (temp file in the same directory, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_dict(), f, indent=1)
        os.replace(tmp, path)
