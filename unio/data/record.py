"""The common record every data source yields, and the COCO person-keypoint constants.

A `Record` is one example from any source, in one shape: an image with its objects, captions and
question/answer pairs, a class label, and/or an audio clip with its transcript. Tasks (unio/tasks/)
turn records into token sequences; transforms (unio/data/transforms.py) map records to records.

Conventions (all sources follow them, `Record.validate` checks them):
- `image` is loaded eagerly by `source[i]` as an HxWx3 uint8 array (greyscale is repeated to RGB).
  Sources themselves are lazy: nothing is read until a record is asked for.
- Geometry is continuous pixel coordinates: pixel (col, row) covers [col, col + 1) x [row, row + 1),
  so a box spanning the whole image is (0, 0, W, H). Boxes are float32 xyxy.
- `mask` is an HxW bool array at the image's resolution, or None when the source has no masks.
- `keypoints` is a Kx3 float32 array of (x, y, visibility) with COCO visibility 0 absent (x = y = 0),
  1 labelled but occluded, 2 visible.
- `audio` is float32 mono in [-1, 1] at `sample_rate` Hz.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

# COCO's skeleton, converted from its 1-based index pairs to 0-based.
COCO_SKELETON: tuple[tuple[int, int], ...] = tuple(
    (a - 1, b - 1)
    for a, b in (
        (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
        (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
    )
)  # fmt: skip


def keypoint_flip_map(names: tuple[str, ...]) -> tuple[int, ...]:
    """Index permutation that a horizontal flip applies to keypoints: left_x <-> right_x."""
    index = {name: i for i, name in enumerate(names)}
    flipped = []
    for name in names:
        if name.startswith("left_"):
            flipped.append(index["right_" + name[len("left_") :]])
        elif name.startswith("right_"):
            flipped.append(index["left_" + name[len("right_") :]])
        else:
            flipped.append(index[name])
    return tuple(flipped)


COCO_KEYPOINT_FLIP: tuple[int, ...] = keypoint_flip_map(COCO_KEYPOINT_NAMES)


@dataclass
class Object:
    """One annotated object (instance) in an image."""

    box: np.ndarray  # float32 [4] x1, y1, x2, y2 in pixels
    category: str
    mask: np.ndarray | None = None  # HxW bool, same size as the record's image
    keypoints: np.ndarray | None = None  # Kx3 float32 (x, y, visibility)
    referring: list[str] = field(default_factory=list)  # expressions that single out this object
    crowd: bool = False  # COCO iscrowd: one region covering many instances (detectors usually ignore it)
    attributes: dict[str, str] = field(default_factory=dict)  # e.g. {"color": "red", "size": "small"}

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        if self.keypoints is not None:
            self.keypoints = np.asarray(self.keypoints, dtype=np.float32).reshape(-1, 3)


@dataclass
class Record:
    """One example. Fields a source does not provide stay empty (None or [])."""

    id: str  # unique within its source, stable across runs
    source: str  # file the record came from (used in error messages)
    image: np.ndarray | None = None  # HxWx3 uint8
    objects: list[Object] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    qa: list[tuple[str, str]] = field(default_factory=list)  # (question, answer)
    label: str | None = None  # class name for classification
    audio: np.ndarray | None = None  # float32 mono in [-1, 1]
    sample_rate: int | None = None
    transcript: str | None = None  # the words spoken in `audio`, or written in `image` (ocr)
    meta: dict[str, object] = field(default_factory=dict)  # free-form extras, e.g. split, speaker

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(width, height) of the image, or None for records without one."""
        if self.image is None:
            return None
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def duration(self) -> float | None:
        """Audio length in seconds, or None for records without audio."""
        if self.audio is None or not self.sample_rate:
            return None
        return len(self.audio) / self.sample_rate

    def replace(self, **changes: object) -> Record:
        """A shallow copy with some fields changed (records are treated as values)."""
        return replace(self, **changes)

    def validate(self) -> None:
        """Check the conventions in this module's docstring; raise ValueError naming record and field."""
        where = f"record {self.id!r} ({self.source})"
        if self.image is not None:
            image = self.image
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"{where}: field 'image' must be HxWx3 uint8, got {image.dtype} {image.shape}"
                )
        size = self.image_size
        for i, obj in enumerate(self.objects):
            name = f"{where}: objects[{i}]"
            if size is None:
                raise ValueError(f"{name}: objects need an image")
            w, h = size
            x1, y1, x2, y2 = (float(v) for v in obj.box)
            if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
                raise ValueError(f"{name}: field 'box' {obj.box.tolist()} is not inside the {w}x{h} image")
            if obj.mask is not None and (obj.mask.dtype != np.bool_ or obj.mask.shape != (h, w)):
                raise ValueError(
                    f"{name}: field 'mask' must be bool {(h, w)}, got {obj.mask.dtype} {obj.mask.shape}"
                )
            if obj.keypoints is not None:
                visibility = obj.keypoints[:, 2]
                if not np.isin(visibility, (0, 1, 2)).all():
                    raise ValueError(
                        f"{name}: keypoint visibility must be 0, 1 or 2, got {visibility.tolist()}"
                    )
        if (self.audio is None) != (self.sample_rate is None):
            raise ValueError(f"{where}: fields 'audio' and 'sample_rate' must be given together")
        if self.audio is not None and (self.audio.dtype != np.float32 or self.audio.ndim != 1):
            raise ValueError(
                f"{where}: field 'audio' must be 1-D float32, got {self.audio.dtype} {self.audio.shape}"
            )
