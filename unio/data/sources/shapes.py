"""The shapes world: procedural scenes with exact ground truth for every image task, needing no files.

Record i of a (seed, split) pair is generated from its own random stream, so it is identical on every
call, machine and worker, and any index range can be produced independently (sharding). A scene has
`min_shapes..max_shapes` non-overlapping shapes (circle, square, triangle, diamond, star, and person:
a stick figure) in six colours and three sizes on a solid, gradient or noisy grey background.
Ground truth:

- objects: tight box, exact instance mask (the image is painted from the same masks), category = kind,
  attributes colour / size / position, referring expressions ("the red circle", "the leftmost shape")
- people: the 17 COCO keypoints on the figure (nose, eyes and ears on the head, shoulders, elbows and
  wrists on the arms, hips, knees and ankles on the legs; the figure faces the viewer, so its left
  side is on the image's right, as in COCO), visibility 2, some marked occluded (1) or absent (0)
- captions: two phrasings listing the shapes left to right
- qa: counting, colour, shape, position, size and existence questions that are answerable in the scene
- label: the kind of the largest shape (for classification)

Rasterisation is numpy on pixel centres; no anti-aliasing, so masks and pixels agree exactly.
Whether an object is a person is drawn from a second random stream of the record, so a scene in which
no object was drawn as a person is the scene `kinds` without "person" gives (its questions may add
"how many people are there?" -> "zero").
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from unio.data.record import COCO_KEYPOINT_NAMES, Object, Record
from unio.data.sources.base import Source
from unio.data.sources.referring import add_referring_expressions

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
}
KINDS = ("circle", "square", "triangle", "diamond", "star", "person")
SHAPE_KINDS = KINDS[:-1]  # the geometric ones, drawn by `shape_mask`; a person is a `stick_figure`
PLURALS = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "diamond": "diamonds",
    "star": "stars",
    "person": "people",
}
# Shape radius (half extent) as a fraction of the image side.
SIZES: dict[str, tuple[float, float]] = {"small": (0.08, 0.11), "medium": (0.13, 0.17), "large": (0.2, 0.25)}
BACKGROUNDS = {"solid": "plain", "gradient": "gradient", "noise": "noisy"}
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
POSITIONS = (
    ("top left", "top middle", "top right"),
    ("middle left", "center", "middle right"),
    ("bottom left", "bottom middle", "bottom right"),
)


@dataclass
class ShapesConfig:
    num_records: int = 10000
    seed: int = 0
    split: str = "train"  # different splits draw from different random streams
    image_size: int = 64
    min_shapes: int = 1
    max_shapes: int = 4
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    person_rate: float = 0.2  # chance that an object is a person (when "person" is among the kinds)
    colors: list[str] = field(default_factory=lambda: list(COLORS))
    sizes: list[str] = field(default_factory=lambda: list(SIZES))
    backgrounds: list[str] = field(default_factory=lambda: list(BACKGROUNDS))
    on_bad_sample: str = "raise"  # generated scenes are never bad; kept so every source config has it


def _polygon_mask(vertices: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test on a grid of points (xs, ys broadcastable)."""
    inside = np.zeros(np.broadcast(xs, ys).shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(vertices, np.roll(vertices, -1, axis=0)):
        crosses = (y1 > ys) != (y2 > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (ys - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (xs < x_at)
    return inside


def shape_mask(kind: str, cx: float, cy: float, radius: float, size: int) -> np.ndarray:
    """Boolean mask of one shape on a size x size grid, sampled at pixel centres."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = xs - cx, ys - cy
    if kind == "circle":
        return dx * dx + dy * dy <= radius * radius
    if kind == "square":
        half = radius * 0.85  # roughly the circle's area
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if kind == "diamond":
        return np.abs(dx) + np.abs(dy) <= radius
    if kind == "triangle":
        vertices = np.array(
            [[cx, cy - radius], [cx + radius, cy + 0.8 * radius], [cx - radius, cy + 0.8 * radius]]
        )
        return _polygon_mask(vertices, xs, ys)
    if kind == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
        vertices = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        return _polygon_mask(vertices, xs, ys)
    raise ValueError(f"shapes: unknown kind {kind!r}; known: {SHAPE_KINDS} (and 'person': stick_figure)")


PEOPLE_STREAM = 1  # seeds a record's second random stream, which decides which objects are people
# A person's half height in shape radii (a stick figure needs more room than a disc), and its half
# width in half heights (arms stretched out sideways).
PERSON_HEIGHT = 1.5
PERSON_WIDTH = 0.9
# Limbs drawn as thick lines between keypoints; the spine joins the shoulders' and hips' midpoints.
LIMBS = tuple(
    (COCO_KEYPOINT_NAMES.index(a), COCO_KEYPOINT_NAMES.index(b))
    for a, b in (
        ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
        ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
        ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
        ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
        ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
    )
)  # fmt: skip
# Keypoint visibility rule: each point is absent with this probability, else occluded with the next.
ABSENT_RATE, OCCLUDED_RATE = 0.06, 0.12


def _segment_distance(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from points (xs, ys) to the segment a-b."""
    d = b - a
    t = np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / max(float(d @ d), 1e-12), 0.0, 1.0)
    return np.hypot(xs - a[0] - t * d[0], ys - a[1] - t * d[1])


def person_joints(
    cx: float, cy: float, half_height: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A person facing the viewer in a random pose: (17x2 COCO keypoint positions, head centre).

    The figure's left is +x (the image's right), as for a COCO person facing the camera. The joints
    stay within 0.83 h sideways and 0.9 h up or down of the centre (h = half_height).
    """
    h = half_height
    points = np.zeros((len(COCO_KEYPOINT_NAMES), 2))
    head = np.array([cx, cy - 0.68 * h])
    index = COCO_KEYPOINT_NAMES.index
    points[index("nose")] = (cx, head[1] + 0.06 * h)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        points[index(f"{side}_eye")] = (cx + sign * 0.08 * h, head[1] - 0.05 * h)
        points[index(f"{side}_ear")] = (cx + sign * 0.17 * h, head[1] - 0.01 * h)
        shoulder = np.array([cx + sign * 0.25 * h, cy - 0.4 * h])
        hip = np.array([cx + sign * 0.14 * h, cy + 0.1 * h])
        # Joint angles from "straight down", outwards positive: arms from hanging to raised, legs apart.
        upper = rng.uniform(0.15, 1.4)
        lower = np.clip(upper + rng.uniform(-0.5, 0.9), 0.0, 2.3)
        thigh = rng.uniform(0.05, 0.45)
        shin = thigh + rng.uniform(-0.15, 0.15)
        elbow = shoulder + 0.3 * h * np.array([sign * np.sin(upper), np.cos(upper)])
        wrist = elbow + 0.28 * h * np.array([sign * np.sin(lower), np.cos(lower)])
        knee = hip + 0.4 * h * np.array([sign * np.sin(thigh), np.cos(thigh)])
        ankle = knee + 0.4 * h * np.array([sign * np.sin(shin), np.cos(shin)])
        for joint, xy in (
            ("shoulder", shoulder), ("hip", hip), ("elbow", elbow), ("wrist", wrist), ("knee", knee),
            ("ankle", ankle),
        ):  # fmt: skip
            points[index(f"{side}_{joint}")] = xy
    return points, head


def _line_half_width(half_height: float) -> float:
    return max(0.6, 0.05 * half_height)  # lines at least 1.2 px thick, so thin limbs stay connected


def person_reach(points: np.ndarray, head: np.ndarray, half_height: float) -> np.ndarray:
    """A box [x1, y1, x2, y2] that contains the figure's mask (cheap: no rasterising)."""
    lines, disc = _line_half_width(half_height) + 1, 0.2 * half_height + 1
    low = np.minimum(points.min(0) - lines, head - disc)
    high = np.maximum(points.max(0) + lines, head + disc)
    return np.concatenate([low, high])


def person_mask(points: np.ndarray, head: np.ndarray, half_height: float, size: int) -> np.ndarray:
    """The stick figure on a size x size grid: a head disc and the limbs, spine and neck as thick lines
    through the joints (so every keypoint lies on the figure's centre line)."""
    x0, y0, x1, y1 = person_reach(points, head, half_height)
    x0, y0 = max(int(x0), 0), max(int(y0), 0)  # rasterise only the figure's reach
    x1, y1 = min(int(x1) + 1, size), min(int(y1) + 1, size)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    figure = np.hypot(xs - head[0], ys - head[1]) <= 0.2 * half_height
    index = COCO_KEYPOINT_NAMES.index
    shoulders = (points[index("left_shoulder")] + points[index("right_shoulder")]) / 2
    hips = (points[index("left_hip")] + points[index("right_hip")]) / 2
    half_width = _line_half_width(half_height)
    for a, b in (*((points[i], points[j]) for i, j in LIMBS), (head, shoulders), (shoulders, hips)):
        figure |= _segment_distance(xs, ys, a, b) <= half_width
    mask = np.zeros((size, size), dtype=bool)
    mask[y0:y1, x0:x1] = figure
    return mask


def keypoint_visibility(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Kx3 COCO keypoints: each point visible (2), or by chance occluded (1) or absent (0, 0, 0)."""
    draw = rng.random(len(points))
    visibility = np.where(draw < ABSENT_RATE, 0, np.where(draw < ABSENT_RATE + OCCLUDED_RATE, 1, 2))
    keypoints = np.concatenate([points, visibility[:, None]], axis=1).astype(np.float32)
    keypoints[visibility == 0] = 0.0
    return keypoints


def _clear(box: np.ndarray, occupied: list[np.ndarray], gap: float = 2) -> bool:
    """True when `box` keeps `gap` pixels from every occupied box (so boxes and masks never overlap)."""
    return all(
        box[0] >= b[2] + gap or b[0] >= box[2] + gap or box[1] >= b[3] + gap or b[1] >= box[3] + gap
        for b in occupied
    )


def _background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    tint = rng.uniform(-12, 12, size=3)
    if kind == "solid":
        image = np.full((size, size, 3), rng.uniform(70, 190)) + tint
    elif kind == "gradient":
        low, high = rng.uniform(60, 120), rng.uniform(140, 200)
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:size, 0:size] / max(size - 1, 1)
        t = (np.cos(angle) * (xs - 0.5) + np.sin(angle) * (ys - 0.5)) / np.sqrt(0.5) + 0.5
        image = (low + (high - low) * np.clip(t, 0, 1))[..., None] + tint
    elif kind == "noise":
        image = rng.uniform(80, 180) + rng.normal(0, rng.uniform(8, 18), size=(size, size, 1)) + tint
    else:
        raise ValueError(f"shapes: unknown background {kind!r}; known: {tuple(BACKGROUNDS)}")
    return np.broadcast_to(image, (size, size, 3)).astype(np.float32)


def _position_word(box: np.ndarray, size: int) -> str:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return POSITIONS[min(int(3 * cy / size), 2)][min(int(3 * cx / size), 2)]


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _count(n: int) -> str:
    return NUMBERS[n] if n < len(NUMBERS) else str(n)


class ShapesSource(Source):
    kind = "shapes"

    def __init__(self, config: ShapesConfig) -> None:
        super().__init__(config.on_bad_sample, f"seed={config.seed} split={config.split}")
        for name, chosen, known in (
            ("kinds", config.kinds, KINDS),
            ("colors", config.colors, tuple(COLORS)),
            ("sizes", config.sizes, tuple(SIZES)),
            ("backgrounds", config.backgrounds, tuple(BACKGROUNDS)),
        ):
            unknown = sorted(set(chosen) - set(known))
            if unknown or not chosen:
                raise ValueError(
                    f"shapes: config field {name!r}: unknown or empty {unknown or chosen}; known: {known}"
                )
        if not 0.0 <= config.person_rate <= 1.0:
            raise ValueError(
                f"shapes: config field 'person_rate' must be in [0, 1], got {config.person_rate}"
            )
        if not 1 <= config.min_shapes <= config.max_shapes:
            raise ValueError(
                f"shapes: need 1 <= min_shapes <= max_shapes, got {config.min_shapes}, {config.max_shapes}"
            )
        if config.image_size < 16:
            raise ValueError(f"shapes: config field 'image_size' must be >= 16, got {config.image_size}")
        self.config = config
        self._index = range(config.num_records)
        self._split_key = zlib.crc32(config.split.encode())

    def load(self, index: int) -> Record:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self._split_key, index])
        people = np.random.default_rng([cfg.seed, self._split_key, index, PEOPLE_STREAM])
        size = cfg.image_size
        background = cfg.backgrounds[rng.integers(len(cfg.backgrounds))]
        image = _background(background, size, rng)
        objects = self._place_shapes(rng, people, int(rng.integers(cfg.min_shapes, cfg.max_shapes + 1)))
        for obj in objects:
            color = np.array(COLORS[obj.attributes["color"]], dtype=np.float32) + rng.uniform(-12, 12, size=3)
            image[obj.mask] = color
        objects.sort(key=lambda o: ((o.box[0] + o.box[2]) / 2, (o.box[1] + o.box[3]) / 2))
        add_referring_expressions(objects, (size, size), noun="shape")
        largest = max(objects, key=lambda o: int(o.mask.sum()))
        return Record(
            id=f"shapes-{cfg.split}-{cfg.seed}-{index}",
            source=f"shapes(seed={cfg.seed}, split={cfg.split}, index={index})",
            image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
            objects=objects,
            captions=self._captions(objects, background),
            qa=self._questions(objects, rng, people),
            label=largest.category,
            meta={
                "background": background,
                "split": cfg.split,
                "referring_derived": True,
                "referring_noun": "shape",
            },
        )

    def _place_shapes(
        self, rng: np.random.Generator, people: np.random.Generator, count: int
    ) -> list[Object]:
        cfg, size = self.config, self.config.image_size
        ordered_sizes = [s for s in SIZES if s in cfg.sizes]
        shape_kinds = [k for k in cfg.kinds if k != "person"]
        with_people = "person" in cfg.kinds
        objects: list[Object] = []
        occupied: list[np.ndarray] = []
        for _ in range(count):
            if with_people and (not shape_kinds or people.random() < cfg.person_rate):
                kind = "person"
            else:
                kind = shape_kinds[rng.integers(len(shape_kinds))]
            color = cfg.colors[rng.integers(len(cfg.colors))]
            start = int(rng.integers(len(ordered_sizes)))
            placed = None
            for size_name in ordered_sizes[start::-1]:  # if it does not fit, try smaller sizes
                low, high = SIZES[size_name]
                for _attempt in range(30):
                    radius = rng.uniform(low, high) * size
                    keypoints = None
                    if kind == "person":
                        half = PERSON_HEIGHT * radius
                        cx = rng.uniform(PERSON_WIDTH * half + 1, size - PERSON_WIDTH * half - 1)
                        cy = rng.uniform(half + 1, size - half - 1)
                        points, head = person_joints(cx, cy, half, rng)
                        if not _clear(person_reach(points, head, half), occupied):
                            continue  # its reach touches a shape (conservative; saves rasterising)
                        mask = person_mask(points, head, half, size)
                        keypoints = keypoint_visibility(points, rng)
                    else:
                        cx, cy = rng.uniform(radius + 1, size - radius - 1, size=2)
                        mask = shape_mask(kind, cx, cy, radius, size)
                    if mask.sum() < 4:
                        continue
                    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                    box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)
                    if _clear(box, occupied):
                        placed = (size_name, mask, box, keypoints)
                        break
                if placed:
                    break
            if placed is None:
                break  # scene full; fewer shapes than drawn, still deterministic
            size_name, mask, box, keypoints = placed
            occupied.append(box)
            objects.append(
                Object(
                    box=box,
                    category=kind,
                    mask=mask,
                    keypoints=keypoints,
                    attributes={"color": color, "size": size_name, "position": _position_word(box, size)},
                )
            )
        return objects

    @staticmethod
    def _captions(objects: list[Object], background: str) -> list[str]:
        def phrase(o: Object) -> str:
            return _a(f"{o.attributes['size']} {o.attributes['color']} {o.category}")

        def join(parts: list[str]) -> str:
            return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

        listing = join([phrase(o) for o in objects])
        n = len(objects)
        located = join(
            [_a(f"{o.attributes['color']} {o.category} in the {o.attributes['position']}") for o in objects]
        )
        return [
            f"{listing} on a {BACKGROUNDS[background]} background.",
            f"{_count(n)} {'shape' if n == 1 else 'shapes'}: {located}.",
        ]

    def _questions(
        self, objects: list[Object], rng: np.random.Generator, people: np.random.Generator
    ) -> list[tuple[str, str]]:
        kinds = [o.category for o in objects]
        colors = [o.attributes["color"] for o in objects]
        pairs = [(c, k) for c, k in zip(colors, kinds)]
        qa = [("how many shapes are there?", _count(len(objects)))]
        # Questions about absent kinds and pairs are drawn from `rng` among the geometric kinds and
        # about absent people from the `people` stream, so scenes without people keep their questions.
        shape_kinds = [k for k in self.config.kinds if k != "person"]
        absent_kinds = [k for k in shape_kinds if k not in kinds]
        asked_kinds = sorted(set(kinds)) + (
            [absent_kinds[rng.integers(len(absent_kinds))]] if absent_kinds else []
        )
        qa += [(f"how many {PLURALS[k]} are there?", _count(kinds.count(k))) for k in asked_kinds]
        for o, color, kind in zip(objects, colors, kinds):
            if kinds.count(kind) == 1:
                qa.append((f"what color is the {kind}?", color))
            if colors.count(color) == 1:
                qa.append((f"what shape is the {color} object?", kind))
            if pairs.count((color, kind)) == 1:
                qa.append((f"where is the {color} {kind}?", o.attributes["position"]))
                qa.append((f"what size is the {color} {kind}?", o.attributes["size"]))
        present = pairs[rng.integers(len(pairs))]
        qa.append((f"is there {_a(present[0])} {present[1]}?", "yes"))
        absent = [(c, k) for c in self.config.colors for k in shape_kinds if (c, k) not in pairs]
        if absent:
            color, kind = absent[rng.integers(len(absent))]
            qa.append((f"is there {_a(color)} {kind}?", "no"))
        if "person" in self.config.kinds and "person" not in kinds and people.random() < 0.5:
            qa.append(("how many people are there?", _count(0)))
        return qa
