"""easy-VQA: the data bundled with the `easy-vqa` PyPI package (64x64 PNG shapes + questions).

One record per image with all its (question, answer) pairs. `root` defaults to the installed
package's data directory; set it to use a copy with the same layout ({split}/images/{id}.png,
{split}/questions.json holding [question, answer, image_id] triples).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from unio.data.bad_samples import EMPTY_ANNOTATIONS, MALFORMED, BadSampleError
from unio.data.record import Record
from unio.data.sources._readers import read_image
from unio.data.sources.base import Source, require_path


@dataclass
class EasyVqaConfig:
    split: str = "train"  # train | test
    root: str | None = None  # None = the easy_vqa package's bundled data
    on_bad_sample: str = "raise"


def package_data_dir() -> Path:
    try:
        import easy_vqa
    except ImportError as error:
        raise ImportError(
            "easyvqa source: install the 'easy-vqa' package or set config field 'root'"
        ) from error
    return Path(easy_vqa.__file__).parent / "data"


class EasyVqaSource(Source):
    kind = "easyvqa"

    def __init__(self, config: EasyVqaConfig) -> None:
        root = Path(config.root) if config.root else package_data_dir()
        super().__init__(config.on_bad_sample, f"{root} split={config.split}")
        if config.split not in ("train", "test"):
            raise ValueError(
                f"easyvqa source: config field 'split' must be train or test, got {config.split!r}"
            )
        questions_path = require_path(str(root / config.split / "questions.json"), "root", "easyvqa")
        image_dir = root / config.split / "images"
        questions: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for i, item in enumerate(json.loads(questions_path.read_text())):
            if not (isinstance(item, list) and len(item) == 3):
                self.reject(
                    BadSampleError(
                        questions_path,
                        f"[{i}]",
                        MALFORMED,
                        f"expected [question, answer, image_id], got {item!r}",
                    )
                )
                continue
            questions[int(item[2])].append((str(item[0]), str(item[1])))
        image_ids = sorted(int(p.stem) for p in image_dir.glob("*.png"))
        for image_id in sorted(set(image_ids) | set(questions)):
            path = image_dir / f"{image_id}.png"
            if not questions.get(image_id):
                self.reject(
                    BadSampleError(
                        path, "qa", EMPTY_ANNOTATIONS, "no questions for this image", str(image_id)
                    )
                )
                continue
            self._index.append((str(image_id), path, questions[image_id]))

    def load(self, index: int) -> Record:
        record_id, path, qa = self._index[index]
        return Record(
            id=record_id, source=str(path), image=read_image(path, record_id=record_id), qa=list(qa)
        )
