"""Rendered text: generated images of words for OCR (the `ocr` task), drawn with Pillow's built-in
font, so nothing is downloaded and every record is reproducible from (seed, split, index).

Each image holds one or two lines of one to `max_words_per_line` words, drawn in a random dark or light
colour on a contrasting plain or noisy background at a random size and position. A record carries:

- `transcript`: the text in reading order (lines top to bottom, words left to right, one space
  between words and lines): what `ocr` reads;
- `objects`: one per word, category ``"text"``, its box (the inked pixels) and
  ``attributes["text"]`` (the word), the layout Florence-2's ``<OCR_WITH_REGION>`` returns.

Words come from a fixed list of common English words plus numbers, in lower case, Capitalised or
UPPER case (`cases`), so a tokenizer trained on ordinary text covers them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from unio.data.record import Object, Record
from unio.data.sources.base import Source

WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by "
    "word but not what all were we when your can said there use an each which she do how their if will up "
    "other about out many then them these so some her would make like him into time has look two more write "
    "go see number no way could people my than first water been call who oil its now find long down day did "
    "get come made may part open stop red blue green cat dog sun map box key cup"
).split()
CASES = ("lower", "title", "upper")


@dataclass
class RenderedTextConfig:
    num_records: int = 10000
    seed: int = 0
    split: str = "train"  # different splits draw from different random streams
    image_size: int = 64  # square images, pixels per side
    max_lines: int = 2
    max_words_per_line: int = 2
    font_sizes: list[int] = field(default_factory=lambda: [11, 13, 15])  # pixels; Pillow's built-in font
    numbers: float = 0.15  # chance that a word is a number (1-3 digits) instead of a listed word
    cases: list[str] = field(default_factory=lambda: list(CASES))
    on_bad_sample: str = "raise"  # generated images are never bad; kept so every source config has it


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)  # Pillow's embedded font: no file, no download


class RenderedTextSource(Source):
    kind = "rendered_text"

    def __init__(self, config: RenderedTextConfig) -> None:
        super().__init__(config.on_bad_sample, f"seed={config.seed} split={config.split}")
        unknown = sorted(set(config.cases) - set(CASES))
        if unknown or not config.cases:
            raise ValueError(
                f"rendered_text: config field 'cases': unknown or empty {unknown}; known: {CASES}"
            )
        if config.image_size < 32:
            raise ValueError(
                f"rendered_text: config field 'image_size' must be >= 32, got {config.image_size}"
            )
        if config.max_lines < 1 or config.max_words_per_line < 1:
            raise ValueError(
                "rendered_text: config fields 'max_lines' and 'max_words_per_line' must be >= 1, got "
                f"{config.max_lines}, {config.max_words_per_line}"
            )
        if not config.font_sizes or min(config.font_sizes) < 6:
            raise ValueError(
                f"rendered_text: config field 'font_sizes' must be sizes >= 6, got {config.font_sizes}"
            )
        if not 0.0 <= config.numbers <= 1.0:
            raise ValueError(f"rendered_text: config field 'numbers' must be in [0, 1], got {config.numbers}")
        self.config = config
        self._index = range(config.num_records)
        self._split_key = zlib.crc32(config.split.encode())

    def _word(self, rng: np.random.Generator) -> str:
        cfg = self.config
        if rng.random() < cfg.numbers:
            return str(int(rng.integers(0, 1000)))
        word = WORDS[rng.integers(len(WORDS))]
        case = cfg.cases[rng.integers(len(cfg.cases))]
        return word.upper() if case == "upper" else word.title() if case == "title" else word

    def load(self, index: int) -> Record:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self._split_key, index])
        size = cfg.image_size
        light = bool(rng.random() < 0.5)  # light background with dark ink, or the reverse
        paper = rng.integers(170, 256, 3) if light else rng.integers(0, 86, 3)
        ink = rng.integers(0, 86, 3) if light else rng.integers(170, 256, 3)
        font = _font(int(cfg.font_sizes[rng.integers(len(cfg.font_sizes))]))
        lines: list[list[str]] = []
        fits = lambda words: font.getlength(" ".join(words)) <= size - 2  # noqa: E731
        for _ in range(int(rng.integers(1, cfg.max_lines + 1))):
            first = self._word(rng)
            line = [first if fits([first]) else first[: max(1, len(first) // 2)]]  # never past the edge
            for _ in range(int(rng.integers(0, cfg.max_words_per_line))):
                word = self._word(rng)
                if fits([*line, word]):  # a word that would cross the edge is left out
                    line.append(word)
            lines.append(line)
        ascent, descent = font.getmetrics()
        line_height = ascent + descent
        block_height = line_height * len(lines)
        top = int(rng.integers(0, max(1, size - block_height + 1)))
        ink_rgb = tuple(int(c) for c in ink)
        canvas = Image.new("RGB", (size, size), tuple(int(c) for c in paper))
        draw = ImageDraw.Draw(canvas)
        placed: list[tuple[str, tuple[int, int, int, int]]] = []
        space = font.getlength(" ")
        for row, line in enumerate(lines):
            width = font.getlength(" ".join(line))
            x = float(rng.integers(0, max(1, int(size - width) + 1)))
            y = top + row * line_height
            for word in line:
                draw.text((x, y), word, fill=ink_rgb, font=font)
                placed.append((word, draw.textbbox((x, y), word, font=font)))
                x += font.getlength(word) + space
        image = np.asarray(canvas, dtype=np.int16)
        image = image + rng.integers(-8, 9, image.shape)  # sensor noise, so glyph edges are not exact
        image = np.clip(image, 0, 255).astype(np.uint8)
        objects = []
        for word, (x1, y1, x2, y2) in placed:
            box = np.clip(np.array([x1, y1, x2, y2], dtype=np.float32), 0, size)
            objects.append(Object(box=box, category="text", attributes={"text": word}))
        transcript = " ".join(word for line in lines for word in line)
        return Record(
            id=f"rendered_text/{cfg.split}/{index}",
            source=f"rendered_text seed={cfg.seed}",
            image=image,
            objects=objects,
            transcript=transcript,
            meta={"split": cfg.split},
        )
