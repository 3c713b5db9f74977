"""The small image classifier behind text-to-image `classifier_accuracy` (unio/eval/image_metrics.py).

`train_image_classifier(images, labels)` fits a 3-layer CNN on the evaluated dataset's *real* images
(the originals of the text_to_image examples, with their class labels), resized to 32x32, full batch,
deterministic (seeded, CPU). Its accuracy on those real images (`real_accuracy`, reported beside the
metric) is the ceiling a perfect generator would reach: generated images are judged by what the data's
own images look like to it, nothing downloaded. Numbers are comparable between checkpoints evaluated
on the same data (same images, same seed), not across datasets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

SIZE = 32


def _tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    resized = [
        np.asarray(Image.fromarray(np.asarray(i, dtype=np.uint8)).convert("RGB").resize((SIZE, SIZE)))
        for i in images
    ]
    return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


class ImageClassifier(nn.Module):
    def __init__(self, classes: list[str]) -> None:
        super().__init__()
        self.classes = list(classes)
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(32, len(classes)),
        )  # fmt: skip
        self.real_accuracy = float("nan")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def __call__(self, images: list[np.ndarray]) -> list[str]:  # type: ignore[override]
        """HxWx3 uint8 images -> predicted class names (the `classifier` of classifier_accuracy)."""
        self.eval()
        index = self.net(_tensor(images)).argmax(dim=1).tolist()
        return [self.classes[i] for i in index]


def train_image_classifier(
    images: Sequence[np.ndarray], labels: Sequence[str], steps: int = 300, seed: int = 0
) -> ImageClassifier:
    """Fit the classifier on real images (see the module docstring); needs at least two classes."""
    if len(images) != len(labels) or not images:
        raise ValueError(f"train_image_classifier: {len(images)} images for {len(labels)} labels")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"train_image_classifier: needs at least two classes, got {classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ImageClassifier(classes)
        x = _tensor(images)
        y = torch.tensor([classes.index(label) for label in labels])
        optimizer = torch.optim.Adam(model.net.parameters(), lr=3e-3)
        model.train()
        for _ in range(steps):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model.net(x), y)
            loss.backward()
            optimizer.step()
    predicted = model(list(images))
    model.real_accuracy = float(np.mean([p == t for p, t in zip(predicted, labels)]))
    return model
