"""Region metrics: grounding accuracy at IoU >= 0.5 and referring-segmentation mIoU / cIoU.

Boxes are xyxy in the original image's continuous pixel coordinates (pixel (c, r) covers
[c, c + 1) x [r, r + 1), unio/data/record.py), so a box's area is (x2 - x1) * (y2 - y1), with no +1.

- Grounding (RefCOCO convention, as in MAttNet, OFA, Florence-2): a prediction is correct when its IoU
  with the referred object's box is >= 0.5. A missing prediction (None: the output held no box) is
  wrong and has IoU 0. Also reported: the mean IoU.
- Referring segmentation (LAVT / ReLA convention): `miou` = mean over examples of the per-example
  mask IoU; `ciou` = cumulative IoU, total intersection / total union over all examples (dominated
  by large objects). A missing mask counts as an empty prediction. An example whose reference and
  prediction are both empty has IoU 1 (nothing to find, nothing found).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two xyxy boxes (0 when the union is empty)."""
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1) + max(0.0, bx2 - bx1) * max(0.0, by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def grounding_accuracy(
    predictions: Sequence[Sequence[float] | None], boxes: Sequence[Sequence[float]], threshold: float = 0.5
) -> dict[str, float]:
    """{"accuracy": fraction with IoU >= threshold, "mean_iou": ...} of predicted vs reference boxes."""
    if len(predictions) != len(boxes) or not boxes:
        raise ValueError(f"grounding_accuracy: {len(predictions)} predictions for {len(boxes)} references")
    ious = [0.0 if p is None else box_iou(p, b) for p, b in zip(predictions, boxes)]
    return {"accuracy": sum(i >= threshold for i in ious) / len(ious), "mean_iou": sum(ious) / len(ious)}


def as_mask(mask: Any) -> np.ndarray:
    """A bool HxW array from an array or a COCO RLE dict (`{"size": [h, w], "counts": str | bytes}`,
    as `unio.tasks.dense_tasks.mask_to_rle` stores ground truth in `meta`)."""
    if isinstance(mask, dict):
        counts = mask["counts"]
        rle = {
            "size": list(mask["size"]),
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
        }
        return mask_utils.decode(rle).astype(bool)
    return np.asarray(mask).astype(bool)


def refseg_iou(predictions: Sequence[Any], masks: Sequence[Any]) -> dict[str, float]:
    """{"miou": mean per-example IoU, "ciou": total intersection / total union} of predicted vs
    reference masks (arrays or RLE dicts of the same HxW; a None prediction is an empty mask)."""
    if len(predictions) != len(masks) or not masks:
        raise ValueError(f"refseg_iou: {len(predictions)} predictions for {len(masks)} references")
    ious, inter_total, union_total = [], 0, 0
    for i, (pred, ref) in enumerate(zip(predictions, masks)):
        gt = as_mask(ref)
        pm = np.zeros_like(gt) if pred is None else as_mask(pred)
        if pm.shape != gt.shape:
            raise ValueError(f"refseg_iou: prediction {i} has shape {pm.shape}, reference {gt.shape}")
        inter, union = int(np.logical_and(pm, gt).sum()), int(np.logical_or(pm, gt).sum())
        ious.append(inter / union if union else 1.0)
        inter_total += inter
        union_total += union
    return {"miou": sum(ious) / len(ious), "ciou": inter_total / union_total if union_total else 1.0}
