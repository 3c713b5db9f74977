"""The built-in shapes world and tone sequences: deterministic, index-addressable, ground truth consistent
(people included: stick figures whose COCO keypoints sit on the drawn limbs)."""

from __future__ import annotations

from collections import Counter
from functools import partial

import numpy as np
import pytest

from tests.test_transforms import dilate
from unio.data.record import COCO_KEYPOINT_NAMES
from unio.data.sources import build_source
from unio.data.sources.shapes import (
    COLORS,
    NUMBERS,
    PLURALS,
    SHAPE_KINDS,
    ShapesConfig,
    ShapesSource,
    shape_mask,
)
from unio.data.sources.shapes_audio import PITCHES, TonesConfig, TonesSource


@pytest.fixture(scope="module")
def source() -> ShapesSource:
    return ShapesSource(ShapesConfig(num_records=40, seed=7))


@pytest.fixture(scope="module")
def scenes(source: ShapesSource) -> list:
    return list(source)


def test_same_seed_same_record_any_order(source: ShapesSource) -> None:
    again = ShapesSource(ShapesConfig(num_records=40, seed=7))
    a, b = source[31], again[31]  # built without generating 0..40 first: index-addressable for sharding
    assert (a.image == b.image).all() and a.captions == b.captions and a.qa == b.qa and a.id == b.id
    assert [o.box.tolist() for o in a.objects] == [o.box.tolist() for o in b.objects]
    other_seed = ShapesSource(ShapesConfig(num_records=40, seed=8))[31]
    other_split = ShapesSource(ShapesConfig(num_records=40, seed=7, split="val"))[31]
    assert not np.array_equal(a.image, other_seed.image) and not np.array_equal(a.image, other_split.image)


def test_ground_truth_matches_pixels(scenes: list) -> None:
    counts = Counter()
    for record in scenes:
        record.validate()
        assert record.image_size == (64, 64)
        assert 1 <= len(record.objects) <= 4
        counts[len(record.objects)] += 1
        for obj in record.objects:
            mask = obj.mask
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            assert obj.box.tolist() == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]  # tight box
            # The mask's pixels have the object's colour (within the per-shape jitter).
            colour = record.image[mask].astype(int).mean(axis=0)
            assert np.abs(colour - COLORS[obj.attributes["color"]]).max() <= 13
            assert obj.referring, "every shape has at least one unambiguous expression"
        masks = np.stack([o.mask for o in record.objects])
        assert masks.sum(0).max() == 1, "shapes never overlap"
        assert record.label == max(record.objects, key=lambda o: o.mask.sum()).category
    assert len(counts) == 4, "scenes with 1, 2, 3 and 4 shapes all occur"


def test_questions_and_expressions_are_true(scenes: list) -> None:
    for record in scenes:
        kinds = [o.category for o in record.objects]
        answers = dict(record.qa)
        assert answers["how many shapes are there?"] == NUMBERS[len(kinds)]
        for kind, plural in PLURALS.items():
            question = f"how many {plural} are there?"
            if question in answers:
                assert answers[question] == NUMBERS[kinds.count(kind)]
        for obj in record.objects:
            color = obj.attributes["color"]
            if f"what color is the {obj.category}?" in answers:
                assert answers[f"what color is the {obj.category}?"] == color
            if f"where is the {color} {obj.category}?" in answers:
                assert answers[f"where is the {color} {obj.category}?"] == obj.attributes["position"]
        # Each expression names exactly one object.
        owners = Counter(e for o in record.objects for e in o.referring)
        assert all(n == 1 for n in owners.values())
        for obj in record.objects:
            if f"the {obj.attributes['color']} {obj.category}" in obj.referring:
                same = [
                    o
                    for o in record.objects
                    if (o.attributes["color"], o.category) == (obj.attributes["color"], obj.category)
                ]
                assert same == [obj]
        assert all(o.attributes["color"] in record.captions[0] for o in record.objects)


def test_shape_masks_are_the_drawn_kinds() -> None:
    circle, square = shape_mask("circle", 32, 32, 10, 64), shape_mask("square", 32, 32, 10, 64)
    assert abs(circle.sum() - np.pi * 100) < 15 and square.sum() == 18 * 18  # |dx| <= 8.5: centres 23.5..40.5
    assert (
        shape_mask("triangle", 32, 32, 10, 64)[23, 31] and not shape_mask("triangle", 32, 32, 10, 64)[23, 24]
    )
    with pytest.raises(ValueError, match="unknown kind"):
        shape_mask("hexagon", 32, 32, 10, 64)


