"""COCO JSON: instances (boxes, polygon and RLE masks), captions and person keypoints, one record per image.

Any subset of the three annotation files can be given; the records are the union of their images.
Person-keypoint annotations are merged into the matching instance (same annotation id) or added.
Masks are decoded with pycocotools when the record is loaded. Referring expressions are derived
from categories and geometry (see referring.py), since COCO itself has none.

Bad samples: unknown category id, degenerate box or box outside the image (beyond `box_tolerance`
pixels), malformed segmentation/keypoints and images with no annotation at all are found while
indexing; missing/corrupt image files and images whose size differs from the JSON when loading.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from unio.data.bad_samples import (
    EMPTY_ANNOTATIONS,
    MALFORMED,
    SIZE_MISMATCH,
    UNKNOWN_CATEGORY,
    BadSampleError,
)
from unio.data.record import COCO_KEYPOINT_NAMES, Object, Record
from unio.data.sources._readers import read_image
from unio.data.sources.base import Source, checked_box, require_path
from unio.data.sources.referring import add_referring_expressions


@dataclass
class CocoConfig:
    images: str = ""  # directory with the image files
    instances: str | None = None  # instances_*.json
    captions: str | None = None  # captions_*.json
    keypoints: str | None = None  # person_keypoints_*.json
    load_masks: bool = True
    allow_empty: bool = False  # keep images without any annotation (detection negatives)
    box_tolerance: float = 2.0  # pixels a box may overshoot the border before it counts as bad
    on_bad_sample: str = "raise"
    on_bad_annotation: str = "drop_annotation"  # drop_annotation | drop_record | raise (docs/data.md)


# The key every annotation of each file kind has; a file without it is of another COCO format.
_ANNOTATION_KEY = {"instances": "bbox", "captions": "caption", "keypoints": "keypoints"}


def _load_json(path: str, field: str) -> dict:
    resolved = require_path(path, field, "coco")
    try:
        with open(resolved) as f:
            data = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"coco source: config field {field!r}: {resolved} is not valid JSON: {error}"
        ) from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise ValueError(f"coco source: {resolved} is not a COCO file (needs 'images' and 'annotations')")
    key = _ANNOTATION_KEY[field]
    annotations = [a for a in data["annotations"] if isinstance(a, dict)]
    if annotations and not any(key in a for a in annotations):
        other = [f for f, k in _ANNOTATION_KEY.items() if f != field and any(k in a for a in annotations)]
        hint = f"; it holds {other[0]} annotations: set it as `{other[0]}`" if other else ""
        raise ValueError(
            f"coco source: config field {field!r}: {resolved} is not a COCO {field} file (no annotation "
            f"has {key!r}){hint}"
        )
    return data


class CocoSource(Source):
    kind = "coco"

    def __init__(self, config: CocoConfig) -> None:
        files = {f: getattr(config, f) for f in ("instances", "captions", "keypoints") if getattr(config, f)}
        super().__init__(
            config.on_bad_sample,
            ", ".join(str(p) for p in files.values()) or "(no files)",
            config.on_bad_annotation,
        )
        if not files:
            raise ValueError(
                "coco source: set at least one of config fields 'instances', 'captions', 'keypoints'"
            )
        self.config = config
        self.image_dir = require_path(config.images, "images", "coco", is_dir=True)
        self.categories: dict[int, str] = {}
        images: dict[int, dict] = {}
        objects: dict[int, dict[int, dict]] = defaultdict(dict)  # image id -> annotation id -> annotation
        captions: dict[int, list[str]] = defaultdict(list)
        bad_captions: dict[int, list[BadSampleError]] = defaultdict(list)
        self.annotation_files: dict[int, str] = {}
        for field, path in files.items():
            data = _load_json(path, field)
            for category in data.get("categories", []):
                self.categories[int(category["id"])] = category["name"]
            for image in data["images"]:
                images.setdefault(int(image["id"]), image)
                self.annotation_files.setdefault(int(image["id"]), path)
            for ann in data["annotations"]:
                image_id = int(ann["image_id"])
                if field == "captions":
                    if not isinstance(ann.get("caption"), str):  # judged with its image, below
                        bad_captions[image_id].append(BadSampleError(path, f"annotations[id={ann.get('id')}].caption",
                                                                     MALFORMED, f"{ann.get('caption')!r}", str(image_id)))  # fmt: skip
                        continue
                    captions[image_id].append(ann["caption"].strip())
                elif "id" in ann and int(ann["id"]) in objects[image_id]:
                    objects[image_id][int(ann["id"])].update(ann)  # keypoints merged into the instance
                else:
                    objects[image_id][int(ann.get("id", -len(objects[image_id]) - 1))] = {
                        **ann,
                        "_file": path,
                    }
        for image_id, image in sorted(images.items()):
            anns = list(objects.get(image_id, {}).values())
            record_id = str(image_id)
            path = str(self.image_dir / image["file_name"])
            try:
                size = (int(image["width"]), int(image["height"]))
                for error in bad_captions.get(image_id, []):
                    self.bad_annotation(error)
                checked = []
                for ann in anns:
                    try:
                        checked.append(self._check_annotation(ann, size, record_id))
                    except BadSampleError as error:
                        self.bad_annotation(error)  # returns when only this annotation is dropped
                if not checked and not captions.get(image_id) and not config.allow_empty:
                    raise BadSampleError(self.annotation_files[image_id], "annotations", EMPTY_ANNOTATIONS,
                                         f"image {image['file_name']} has no objects or captions", record_id)  # fmt: skip
            except BadSampleError as error:
                self.reject(error)
                continue
            self._index.append((record_id, path, size, checked, captions.get(image_id, [])))

    def _check_annotation(self, ann: dict, size: tuple[int, int], record_id: str) -> dict:
        where = ann.get("_file", "annotations")
        field = f"annotations[id={ann.get('id')}]"
        category_id = ann.get("category_id")
        if category_id not in self.categories:
            raise BadSampleError(where, field + ".category_id", UNKNOWN_CATEGORY,
                                 f"{category_id!r} is not in 'categories'", record_id)  # fmt: skip
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError) as error:
            raise BadSampleError(
                where, field + ".bbox", MALFORMED, f"{ann.get('bbox')!r}", record_id
            ) from error
        box = checked_box(
            (x, y, x + w, y + h), size, self.config.box_tolerance, where, field + ".bbox", record_id
        )
        keypoints = None
        if ann.get("keypoints") is not None:
            values = np.asarray(ann["keypoints"], dtype=np.float32)
            if values.size != 3 * len(COCO_KEYPOINT_NAMES) or not np.isin(values[2::3], (0, 1, 2)).all():
                raise BadSampleError(where, field + ".keypoints", MALFORMED,
                                     f"expected 17 (x, y, v) triples with v in 0/1/2, got {values.size} values", record_id)  # fmt: skip
            keypoints = values.reshape(-1, 3)
        segmentation = ann.get("segmentation")
        if segmentation is not None and not isinstance(segmentation, (list, dict)):
            raise BadSampleError(
                where, field + ".segmentation", MALFORMED, f"type {type(segmentation).__name__}", record_id
            )
        return {
            "box": box,
            "category": self.categories[category_id],
            "segmentation": segmentation or None,
            "keypoints": keypoints,
            "crowd": bool(ann.get("iscrowd", 0)),
            "where": f"{where} {field}",
        }

    def _decode_mask(
        self, segmentation: object, height: int, width: int, where: str, record_id: str
    ) -> np.ndarray:
        try:
            if isinstance(segmentation, list):  # polygons
                rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
            elif isinstance(segmentation["counts"], list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(segmentation, height, width)
            else:
                rle = segmentation
            return mask_utils.decode(rle).astype(bool)
        except (TypeError, ValueError, KeyError, IndexError) as error:
            raise BadSampleError(where, "segmentation", MALFORMED, str(error), record_id) from error

    def load(self, index: int) -> Record:
        record_id, path, (width, height), anns, captions = self._index[index]
        image = read_image(path, record_id=record_id)
        if image.shape[:2] != (height, width):
            raise BadSampleError(path, "image", SIZE_MISMATCH,
                                 f"file is {image.shape[1]}x{image.shape[0]}, JSON says {width}x{height}", record_id)  # fmt: skip
        objects = []
        for ann in anns:
            mask = None
            if self.config.load_masks and ann["segmentation"] is not None:
                try:
                    mask = self._decode_mask(ann["segmentation"], height, width, ann["where"], record_id)
                except BadSampleError as error:
                    self.bad_annotation(error)
                    continue
            objects.append(
                Object(
                    box=np.array(ann["box"]),
                    category=ann["category"],
                    mask=mask,
                    keypoints=ann["keypoints"],
                    crowd=ann["crowd"],
                )
            )
        if anns and not objects and not captions and not self.config.allow_empty:
            raise BadSampleError(
                path, "annotations", EMPTY_ANNOTATIONS, "every annotation was bad", record_id
            )
        add_referring_expressions(objects, (width, height))
        return Record(
            id=record_id,
            source=path,
            image=image,
            objects=objects,
            captions=list(captions),
            meta={"file_name": Path(path).name, "referring_derived": True},
        )
