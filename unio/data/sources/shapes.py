"""The shapes world: procedural scenes with exact ground truth for every image task, needing no files.

Record i of a (seed, split) pair is generated from its own random stream, so it is identical on every
call, machine and worker, and any index range can be produced independently (sharding). A scene has
`min_shapes..max_shapes` non-overlapping shapes (circle, square, triangle, diamond, star) in six
colours and three sizes on a solid, gradient or noisy grey background. Ground truth:

- objects: tight box, exact instance mask (the image is painted from the same masks), category = kind,
  attributes colour / size / position, referring expressions ("the red circle", "the leftmost shape")
- captions: two phrasings listing the shapes left to right
- qa: counting, colour, shape, position, size and existence questions that are answerable in the scene
- label: the kind of the largest shape (for classification)

Rasterisation is numpy on pixel centres; no anti-aliasing, so masks and pixels agree exactly.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from unio.data.record import Object, Record
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
KINDS = ("circle", "square", "triangle", "diamond", "star")
PLURALS = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "diamond": "diamonds",
    "star": "stars",
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
    raise ValueError(f"shapes: unknown kind {kind!r}; known: {KINDS}")


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
        size = cfg.image_size
        background = cfg.backgrounds[rng.integers(len(cfg.backgrounds))]
        image = _background(background, size, rng)
        objects = self._place_shapes(rng, int(rng.integers(cfg.min_shapes, cfg.max_shapes + 1)))
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
            qa=self._questions(objects, rng),
            label=largest.category,
            meta={
                "background": background,
                "split": cfg.split,
                "referring_derived": True,
                "referring_noun": "shape",
            },
        )

    def _place_shapes(self, rng: np.random.Generator, count: int) -> list[Object]:
        cfg, size = self.config, self.config.image_size
        ordered_sizes = [s for s in SIZES if s in cfg.sizes]
        objects: list[Object] = []
        occupied: list[np.ndarray] = []
        for _ in range(count):
            kind = cfg.kinds[rng.integers(len(cfg.kinds))]
            color = cfg.colors[rng.integers(len(cfg.colors))]
            start = int(rng.integers(len(ordered_sizes)))
            placed = None
            for size_name in ordered_sizes[start::-1]:  # if it does not fit, try smaller sizes
                low, high = SIZES[size_name]
                for _attempt in range(30):
                    radius = rng.uniform(low, high) * size
                    cx, cy = rng.uniform(radius + 1, size - radius - 1, size=2)
                    mask = shape_mask(kind, cx, cy, radius, size)
                    if mask.sum() < 4:
                        continue
                    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                    box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)
                    gap = 2  # keep shapes apart so boxes and masks never overlap
                    if all(
                        box[0] >= b[2] + gap
                        or b[0] >= box[2] + gap
                        or box[1] >= b[3] + gap
                        or b[1] >= box[3] + gap
                        for b in occupied
                    ):
                        placed = (size_name, mask, box)
                        break
                if placed:
                    break
            if placed is None:
                break  # scene full; fewer shapes than drawn, still deterministic
            size_name, mask, box = placed
            occupied.append(box)
            objects.append(
                Object(
                    box=box,
                    category=kind,
                    mask=mask,
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

    def _questions(self, objects: list[Object], rng: np.random.Generator) -> list[tuple[str, str]]:
        kinds = [o.category for o in objects]
        colors = [o.attributes["color"] for o in objects]
        pairs = [(c, k) for c, k in zip(colors, kinds)]
        qa = [("how many shapes are there?", _count(len(objects)))]
        absent_kinds = [k for k in self.config.kinds if k not in kinds]
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
        absent = [(c, k) for c in self.config.colors for k in self.config.kinds if (c, k) not in pairs]
        if absent:
            color, kind = absent[rng.integers(len(absent))]
            qa.append((f"is there {_a(color)} {kind}?", "no"))
        return qa
