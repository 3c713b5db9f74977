"""One scorer per task, with one signature, for the evaluation script: `METRICS[task_name]`.

    from unio.eval.metrics import METRICS, score
    results = METRICS["vqa"](predictions, references)           # {"vqa_accuracy": 0.9, "examples": 10.0}
    results = score("detect", predictions, references, categories=["circle", "square"])

The uniform signature:

    scorer(predictions: list, references: list[dict], **context) -> dict[str, float]

- `predictions[i]` is exactly what the task's `parse` returned for example i (text, a dict of boxes,
  a box or None, a mask or None, keypoints, an image, `(waveform, rate)`, ...).
- `references[i]` is example i's ground truth as a dict **in the original image's units**: the keys of
  the task's `Example.meta` (unio/tasks/) with geometry mapped to the original image (see issue #13:
  `meta` describes the transformed view, `parse` returns original pixels), plus, for the two tasks
  whose ground truth `meta` does not carry, the reference signal itself:

  | task                         | keys read from each reference                                        |
  |------------------------------|----------------------------------------------------------------------|
  | caption, region_caption      | `references`: list of captions                                        |
  | vqa                          | `answers`: list of reference answers (1, or VQA's 10)                 |
  | classify, audio_classify     | `label`                                                               |
  | detect                       | `boxes` (xyxy), `labels`, `image_size` (w, h); optional `areas`       |
  | ground                       | `box` (xyxy)                                                          |
  | refseg                       | `mask`: HxW bool array or COCO RLE dict at the original size          |
  | keypoints                    | `keypoints` (17x3), `box` (xyxy), `image_size`; optional `area`       |
  | text_to_image                | `label` (None for caption-only records: skipped by the classifier)    |
  | asr                          | `transcript`                                                          |
  | ocr                          | `text`: the text in the image                                         |
  | tts                          | `audio` (mono waveform) and `sample_rate` of the recorded clip        |
  | span_corruption              | `spans`: sentinel -> text                                             |
  | masked_image                 | `image`: the uncorrupted HxWx3 uint8 image at the tokenizer's size    |

- `context` holds what is not per example; a scorer ignores keys it does not use, so the script can
  pass the same context to every task: `categories` (detect: the closed label set, default the
  references' labels), `scores` (detect/keypoints confidences: detect takes them inside predictions as
  `"scores"`, keypoints as a list), `classifier` (text_to_image: `images -> labels` callable),
  `real_images` with `inception_weights` or `fid_feature` (text_to_image FID, torchmetrics, never
  downloads).
- Every result has `examples` (the number of predictions scored) besides the task's metrics; the
  headline metric of each task is `HEADLINE[task]`. Metrics and their implementations are listed in
  docs/evaluation.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from unio.eval.audio_metrics import mel_distance
from unio.eval.captioning import caption_scores
from unio.eval.dense import grounding_accuracy, refseg_iou
from unio.eval.detection import coco_detection_map, coco_keypoint_ap
from unio.eval.image_metrics import classifier_accuracy, frechet_inception_distance, psnr
from unio.eval.text_metrics import (
    asr_error_rates,
    classification_accuracy,
    ocr_error_rates,
    span_exact_match,
    vqa_accuracy,
)

Scorer = Callable[..., dict[str, float]]


def _field(references: Sequence[dict[str, Any]], key: str, task: str) -> list[Any]:
    missing = [i for i, ref in enumerate(references) if key not in ref]
    if missing:
        raise KeyError(f"task {task!r}: references {missing[:10]} lack the key {key!r}")
    return [ref[key] for ref in references]


def _with_count(result: dict[str, float], predictions: Sequence) -> dict[str, float]:
    return {**result, "examples": float(len(predictions))}


def score_caption(predictions: list, references: list, **context: Any) -> dict[str, float]:
    return _with_count(caption_scores(predictions, _field(references, "references", "caption")), predictions)


def score_vqa(predictions: list, references: list, **context: Any) -> dict[str, float]:
    return _with_count(vqa_accuracy(predictions, _field(references, "answers", "vqa")), predictions)


def score_classify(predictions: list, references: list, **context: Any) -> dict[str, float]:
    return _with_count(
        classification_accuracy(predictions, _field(references, "label", "classify")), predictions
    )


def score_detect(predictions: list, references: list, **context: Any) -> dict[str, float]:
    result = coco_detection_map(predictions, references, categories=context.get("categories"))
    return _with_count(result, predictions)


def score_ground(predictions: list, references: list, **context: Any) -> dict[str, float]:
    return _with_count(grounding_accuracy(predictions, _field(references, "box", "ground")), predictions)


def score_refseg(predictions: list, references: list, **context: Any) -> dict[str, float]:
    return _with_count(refseg_iou(predictions, _field(references, "mask", "refseg")), predictions)


def score_keypoints(predictions: list, references: list, **context: Any) -> dict[str, float]:
    return _with_count(coco_keypoint_ap(predictions, references, scores=context.get("scores")), predictions)


def score_text_to_image(predictions: list, references: list, **context: Any) -> dict[str, float]:
    """Classifier accuracy on examples with a label (needs `classifier`) and/or FID against
    `real_images` (needs `inception_weights` or `fid_feature`); at least one of the two."""
    labels = _field(references, "label", "text_to_image")
    classifier = context.get("classifier")
    real = context.get("real_images")
    if classifier is None and real is None:
        raise ValueError(
            "task 'text_to_image': pass context classifier=<images -> labels callable> and/or "
            "real_images=[...] with inception_weights=<local path> or fid_feature=<torch module>"
        )
    result: dict[str, float] = {}
    if classifier is not None:
        labelled = [i for i, label in enumerate(labels) if label is not None]
        if not labelled:
            raise ValueError("task 'text_to_image': classifier accuracy needs references with a 'label'")
        result |= classifier_accuracy(
            [predictions[i] for i in labelled], [labels[i] for i in labelled], classifier
        )
        result["classified_examples"] = float(len(labelled))
    if real is not None:
        generated = [p for p in predictions if p is not None]
        result |= frechet_inception_distance(
            real,
            generated,
            inception_weights=context.get("inception_weights"),
            feature=context.get("fid_feature"),
        )
    return _with_count(result, predictions)


def score_asr(predictions: list, references: list, **context: Any) -> dict[str, float]:
    return _with_count(asr_error_rates(predictions, _field(references, "transcript", "asr")), predictions)


def score_ocr(predictions: list, references: list, **context: Any) -> dict[str, float]:
    return _with_count(ocr_error_rates(predictions, _field(references, "text", "ocr")), predictions)


def score_tts(predictions: list, references: list, **context: Any) -> dict[str, float]:
    audio = _field(references, "audio", "tts")
    rates = _field(references, "sample_rate", "tts")
    return _with_count(mel_distance(predictions, list(zip(audio, rates))), predictions)


def score_span_corruption(predictions: list, references: list, **context: Any) -> dict[str, float]:
    return _with_count(
        span_exact_match(predictions, _field(references, "spans", "span_corruption")), predictions
    )


def score_masked_image(predictions: list, references: list, **context: Any) -> dict[str, float]:
    return _with_count(psnr(predictions, _field(references, "image", "masked_image")), predictions)


METRICS: dict[str, Scorer] = {
    "caption": score_caption,
    "vqa": score_vqa,
    "classify": score_classify,
    "detect": score_detect,
    "ground": score_ground,
    "region_caption": score_caption,
    "refseg": score_refseg,
    "keypoints": score_keypoints,
    "text_to_image": score_text_to_image,
    "asr": score_asr,
    "ocr": score_ocr,
    "tts": score_tts,
    "audio_classify": score_classify,
    "span_corruption": score_span_corruption,
    "masked_image": score_masked_image,
}

# The one number per task for summary tables (higher is better except wer, cer, mel_l1_db, fid).
HEADLINE: dict[str, str] = {
    "caption": "cider",
    "vqa": "vqa_accuracy",
    "classify": "accuracy",
    "detect": "map",
    "ground": "accuracy",
    "region_caption": "cider",
    "refseg": "miou",
    "keypoints": "oks_ap",
    "text_to_image": "classifier_accuracy",
    "asr": "wer",
    "ocr": "cer",
    "tts": "mel_l1_db",
    "audio_classify": "accuracy",
    "span_corruption": "span_exact_match",
    "masked_image": "psnr",
}
LOWER_IS_BETTER = frozenset({"wer", "cer", "mel_l1_db", "fid"})


def score(task: str, predictions: list, references: list, **context: Any) -> dict[str, float]:
    """`METRICS[task](predictions, references, **context)`, with an error listing the known tasks."""
    if task not in METRICS:
        raise KeyError(f"no metric for task {task!r}; known tasks: {sorted(METRICS)}")
    return METRICS[task](predictions, references, **context)
