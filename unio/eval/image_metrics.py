"""Generated-image metrics: classifier accuracy (text-to-image), FID (torchmetrics, local weights only)
and PSNR (masked-image restoration).

Classifier accuracy: a text-to-image model prompted with a class (e.g. "the digit 7") should draw
something a classifier of that class recognises. The classifier is a small model that unio trains on
the same data's *real* images (so its accuracy on real images is the ceiling to compare with); this
module only takes it as a callable `classifier(images: list[HxWx3 uint8]) -> list[str]`, batched by
`batch_size`. Labels are compared like classification answers (case and whitespace insensitive).

FID: torchmetrics' `FrechetInceptionDistance`. It must never download weights, so:
- with `inception_weights` (a local path to the FID Inception v3 weights, `pt_inception-2015-12-05`
  as torch-fidelity names them), torchmetrics' standard 2048-d Inception features are used; this needs
  the `torch-fidelity` package (`pip install torch-fidelity`; not a unio dependency because it pulls
  in torchvision and scipy) and is the number comparable with published FIDs;
- with `feature` (any `torch.nn.Module` mapping a uint8 [N, 3, H, W] batch to [N, D] features, e.g.
  the classifier's penultimate layer) torchmetrics computes the Frechet distance on those features;
  numbers are then only comparable between runs using the same extractor;
- with neither, `frechet_inception_distance` raises instead of letting torchmetrics download.

PSNR (masked_image): 10 * log10(255^2 / MSE) of uint8 images, per image then averaged; identical
images are capped at 100 dB.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unio.eval.text_metrics import normalize_label

PSNR_CAP = 100.0


def classifier_accuracy(
    images: Sequence[np.ndarray | None],
    labels: Sequence[str],
    classifier: Callable[[list[np.ndarray]], Sequence[str]],
    batch_size: int = 64,
) -> dict[str, float]:
    """{"classifier_accuracy": fraction of generated images classified as their prompt's label,
    "missing": fraction with no image decoded (None, counted wrong)}."""
    if len(images) != len(labels) or not labels:
        raise ValueError(f"classifier_accuracy: {len(images)} images for {len(labels)} labels")
    present = [i for i, image in enumerate(images) if image is not None]
    predicted: dict[int, str] = {}
    for start in range(0, len(present), batch_size):
        chunk = present[start : start + batch_size]
        out = list(classifier([np.asarray(images[i]) for i in chunk]))
        if len(out) != len(chunk):
            raise ValueError(f"classifier returned {len(out)} labels for a batch of {len(chunk)} images")
        predicted.update(zip(chunk, out))
    correct = sum(normalize_label(predicted[i]) == normalize_label(labels[i]) for i in present)
    return {
        "classifier_accuracy": correct / len(labels),
        "missing": (len(labels) - len(present)) / len(labels),
    }


def _batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    arrays = [np.asarray(image) for image in images]
    for i, a in enumerate(arrays):
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise ValueError(f"FID image {i}: need HxWx3 uint8, got shape {a.shape} dtype {a.dtype}")
    if len({a.shape for a in arrays}) != 1:
        raise ValueError(f"FID images must share one size, got {sorted({a.shape for a in arrays})}")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def frechet_inception_distance(
    real: Sequence[np.ndarray],
    generated: Sequence[np.ndarray],
    inception_weights: str | Path | None = None,
    feature: torch.nn.Module | None = None,
    batch_size: int = 64,
) -> dict[str, float]:
    """{"fid": ...} of generated vs real HxWx3 uint8 images (each set one size, >= 2 images) with
    torchmetrics, using local Inception weights or a given feature module (module docstring); never
    downloads."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(generated) < 2:
        raise ValueError(
            f"FID needs at least 2 real and 2 generated images, got {len(real)} and {len(generated)}"
        )
    if feature is not None:
        metric = FrechetInceptionDistance(feature=feature)
    elif inception_weights is not None:
        path = Path(inception_weights)
        if not path.is_file():
            raise FileNotFoundError(f"FID: Inception weights file {str(path)!r} does not exist")
        try:
            import torch_fidelity  # noqa: F401
        except ImportError as err:
            raise ModuleNotFoundError(
                "FID with Inception weights needs the torch-fidelity package (pip install torch-fidelity)"
            ) from err
        metric = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(path))
    else:
        raise ValueError(
            "FID needs local Inception v3 weights (inception_weights=<path to pt_inception-2015-12-05 .pth>) "
            "or a feature module (feature=...); unio never lets torchmetrics download them"
        )
    with torch.no_grad():
        for images, is_real in ((real, True), (generated, False)):
            for start in range(0, len(images), batch_size):
                metric.update(_batch(images[start : start + batch_size]), real=is_real)
        return {"fid": float(metric.compute())}


def psnr(predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
    """{"psnr": mean per-image PSNR in dB (uint8 range, capped at 100), "missing": fraction None}.
    A missing prediction scores 0 dB."""
    if len(predictions) != len(references) or not references:
        raise ValueError(f"psnr: {len(predictions)} predictions for {len(references)} references")
    values, missing = [], 0
    for i, (pred, ref) in enumerate(zip(predictions, references)):
        if pred is None:
            missing += 1
            values.append(0.0)
            continue
        p, r = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
        if p.shape != r.shape:
            raise ValueError(f"psnr: prediction {i} has shape {p.shape}, reference {r.shape}")
        mse = float(np.mean((p - r) ** 2))
        values.append(PSNR_CAP if mse == 0 else min(PSNR_CAP, 10.0 * np.log10(255.0**2 / mse)))
    return {"psnr": float(np.mean(values)), "missing": missing / len(references)}
