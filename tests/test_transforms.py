"""Geometry-consistent augmentation: boxes, masks and keypoints stay aligned with the pixels.

The property test paints each annotation into its own image channel (red = the object's mask,
green = its box, blue = dots at its keypoints), runs a random augmentation, and checks that the
transformed annotations still coincide with what the transformed pixels show.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unio.data.record import COCO_KEYPOINT_FLIP, COCO_KEYPOINT_NAMES, Object, Record
from unio.data.sources.shapes import ShapesConfig, ShapesSource
from unio.data.transforms import (
    Compose,
    HorizontalFlip,
    PadAudio,
    RandomAudioCrop,
    RandomResizedCrop,
    Resample,
    ResizeToSquare,
    ScaleJitter,
    horizontal_flip,
    swap_left_right,
)

DOT = 3  # keypoint dots are (2 * DOT + 1) pixels wide


def painted_record(width: int, height: int, rng: np.random.Generator) -> Record:
    """One object whose mask, box and keypoints are painted into the R, G and B channels."""
    bw, bh = rng.uniform(0.4, 0.8) * width, rng.uniform(0.4, 0.8) * height
    x1, y1 = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
    box = np.array([x1, y1, x1 + bw, y1 + bh]).round()
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    mask = ((xs - cx) / (bw / 2)) ** 2 + ((ys - cy) / (bh / 2)) ** 2 <= 1.0  # ellipse inside the box
    keypoints = np.zeros((len(COCO_KEYPOINT_NAMES), 3), dtype=np.float32)
    # One labelled keypoint (at a random index, so flips move it to its mirrored name).
    px = rng.uniform(box[0] + DOT + 1, box[2] - DOT - 1)
    py = rng.uniform(box[1] + DOT + 1, box[3] - DOT - 1)
    keypoints[rng.integers(len(keypoints))] = (np.floor(px) + 0.5, np.floor(py) + 0.5, 2)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = mask * 255
    b = box.astype(int)
    image[b[1] : b[3], b[0] : b[2], 1] = 255
    for x, y, _ in keypoints[keypoints[:, 2] > 0]:
        col, row = int(x), int(y)
        image[max(row - DOT, 0) : row + DOT + 1, max(col - DOT, 0) : col + DOT + 1, 2] = 255
    obj = Object(box=box, category="person", mask=mask, keypoints=keypoints)
    return Record(id="painted", source="test", image=image, objects=[obj])


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    padded = np.pad(mask, radius)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def assert_aligned(record: Record, scale: float) -> None:
    """`scale` = output pixels per input pixel: interpolation blurs edges by about that much."""
    record.validate()
    image = record.image
    slack = int(np.ceil(scale))
    for obj in record.objects:
        # Box: the painted rectangle's extent, clipped to the image like the box itself.
        green = image[..., 1] > 127
        rows, cols = np.flatnonzero(green.any(1)), np.flatnonzero(green.any(0))
        painted = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
        assert np.abs(painted - obj.box).max() <= 0.5 + scale, (painted, obj.box)
        # Mask: differs from the painted mask only along its edge.
        red = image[..., 0] > 127
        assert not (obj.mask & ~dilate(red, slack)).any() and not (red & ~dilate(obj.mask, slack)).any()
        # Keypoints: each labelled one sits at the centre of its painted dot.
        h, w = red.shape
        for x, y, v in obj.keypoints:
            if v == 0:
                continue
            reach = int(np.ceil((DOT + 2) * scale))
            r0, r1 = max(int(y) - reach, 0), min(int(y) + reach + 1, h)
            c0, c1 = max(int(x) - reach, 0), min(int(x) + reach + 1, w)
            dot = image[r0:r1, c0:c1, 2] > 127
            assert dot.any(), (x, y)
            rows, cols = np.nonzero(dot)
            rows, cols = rows + r0, cols + c0
            # The whole dot is in the window (else the point is off its dot) ...
            assert rows.min() > r0 or r0 == 0, (x, y)
            assert rows.max() < r1 - 1 or r1 == h, (x, y)
            assert cols.min() > c0 or c0 == 0, (x, y)
            assert cols.max() < c1 - 1 or c1 == w, (x, y)
            # ... and the point is at its centre (along axes where the image border does not cut it).
            tolerance = 0.5 + 0.5 * scale
            if cols.min() > 0 and cols.max() < w - 1:
                assert abs(cols.mean() + 0.5 - x) <= tolerance, (cols.mean() + 0.5, x)
            if rows.min() > 0 and rows.max() < h - 1:
                assert abs(rows.mean() + 0.5 - y) <= tolerance, (rows.mean() + 0.5, y)


AUGMENTATIONS = st.sampled_from(["resize_pad", "resize_stretch", "crop", "jitter", "flip", "crop+flip"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    augmentation=AUGMENTATIONS,
    width=st.integers(48, 120),
    height=st.integers(48, 120),
    seed=st.integers(0, 2**31 - 1),
)
def test_annotations_stay_aligned_with_pixels(augmentation: str, width: int, height: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    record = painted_record(width, height, rng)
    size = 64
    transform = {
        "resize_pad": ResizeToSquare(size, "pad"),
        "resize_stretch": ResizeToSquare(size, "stretch"),
        "crop": RandomResizedCrop(size, scale=(0.3, 1.0), min_visible=0.3),
        "jitter": ScaleJitter(size, min_scale=0.5, max_scale=1.5),
        "flip": HorizontalFlip(p=1.0),
        "crop+flip": Compose([RandomResizedCrop(size, scale=(0.4, 1.0)), HorizontalFlip(p=1.0)]),
    }[augmentation]
    out = transform(record, rng)
    scale = max(out.image.shape[1] / width, out.image.shape[0] / height, 1.0)
    if augmentation in ("crop", "jitter", "crop+flip"):
        scale *= 1 / 0.3**0.5  # a crop of 30% of the area is magnified about 1.8x more
    assert_aligned(out, scale)
    # The affine recorded in meta maps original coordinates to the new ones.
    if out.objects:
        ax, bx, ay, by = out.meta.get("affine", (1, 0, 1, 0))
        x1, y1, x2, y2 = record.objects[0].box
        mapped = sorted([ax * x1 + bx, ax * x2 + bx])
        w, h = out.image_size
        assert np.allclose([max(mapped[0], 0), min(mapped[1], w)], out.objects[0].box[[0, 2]], atol=1e-3)
        assert np.allclose(
            [max(ay * y1 + by, 0), min(ay * y2 + by, h)], out.objects[0].box[[1, 3]], atol=1e-3
        )


def test_flip_swaps_left_and_right_keypoints() -> None:
    record = painted_record(80, 60, np.random.default_rng(0))
    keypoints = record.objects[0].keypoints.copy()
    left_eye, right_eye = COCO_KEYPOINT_NAMES.index("left_eye"), COCO_KEYPOINT_NAMES.index("right_eye")
    keypoints[left_eye] = (10.5, 20.5, 2)
    keypoints[right_eye] = (0, 0, 0)
    record.objects[0].keypoints = keypoints
    flipped = horizontal_flip(record).objects[0].keypoints
    assert flipped[right_eye].tolist() == [80 - 10.5, 20.5, 2]  # the left eye becomes the right one
    assert flipped[left_eye].tolist() == [0, 0, 0]  # absent stays absent at (0, 0)
    assert (
        COCO_KEYPOINT_FLIP[COCO_KEYPOINT_FLIP[5]] == 5
        and COCO_KEYPOINT_NAMES[COCO_KEYPOINT_FLIP[5]] == "right_shoulder"
    )


def test_flip_twice_is_identity_and_swaps_spatial_words() -> None:
    record = ShapesSource(ShapesConfig(num_records=5, seed=3))[2]
    once = horizontal_flip(record)
    twice = horizontal_flip(once)
    assert (twice.image == record.image).all()
    for a, b in zip(twice.objects, record.objects):
        assert np.allclose(a.box, b.box) and (a.mask == b.mask).all() and a.referring == b.referring
    assert twice.captions == record.captions and twice.qa == record.qa
    assert swap_left_right("the leftmost dog on the right") == "the rightmost dog on the left"


def test_flip_keeps_a_stick_figures_keypoints_on_its_limbs() -> None:
    """A shapes-world person, flipped (alone and after a resize): every labelled keypoint stays on the
    figure, the figure's left points stay on the image's right (it still faces the viewer), and
    the recorded flip permutation is the one applied."""
    source = ShapesSource(ShapesConfig(num_records=10, seed=3, kinds=["person", "circle"], person_rate=0.6))
    records = [r for r in source if any(o.category == "person" for o in r.objects)][:3]
    assert records
    left, right = COCO_KEYPOINT_NAMES.index("left_shoulder"), COCO_KEYPOINT_NAMES.index("right_shoulder")
    for record in records:
        for out in (
            horizontal_flip(record),
            HorizontalFlip(p=1.0)(ResizeToSquare(96)(record), np.random.default_rng(0)),
        ):
            assert list(out.meta["keypoint_flip"]) == list(COCO_KEYPOINT_FLIP)
            for before, after in zip(record.objects, out.objects):
                if after.keypoints is None:
                    continue
                near = dilate(after.mask, 1)
                for x, y, v in after.keypoints:
                    if v > 0:
                        assert near[int(y), int(x)], (x, y)
                assert (after.keypoints[:, 2] == before.keypoints[COCO_KEYPOINT_FLIP, 2]).all()
                if after.keypoints[[left, right], 2].all():
                    assert after.keypoints[left, 0] > after.keypoints[right, 0]


def test_crop_drops_objects_below_min_visible_and_counts_them() -> None:
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    objects = [Object(box=[0, 0, 20, 20], category="a"), Object(box=[60, 60, 100, 100], category="b")]
    record = Record(id="r", source="test", image=image, objects=objects)
    from unio.data.transforms import crop_resize

    out = crop_resize(record, (15, 15, 100, 100), (85, 85), min_visible=0.3)  # "a" keeps 25 of 400 px^2
    assert [o.category for o in out.objects] == ["b"]
    assert out.meta["dropped_objects"] == 1
    kept = crop_resize(record, (15, 15, 100, 100), (85, 85), min_visible=0.05)
    assert kept.objects[0].box.tolist() == [0, 0, 5, 5]


def test_audio_resample_crop_pad() -> None:
    rate = 8000
    t = np.arange(rate) / rate
    record = Record(
        id="a", source="test", audio=(0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sample_rate=rate
    )
    up = Resample(16000)(record)
    assert up.sample_rate == 16000 and len(up.audio) == 16000
    spectrum = np.abs(np.fft.rfft(up.audio))
    assert abs(np.argmax(spectrum) * 16000 / len(up.audio) - 440) < 2  # same pitch after resampling
    cropped = RandomAudioCrop(0.25)(record, np.random.default_rng(0))
    assert len(cropped.audio) == 2000
    padded = PadAudio(1.5)(cropped)
    assert len(padded.audio) == 12000 and not padded.audio[2000:].any()
    with pytest.raises(ValueError, match="without audio"):
        Resample(16000)(Record(id="x", source="s"))
