"""Augmentations applied identically to a record's image, boxes, masks and keypoints; audio transforms.

Every transform is `transform(record, rng) -> Record` (a new record; the input is not modified) and
`rng` is a `numpy.random.Generator`, so a pipeline is reproducible from a seed.

Geometry. All image transforms are one of two exact maps in continuous pixel coordinates
(see unio/data/record.py): a window crop + resize, x' = (x - x0) * W / (x1 - x0), or a horizontal
flip, x' = W - x. Images are resampled bilinearly and masks with nearest neighbour through the
*same* window, so pixels, masks, boxes and keypoints stay aligned. The map from the original image
is accumulated in `record.meta["affine"] = (ax, bx, ay, by)` (x' = ax * x + bx, y' = ay * y + by) with
`record.meta["original_size"]`, and a flip keeps its keypoint permutation in
`record.meta["keypoint_flip"]`, so tasks' `parse` maps predictions back to original pixels
(unio/tasks/base.py, `view_geometry`).

Objects after a crop (the box rule): each box is clipped to the output; an object is kept if at
least `min_visible` of its box area remains (and the clipped box is at least 1 px wide and high),
otherwise it is dropped with its mask and keypoints. Keypoints that leave the image become (0, 0, 0).
`record.meta["dropped_objects"]` counts dropped objects, so tasks can tell that captions or answers
which count objects may no longer hold. Referring expressions derived from geometry are recomputed
for the survivors; a flip also swaps "left"/"right" in referring expressions, captions and questions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from unio.data.record import COCO_KEYPOINT_FLIP, Object, Record
from unio.data.sources.referring import add_referring_expressions
from unio.tokenizers.audio import resample as _resample_tensor

Window = tuple[float, float, float, float]


# -- the two geometric primitives -----------------------------------------------------------------


def _affine(record: Record) -> tuple[float, float, float, float]:
    return record.meta.get("affine", (1.0, 0.0, 1.0, 0.0))  # type: ignore[return-value]


def _warp(
    array: np.ndarray, window: Window, out_size: tuple[int, int], resample: int, fill: int
) -> np.ndarray:
    """Crop `window` (may extend past the image: padded with `fill`) and resize it to out_size (w, h)."""
    h, w = array.shape[:2]
    out_w, out_h = out_size
    x0, y0, x1, y1 = window
    sx, sy = out_w / (x1 - x0), out_h / (y1 - y0)
    canvas = np.full((out_h, out_w, *array.shape[2:]), fill, dtype=array.dtype)
    # Output pixels covered by the image, rounded to whole pixels; the source box is derived back from
    # them exactly, so the paste position and the resampling agree with the coordinate map.
    u0, u1 = round((max(x0, 0) - x0) * sx), round((min(x1, w) - x0) * sx)
    v0, v1 = round((max(y0, 0) - y0) * sy), round((min(y1, h) - y0) * sy)
    u0, v0, u1, v1 = max(u0, 0), max(v0, 0), min(u1, out_w), min(v1, out_h)
    if u1 <= u0 or v1 <= v0:
        return canvas
    box = (
        min(max(x0 + u0 / sx, 0.0), w),
        min(max(y0 + v0 / sy, 0.0), h),
        min(max(x0 + u1 / sx, 0.0), w),
        min(max(y0 + v1 / sy, 0.0), h),
    )
    resized = Image.fromarray(array).resize((u1 - u0, v1 - v0), resample=resample, box=box)
    canvas[v0:v1, u0:u1] = np.asarray(resized)
    return canvas


def crop_resize(
    record: Record, window: Window, out_size: tuple[int, int], min_visible: float = 0.3, fill: int = 0
) -> Record:
    """Map the image region `window` = (x0, y0, x1, y1) onto an out_size = (w, h) image."""
    if record.image is None:
        raise ValueError(
            f"record {record.id!r} ({record.source}): image transform on a record without an image"
        )
    x0, y0, x1, y1 = window
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"crop window {window} has no area")
    out_w, out_h = out_size
    sx, sy = out_w / (x1 - x0), out_h / (y1 - y0)
    image = _warp(record.image, window, out_size, Image.Resampling.BILINEAR, fill)
    objects: list[Object] = []
    dropped = 0
    for obj in record.objects:
        bx1, by1, bx2, by2 = (
            (obj.box[0] - x0) * sx,
            (obj.box[1] - y0) * sy,
            (obj.box[2] - x0) * sx,
            (obj.box[3] - y0) * sy,
        )
        cx1, cy1, cx2, cy2 = max(bx1, 0), max(by1, 0), min(bx2, out_w), min(by2, out_h)
        area = (bx2 - bx1) * (by2 - by1)
        visible = max(cx2 - cx1, 0) * max(cy2 - cy1, 0)
        if cx2 - cx1 < 1 or cy2 - cy1 < 1 or visible < min_visible * area:
            dropped += 1
            continue
        mask = None
        if obj.mask is not None:
            mask = _warp(obj.mask.astype(np.uint8) * 255, window, out_size, Image.Resampling.NEAREST, 0) > 127
        keypoints = None
        if obj.keypoints is not None:
            keypoints = obj.keypoints.copy()
            keypoints[:, 0] = (keypoints[:, 0] - x0) * sx
            keypoints[:, 1] = (keypoints[:, 1] - y0) * sy
            outside = (
                (keypoints[:, 2] == 0)
                | (keypoints[:, 0] < 0)
                | (keypoints[:, 0] >= out_w)
                | (keypoints[:, 1] < 0)
                | (keypoints[:, 1] >= out_h)
            )
            keypoints[outside] = 0
        objects.append(
            Object(
                box=np.array([cx1, cy1, cx2, cy2], dtype=np.float32),
                category=obj.category,
                mask=mask,
                keypoints=keypoints,
                referring=list(obj.referring),
                crowd=obj.crowd,
                attributes=dict(obj.attributes),
            )
        )
    if dropped and record.meta.get("referring_derived"):
        for obj in objects:
            obj.referring = []
        add_referring_expressions(objects, out_size, noun=str(record.meta.get("referring_noun", "object")))
    ax, bx, ay, by = _affine(record)
    meta = {
        **record.meta,
        "affine": (ax * sx, (bx - x0) * sx, ay * sy, (by - y0) * sy),
        "original_size": record.meta.get("original_size", record.image_size),
        "dropped_objects": int(record.meta.get("dropped_objects", 0)) + dropped,  # type: ignore[call-overload]
    }
    return record.replace(image=image, objects=objects, meta=meta)


_LEFT_RIGHT = re.compile(r"\b(left|right)")


def swap_left_right(text: str) -> str:
    """'the leftmost dog on the right' -> 'the rightmost dog on the left'."""
    return _LEFT_RIGHT.sub(lambda m: "right" if m.group(1) == "left" else "left", text)


def horizontal_flip(
    record: Record, keypoint_flip: Sequence[int] = COCO_KEYPOINT_FLIP, swap_text: bool = True
) -> Record:
    """Mirror the image left-right; keypoints are re-indexed by `keypoint_flip` (left_x <-> right_x)."""
    if record.image is None:
        raise ValueError(
            f"record {record.id!r} ({record.source}): image transform on a record without an image"
        )
    w = record.image.shape[1]
    objects = []
    for obj in record.objects:
        keypoints = None
        if obj.keypoints is not None:
            if len(obj.keypoints) != len(keypoint_flip):
                raise ValueError(
                    f"record {record.id!r}: {len(obj.keypoints)} keypoints but a flip map for {len(keypoint_flip)}"
                )
            keypoints = obj.keypoints[list(keypoint_flip)].copy()
            labelled = keypoints[:, 2] > 0
            keypoints[labelled, 0] = w - keypoints[labelled, 0]
        text = swap_left_right if swap_text else (lambda s: s)
        objects.append(
            Object(
                box=np.array([w - obj.box[2], obj.box[1], w - obj.box[0], obj.box[3]], dtype=np.float32),
                category=obj.category,
                mask=None if obj.mask is None else np.ascontiguousarray(obj.mask[:, ::-1]),
                keypoints=keypoints,
                referring=[text(r) for r in obj.referring],
                crowd=obj.crowd,
                attributes={k: text(v) for k, v in obj.attributes.items()},
            )
        )
    ax, bx, ay, by = _affine(record)
    changes: dict[str, object] = {}
    if swap_text:
        changes["captions"] = [swap_left_right(c) for c in record.captions]
        changes["qa"] = [(swap_left_right(q), swap_left_right(a)) for q, a in record.qa]
    meta = {
        **record.meta,
        "affine": (-ax, w - bx, ay, by),
        "original_size": record.meta.get("original_size", record.image_size),
        "keypoint_flip": tuple(keypoint_flip),  # to swap left and right back when mapping predictions
    }
    return record.replace(
        image=np.ascontiguousarray(record.image[:, ::-1]), objects=objects, meta=meta, **changes
    )


# -- image transforms -----------------------------------------------------------------------------


@dataclass
class ResizeToSquare:
    """Resize to size x size: `pad` keeps the aspect ratio (image top-left, padding right/bottom),
    `stretch` scales each axis independently."""

    size: int
    mode: str = "pad"
    fill: int = 0

    def __call__(self, record: Record, rng: np.random.Generator | None = None) -> Record:
        w, h = _image_size(record)
        if self.mode == "pad":
            side = max(w, h)
            return crop_resize(
                record, (0, 0, side, side), (self.size, self.size), min_visible=0.0, fill=self.fill
            )
        if self.mode == "stretch":
            return crop_resize(record, (0, 0, w, h), (self.size, self.size), min_visible=0.0, fill=self.fill)
        raise ValueError(f"ResizeToSquare: mode must be 'pad' or 'stretch', got {self.mode!r}")


@dataclass
class RandomResizedCrop:
    """Crop a random region (area fraction in `scale`, aspect ratio in `ratio`) and resize it to size."""

    size: int
    scale: tuple[float, float] = (0.3, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    min_visible: float = 0.3

    def __call__(self, record: Record, rng: np.random.Generator) -> Record:
        w, h = _image_size(record)
        for _ in range(10):
            area = w * h * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            cw, ch = math.sqrt(area * aspect), math.sqrt(area / aspect)
            if cw <= w and ch <= h:
                x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
                return crop_resize(
                    record, (x0, y0, x0 + cw, y0 + ch), (self.size, self.size), self.min_visible
                )
        side = min(w, h)  # fall back to a centre square crop
        x0, y0 = (w - side) / 2, (h - side) / 2
        return crop_resize(record, (x0, y0, x0 + side, y0 + side), (self.size, self.size), self.min_visible)


@dataclass
class ScaleJitter:
    """Large-scale jitter: scale so the long side is size * s, s in [min_scale, max_scale], then take a
    random size x size window (cropping when larger, padding with `fill` when smaller)."""

    size: int
    min_scale: float = 0.3
    max_scale: float = 2.0
    min_visible: float = 0.3
    fill: int = 0

    def __call__(self, record: Record, rng: np.random.Generator) -> Record:
        w, h = _image_size(record)
        factor = self.size * rng.uniform(self.min_scale, self.max_scale) / max(w, h)
        side = self.size / factor  # the window's side in original pixels
        x0 = rng.uniform(min(0.0, w - side), max(0.0, w - side))
        y0 = rng.uniform(min(0.0, h - side), max(0.0, h - side))
        return crop_resize(
            record, (x0, y0, x0 + side, y0 + side), (self.size, self.size), self.min_visible, self.fill
        )


@dataclass
class HorizontalFlip:
    p: float = 0.5
    keypoint_flip: tuple[int, ...] = COCO_KEYPOINT_FLIP
    swap_text: bool = True

    def __call__(self, record: Record, rng: np.random.Generator) -> Record:
        if rng.random() >= self.p:
            return record
        return horizontal_flip(record, self.keypoint_flip, self.swap_text)


def _image_size(record: Record) -> tuple[int, int]:
    if record.image_size is None:
        raise ValueError(
            f"record {record.id!r} ({record.source}): image transform on a record without an image"
        )
    return record.image_size


# -- audio transforms -----------------------------------------------------------------------------


def resample_audio(audio: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling (the audio tokenizer's FFT resampler), float32 in [-1, 1]."""
    out = _resample_tensor(
        torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), orig_rate, new_rate
    )
    return np.clip(out.numpy(), -1.0, 1.0).astype(np.float32)


