"""Plain image folders: `root/{class}/*.jpg` (label = folder name) or images directly in `root` (no label).

With `classes` set, a folder name outside it is a bad sample (unknown category).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unio.data.bad_samples import UNKNOWN_CATEGORY, BadSampleError
from unio.data.record import Record
from unio.data.sources._readers import read_image
from unio.data.sources.base import Source, require_path


@dataclass
class ImageFolderConfig:
    root: str = ""
    extensions: list[str] = field(default_factory=lambda: [".jpg", ".jpeg", ".png", ".bmp", ".webp"])
    classes: list[str] = field(default_factory=list)  # allowed folder names; empty = any
    on_bad_sample: str = "raise"


class ImageFolderSource(Source):
    kind = "image_folder"

    def __init__(self, config: ImageFolderConfig) -> None:
        super().__init__(config.on_bad_sample, config.root)
        self.config = config
        root = require_path(config.root, "root", "image_folder", is_dir=True)
        extensions = {e.lower() for e in config.extensions}
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        if not files:
            raise ValueError(
                f"image_folder source: no images with extensions {sorted(extensions)} under {root}"
            )
        for path in files:
            relative = path.relative_to(root)
            label = relative.parts[0] if len(relative.parts) > 1 else None
            record_id = relative.as_posix()
            if config.classes and label not in config.classes:
                self.reject(
                    BadSampleError(
                        path,
                        "label",
                        UNKNOWN_CATEGORY,
                        f"folder {label!r} not in {config.classes}",
                        record_id,
                    )
                )
                continue
            self._index.append((record_id, path, label))

    def load(self, index: int) -> Record:
        record_id, path, label = self._index[index]
        return Record(
            id=record_id, source=str(path), image=read_image(path, record_id=record_id), label=label
        )
