"""Florence-2 task prompts on a unio `Pipeline`: the same call and the same output format as
Florence-2's ``processor.post_process_generation``, so code written against Florence-2 runs on a unio
checkpoint unchanged.

    from unio.florence import run_prompt
    run_prompt(pipe, "<OD>", image)
    # {"<OD>": {"bboxes": [[x1, y1, x2, y2], ...], "labels": ["circle", ...]}}
    run_prompt(pipe, "<CAPTION_TO_PHRASE_GROUNDING>", image, "the red circle")
    run_prompt(pipe, "<REGION_TO_DESCRIPTION>", image, "<loc_52><loc_332><loc_932><loc_774>")
    run_prompt(pipe, "<OCR>", image)  # {"<OCR>": "HOW cup CAN"} (the `ocr` task)

Each prompt runs one unio task (`PROMPTS`); coordinates are pixels of the input image, as in
Florence-2. Region inputs take Florence-2's ``<loc_N>`` text (N in 0..999, 1000 bins per side of
the image) or a box in pixels. Differences, by design:

- the three caption prompts run the one `caption` task (unio has one caption style per run);
- phrase grounding and open-vocabulary detection treat the text as ONE referring expression and
  return at most one box (unio's `ground` task), where Florence-2 grounds every phrase it finds;
- segmentation polygons are the outlines of unio's mask (marching squares along the pixel edges,
  corners cut diagonally; one polygon per contour);
- prompts of tasks unio does not train (OCR with regions, dense region captions, region proposals,
  region-to-segmentation) raise a ValueError that says so, instead of returning an empty result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from unio.pipeline import BoxResult, DetectionResult, MaskResult, Pipeline, TextResult, load_image_input

LOC_BINS = 1000  # Florence-2 quantises each image side into 1000 location bins


@dataclass(frozen=True)
class PromptSpec:
    task: str  # the unio task that answers the prompt
    text: str | None = None  # what the text input is: "expression" | "region" | None (no text)


PROMPTS: dict[str, PromptSpec] = {
    "<CAPTION>": PromptSpec("caption"),
    "<DETAILED_CAPTION>": PromptSpec("caption"),
    "<MORE_DETAILED_CAPTION>": PromptSpec("caption"),
    "<OD>": PromptSpec("detect"),
    "<CAPTION_TO_PHRASE_GROUNDING>": PromptSpec("ground", "expression"),
    "<OPEN_VOCABULARY_DETECTION>": PromptSpec("ground", "expression"),
    "<REFERRING_EXPRESSION_SEGMENTATION>": PromptSpec("refseg", "expression"),
    "<REGION_TO_DESCRIPTION>": PromptSpec("region_caption", "region"),
    "<REGION_TO_CATEGORY>": PromptSpec("region_caption", "region"),
    "<OCR>": PromptSpec("ocr"),
}
# Florence-2 prompts with no unio task yet: a clear error rather than an empty answer
NOT_AVAILABLE = (
    "<OCR_WITH_REGION>",
    "<DENSE_REGION_CAPTION>",
    "<REGION_PROPOSAL>",
    "<REGION_TO_SEGMENTATION>",
)
LOC = re.compile(r"<loc_(\d+)>")


def region_from_locations(text: str, width: int, height: int) -> list[float]:
    """Florence-2's ``<loc_x1><loc_y1><loc_x2><loc_y2>`` as a box in pixels (each bin's centre)."""
    bins = [int(n) for n in LOC.findall(text)]
    if len(bins) != 4 or any(not 0 <= b < LOC_BINS for b in bins):
        raise ValueError(
            f"a region must be four location tokens <loc_N> with N in 0..{LOC_BINS - 1} "
            f"(x1, y1, x2, y2), got {text!r}"
        )
    sides = (width, height, width, height)
    return [(b + 0.5) / LOC_BINS * side for b, side in zip(bins, sides, strict=True)]


def mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """The outlines of a HxW bool mask as flat ``[x1, y1, x2, y2, ...]`` polygons in pixel
    coordinates (pixel (r, c) covers x in [c, c+1], y in [r, r+1]; marching squares, so corners are
    cut diagonally); one polygon per contour, a hole's outline as its own polygon."""
    from contourpy import contour_generator  # matplotlib's contouring library

    padded = np.pad(np.asarray(mask, dtype=np.float64), 1)  # closes contours that touch the border
    # marching squares on pixel centres at level 0.5, then moved half a pixel out to the pixel corners
    lines = contour_generator(z=padded).lines(0.5)
    polygons = []
    for line in lines:
        xy = np.asarray(line, dtype=np.float64)[:, :2] - 1.0 + 0.5  # undo the padding; centres -> corners
        if len(xy) >= 3:
            polygons.append(np.round(xy, 2).reshape(-1).tolist())
    return polygons


def canonical_prompt(prompt: str) -> str:
    """``"OD"`` or ``"<OD>"`` -> ``"<OD>"`` (the brackets are optional: a shell or Hydra override
    needs quotes around them)."""
    name = prompt.strip()
    return name if name.startswith("<") else f"<{name}>"


def run_prompt(pipe: Pipeline, prompt: str, image: Any, text_input: Any = None) -> dict[str, Any]:
    """``{prompt: result}`` in Florence-2's post-processed format for one image (a path, PIL image or
    array). `prompt` with or without its brackets; `text_input`: the expression of the grounding /
    segmentation prompts, or the region of the region prompts (``<loc_N>`` text or four pixel
    coordinates)."""
    prompt = canonical_prompt(prompt)
    if prompt in NOT_AVAILABLE:
        raise ValueError(f"Florence-2 prompt {prompt} has no unio task yet; available: {sorted(PROMPTS)}")
    if prompt not in PROMPTS:
        raise ValueError(f"unknown Florence-2 prompt {prompt!r}; available: {sorted(PROMPTS)}")
    spec = PROMPTS[prompt]
    pixels = load_image_input(image)
    height, width = pixels.shape[:2]
    if spec.text is not None and (
        text_input is None or (isinstance(text_input, str) and not text_input.strip())
    ):
        raise ValueError(f"Florence-2 prompt {prompt} needs text_input (the {spec.text})")
    if spec.text is None and text_input is not None:
        raise ValueError(f"Florence-2 prompt {prompt} takes no text_input, got {text_input!r}")
    if spec.text == "region":
        box = (
            region_from_locations(text_input, width, height)
            if isinstance(text_input, str)
            else [float(v) for v in text_input]
        )
        result = pipe(spec.task, image=pixels, box=box)
    elif spec.text == "expression":
        result = pipe(spec.task, image=pixels, text=text_input)
    else:
        result = pipe(spec.task, image=pixels)
    return {prompt: _florence_format(prompt, result, text_input)}


def _florence_format(prompt: str, result: Any, text_input: Any) -> Any:
    if isinstance(result, TextResult):
        return result.text
    if isinstance(result, DetectionResult):
        return {"bboxes": result.boxes.tolist(), "labels": list(result.labels)}
    if isinstance(result, BoxResult):
        boxes = [] if result.box is None else [list(map(float, result.box))]
        labels = [str(text_input)] * len(boxes)
        if prompt == "<OPEN_VOCABULARY_DETECTION>":
            return {"bboxes": boxes, "bboxes_labels": labels, "polygons": [], "polygons_labels": []}
        return {"bboxes": boxes, "labels": labels}
    if isinstance(result, MaskResult):
        polygons = [] if result.mask is None else mask_polygons(result.mask)
        return {"polygons": [polygons] if polygons else [], "labels": [""] if polygons else []}
    raise TypeError(f"no Florence-2 format for {type(result).__name__}")
