"""COCO detection mAP and person-keypoint OKS AP, computed by pycocotools on in-memory COCO objects.

Both functions take ground truth and predictions per image in the image's **original pixels**, with
boxes as **xyxy** (x1, y1, x2, y2: unio's convention, see unio/data/record.py), build a ground-truth
`COCO` object and a result `COCO` object in memory (no files), and run `COCOeval` unchanged, so the
numbers are pycocotools' numbers (tests/test_eval_metrics.py checks equality with COCOeval run on
the same data written as COCO JSON).

Conventions that are ours, not COCO's (the data does not carry COCO's extra fields):
- Ground-truth `area` (used for COCO's small / medium / large split and, for keypoints, as the OKS
  scale s^2) is the box area w * h unless the caller passes `areas`. COCO uses the segmentation area,
  which for people is roughly half the box area, so box-area OKS is somewhat more lenient.
- `iscrowd` is 0 for every ground-truth object (unio's tasks drop crowd regions before evaluation).
- Predictions without `scores` get score 1.0; pycocotools then ranks them by a stable sort, i.e. in
  the order given (image by image, then output order). unio's decoders emit no confidences yet.
- Keypoints are evaluated top-down: each example is one person (the task is given the person's box),
  so every example is its own COCO image with one ground-truth person and at most one prediction.
  unio's keypoint layout is COCO's 17 person keypoints in COCO order (unio/data/record.py
  `COCO_KEYPOINT_NAMES`), so pycocotools' default sigmas (`Params.kpt_oks_sigmas`) apply unchanged.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# COCOeval.stats in the order `summarize` fills them.
BOX_STATS = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)
KEYPOINT_STATS = (
    "oks_ap",
    "oks_ap_50",
    "oks_ap_75",
    "oks_ap_medium",
    "oks_ap_large",
    "oks_ar",
    "oks_ar_50",
    "oks_ar_75",
    "oks_ar_medium",
    "oks_ar_large",
)


def xyxy_to_xywh(boxes: Any) -> np.ndarray:
    """[N, 4] x1, y1, x2, y2 -> [N, 4] x, y, width, height (COCO's box format)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def coco_from_dict(dataset: dict[str, Any]) -> COCO:
    """A pycocotools `COCO` object from an in-memory dataset dict (no file), without its prints."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def run_cocoeval(gt: COCO, results: list[dict[str, Any]], iou_type: str) -> np.ndarray:
    """`COCOeval(gt, gt.loadRes(results), iou_type)`: evaluate, accumulate, summarize; its 10 or 12
    stats. pycocotools' `loadRes` rejects an empty list, so no results are an empty result `COCO`
    (COCOeval then scores 0 wherever ground truth exists, -1 elsewhere)."""
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results) if results else coco_from_dict({**gt.dataset, "annotations": []})
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats, dtype=np.float64)


def _check_lengths(name: str, predictions: Sequence, references: Sequence) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{name}: {len(predictions)} predictions for {len(references)} references")


def coco_detection_map(
    predictions: Sequence[dict[str, Any]],
    references: Sequence[dict[str, Any]],
    categories: Sequence[str] | None = None,
) -> dict[str, float]:
    """COCO box AP of detections, one entry per image in both lists.

    predictions[i]: {"boxes": [[x1, y1, x2, y2], ...], "labels": [str, ...], "scores": optional [float]}
    references[i]:  {"boxes": [[x1, y1, x2, y2], ...], "labels": [str, ...],
                     "image_size": [width, height], "areas": optional [float]}
    categories: the category names (default: every label in the references, sorted). Predicted labels
    outside it match no ground truth and are ignored by COCOeval (counted in `unknown_label_boxes`).

    Returns pycocotools' 12 stats (`map` = AP@[.5:.95], `map_50`, `map_75`, size splits, `mar_*`;
    -1 where a split has no ground truth), plus `images` and `unknown_label_boxes`.
    """
    _check_lengths("coco_detection_map", predictions, references)
    names = (
        sorted({label for ref in references for label in ref["labels"]})
        if categories is None
        else list(categories)
    )
    cat_id = {name: i + 1 for i, name in enumerate(names)}
    images, annotations, results = [], [], []
    unknown = 0
    for image_id, (pred, ref) in enumerate(zip(predictions, references), start=1):
        width, height = (round(float(v)) for v in ref["image_size"])
        images.append({"id": image_id, "width": width, "height": height})
        boxes = xyxy_to_xywh(ref["boxes"])
        if len(boxes) != len(ref["labels"]):
            raise ValueError(f"reference {image_id - 1}: {len(boxes)} boxes but {len(ref['labels'])} labels")
        areas = ref.get("areas")
        areas = (boxes[:, 2] * boxes[:, 3]).tolist() if areas is None else list(areas)
        if len(areas) != len(boxes):
            raise ValueError(f"reference {image_id - 1}: {len(boxes)} boxes but {len(areas)} areas")
        for box, label, area in zip(boxes, ref["labels"], areas):
            if label not in cat_id:
                raise ValueError(f"reference {image_id - 1}: label {label!r} not in categories {names}")
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat_id[label],
                    "bbox": box.tolist(),
                    "area": float(area),
                    "iscrowd": 0,
                }
            )
        pred_boxes = xyxy_to_xywh(pred["boxes"])
        scores = pred.get("scores")
        scores = [1.0] * len(pred_boxes) if scores is None else list(scores)
        if not len(pred_boxes) == len(pred["labels"]) == len(scores):
            raise ValueError(
                f"prediction {image_id - 1}: {len(pred_boxes)} boxes, {len(pred['labels'])} labels, "
                f"{len(scores)} scores"
            )
        for box, label, score in zip(pred_boxes, pred["labels"], scores):
            if label not in cat_id:
                unknown += 1
                continue
            results.append(
                {
                    "image_id": image_id,
                    "category_id": cat_id[label],
                    "bbox": box.tolist(),
                    "score": float(score),
                }
            )
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name} for name, i in cat_id.items()],
    }
    stats = run_cocoeval(coco_from_dict(dataset), results, "bbox")
    return {
        **dict(zip(BOX_STATS, stats.tolist())),
        "images": float(len(images)),
        "unknown_label_boxes": float(unknown),
    }


def coco_keypoint_ap(
    predictions: Sequence[Any],
    references: Sequence[dict[str, Any]],
    scores: Sequence[float] | None = None,
) -> dict[str, float]:
    """COCO OKS keypoint AP, top-down: one person per example.

    predictions[i]: Kx3 (x, y, visibility) in original pixels as `KeypointsTask.parse` returns it
                    (pycocotools ignores the predicted visibility), or [] / None when nothing decoded.
    references[i]:  {"keypoints": Kx3 (x, y, v) with COCO visibility, "box": [x1, y1, x2, y2],
                     "image_size": [width, height], "area": optional float (default: box area)}
    K must be 17 (COCO person keypoints in COCO order; pycocotools' sigmas are for those). People
    with no labelled keypoint are ignored, as in COCO.

    Returns pycocotools' 10 keypoint stats (`oks_ap` = AP@OKS[.5:.95], `oks_ap_50`, ...) and `people`.
    """
    _check_lengths("coco_keypoint_ap", predictions, references)
    if scores is not None:
        _check_lengths("coco_keypoint_ap scores", scores, references)
    images, annotations, results = [], [], []
    for image_id, (pred, ref) in enumerate(zip(predictions, references), start=1):
        width, height = (round(float(v)) for v in ref["image_size"])
        images.append({"id": image_id, "width": width, "height": height})
        gt = np.asarray(ref["keypoints"], dtype=np.float64).reshape(-1, 3)
        if len(gt) != 17:
            raise ValueError(f"reference {image_id - 1}: {len(gt)} keypoints; COCO OKS needs 17")
        box = xyxy_to_xywh(ref["box"])[0]
        annotations.append(
            {
                "id": image_id,
                "image_id": image_id,
                "category_id": 1,
                "bbox": box.tolist(),
                "area": float(ref.get("area", box[2] * box[3])),
                "keypoints": gt.reshape(-1).tolist(),
                "num_keypoints": int((gt[:, 2] > 0).sum()),
                "iscrowd": 0,
            }
        )
        if pred is None or len(pred) == 0:
            continue
        points = np.asarray(pred, dtype=np.float64).reshape(-1, 3)
        if len(points) != 17:
            raise ValueError(f"prediction {image_id - 1}: {len(points)} keypoints; COCO OKS needs 17")
        score = 1.0 if scores is None else float(scores[image_id - 1])
        results.append(
            {"image_id": image_id, "category_id": 1, "keypoints": points.reshape(-1).tolist(), "score": score}
        )
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }
    stats = run_cocoeval(coco_from_dict(dataset), results, "keypoints")
    return {**dict(zip(KEYPOINT_STATS, stats.tolist())), "people": float(len(images))}
