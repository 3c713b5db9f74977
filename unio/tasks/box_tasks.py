"""Tasks whose input or output is geometry: detection, grounding, region captioning, keypoints.

    detect          <to_box> "Detect all objects." <image> ... </image>
                    -> <box> "dog" x1 y1 x2 y2 </box> <box> "cat" ... </box> <eos>
    ground          <to_box> "Which region does "the red circle" describe?" <image> ...
                    -> <box> x1 y1 x2 y2 </box> <eos>
    region_caption  <to_text> "Describe the region." <box> x1 y1 x2 y2 </box> <image> ... -> "the red circle" <eos>
    keypoints       <to_point> "Locate the keypoints of the person." <box> ... </box> <image> ...
                    -> <point> x y <visible> x y <occluded> <absent> ... </point> <eos>

Coordinates are bins of the coordinate tokenizer relative to the record's own image size (the image
tokenizer stretches the image, so normalised coordinates are unchanged); `parse` maps them back to
pixels with the size stored in `meta`, and for a transformed view (crop, resize, flip) on through the
inverse of the transform's map (`meta["affine"]`) to pixels of the original image.

Detection target order is `random` (Pix2Seq's best for training) or `distance` (top-left corner's
distance to the origin, ties by label); evaluation always uses `distance`. With `noise_pad_to > 0`,
Pix2Seq-style noise boxes (jittered copies of real boxes and random boxes, label "noise") fill the
target up to that many boxes; their coordinates carry no loss and `parse` drops them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from unio import grammar as grammars
from unio.sequence import Boxes, Points, Segment, Text
from unio.tasks.base import (
    Example,
    Task,
    boxes_to_original,
    first_text,
    keypoints_to_original,
    pick,
    view_geometry,
)
from unio.tasks.bundle import Tokenizers

NOISE_LABEL = "noise"
ORDERS = ("random", "distance")


def box_bins(tok: Tokenizers, boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    return tok.coords.encode_boxes(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), image_size=image_size)


def boxes_to_pixels(
    tok: Tokenizers, segments: list[Segment], image_size: tuple[int, int]
) -> tuple[np.ndarray, list[str]]:
    """All decodable boxes of the decoded segments, in pixels, with their labels (malformed bins are
    dropped: the constrained decoder never produces them, an unconstrained model might)."""
    coords, labels = [], []
    for seg in segments:
        if isinstance(seg, Boxes):
            coords.append(seg.coords.numpy())
            labels += seg.labels if seg.labels is not None else [""] * len(seg.coords)
    if not coords:
        return np.zeros((0, 4)), []
    bins = np.concatenate(coords)
    valid = tok.coords.box_bins_valid(bins)
    pixels = tok.coords.decode_boxes(bins[valid], image_size=image_size)
    return pixels, [label for label, ok in zip(labels, valid) if ok]


def usable_objects(record: Any) -> list:
    return [o for o in record.objects if not o.crowd]


@dataclass(frozen=True)
class DetectTask(Task):
    name: str = "detect"
    prompts: tuple[str, ...] = (
        "Detect all objects in the image.",
        "Find every object and give its box.",
        "List the objects in the image with their bounding boxes.",
        "Locate all objects.",
    )
    eval_prompt: str = "Detect all objects in the image."
    order: str = "random"
    max_objects: int = 30  # longer scenes keep the first objects in target order (bounds sequence length)
    noise_pad_to: int = 0  # Pix2Seq noise boxes up to this many boxes in total; 0 = off
    categories: tuple[str, ...] | None = None  # closed label set for constrained decoding (None = free text)
    target_modality: ClassVar[str] = "box"
    metric: ClassVar[str] = "coco_map"
    uses: ClassVar[tuple[str, ...]] = ("image",)
    patch_inputs: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.order not in ORDERS:
            raise ValueError(f"task {self.name!r}: field 'order' must be one of {ORDERS}, got {self.order!r}")
        if self.max_objects < 1 or self.noise_pad_to < 0:
            raise ValueError(f"task {self.name!r}: need max_objects >= 1 and noise_pad_to >= 0")

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        objects = usable_objects(record)
        if record.image is None or not objects:
            return None
        size = record.image_size
        boxes = np.stack([o.box for o in objects]).astype(np.float64)
        labels = [o.category for o in objects]
        if train and self.order == "random":
            order = list(range(len(objects)))
            rng.shuffle(order)
        else:
            order = sorted(
                range(len(objects)), key=lambda i: (np.hypot(boxes[i, 0], boxes[i, 1]), labels[i], *boxes[i])
            )
        order = order[: self.max_objects]
        target = Boxes(box_bins(tok, boxes[order], size), [labels[i] for i in order])
        noise = None
        if train and self.noise_pad_to > len(order):
            noise_boxes = _noise_boxes(boxes[order], self.noise_pad_to - len(order), size, rng)
            noise = Boxes(box_bins(tok, noise_boxes, size), [NOISE_LABEL] * len(noise_boxes))
        visual, pixels = self.image_input(record, tok)
        inputs = [self.prefix(), Text(self.prompt(rng, train)), visual]
        meta = {"image_size": list(size), "boxes": boxes.tolist(), "labels": labels, **view_geometry(record)}
        return Example(inputs, [target], meta, noise, image=pixels)

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> dict[str, Any]:
        """Boxes in pixels of the original image (xyxy) with their labels; noise boxes are dropped."""
        pixels, labels = boxes_to_pixels(tok, segments, tuple(meta["image_size"]))
        keep = [i for i, label in enumerate(labels) if label != NOISE_LABEL]
        return {"boxes": boxes_to_original(pixels[keep], meta).tolist(), "labels": [labels[i] for i in keep]}

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        return grammars.detection(tok.codec, self.categories)


def _noise_boxes(real: np.ndarray, count: int, image_size: tuple[int, int], rng: random.Random) -> np.ndarray:
    """Pix2Seq's two kinds of synthetic boxes: jittered real boxes (shifted and rescaled) and random boxes."""
    w, h = image_size
    out = []
    for _ in range(count):
        if len(real) and rng.random() < 0.5:
            x1, y1, x2, y2 = real[rng.randrange(len(real))]
            bw, bh = x2 - x1, y2 - y1
            cx, cy = (x1 + x2) / 2 + rng.uniform(-0.5, 0.5) * bw, (y1 + y2) / 2 + rng.uniform(-0.5, 0.5) * bh
            bw, bh = bw * rng.uniform(0.5, 1.5), bh * rng.uniform(0.5, 1.5)
        else:
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            bw, bh = rng.uniform(0.05, 0.5) * w, rng.uniform(0.05, 0.5) * h
        x1, x2 = np.clip([cx - bw / 2, cx + bw / 2], 0, w)
        y1, y2 = np.clip([cy - bh / 2, cy + bh / 2], 0, h)
        if x2 - x1 < 1 or y2 - y1 < 1:  # clipped to a sliver: use a small box at the centre instead
            x1, y1, x2, y2 = w / 2 - 1, h / 2 - 1, w / 2 + 1, h / 2 + 1
        out.append([x1, y1, x2, y2])
    return np.asarray(out, dtype=np.float64).reshape(-1, 4)


