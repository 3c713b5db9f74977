"""Pictures of tokenizer reconstructions, shared by training (samples/step_*.png) and evaluation
(reconstructions.png), so that neither depends on the other. Only torch, numpy, pillow (and
matplotlib for spectrograms); no other unio module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def preview_picture(tokenizer: Any, target: Tensor, recon: Tensor, n: int = 8) -> Image.Image:
    """Originals (top) vs reconstructions (bottom) of the first `n` items; masks as overlays (red =
    target only, green = reconstruction only, yellow = both); spectrograms as heat maps.

    `tokenizer` is anything with a `kind` ("image" | "mask" | "audio"), or that kind as a string.
    Images are [B, 3, H, W] in [-1, 1], masks [B, 1, H, W] (reconstructions as logits), spectrograms
    [B, 1, F, T] in [-1, 1]."""
    kind = tokenizer if isinstance(tokenizer, str) else tokenizer.kind
    target, recon = target[:n].detach().float().cpu(), recon[:n].detach().float().cpu()
    if kind == "image":
        rows = [((torch.cat(list(t), dim=2) + 1) * 127.5).clamp(0, 255) for t in (target, recon)]
        grid = torch.cat(rows, dim=1).permute(1, 2, 0).round().byte().numpy()
        return Image.fromarray(grid)
    if kind == "mask":
        pred = (torch.sigmoid(recon) > 0.5).float()
        rgb = torch.stack([target[:, 0], pred[:, 0], torch.zeros_like(pred[:, 0])], dim=1)
        grid = torch.cat(list(rgb), dim=2).permute(1, 2, 0).mul(255).byte().numpy()
        return Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST)
    if kind != "audio":
        raise ValueError(f"preview_picture: unknown tokenizer kind {kind!r}; expected image, mask or audio")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(4, target.shape[0])
    fig, axes = plt.subplots(2, count, figsize=(3 * count, 5), squeeze=False)
    for i in range(count):
        for row, (spec, title) in enumerate(((target[i, 0], "original"), (recon[i, 0], "reconstruction"))):
            axes[row][i].imshow(spec.numpy(), origin="lower", aspect="auto", vmin=-1, vmax=1, cmap="magma")
            axes[row][i].set_title(title, fontsize=8)
            axes[row][i].axis("off")
    fig.tight_layout()
    fig.canvas.draw()
    picture = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    return picture
