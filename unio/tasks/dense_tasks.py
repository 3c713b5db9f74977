"""Tasks whose output is a grid of VQ codes: referring segmentation and text-to-image generation.

    refseg         <to_mask> "Segment the red circle." <image> ... </image> -> <mask> h*w codes </mask> <eos>
    text_to_image  <to_image> "Generate an image of a red circle."          -> <image> h*w codes </image> <eos>

`parse` decodes codes with the VQ tokenizers: masks come back at the original image size (the
record's, or for a transformed view the original image's, through the inverse of `meta["affine"]`),
generated images at the image tokenizer's resolution.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pycocotools import mask as mask_utils

from unio import grammar as grammars
from unio.sequence import ImageCodes, MaskCodes, Segment, Text
from unio.tasks.base import Example, Task, mask_to_original, pick, scene_text_holds, view_geometry
from unio.tasks.bundle import Tokenizers


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO run-length encoding with a JSON-friendly `counts` string (ground truth kept in `meta`)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def _candidates(record: Any) -> list[tuple[int, Any]]:
    """(index, object) of the objects refseg can use: referred to, with a non-empty mask."""
    if record.image is None:
        return []
    return [
        (i, o)
        for i, o in enumerate(record.objects)
        if not o.crowd and o.referring and o.mask is not None and o.mask.any()
    ]


def _candidate_expressions(candidates: list[tuple[int, Any]]) -> list[tuple[int, Any, str]]:
    """Every (index, object, expression), objects in order: evaluation's items."""
    return [(i, o, expression) for i, o in candidates for expression in o.referring]


@dataclass(frozen=True)
class RefSegTask(Task):
    name: str = "refseg"
    prompts: tuple[str, ...] = (
        "Segment {expression}.",
        "Give the mask of {expression}.",
        "Which pixels belong to {expression}?",
        "Produce a segmentation mask for {expression}.",
    )
    eval_prompt: str = "Segment {expression}."
    target_modality: ClassVar[str] = "mask"
    metric: ClassVar[str] = "mask_iou"
    uses: ClassVar[tuple[str, ...]] = ("image", "mask")
    patch_inputs: ClassVar[bool] = True
    prompt_field: ClassVar[str | None] = "expression"

    def num_items(self, record: Any) -> int:
        return len(_candidate_expressions(_candidates(record)))

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        candidates = _candidates(record)
        if not candidates:
            return None
        if item is None:
            index, obj = pick(candidates, rng, train)
            expression = pick(obj.referring, rng, train)
        else:
            index, obj, expression = pick(_candidate_expressions(candidates), rng, train, item)
        visual, pixels = self.image_input(record, tok)
        inputs = [self.prefix(), Text(self.prompt(rng, train, expression=expression)), visual]
        target = MaskCodes(tok.mask_codes(record, index))
        meta = {
            "image_size": list(record.image_size),
            "expression": expression,
            "mask": mask_to_rle(obj.mask),
            **view_geometry(record),
        }
        return Example(inputs, [target], meta, image=pixels)

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> np.ndarray | None:
        """HxW bool mask at the original image size, or None when the output holds no mask."""
        codes = next((s for s in segments if isinstance(s, MaskCodes)), None)
        if codes is None:
            return None
        return mask_to_original(tok.decode_mask(codes.codes, tuple(meta["image_size"])), meta)

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        return grammars.grid(tok.codec, "mask")


@dataclass(frozen=True)
class TextToImageTask(Task):
    """Caption (or class name through `label_template`) -> image codes."""

    name: str = "text_to_image"
    prompts: tuple[str, ...] = (
        "Generate an image of {description}.",
        "Draw {description}.",
        "Create a picture showing {description}.",
        "An image of {description}.",
    )
    eval_prompt: str = "Generate an image of {description}."
    label_template: str = "{label}"  # e.g. "the digit {label}" for MNIST
    target_modality: ClassVar[str] = "image"
    metric: ClassVar[str] = "fid"
    uses: ClassVar[tuple[str, ...]] = ("image",)
    condition: ClassVar[str | None] = None
    prompt_field: ClassVar[str | None] = "description"

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        if record.image is None or not scene_text_holds(record):
            return None
        descriptions = [c.rstrip(". ") for c in record.captions]
        if record.label is not None:
            descriptions.append(self.label_template.format(label=record.label))
        if not descriptions:
            return None
        description = pick(descriptions, rng, train)
        inputs = [self.prefix(), Text(self.prompt(rng, train, description=description))]
        meta = {"description": description, "label": record.label}
        return Example(inputs, [ImageCodes(tok.image_codes(record))], meta)

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> np.ndarray | None:
        """HxWx3 uint8 image at the image tokenizer's resolution, or None without image codes."""
        codes = next((s for s in segments if isinstance(s, ImageCodes)), None)
        return tok.decode_image(codes.codes) if codes is not None else None

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        return grammars.grid(tok.codec, "image")