def referred_objects(record: Any) -> list:
    return [o for o in usable_objects(record) if o.referring]


def _object_expressions(objects: list) -> list[tuple[Any, str]]:
    """Every (object, referring expression) pair, objects in order: evaluation's items."""
    return [(o, expression) for o in objects for expression in o.referring]


@dataclass(frozen=True)
class GroundTask(Task):
    name: str = "ground"
    prompts: tuple[str, ...] = (
        'Which region does the text "{expression}" describe?',
        "Find {expression}.",
        "Where is {expression}? Give its box.",
        "Locate {expression} in the image.",
    )
    eval_prompt: str = 'Which region does the text "{expression}" describe?'
    target_modality: ClassVar[str] = "box"
    metric: ClassVar[str] = "iou"
    uses: ClassVar[tuple[str, ...]] = ("image",)
    patch_inputs: ClassVar[bool] = True
    prompt_field: ClassVar[str | None] = "expression"

    def num_items(self, record: Any) -> int:
        return len(_object_expressions(referred_objects(record))) if record.image is not None else 0

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        objects = referred_objects(record)
        if record.image is None or not objects:
            return None
        if item is None:
            obj = pick(objects, rng, train)
            expression = pick(obj.referring, rng, train)
        else:
            obj, expression = pick(_object_expressions(objects), rng, train, item)
        text = Text(self.prompt(rng, train, expression=expression))
        visual, pixels = self.image_input(record, tok)
        inputs = [self.prefix(), text, visual]
        meta = {
            "image_size": list(record.image_size),
            "box": obj.box.tolist(),
            "expression": expression,
            **view_geometry(record),
        }
        return Example(inputs, [Boxes(box_bins(tok, obj.box, record.image_size))], meta, image=pixels)

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> list[float] | None:
        """The first box in pixels of the original image, or None when the output holds no box."""
        pixels, _ = boxes_to_pixels(tok, segments, tuple(meta["image_size"]))
        return boxes_to_original(pixels[:1], meta)[0].tolist() if len(pixels) else None

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        return grammars.single_box(tok.codec)