def test_config_is_validated_and_sizes_configurable() -> None:
    with pytest.raises(ValueError, match="kinds"):
        ShapesSource(ShapesConfig(kinds=["hexagon"]))
    with pytest.raises(ValueError, match="unknown config fields"):
        build_source("shapes", {"imagesize": 32})
    record = build_source({"kind": "shapes", "image_size": 32, "max_shapes": 1, "num_records": 3})[2]
    assert record.image_size == (32, 32) and len(record.objects) == 1


def test_tones_are_deterministic_and_match_their_transcript() -> None:
    source = TonesSource(TonesConfig(num_records=20, seed=1))
    assert np.array_equal(source[5].audio, TonesSource(TonesConfig(num_records=20, seed=1))[5].audio)
    labels = Counter()
    for record in source:
        record.validate()
        words = record.transcript.split()
        assert record.label == NUMBERS[len(words)] and set(words) <= set(PITCHES)
        labels[record.label] += 1
        assert record.sample_rate == 8000 and record.duration == 1.0
        # Each tone is audible at its pitch: the strongest frequency is one of the words' pitches.
        spectrum = np.abs(np.fft.rfft(record.audio))
        peak = np.argmax(spectrum) * record.sample_rate / len(record.audio)
        assert min(abs(peak - PITCHES[w]) for w in words) < 0.05 * peak
    assert len(labels) >= 3


def test_people_are_stick_figures_with_keypoints_on_them(scenes: list) -> None:
    people = [(r, o) for r in scenes for o in r.objects if o.category == "person"]
    assert len(people) >= 5
    visibility = Counter()
    for record, person in people:
        keypoints = person.keypoints
        assert keypoints.shape == (17, 3)
        visibility.update(keypoints[:, 2].astype(int).tolist())
        assert (keypoints[keypoints[:, 2] == 0] == 0).all(), "absent points are (0, 0, 0)"
        near_mask = dilate(person.mask, 1)
        x1, y1, x2, y2 = person.box
        for x, y, v in keypoints:
            if v > 0:  # each labelled point lies on the drawn figure, inside its box
                assert x1 <= x <= x2 and y1 <= y <= y2 and near_mask[int(y), int(x)]

        at = partial(labelled_point, keypoints)
        # Facing the viewer: the figure's left side is on the image's right, as in COCO.
        for part in ("eye", "ear", "shoulder", "elbow", "wrist", "hip"):
            left, right = at(f"left_{part}"), at(f"right_{part}")
            if left is not None and right is not None:
                assert left[0] > right[0], part
        # Top to bottom: head, shoulders, hips, knees, ankles.
        for upper, lower in (
            ("nose", "left_shoulder"),
            ("left_eye", "left_hip"),
            ("right_shoulder", "right_hip"),
        ):
            if at(upper) is not None and at(lower) is not None:
                assert at(upper)[1] < at(lower)[1], (upper, lower)
        for side in ("left", "right"):
            chain = [at(f"{side}_{j}") for j in ("hip", "knee", "ankle")]
            ys = [p[1] for p in chain if p is not None]
            assert ys == sorted(ys)
        answers = dict(record.qa)
        count = sum(o.category == "person" for o in record.objects)
        assert answers["how many people are there?"] == NUMBERS[count]
        assert "person" in record.captions[0]
    assert visibility[2] > 0.7 * sum(visibility.values()) and visibility[1] and visibility[0]


def test_scenes_without_people_do_not_change_when_people_are_enabled() -> None:
    # Single-shape scenes: a person always fits, so a scene without one drew the same random numbers.
    with_people = ShapesSource(ShapesConfig(num_records=30, seed=5, max_shapes=1))
    without = ShapesSource(ShapesConfig(num_records=30, seed=5, max_shapes=1, kinds=list(SHAPE_KINDS)))
    compared = 0
    for a, b in zip(with_people, without):
        assert b.objects[0].category != "person"
        if a.objects[0].category == "person":
            continue
        compared += 1
        assert (a.image == b.image).all() and a.captions == b.captions and a.label == b.label
        assert a.objects[0].box.tolist() == b.objects[0].box.tolist()
        assert a.qa[: len(b.qa)] == b.qa  # plus, sometimes, "how many people are there?" -> "zero"
    assert 0 < compared < 30
    only_people = ShapesSource(ShapesConfig(num_records=3, kinds=["person"], max_shapes=2))
    assert all(o.category == "person" and o.keypoints is not None for r in only_people for o in r.objects)
    with pytest.raises(ValueError, match="person_rate"):
        ShapesSource(ShapesConfig(person_rate=1.5))


def labelled_point(keypoints: np.ndarray, name: str) -> np.ndarray | None:
    point = keypoints[COCO_KEYPOINT_NAMES.index(name)]
    return point[:2] if point[2] > 0 else None
