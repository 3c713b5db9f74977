"""Image dependence: how much a model's output distribution changes when its input image is swapped
for another scene's (issue #12). The probes and the input comparison both report it; 0 means the
output ignores the image, 1 means the two distributions share no mass."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from unio.data.collate import IGNORE_INDEX
from unio.model.transformer import UnifiedTransformer


@torch.no_grad()
def total_variation(
    model: UnifiedTransformer, own: Mapping[str, Tensor], swapped: Mapping[str, Tensor]
) -> tuple[float, int]:
    """(sum, count) over the real targets of `own` of the total variation between the teacher-forced
    next-token distributions given `own` and given `swapped`: two collated batches with the same
    targets, the second with other images. A sum and a count, so batches add up to one mean."""
    if not torch.equal(own["targets"], swapped["targets"]):
        raise ValueError("image dependence: the swapped batch must have the same targets as its own batch")
    p = model.forward_batch(own).float().softmax(-1)
    q = model.forward_batch(swapped).float().softmax(-1)
    real = own["targets"] != IGNORE_INDEX
    tv = 0.5 * (p - q).abs().sum(-1)
    return float(tv[real].sum()), int(real.sum())