@dataclass(frozen=True)
class RegionCaptionTask(Task):
    """Box -> the object's referring expression (or its category when it has none)."""

    name: str = "region_caption"
    prompts: tuple[str, ...] = (
        "Describe the region.",
        "What is in the highlighted region?",
        "Name the object in this box.",
        "Give a short description of the marked region.",
    )
    eval_prompt: str = "Describe the region."
    metric: ClassVar[str] = "cider"
    uses: ClassVar[tuple[str, ...]] = ("image",)
    patch_inputs: ClassVar[bool] = True
    region_input: ClassVar[bool] = True

    def num_items(self, record: Any) -> int:
        return len(usable_objects(record)) if record.image is not None else 0

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        objects = usable_objects(record)
        if record.image is None or not objects:
            return None
        obj = pick(objects, rng, train, item)
        references = [*obj.referring, obj.category]
        region = Boxes(box_bins(tok, obj.box, record.image_size))
        visual, pixels = self.image_input(record, tok)
        inputs = [self.prefix(), Text(self.prompt(rng, train)), region, visual]
        meta = {"image_size": list(record.image_size), "box": obj.box.tolist(), "references": references}
        return Example(inputs, [Text(pick(references, rng, train))], meta, image=pixels)

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> str:
        return first_text(segments)


@dataclass(frozen=True)
class KeypointsTask(Task):
    """Person box -> every keypoint in the source's order with COCO visibility (absent points are one
    `<absent>` token, so the count is fixed and the grammar knows it)."""

    name: str = "keypoints"
    prompts: tuple[str, ...] = (
        "Locate the keypoints of the person.",
        "Find the body keypoints of the person in the box.",
        "Estimate the pose of this person.",
    )
    eval_prompt: str = "Locate the keypoints of the person."
    num_keypoints: int = 17
    target_modality: ClassVar[str] = "point"
    metric: ClassVar[str] = "oks"
    uses: ClassVar[tuple[str, ...]] = ("image",)
    patch_inputs: ClassVar[bool] = True
    region_input: ClassVar[bool] = True

    def _people(self, record: Any) -> list:
        if record.image is None:
            return []
        return [
            o
            for o in usable_objects(record)
            if o.keypoints is not None
            and len(o.keypoints) == self.num_keypoints
            and (o.keypoints[:, 2] > 0).any()
        ]

    def num_items(self, record: Any) -> int:
        return len(self._people(record))

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        people = self._people(record)
        if not people:
            return None
        person = pick(people, rng, train, item)
        size = record.image_size
        visibility = person.keypoints[:, 2].astype(np.int64)
        bins = tok.coords.encode_points(person.keypoints[:, :2].astype(np.float64), image_size=size)
        region = Boxes(box_bins(tok, person.box, size))
        visual, pixels = self.image_input(record, tok)
        inputs = [self.prefix(), Text(self.prompt(rng, train)), region, visual]
        meta = {
            "image_size": list(size),
            "box": person.box.tolist(),
            "keypoints": person.keypoints.tolist(),
            **view_geometry(record),
        }
        return Example(inputs, [Points(bins, visibility)], meta, image=pixels)

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> list[list[float]]:
        """Kx3 (x, y, visibility) in pixels of the original image; absent points are (0, 0, 0) as in COCO."""
        points = next((s for s in segments if isinstance(s, Points)), None)
        if points is None:
            return []
        xy = tok.coords.decode_points(points.coords.numpy(), image_size=tuple(meta["image_size"]))
        visibility = points.visibility.numpy()
        xy[visibility == 0] = 0.0
        return keypoints_to_original(np.concatenate([xy, visibility[:, None]], axis=1), meta).tolist()

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        return grammars.points(tok.codec, self.num_keypoints)
