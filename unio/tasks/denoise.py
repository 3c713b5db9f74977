"""Self-supervised denoising objectives, in the spirit of Unified-IO 2's mixture of denoisers.

    span_corruption  <to_text> "Fill in the missing spans." "a red <extra_id_0> on a <extra_id_1> background."
                     -> <extra_id_0> "circle" <extra_id_1> "plain" <eos>
    masked_image     <to_image> "Restore the corrupted image." <image> patches, some blanked </image>
                     -> <image> original codes </image> <eos>

Span corruption works on words (whitespace-separated), not SentencePiece pieces, so the input and
the spans are readable text and join back into the original exactly: replace each sentinel in the
input by its span. As in T5, about `noise_density` of the words are masked in spans of mean length
`mean_span_length`, and spans alternate with kept text starting with kept text.

Masked image modelling hides a random `mask_ratio` of the image tokenizer's code cells and asks for
the whole original grid of codes. With patch inputs (the default, as every image input: issue #12) the
visible context is the image with the hidden cells' pixels set to mid-grey (`blank_cells`; the grey
is 0 after the stem's input scaling, as MAE's removed patches contribute nothing); with
``input_repr: codes`` the hidden cells' codes are replaced by random codes (the vocabulary has no
per-cell mask token, and a random code is what BERT-style corruption does).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from unio import grammar as grammars
from unio.sequence import ImageCodes, Segment, Special, Text
from unio.tasks.base import Example, Task, pick
from unio.tasks.bundle import Tokenizers
from unio.vocab import sentinel_token


def text_of(record: Any, rng: random.Random, train: bool) -> str | None:
    """Some text a record carries: a caption, else its transcript, else a question and its answer."""
    if record.captions:
        return pick(record.captions, rng, train)
    if record.transcript:
        return record.transcript
    if record.qa:
        question, answer = pick(record.qa, rng, train)
        return f"{question} {answer}"
    return None


def _partition(total: int, parts: int, rng: random.Random) -> list[int]:
    """`total` split into `parts` positive integers, uniformly over compositions."""
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total])]


def corrupt_spans(
    text: str, rng: random.Random, noise_density: float, mean_span_length: float, max_spans: int
) -> tuple[list[Segment], list[Segment]] | None:
    """(input segments, target segments) or None when the text has fewer than two words."""
    lead = text[: len(text) - len(text.lstrip())]
    words = re.findall(r"\S+\s*", text[len(lead) :])
    n = len(words)
    if n < 2:
        return None
    num_noise = min(max(1, round(n * noise_density)), n - 1)
    num_spans = max(1, min(round(num_noise / mean_span_length), n - num_noise, max_spans, num_noise))
    noise_lengths = _partition(num_noise, num_spans, rng)
    keep_lengths = _partition(n - num_noise, num_spans, rng)
    inputs: list[Segment] = []
    targets: list[Segment] = []
    kept = lead
    i = 0
    for s, (keep, noise) in enumerate(zip(keep_lengths, noise_lengths)):
        kept += "".join(words[i : i + keep])
        i += keep
        span = "".join(words[i : i + noise])
        i += noise
        stripped = span.rstrip()
        inputs += [Text(kept), Special(sentinel_token(s))]
        targets += [Special(sentinel_token(s)), Text(stripped)]
        kept = span[len(stripped) :]  # the span's trailing whitespace stays in the input
    if kept:
        inputs.append(Text(kept))
    return [s for s in inputs if not (isinstance(s, Text) and not s.text)], targets


def fill_spans(input_segments: list[Segment], spans: dict[str, str]) -> str:
    """The original text: every sentinel of the corrupted input replaced by its span."""
    parts = []
    for seg in input_segments:
        if isinstance(seg, Text):
            parts.append(seg.text)
        elif isinstance(seg, Special) and seg.token in spans:
            parts.append(spans[seg.token])
    return "".join(parts)


@dataclass(frozen=True)
class SpanCorruptionTask(Task):
    name: str = "span_corruption"
    prompts: tuple[str, ...] = (
        "Fill in the missing spans.",
        "Restore the masked words.",
        "Complete the text.",
    )
    eval_prompt: str = "Fill in the missing spans."
    noise_density: float = 0.15
    mean_span_length: float = 3.0
    max_spans: int = 100  # at most the vocabulary's sentinel count
    metric: ClassVar[str] = "span_exact_match"
    condition: ClassVar[str | None] = None  # its input is the corrupted text itself (no raw-input form)

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        text = text_of(record, rng, train)
        if text is None:
            return None
        corrupted = corrupt_spans(
            text, rng, self.noise_density, self.mean_span_length, min(self.max_spans, tok.vocab.num_sentinels)
        )
        if corrupted is None:
            return None
        inputs, targets = corrupted
        spans = {t.token: n.text for t, n in zip(targets[::2], targets[1::2])}
        return Example(
            [self.prefix(), Text(self.prompt(rng, train) + " "), *inputs],
            targets,
            {"spans": spans, "text": text},
        )

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        count = min(self.max_spans, tok.vocab.num_sentinels)
        return grammars.free_text(tok.codec, specials=[sentinel_token(i) for i in range(count)])

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> dict[str, str]:
        """Sentinel name -> the text that follows it in the output."""
        spans: dict[str, str] = {}
        current = None
        for seg in segments:
            if isinstance(seg, Special) and seg.token.startswith("<extra_id_"):
                current = seg.token
                spans[current] = ""
            elif isinstance(seg, Text) and current is not None:
                spans[current] += seg.text
        return spans


MASK_FILL = 128  # masked pixels: mid-grey, i.e. 0 after the stems' [-1, 1] input scaling


def blank_cells(pixels: np.ndarray, cells: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """`pixels` (HxWx3 uint8) with the regions of the code cells `cells` (row-major indices into a
    `grid` of rows x cols over the whole image) set to `MASK_FILL`: the visible context of masked-image
    modelling as a patch input. Cell edges are rounded, so any grid fits any image size."""
    height, width = pixels.shape[:2]
    rows, cols = grid
    out = pixels.copy()
    for cell in np.asarray(cells).tolist():
        r, c = divmod(int(cell), cols)
        out[r * height // rows : (r + 1) * height // rows, c * width // cols : (c + 1) * width // cols] = (
            MASK_FILL
        )
    return out


@dataclass(frozen=True)
class MaskedImageTask(Task):
    name: str = "masked_image"
    prompts: tuple[str, ...] = (
        "Restore the corrupted image.",
        "Repair the image.",
        "Fill in the damaged parts of the image.",
    )
    eval_prompt: str = "Restore the corrupted image."
    mask_ratio: float = 0.5
    target_modality: ClassVar[str] = "image"
    metric: ClassVar[str] = "psnr"
    uses: ClassVar[tuple[str, ...]] = ("image",)
    patch_inputs: ClassVar[bool] = True  # the visible context as pixels, the masked cells blanked

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(
                f"task {self.name!r}: field 'mask_ratio' must be in (0, 1), got {self.mask_ratio}"
            )

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        if record.image is None:
            return None
        codes = tok.image_codes(record)
        generator = np.random.default_rng(rng.getrandbits(64))
        count = max(1, round(self.mask_ratio * codes.numel()))
        cells = generator.choice(codes.numel(), size=count, replace=False)
        pixels = None
        if self.input_repr == "patches":
            visual, pixels = self.image_input(record, tok)
            pixels = blank_cells(pixels, cells, tuple(codes.shape))
        else:
            corrupted = codes.clone().reshape(-1)
            corrupted[torch.from_numpy(cells)] = torch.from_numpy(
                generator.integers(0, tok.image.codebook_size, size=count)
            ).long()
            visual = ImageCodes(corrupted.reshape(codes.shape))
        inputs = [self.prefix(), Text(self.prompt(rng, train)), visual]
        meta = {"masked_cells": sorted(int(c) for c in cells)}
        return Example(inputs, [ImageCodes(codes)], meta, image=pixels)

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> np.ndarray | None:
        codes = next((s for s in segments if isinstance(s, ImageCodes)), None)
        return tok.decode_image(codes.codes) if codes is not None else None

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        return grammars.grid(tok.codec, "image")
