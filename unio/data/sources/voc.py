"""Pascal VOC XML: one annotation file per image with <size> and <object><name><bndbox>.

VOC pixel indices are 1-based and inclusive; boxes are converted to continuous coordinates
(x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax). `classes` restricts the category names (an
unknown name is a bad sample); empty = accept every name found.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unio.data.bad_samples import (
    EMPTY_ANNOTATIONS,
    MALFORMED,
    SIZE_MISMATCH,
    UNKNOWN_CATEGORY,
    BadSampleError,
)
from unio.data.record import Object, Record
from unio.data.sources._readers import read_image
from unio.data.sources.base import Source, checked_box, require_path
from unio.data.sources.referring import add_referring_expressions


@dataclass
class VocConfig:
    annotations: str = ""  # directory of .xml files
    images: str = ""  # directory of image files named by <filename>
    ids_file: str | None = None  # optional ImageSets-style list of annotation stems (one per line)
    classes: list[str] = field(default_factory=list)  # allowed category names; empty = any
    keep_difficult: bool = True
    allow_empty: bool = False
    box_tolerance: float = 2.0
    on_bad_sample: str = "raise"
    on_bad_annotation: str = "drop_annotation"  # drop_annotation | drop_record | raise (docs/data.md)


def _text(node: ET.Element, tag: str, path: Path, record_id: str) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise BadSampleError(path, tag, MALFORMED, "missing", record_id)
    return child.text.strip()


def _number(node: ET.Element, tag: str, path: Path, record_id: str) -> float:
    value = _text(node, tag, path, record_id)
    try:
        return float(value)
    except ValueError as error:
        raise BadSampleError(path, tag, MALFORMED, f"not a number: {value!r}", record_id) from error


class VocSource(Source):
    kind = "voc"

    def __init__(self, config: VocConfig) -> None:
        super().__init__(config.on_bad_sample, config.annotations, config.on_bad_annotation)
        self.config = config
        annotation_dir = require_path(config.annotations, "annotations", "voc", is_dir=True)
        self.image_dir = require_path(config.images, "images", "voc", is_dir=True)
        if config.ids_file:
            stems = require_path(config.ids_file, "ids_file", "voc").read_text().split()
            paths = [annotation_dir / f"{stem}.xml" for stem in stems]
        else:
            paths = sorted(annotation_dir.glob("*.xml"))
        if not paths:
            raise ValueError(f"voc source: no .xml files in {annotation_dir}")
        for path in paths:
            try:
                self._index.append(self._parse(path))
            except BadSampleError as error:
                self.reject(error)

    def _parse(self, path: Path) -> tuple:
        record_id = path.stem
        if not path.is_file():
            raise BadSampleError(path, "annotation", "missing file", record_id=record_id)
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as error:
            raise BadSampleError(path, "annotation", MALFORMED, f"invalid XML: {error}", record_id) from error
        filename = _text(root, "filename", path, record_id)
        size_node = root.find("size")
        size = None
        if size_node is not None:
            w, h = _number(size_node, "width", path, record_id), _number(size_node, "height", path, record_id)
            size = (int(w), int(h)) if w > 0 and h > 0 else None  # some tools write 0: use the image's size
        objects = []
        for i, node in enumerate(root.findall("object")):
            try:
                parsed = self._parse_object(node, i, path, record_id, size)
            except BadSampleError as error:
                self.bad_annotation(error)  # returns when only this object is dropped
                continue
            if parsed is not None:
                objects.append(parsed)
        if not objects and not self.config.allow_empty:
            raise BadSampleError(path, "object", EMPTY_ANNOTATIONS, "no objects", record_id)
        return record_id, path, str(self.image_dir / filename), size, objects

    def _parse_object(
        self, node: ET.Element, i: int, path: Path, record_id: str, size: tuple[int, int] | None
    ) -> tuple | None:
        """(name, box, index) of one <object>, None for a difficult one that is not kept."""
        name = _text(node, "name", path, record_id)
        if self.config.classes and name not in self.config.classes:
            raise BadSampleError(path, f"object[{i}].name", UNKNOWN_CATEGORY,
                                 f"{name!r} not in classes {self.config.classes}", record_id)  # fmt: skip
        difficult = node.find("difficult")
        if (
            not self.config.keep_difficult
            and difficult is not None
            and (difficult.text or "0").strip() == "1"
        ):
            return None
        bndbox = node.find("bndbox")
        if bndbox is None:
            raise BadSampleError(path, f"object[{i}].bndbox", MALFORMED, "missing", record_id)
        box = (
            _number(bndbox, "xmin", path, record_id) - 1,
            _number(bndbox, "ymin", path, record_id) - 1,
            _number(bndbox, "xmax", path, record_id),
            _number(bndbox, "ymax", path, record_id),
        )
        if size is not None:
            box = checked_box(box, size, self.config.box_tolerance, path, f"object[{i}].bndbox", record_id)
        return name, box, i

    def load(self, index: int) -> Record:
        record_id, xml_path, image_path, size, anns = self._index[index]
        image = read_image(image_path, record_id=record_id)
        actual = (image.shape[1], image.shape[0])
        if size is not None and actual != size:
            raise BadSampleError(
                image_path,
                "image",
                SIZE_MISMATCH,
                f"file is {actual}, {xml_path.name} says {size}",
                record_id,
            )
        objects = []
        for name, box, i in anns:
            try:
                box = checked_box(
                    box, actual, self.config.box_tolerance, xml_path, f"object[{i}].bndbox", record_id
                )
            except BadSampleError as error:
                self.bad_annotation(error)
                continue
            objects.append(Object(box=np.array(box), category=name))
        if anns and not objects:
            raise BadSampleError(xml_path, "object", EMPTY_ANNOTATIONS, "every object was bad", record_id)
        add_referring_expressions(objects, actual)
        return Record(
            id=record_id,
            source=image_path,
            image=image,
            objects=objects,
            meta={"annotation": str(xml_path), "referring_derived": True},
        )
