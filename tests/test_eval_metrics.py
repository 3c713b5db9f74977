"""The metrics layer (unio/eval/): every metric scores its maximum on perfect predictions and the
hand-computed value on a small case; the pycocotools wrappers agree exactly with COCOeval run on the
same data written as COCO JSON files; VQA accuracy follows the official formula's worked cases."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from unio.eval.audio_metrics import DB_FLOOR, log_mel_db, mel_distance
from unio.eval.captioning import caption_scores, tokenize_caption
from unio.eval.dense import box_iou, grounding_accuracy, refseg_iou
from unio.eval.detection import BOX_STATS, KEYPOINT_STATS, coco_detection_map, coco_keypoint_ap
from unio.eval.image_metrics import classifier_accuracy, frechet_inception_distance, psnr
from unio.eval.metrics import HEADLINE, LOWER_IS_BETTER, METRICS, score
from unio.eval.text_metrics import (
    asr_error_rates,
    classification_accuracy,
    normalize_vqa_answer,
    ocr_error_rates,
    span_exact_match,
    vqa_accuracy,
    vqa_answer_accuracy,
)
from unio.tasks import TASKS
from unio.tasks.dense_tasks import mask_to_rle

# COCO's person keypoint sigmas (cocoapi PythonAPI/pycocotools/cocoeval.py, Params.setKpParams), typed
# here independently so the OKS hand computation does not read them from the code under test.
COCO_SIGMAS = np.array(
    [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]
) / 10.0  # fmt: skip


# -- detection: pycocotools ------------------------------------------------------------------------
def _scene(rng: np.random.Generator, n_images: int = 12, categories=("circle", "square", "star")):
    refs = []
    for _ in range(n_images):
        w, h = int(rng.integers(80, 200)), int(rng.integers(80, 200))
        n = int(rng.integers(1, 6))
        x1, y1 = rng.uniform(0, w * 0.7, n), rng.uniform(0, h * 0.7, n)
        bw, bh = rng.uniform(3, w * 0.3, n), rng.uniform(3, h * 0.3, n)
        boxes = np.stack([x1, y1, x1 + bw, y1 + bh], axis=1)
        refs.append(
            {
                "boxes": boxes.tolist(),
                "labels": [str(c) for c in rng.choice(categories, n)],
                "image_size": [w, h],
            }
        )
    return refs


def test_detection_perfect_predictions_score_one():
    refs = _scene(np.random.default_rng(0))
    result = coco_detection_map([{"boxes": r["boxes"], "labels": r["labels"]} for r in refs], refs)
    assert result["map"] == pytest.approx(1.0)
    assert result["map_50"] == pytest.approx(1.0)
    assert result["mar_100"] == pytest.approx(1.0)


def test_detection_hand_checked_cases():
    ref = {"boxes": [[0, 0, 10, 10], [50, 50, 70, 70]], "labels": ["a", "a"], "image_size": [100, 100]}
    # One exact hit (ranked first) and one false positive: precision 1 up to recall 0.5, nothing after.
    # COCO's 101-point interpolation gives AP = 51 / 101 at every IoU threshold.
    pred = {"boxes": [[0, 0, 10, 10], [80, 0, 90, 10]], "labels": ["a", "a"], "scores": [0.9, 0.8]}
    result = coco_detection_map([pred], [ref])
    assert result["map"] == pytest.approx(51 / 101)
    assert result["map_50"] == pytest.approx(51 / 101)
    # IoU 0.77 with the only object: a hit at thresholds 0.50..0.75 (6 of 10), so mAP 0.6, mAP@0.5 1.
    ref = {"boxes": [[0, 0, 10, 10]], "labels": ["a"], "image_size": [20, 20]}
    assert box_iou([0, 0, 10, 7.7], [0, 0, 10, 10]) == pytest.approx(0.77)
    result = coco_detection_map([{"boxes": [[0, 0, 10, 7.7]], "labels": ["a"]}], [ref])
    assert result["map"] == pytest.approx(0.6)
    assert (result["map_50"], result["map_75"]) == (pytest.approx(1.0), pytest.approx(1.0))
    # A wrong label matches nothing of the right category; a label outside the categories is counted.
    result = coco_detection_map([{"boxes": [[0, 0, 10, 10]], "labels": ["b"]}], [ref], categories=["a", "b"])
    assert result["map"] == 0.0
    result = coco_detection_map([{"boxes": [[0, 0, 10, 10]], "labels": ["zebra"]}], [ref])
    assert (result["map"], result["unknown_label_boxes"]) == (0.0, 1.0)
    # No predictions at all: AP 0 where ground truth exists, -1 (pycocotools' "no ground truth") elsewhere.
    result = coco_detection_map([{"boxes": [], "labels": []}], [ref])
    assert result["map"] == 0.0 and result["map_large"] == -1.0


def test_detection_agrees_with_cocoeval_on_json_files(tmp_path):
    """Randomly perturbed, dropped and spurious boxes: the wrapper's 12 stats equal COCOeval's run on the
    same boxes written as COCO JSON (xywh) files."""
    rng = np.random.default_rng(1234)
    categories = ("circle", "square", "star")
    refs = _scene(rng, n_images=20, categories=categories)
    preds = []
    for ref in refs:
        boxes = np.asarray(ref["boxes"])
        keep = rng.random(len(boxes)) > 0.15
        size = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
        jittered = boxes[keep] + rng.normal(0, 0.06, (int(keep.sum()), 4)) * size[keep]
        labels = [label for label, k in zip(ref["labels"], keep) if k]
        labels = [label if rng.random() > 0.1 else str(rng.choice(categories)) for label in labels]
        extra = int(rng.integers(0, 3))
        spurious = rng.uniform(0, 60, (extra, 2))
        jittered = np.concatenate([jittered, np.concatenate([spurious, spurious + 15], axis=1)])
        labels += [str(c) for c in rng.choice(categories, extra)]
        preds.append(
            {"boxes": jittered.tolist(), "labels": labels, "scores": rng.random(len(labels)).tolist()}
        )
    ours = coco_detection_map(preds, refs, categories=categories)

    cat_id = {name: i + 1 for i, name in enumerate(categories)}
    gt = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for n, i in cat_id.items()]}
    results = []
    for image_id, (ref, pred) in enumerate(zip(refs, preds), start=1):
        gt["images"].append({"id": image_id, "width": ref["image_size"][0], "height": ref["image_size"][1]})
        for (x1, y1, x2, y2), label in zip(ref["boxes"], ref["labels"]):
            gt["annotations"].append(
                {"id": len(gt["annotations"]) + 1, "image_id": image_id, "category_id": cat_id[label],
                 "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            )  # fmt: skip
        for (x1, y1, x2, y2), label, s in zip(pred["boxes"], pred["labels"], pred["scores"]):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": cat_id[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": s,
                }
            )
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    coco = COCO(str(tmp_path / "gt.json"))
    ev = COCOeval(coco, coco.loadRes(str(tmp_path / "dt.json")), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert 0.2 < ours["map"] < 0.9  # a non-trivial case
    for name, value in zip(BOX_STATS, ev.stats):
        assert ours[name] == pytest.approx(value, abs=1e-9), name


# -- keypoints: pycocotools OKS ----------------------------------------------------------------------
def _person(rng: np.random.Generator) -> dict:
    points = np.concatenate([rng.uniform(20, 80, (17, 2)), np.full((17, 1), 2.0)], axis=1)
    points[3] = 0  # one absent keypoint (COCO: x = y = v = 0)
    x1, y1 = points[points[:, 2] > 0, :2].min(0) - 5
    x2, y2 = points[points[:, 2] > 0, :2].max(0) + 5
    return {"keypoints": points.tolist(), "box": [x1, y1, x2, y2], "image_size": [100, 100]}


def test_keypoints_perfect_predictions_score_one():
    rng = np.random.default_rng(0)
    refs = [_person(rng) for _ in range(5)]
    result = coco_keypoint_ap([r["keypoints"] for r in refs], refs)
    assert result["oks_ap"] == pytest.approx(1.0)
    assert result["oks_ap_50"] == pytest.approx(1.0)


def test_keypoints_hand_checked_oks():
    """One person shifted by d pixels: OKS = mean over labelled points of exp(-d^2 / (2 s^2 (2 sigma)^2))
    with s^2 the box area, and AP = the fraction of the ten thresholds 0.50..0.95 that OKS reaches."""
    ref = _person(np.random.default_rng(1))
    gt = np.asarray(ref["keypoints"])
    x1, y1, x2, y2 = ref["box"]
    area = (x2 - x1) * (y2 - y1)
    labelled = gt[:, 2] > 0
    d = 3.0
    pred = gt.copy()
    pred[labelled, 0] += d
    oks = np.exp(-(d**2) / (2 * area * (2 * COCO_SIGMAS[labelled]) ** 2)).mean()
    thresholds = np.linspace(0.5, 0.95, 10)
    assert np.abs(thresholds - oks).min() > 0.01, oks  # not on a threshold: the count is unambiguous
    result = coco_keypoint_ap([pred.tolist()], [ref])
    assert 0 < result["oks_ap"] < 1
    assert result["oks_ap"] == pytest.approx((thresholds <= oks).mean())
    # No prediction at all scores 0; a wrong number of keypoints is an error.
    assert coco_keypoint_ap([[]], [ref])["oks_ap"] == 0.0
    with pytest.raises(ValueError, match="17"):
        coco_keypoint_ap([pred[:5].tolist()], [ref])


def test_keypoints_agree_with_cocoeval_on_json_files(tmp_path):
    rng = np.random.default_rng(7)
    refs = [_person(rng) for _ in range(15)]
    preds, scores = [], rng.random(15).tolist()
    for ref in refs:
        p = np.asarray(ref["keypoints"])
        p[:, :2] += rng.normal(0, 4, (17, 2))
        preds.append(p.tolist())
    ours = coco_keypoint_ap(preds, refs, scores=scores)
    gt = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    results = []
    for i, (ref, pred) in enumerate(zip(refs, preds), start=1):
        x1, y1, x2, y2 = ref["box"]
        k = np.asarray(ref["keypoints"])
        gt["images"].append({"id": i, "width": 100, "height": 100})
        gt["annotations"].append(
            {"id": i, "image_id": i, "category_id": 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
             "keypoints": k.reshape(-1).tolist(), "num_keypoints": int((k[:, 2] > 0).sum()), "iscrowd": 0}
        )  # fmt: skip
        results.append(
            {"image_id": i, "category_id": 1, "keypoints": np.ravel(pred).tolist(), "score": scores[i - 1]}
        )
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    coco = COCO(str(tmp_path / "gt.json"))
    ev = COCOeval(coco, coco.loadRes(str(tmp_path / "dt.json")), "keypoints")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert 0.1 < ours["oks_ap"] < 0.95
    for name, value in zip(KEYPOINT_STATS, ev.stats):
        assert ours[name] == pytest.approx(value, abs=1e-9), name


# -- captioning: pycocoevalcap ------------------------------------------------------------------------
def test_caption_tokenisation():
    assert tokenize_caption("A dog's toy, isn't it?") == "a dog 's toy is n't it"
    assert (
        tokenize_caption('A "black-and-white" photo (of) 1,000 cats...')
        == "a black-and-white photo of 1,000 cats"
    )
    assert tokenize_caption("Two  people -- on a 3.5 m boat; nice!") == "two people on a 3.5 m boat nice"


def test_caption_perfect_predictions_score_maximum(monkeypatch):
    def no_subprocess(*args, **kwargs):
        raise AssertionError("caption scoring must not start a process (Java)")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    refs = [["a man riding a brown horse on the beach."], ["two cats sleeping on a red couch"]]
    result = caption_scores(
        ["A man riding a brown horse on the beach", "two cats sleeping on a red couch."], refs
    )
    assert result["bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert result["rouge_l"] == pytest.approx(1.0)
    assert result["cider"] == pytest.approx(10.0)  # CIDEr-D is x10: its maximum on identical captions


def test_caption_hand_checked_cases():
    # BLEU: every n-gram of the 5-word candidate is in the 8-word reference, so BLEU-n is the brevity
    # penalty exp(1 - 8 / 5); ROUGE-L: LCS 5, precision 1, recall 5/8, F with beta 1.2.
    result = caption_scores(["a b c d e"], [["a b c d e f g h"]])
    assert result["bleu_4"] == pytest.approx(math.exp(1 - 8 / 5), rel=1e-6)
    p, r, beta = 1.0, 5 / 8, 1.2
    assert result["rouge_l"] == pytest.approx((1 + beta**2) * p * r / (r + beta**2 * p))
    # CIDEr-D: a caption equal to its (only) reference scores 10, one sharing no n-gram with its
    # reference 0; the corpus score is the mean. ROUGE-L likewise 1 and 0.
    result = caption_scores(
        ["one two three four", "nine ten eleven twelve"], [["one two three four"], ["five six seven eight"]]
    )
    assert result["cider"] == pytest.approx(5.0)
    assert result["rouge_l"] == pytest.approx(0.5)


# -- text answers ------------------------------------------------------------------------------------
def test_vqa_accuracy_official_worked_cases():
    # Ten human answers, m of them matching: leave-one-out min(m'/3, 1) averaged over the 10 subsets.
    for m, expected in [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)]:
        answers = ["red"] * m + ["blue"] * (10 - m)
        assert vqa_answer_accuracy("red", answers) == pytest.approx(expected), m
    # 3 humans said "2", 7 "3": the prediction "two" normalises to "2".
    assert vqa_answer_accuracy("Two", ["2"] * 3 + ["3"] * 7) == pytest.approx(0.9)
    # One reference answer: exact match after normalisation.
    assert vqa_answer_accuracy("The dog.", ["dog"]) == 1.0
    assert vqa_answer_accuracy("dogs", ["dog"]) == 0.0
    assert vqa_accuracy(["yes", "no"], [["yes"], ["no"]]) == {"vqa_accuracy": 1.0}
    assert vqa_accuracy(["yes", "no", "red"], [["yes"], ["yes"], ["red"] * 2 + ["x"] * 8])[
        "vqa_accuracy"
    ] == (pytest.approx((1 + 0 + 0.6) / 3))


def test_vqa_answer_normalisation():
    assert normalize_vqa_answer("Two dogs.") == "2 dogs"
    assert normalize_vqa_answer("1,000") == "1000"
    assert normalize_vqa_answer("3.5") == "3.5"
    assert normalize_vqa_answer("Yes!") == "yes"
    assert normalize_vqa_answer("dont know") == "don't know"
    assert normalize_vqa_answer("an apple\n") == "apple"


def test_classification_accuracy():
    assert classification_accuracy(["cat", "dog"], ["cat", "dog"]) == {"accuracy": 1.0}
    assert classification_accuracy(["Cat ", "dog", "cow"], ["cat", "dog", "pig"]) == {
        "accuracy": pytest.approx(2 / 3)
    }
    with pytest.raises(ValueError, match="2 predictions for 1"):
        classification_accuracy(["a", "b"], ["a"])


def test_ocr_error_rates_are_case_sensitive():
    assert ocr_error_rates(["HOW cup  CAN"], ["HOW cup CAN"]) == {"cer": 0.0, "wer": 0.0, "exact_match": 1.0}
    wrong_case = ocr_error_rates(["how cup can", "map"], ["HOW cup CAN", "map"])
    assert wrong_case["cer"] == pytest.approx(6 / 14) and wrong_case["exact_match"] == 0.5
    assert wrong_case["wer"] == pytest.approx(2 / 4)
    assert ocr_error_rates([""], ["ab"])["cer"] == 1.0  # an empty reading deletes every character
    with pytest.raises(ValueError, match="references \\[0\\] are empty"):
        ocr_error_rates(["x"], ["  "])


def test_asr_error_rates():
    assert asr_error_rates(["The cat, sat."], ["the cat sat"]) == {"wer": 0.0, "cer": 0.0}
    # 1 substitution + 1 insertion over 3 words; characters: c->b and " down" inserted, over 11.
    result = asr_error_rates(["the bat sat down"], ["the cat sat"])
    assert result["wer"] == pytest.approx(2 / 3)
    assert result["cer"] == pytest.approx(6 / 11)
    # Corpus level: total edits over total reference words; an empty prediction is all deletions.
    assert asr_error_rates(["one two", ""], ["one two", "three four"])["wer"] == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="empty after normalisation"):
        asr_error_rates(["x"], ["?!"])


def test_span_exact_match():
    spans = [{"<extra_id_0>": "red", "<extra_id_1>": "on a"}]
    assert span_exact_match([{"<extra_id_0>": "red ", "<extra_id_1>": "on a"}], spans) == {
        "span_exact_match": 1.0,
        "example_exact_match": 1.0,
    }
    assert span_exact_match([{"<extra_id_0>": "red"}], spans) == {
        "span_exact_match": 0.5,
        "example_exact_match": 0.0,
    }


# -- regions -----------------------------------------------------------------------------------------
def test_grounding_accuracy():
    boxes = [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]]
    assert grounding_accuracy(boxes, boxes) == {"accuracy": 1.0, "mean_iou": 1.0}
    # IoU 50/150 (wrong), 60/100 (right), no box (wrong).
    result = grounding_accuracy([[5, 0, 15, 10], [0, 0, 10, 6], None], boxes)
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert result["mean_iou"] == pytest.approx((1 / 3 + 0.6 + 0) / 3)
    assert grounding_accuracy([[0, 0, 10, 5]], boxes[:1])["accuracy"] == 1.0  # IoU exactly 0.5 counts


def test_refseg_miou_and_ciou():
    a, b = np.zeros((6, 6), bool), np.zeros((6, 6), bool)
    a[0:2, 0:2] = True  # 4 pixels
    b[2:5, 2:6] = True  # 12 pixels
    assert refseg_iou([a, b], [mask_to_rle(a), mask_to_rle(b)]) == {"miou": 1.0, "ciou": 1.0}
    pa = np.zeros_like(a)
    pa[0, 0:2] = True  # 2 of a's 4 pixels: IoU 2/4
    pb = np.zeros_like(b)
    pb[3:6, 2:6] = True  # 8 of b's 12 pixels plus 4 outside: IoU 8/16
    pb2 = np.zeros_like(b)
    pb2[2:5, 4:6] = True  # 6 inside b: IoU 6/12
    result = refseg_iou([pa, pb], [a, b])
    assert result["miou"] == pytest.approx((2 / 4 + 8 / 16) / 2)
    assert result["ciou"] == pytest.approx((2 + 8) / (4 + 16))
    result = refseg_iou([pa, pb2, None], [a, b, b])  # a missing mask is empty: IoU 0, union 12
    assert result["miou"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert result["ciou"] == pytest.approx((2 + 6) / (4 + 12 + 12))
    with pytest.raises(ValueError, match="shape"):
        refseg_iou([np.zeros((3, 3), bool)], [a])


# -- audio -------------------------------------------------------------------------------------------
def test_mel_distance():
    noise = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    assert mel_distance([(noise, 16000)], [(noise, 16000)])["mel_l1_db"] == pytest.approx(0.0, abs=1e-4)
    # Halving the amplitude lowers every (unfloored) mel value by 20 log10(2) dB.
    assert log_mel_db(noise * 0.5, 16000).min() > DB_FLOOR
    result = mel_distance([(noise * 0.5, 16000)], [{"audio": noise, "sample_rate": 16000}])
    assert result["mel_l1_db"] == pytest.approx(20 * math.log10(2), rel=1e-3)

    # Both clips are resampled to 16 kHz first: the same tone recorded at 8 or 22.05 kHz is (nearly) equal.
    def tone(rate: int) -> np.ndarray:
        return (0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)).astype(np.float32)

    for rate in (8000, 22050):
        assert mel_distance([(tone(rate), rate)], [(tone(16000), 16000)])["mel_l1_db"] < 0.01
    # A missing clip is scored as silence.
    ref = log_mel_db(noise, 16000)
    result = mel_distance([None], [(noise, 16000)])
    assert result["missing"] == 1.0
    assert result["mel_l1_db"] == pytest.approx(np.abs(DB_FLOOR - ref).mean(), rel=1e-3)


# -- images ------------------------------------------------------------------------------------------
def _solid(value: int, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def _brightness_classifier(images):
    return ["bright" if image.mean() > 127 else "dark" for image in images]


def test_classifier_accuracy():
    images = [_solid(200), _solid(10)]
    assert classifier_accuracy(images, ["bright", "dark"], _brightness_classifier) == {
        "classifier_accuracy": 1.0,
        "missing": 0.0,
    }
    result = classifier_accuracy(
        [_solid(200), _solid(200), None], ["bright", "dark", "dark"], _brightness_classifier, batch_size=1
    )
    assert result == {"classifier_accuracy": pytest.approx(1 / 3), "missing": pytest.approx(1 / 3)}


class _MeanColour(torch.nn.Module):
    """A 3-d feature: the mean RGB of the image (FID on it is checkable by hand)."""

    num_features = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean(dim=(2, 3))


def test_fid_with_a_local_feature_module_and_never_downloads(tmp_path):
    rng = np.random.default_rng(0)
    real = [rng.integers(0, 200, (8, 8, 3)).astype(np.uint8) for _ in range(16)]
    assert frechet_inception_distance(real, real, feature=_MeanColour())["fid"] == pytest.approx(
        0.0, abs=1e-3
    )
    # Adding 10 to every pixel shifts every feature by 10 and keeps the covariance: FID = 3 * 10^2.
    shifted = [image + 10 for image in real]
    assert frechet_inception_distance(real, shifted, feature=_MeanColour())["fid"] == pytest.approx(
        300.0, rel=1e-4
    )
    with pytest.raises(ValueError, match="never"):
        frechet_inception_distance(real, shifted)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        frechet_inception_distance(real, shifted, inception_weights=tmp_path / "missing.pth")


def test_psnr():
    image = _solid(100)
    assert psnr([image], [image]) == {"psnr": 100.0, "missing": 0.0}
    # MSE 1 in uint8 units: 10 log10(255^2).
    assert psnr([_solid(101)], [image])["psnr"] == pytest.approx(10 * math.log10(255**2))
    assert psnr([None, image], [image, image]) == {"psnr": 50.0, "missing": 0.5}


# -- the uniform table ---------------------------------------------------------------------------------
def _perfect_cases() -> dict[str, tuple[list, list, dict]]:
    rng = np.random.default_rng(0)
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:5] = True
    person = _person(rng)
    noise = (rng.standard_normal(4000) * 0.1).astype(np.float32)
    image = rng.integers(0, 255, (8, 8, 3)).astype(np.uint8)
    detect_ref = {"boxes": [[1, 2, 30, 40]], "labels": ["circle"], "image_size": [50, 50]}
    captions = [["a red circle on a blue background"], ["two green squares next to a star"]]
    return {
        "caption": ([c[0] for c in captions], [{"references": c} for c in captions], {}),
        "region_caption": ([c[0] for c in captions], [{"references": c} for c in captions], {}),
        "vqa": (["red"], [{"answers": ["red"], "question": "what colour?"}], {}),
        "classify": (["circle"], [{"label": "circle"}], {}),
        "audio_classify": (["7"], [{"label": "7"}], {}),
        "detect": (
            [{"boxes": detect_ref["boxes"], "labels": ["circle"]}],
            [detect_ref],
            {"categories": ["circle"]},
        ),
        "ground": ([[1.0, 2.0, 3.0, 4.0]], [{"box": [1, 2, 3, 4], "expression": "it"}], {}),
        "refseg": ([mask], [{"mask": mask_to_rle(mask)}], {}),
        "keypoints": ([person["keypoints"]], [person], {}),
        "text_to_image": ([_solid(200)], [{"label": "bright"}], {"classifier": _brightness_classifier}),
        "asr": (["hello world"], [{"transcript": "Hello, world."}], {}),
        "ocr": (["HOW cup  CAN"], [{"text": "HOW cup CAN"}], {}),
        "tts": ([(noise, 16000)], [{"audio": noise, "sample_rate": 16000, "transcript": "hi"}], {}),
        "span_corruption": ([{"<extra_id_0>": "a"}], [{"spans": {"<extra_id_0>": "a"}}], {}),
        "masked_image": ([image], [{"image": image}], {}),
    }


MAXIMUM = {"cider": 10.0, "psnr": 100.0, "wer": 0.0, "cer": 0.0, "mel_l1_db": 0.0}


def test_metrics_cover_every_task():
    assert set(METRICS) == set(TASKS) == set(HEADLINE)
    assert set(_perfect_cases()) == set(TASKS)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_task_scores_its_maximum_on_perfect_predictions(task):
    predictions, references, context = _perfect_cases()[task]
    result = score(task, predictions, references, **context)
    assert result["examples"] == float(len(predictions))
    assert all(isinstance(v, float) for v in result.values()), result
    headline = HEADLINE[task]
    assert result[headline] == pytest.approx(MAXIMUM.get(headline, 1.0), abs=1e-4), result
    assert (headline in LOWER_IS_BETTER) == (headline in {"wer", "cer", "mel_l1_db"})


def test_scorer_errors_name_the_problem():
    with pytest.raises(KeyError, match="known tasks"):
        score("dance", [], [])
    with pytest.raises(KeyError, match="'answers'"):
        score("vqa", ["red"], [{"answer": "red"}])
    with pytest.raises(ValueError, match="classifier"):
        score("text_to_image", [_solid(1)], [{"label": "x"}])
