"""Pictures and sounds of predictions: one PNG (and WAVs) per example and an `index.html` gallery.

    item = GalleryItem(dataset, task, index, image=original_image, prediction=..., reference=...)
    write_gallery(out_dir / "gallery", items)     # gallery/index.html + gallery/<dataset>/<task>/*.png|wav

Geometry is drawn in the original image's pixels (predictions from `Task.parse`, references mapped
back by evaluation): boxes with labels (green = reference, red = prediction), masks as tinted overlays,
keypoints with the COCO skeleton; generated images beside the reference image; audio as a spectrogram
PNG plus playable WAVs. Text (captions, answers, transcripts) goes into the page, predicted vs
reference. `annotate(task, image, prediction)` draws one prediction alone (used by unio-predict).
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from unio.atomic import atomic_write_bytes, atomic_write_text
from unio.data.io import encode_wav
from unio.data.record import COCO_SKELETON

PRED, REF = (230, 40, 40), (40, 200, 60)
MIN_SIDE = 256  # small images (the shapes world is 32-64 px) are upscaled so labels stay readable


@dataclass
class GalleryItem:
    dataset: str
    task: str
    index: int
    image: np.ndarray | None  # the original input image (HxWx3 uint8), None for text/audio inputs
    prediction: Any  # what `parse` returned
    reference: dict[str, Any]  # the reference dict the metric scored (original units)
    prompt: str = ""
    valid: bool = True
    audio: tuple[np.ndarray, int] | None = None  # the input or reference clip


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _canvas(image: np.ndarray) -> tuple[Image.Image, float]:
    h, w = image.shape[:2]
    scale = max(1.0, MIN_SIDE / max(1, min(h, w)))
    pil = Image.fromarray(image).convert("RGB")
    if scale > 1:
        pil = pil.resize((round(w * scale), round(h * scale)), Image.NEAREST)
    return pil, scale


def _boxes(
    draw: ImageDraw.ImageDraw, boxes: Any, labels: list[str] | None, color: tuple, scale: float
) -> None:
    for i, box in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        x1, y1, x2, y2 = (box * scale).tolist()
        draw.rectangle([x1, y1, x2, y2], outline=color, width=2)
        if labels and i < len(labels) and labels[i]:
            draw.text((x1 + 2, y1 + 1), labels[i], fill=color)


def _mask(pil: Image.Image, mask: Any, color: tuple) -> Image.Image:
    if mask is None:
        return pil
    if isinstance(mask, dict):  # COCO RLE
        from unio.tasks.dense_tasks import rle_to_mask

        mask = rle_to_mask(mask)
    resized = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).resize(pil.size, Image.NEAREST)
    tint = Image.new("RGB", pil.size, color)
    return Image.composite(Image.blend(pil, tint, 0.5), pil, resized)


def _keypoints(draw: ImageDraw.ImageDraw, points: Any, color: tuple, scale: float) -> None:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(pts) == 17:
        for a, b in COCO_SKELETON:
            if pts[a, 2] > 0 and pts[b, 2] > 0:
                draw.line([tuple(pts[a, :2] * scale), tuple(pts[b, :2] * scale)], fill=color, width=2)
    for x, y, v in pts:
        if v > 0:
            r = 3
            draw.ellipse([x * scale - r, y * scale - r, x * scale + r, y * scale + r], outline=color, width=2)


def annotate(
    task: str, image: np.ndarray | None, prediction: Any, reference: dict | None = None
) -> Image.Image | None:
    """The input image with the prediction (red) and, when given, the reference (green) drawn on it;
    for generated images the prediction beside the reference image. None when there is nothing to draw."""
    reference = reference or {}
    if task in ("text_to_image", "masked_image"):
        tiles = [t for t in (prediction, reference.get("image"), image) if isinstance(t, np.ndarray)]
        if not tiles:
            return None
        height = max(t.shape[0] for t in tiles)
        tiles = [
            np.asarray(Image.fromarray(t).resize((round(t.shape[1] * height / t.shape[0]), height)))
            for t in tiles
        ]
        return _canvas(np.concatenate(tiles[:2], axis=1))[0]
    if image is None:
        return None
    pil, scale = _canvas(image)
    if task == "refseg":
        pil = _mask(pil, reference.get("mask"), REF)
        pil = _mask(pil, prediction, PRED)
    draw = ImageDraw.Draw(pil)
    if task == "detect":
        _boxes(draw, reference.get("boxes", []), reference.get("labels"), REF, scale)
        if prediction:
            _boxes(draw, prediction["boxes"], prediction["labels"], PRED, scale)
    elif task == "ground":
        if reference.get("box") is not None:
            _boxes(draw, reference["box"], None, REF, scale)
        if prediction is not None:
            _boxes(draw, prediction, None, PRED, scale)
    elif task in ("region_caption", "keypoints") and reference.get("box") is not None:
        _boxes(draw, reference["box"], None, (240, 200, 0), scale)
    if task == "keypoints":
        if reference.get("keypoints") is not None:
            _keypoints(draw, reference["keypoints"], REF, scale)
        if prediction:
            _keypoints(draw, prediction, PRED, scale)
    return pil


def spectrogram_png(wave: np.ndarray, rate: int, title: str = "") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2), dpi=80)
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if wave.size >= 64:
        ax.specgram(wave, NFFT=256 if wave.size >= 256 else 64, Fs=rate, noverlap=0, cmap="magma")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("s", fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _text_of(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return " | ".join(value)
    return ""


REFERENCE_TEXT = {
    "caption": "references",
    "region_caption": "references",
    "vqa": "answers",
    "classify": "label",
    "audio_classify": "label",
    "asr": "transcript",
    "ocr": "text",
    "tts": "transcript",
    "text_to_image": "description",
}


def write_item(root: Path, item: GalleryItem) -> str:
    """Write one item's files under `root` and return its HTML block (paths relative to root)."""
    folder = Path(item.dataset) / item.task
    stem = folder / f"{item.index:04d}"
    parts = [f"<div class='item'><div class='head'>#{item.index} {html.escape(item.prompt)}</div>"]
    picture = annotate(item.task, item.image, item.prediction, item.reference)
    if picture is not None:
        atomic_write_bytes(root / f"{stem}.png", _png(picture))
        parts.append(f"<img src='{stem}.png' alt='{html.escape(item.task)} {item.index}'>")
    audios = []
    if item.task == "tts" and item.prediction is not None:
        audios.append(("predicted", item.prediction))
    if item.audio is not None:
        audios.append(("reference" if item.task == "tts" else "input", item.audio))
    for name, (wave, rate) in audios:
        atomic_write_bytes(root / f"{stem}_{name}.png", spectrogram_png(wave, rate, name))
        atomic_write_bytes(root / f"{stem}_{name}.wav", encode_wav(np.asarray(wave, dtype=np.float32), rate))
        parts.append(
            f"<div>{name}<br><img src='{stem}_{name}.png' alt='{name} spectrogram'>"
            f"<audio controls preload='auto' src='{stem}_{name}.wav'></audio></div>"
        )
    predicted = _text_of(item.prediction) if not isinstance(item.prediction, np.ndarray) else ""
    if predicted:
        parts.append(f"<div class='pred'>predicted: {html.escape(predicted)}</div>")
    key = REFERENCE_TEXT.get(item.task)
    if key and key in item.reference:
        parts.append(f"<div class='ref'>reference: {html.escape(_text_of(item.reference[key]))}</div>")
    if not item.valid:
        parts.append("<div class='bad'>invalid output</div>")
    parts.append("</div>")
    return "".join(parts)


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
.item {{ border: 1px solid #ccc; padding: 6px; max-width: 300px; font-size: 13px; overflow-wrap: anywhere; }}
.item img {{ max-width: 290px; display: block; }}
.pred {{ color: #c02020; }} .ref {{ color: #208030; }} .bad {{ color: #a0a000; }}
</style></head><body>
<h1>{title}</h1>
<p>green: reference, red: prediction</p>
{body}
<script>
// Self-check (read by tests/test_evaluate.py in headless chromium): broken images and audio.
window.addEventListener("load", () => {{
  const images = [...document.images];
  const broken = images.filter((i) => !i.complete || i.naturalWidth === 0).length;
  const audio = [...document.querySelectorAll("audio")];
  const bad = audio.filter((a) => a.error !== null).length;
  document.body.dataset.check = `images=${{images.length}} broken=${{broken}} audio=${{audio.length}} audio_errors=${{bad}}`;
}});
</script>
</body></html>
"""


def write_gallery(root: str | Path, items: list[GalleryItem], title: str = "unio evaluation") -> Path:
    """Write every item and `root/index.html`; returns the index path."""
    root = Path(root)
    sections: dict[tuple[str, str], list[str]] = {}
    for item in items:
        sections.setdefault((item.dataset, item.task), []).append(write_item(root, item))
    body = "".join(
        f"<h2>{html.escape(dataset)} / {html.escape(task)}</h2><div class='grid'>{''.join(blocks)}</div>"
        for (dataset, task), blocks in sections.items()
    )
    index = root / "index.html"
    atomic_write_text(index, PAGE.format(title=html.escape(title), body=body or "<p>no examples</p>"))
    return index
