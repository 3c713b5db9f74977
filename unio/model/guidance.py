"""Classifier-free guidance: the null condition, and condition dropout for training.

Guidance needs the model to know p(target | nothing). During training a fraction
(`ModelConfig.condition_dropout`) of rows get their encoder input replaced by the *null condition*,
a single ``null`` token (``<unk>`` by default, which real text never produces since the text
tokenizer has byte fallback). At generation the conditional rows and as many null-condition rows are
decoded in one batch and mixed as ``uncond + scale * (cond - uncond)`` (see generate.py).

Patch inputs: the null condition has no image and no audio. A dropped row loses its placeholder spans,
so `drop_condition` also removes that row's images from ``input_images`` and its spectrograms from
``input_audio`` (the model fills placeholders in row-major order and needs exactly one input per span).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from unio.vocab import MODALITIES, Vocabulary

TEXT_MODALITY = MODALITIES.index("text")
IMAGE_KEY = "input_images"  # = unio.model.transformer.IMAGE_KEY
AUDIO_KEY = "input_audio"  # = unio.model.transformer.AUDIO_KEY
PLACEHOLDERS = {IMAGE_KEY: "<image>", AUDIO_KEY: "<audio>"}  # batch key -> placeholder token


def images_per_row(batch: Mapping[str, Tensor], vocab: Vocabulary, placeholder: str = "<image>") -> Tensor:
    """LongTensor[B]: how many images (placeholder spans) each row's encoder input holds; with
    ``placeholder="<audio>"`` the audio clips. A span starts at its (row 0, col 0) placeholder: id
    ``placeholder`` with row 0 and col 0 (a bracket has row -1)."""
    starts = (batch["input_ids"] == vocab.token_id(placeholder)) & (batch["input_row"] == 0)
    starts &= batch["input_col"] == 0
    if "input_mask" in batch:
        starts &= batch["input_mask"]
    return starts.sum(dim=1)


def null_condition(
    batch_size: int, vocab: Vocabulary, null_token: str = "<unk>", device: torch.device | str = "cpu"
) -> dict[str, Tensor]:
    """Encoder inputs of `batch_size` rows holding only the null token."""
    shape = (batch_size, 1)
    long = lambda value: torch.full(shape, value, dtype=torch.long, device=device)  # noqa: E731
    return {
        "input_ids": long(vocab.token_id(null_token)),
        "input_modality": long(TEXT_MODALITY),
        "input_position": long(0),
        "input_row": long(-1),
        "input_col": long(-1),
        "input_mask": torch.ones(shape, dtype=torch.bool, device=device),
    }


def drop_condition(
    batch: Mapping[str, Tensor],
    prob: float,
    vocab: Vocabulary,
    null_token: str = "<unk>",
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Return a copy of `batch` where each row's encoder input is, with probability `prob`, replaced by
    the null condition (null token first, the rest masked out), and the images / spectrograms of the
    dropped rows are removed from ``input_images`` / ``input_audio`` (a key is dropped when none is
    left). Targets are untouched."""
    if not 0.0 <= prob < 1.0:
        raise ValueError(f"drop_condition: prob must be in [0, 1), got {prob}")
    out = dict(batch)
    ids = batch["input_ids"]
    if prob == 0.0:
        return out
    drop = torch.rand(ids.shape[0], generator=generator, device="cpu").to(ids.device) < prob
    if not bool(drop.any()):
        return out
    first = torch.zeros_like(ids, dtype=torch.bool)
    first[:, 0] = True
    rows = drop[:, None]
    for key, placeholder in PLACEHOLDERS.items():
        if key not in batch:
            continue
        keep = torch.repeat_interleave(~drop, images_per_row(batch, vocab, placeholder).to(drop.device))
        if keep.numel() != batch[key].shape[0]:
            raise ValueError(
                f"drop_condition: the batch has {batch[key].shape[0]} {key} but {keep.numel()} "
                f"{placeholder} placeholder spans"
            )
        if bool(keep.any()):
            out[key] = batch[key][keep.to(batch[key].device)]
        else:
            del out[key]
    out["input_ids"] = torch.where(rows, torch.where(first, vocab.token_id(null_token), vocab.pad_id), ids)
    out["input_modality"] = torch.where(rows, TEXT_MODALITY, batch["input_modality"])
    out["input_position"] = torch.where(rows, 0, batch["input_position"])
    out["input_row"] = torch.where(rows, -1, batch["input_row"])
    out["input_col"] = torch.where(rows, -1, batch["input_col"])
    out["input_mask"] = torch.where(rows, first, batch["input_mask"])
    return out
