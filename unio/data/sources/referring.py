"""Referring expressions derived from annotations: phrases that single out exactly one object.

Used by the shapes world (which knows colours and sizes) and by COCO/VOC (category and geometry
only). An expression is emitted only when it is unambiguous in the scene:
- "the dog"                 category occurs once
- "the red circle"          colour + category occurs once (shapes)
- "the red shape"           colour occurs once (shapes)
- "the small circle"        size word unique within the category (shapes)
- "the leftmost dog"        extreme position within the category, clearly apart from the next one
- "the leftmost object"     extreme position among all objects
- "the largest dog"         area at least `area_ratio` times the next within the category
Crowd regions are neither described nor counted.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from unio.data.record import Object

_EXTREMES = (("leftmost", 0, min), ("rightmost", 0, max), ("topmost", 1, min), ("bottommost", 1, max))


def _centers(objects: list[Object]) -> np.ndarray:
    boxes = np.stack([o.box for o in objects])
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)


def _spatial(objects: list[Object], noun: str, margin: float) -> dict[int, list[str]]:
    """Position superlatives within `objects` (indices into that list)."""
    found: dict[int, list[str]] = {}
    if len(objects) < 2:
        return found
    centers = _centers(objects)
    for word, axis, pick in _EXTREMES:
        values = centers[:, axis]
        order = np.argsort(values) if pick is min else np.argsort(-values)
        if abs(values[order[0]] - values[order[1]]) > margin:
            found.setdefault(int(order[0]), []).append(f"the {word} {noun}")
    areas = np.array([(o.box[2] - o.box[0]) * (o.box[3] - o.box[1]) for o in objects])
    order = np.argsort(-areas)
    if areas[order[0]] >= 1.5 * areas[order[1]]:
        found.setdefault(int(order[0]), []).append(f"the largest {noun}")
    if areas[order[-2]] >= 1.5 * areas[order[-1]]:
        found.setdefault(int(order[-1]), []).append(f"the smallest {noun}")
    return found


def add_referring_expressions(
    objects: list[Object], image_size: tuple[int, int], noun: str = "object"
) -> None:
    """Fill `obj.referring` in place for every non-crowd object (existing entries are kept first)."""
    people = [o for o in objects if not o.crowd]
    if not people:
        return
    margin = 0.05 * max(image_size)
    categories = Counter(o.category for o in people)
    colors = Counter(o.attributes.get("color") for o in people)
    color_categories = Counter((o.attributes.get("color"), o.category) for o in people)
    expressions: list[list[str]] = [[] for _ in people]
    for i, obj in enumerate(people):
        color, size = obj.attributes.get("color"), obj.attributes.get("size")
        if categories[obj.category] == 1:
            expressions[i].append(f"the {obj.category}")
        if color is not None and color_categories[(color, obj.category)] == 1:
            expressions[i].append(f"the {color} {obj.category}")
        if color is not None and colors[color] == 1:
            expressions[i].append(f"the {color} {noun}")
        same = [o for o in people if o.category == obj.category]
        if size is not None and len(same) > 1 and sum(o.attributes.get("size") == size for o in same) == 1:
            expressions[i].append(f"the {size} {obj.category}")
    for category, count in categories.items():
        if count < 2:
            continue
        members = [i for i, o in enumerate(people) if o.category == category]
        for local, words in _spatial([people[i] for i in members], category, margin).items():
            expressions[members[local]].extend(words)
    for i, words in _spatial(people, noun, margin).items():
        expressions[i].extend(words)
    for obj, words in zip(people, expressions):
        obj.referring = list(dict.fromkeys([*obj.referring, *words]))