def _audio(record: Record) -> tuple[np.ndarray, int]:
    if record.audio is None or record.sample_rate is None:
        raise ValueError(f"record {record.id!r} ({record.source}): audio transform on a record without audio")
    return record.audio, record.sample_rate


@dataclass
class Resample:
    sample_rate: int

    def __call__(self, record: Record, rng: np.random.Generator | None = None) -> Record:
        audio, rate = _audio(record)
        if rate == self.sample_rate:
            return record
        return record.replace(
            audio=resample_audio(audio, rate, self.sample_rate), sample_rate=self.sample_rate
        )


@dataclass
class RandomAudioCrop:
    """Cut clips longer than `max_seconds` to a random window of that length (shorter clips pass)."""

    max_seconds: float

    def __call__(self, record: Record, rng: np.random.Generator) -> Record:
        audio, rate = _audio(record)
        length = round(self.max_seconds * rate)
        if len(audio) <= length:
            return record
        start = int(rng.integers(0, len(audio) - length + 1))
        return record.replace(audio=audio[start : start + length].copy())


@dataclass
class PadAudio:
    """Pad with silence at the end to exactly `seconds`; longer clips are cut at the end."""

    seconds: float

    def __call__(self, record: Record, rng: np.random.Generator | None = None) -> Record:
        audio, rate = _audio(record)
        length = round(self.seconds * rate)
        fixed = np.zeros(length, dtype=np.float32)
        fixed[: min(length, len(audio))] = audio[:length]
        return record.replace(audio=fixed)


@dataclass
class Compose:
    transforms: list

    def __call__(self, record: Record, rng: np.random.Generator) -> Record:
        for transform in self.transforms:
            record = transform(record, rng)
        return record
