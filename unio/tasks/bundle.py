"""`Tokenizers`: every tokenizer a task needs, in one holder built once at the entry point.

Tasks receive this bundle instead of loose tokenizers. It owns the `SequenceCodec` (built from the
vocabulary, the text tokenizer and the grid shapes of the VQ tokenizers), the pixel <-> code plumbing
for images, masks and audio, and the fingerprints that key pretokenized caches (`fingerprints(uses)`:
vocabulary, text and coordinate tokenizers plus the VQ tokenizers a task uses, so changing the mask
tokenizer invalidates refseg caches but not caption caches).

Geometry convention: an image is *stretched* to the image tokenizer's input size (no crop, no padding),
so normalised coordinates are the same in the original and in the tokenized image. Coordinate bins are
therefore computed against the record's own (width, height) and parsed back with it; masks are resized
to the mask tokenizer's input size and decoded back to the original size.

VQ tokenizers are any objects with the `GridTokenizer` interface of unio/tokenizers/vq.py:
`encode(batch) -> LongTensor[B, h, w]`, `decode(codes)`, `codebook_size`, `grid_shape`, `input_size`,
`fingerprint`. A bundle may lack some of them; tasks that need a missing one say so by name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from unio.sequence import SequenceCodec
from unio.tokenizers.builtin_text import builtin_corpus
from unio.tokenizers.coords import CoordConfig, CoordTokenizer
from unio.tokenizers.text import TextTokenizer, TextTokenizerConfig
from unio.vocab import Vocabulary

GRID_TOKENIZERS = ("image", "mask", "audio")
ENCODE_BATCH = 64  # images per VQ encoder call when encoding many records


class GridTokenizerLike(Protocol):
    codebook_size: int
    grid_shape: tuple[int, int]
    input_size: tuple[int, int]
    fingerprint: str

    def encode(self, batch: Any) -> torch.Tensor: ...

    def decode(self, codes: torch.Tensor) -> Any: ...


@dataclass
class GridTokenizerConfig:
    """Where a VQ tokenizer comes from: a saved directory (`path`, from unio-train-tokenizer), or a tiny
    randomly initialised one (`tiny_seed`, for tests and smoke runs; never for real training). `path`
    wins when both are set, so `tokenizers.image.path=...` alone switches a tiny default to a real one."""

    path: str | None = None
    tiny_seed: int | None = None


@dataclass
class TokenizersConfig:
    text: str | None = None  # SentencePiece .model file; None = train a small one on the built-in corpus
    text_vocab_size: int = 1000  # only for the built-in one
    coord_bins: int = 1000
    image: GridTokenizerConfig = field(default_factory=GridTokenizerConfig)
    mask: GridTokenizerConfig = field(default_factory=GridTokenizerConfig)
    audio: GridTokenizerConfig = field(default_factory=GridTokenizerConfig)
    num_sentinels: int = 100


# Tiny VQ configs: ~20k parameters, 4x4 (image, mask) and 2x8 (audio, 1.024 s at 8 kHz) code grids.
_TINY_AUTOENCODER = {
    "downsample": 8,
    "space_to_depth": 2,
    "channels": 8,
    "channel_mult": [1, 1, 1],
    "num_res_blocks": 1,
    "latent_dim": 8,
    "quantizer": {"kind": "vq", "codebook_size": 64, "kmeans_init": False},
}
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "image": {"resolution": 32, "autoencoder": {**_TINY_AUTOENCODER, "in_channels": 3, "out_channels": 3}},
    "mask": {"resolution": 32, "autoencoder": {**_TINY_AUTOENCODER, "in_channels": 1, "out_channels": 1}},
    "audio": {
        "audio": {"sample_rate": 8000, "n_fft": 256, "hop_length": 128, "n_mels": 16, "num_frames": 64},
        "autoencoder": {**_TINY_AUTOENCODER, "in_channels": 1, "out_channels": 1},
    },
}


def tiny_grid_tokenizer(kind: str, seed: int) -> GridTokenizerLike:
    """A randomly initialised tiny VQ tokenizer (deterministic given the seed)."""
    from unio.tokenizers.saved import build_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_tokenizer(kind, TINY_CONFIGS[kind]).eval()


def load_grid_tokenizer(kind: str, cfg: GridTokenizerConfig) -> GridTokenizerLike | None:
    if cfg.path:  # a path wins over tiny_seed: one override switches a tiny default to a real tokenizer
        from unio.tokenizers.saved import from_pretrained

        tok = from_pretrained(cfg.path)
        if tok.kind != kind:
            raise ValueError(
                f"tokenizers.{kind}.path={cfg.path} holds a {tok.kind} tokenizer, not a {kind} one"
            )
        return tok
    if cfg.tiny_seed is not None:
        return tiny_grid_tokenizer(kind, cfg.tiny_seed)
    return None


@dataclass
class Tokenizers:
    """The tokenizer bundle. Build it with `Tokenizers.create(...)`, which sizes the vocabulary from the
    tokenizers, or pass a matching `vocab` yourself."""

    vocab: Vocabulary
    text: TextTokenizer
    coords: CoordTokenizer
    image: GridTokenizerLike | None = None
    mask: GridTokenizerLike | None = None
    audio: GridTokenizerLike | None = None
    codec: SequenceCodec = field(init=False)
    _fingerprints: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.coords.num_bins != self.vocab.segment_size("coord"):
            raise ValueError(
                f"coordinate tokenizer has {self.coords.num_bins} bins but the vocabulary's coord segment "
                f"holds {self.vocab.segment_size('coord')}"
            )
        for name in GRID_TOKENIZERS:
            tok = getattr(self, name)
            if tok is not None and tok.codebook_size > self.vocab.segment_size(name):
                raise ValueError(
                    f"{name} tokenizer has {tok.codebook_size} codes but the vocabulary's {name} segment "
                    f"holds {self.vocab.segment_size(name)}"
                )
        shapes = {
            n: tuple(getattr(self, n).grid_shape) for n in GRID_TOKENIZERS if getattr(self, n) is not None
        }
        self.codec = SequenceCodec(self.vocab, self.text, shapes)
        # Hashing VQ weights is not free: compute every fingerprint once.
        self._fingerprints = {
            "vocab": self.vocab.fingerprint,
            "text": self.text.fingerprint,
            "coords": hashlib.sha256(json.dumps(_coord_config(self.coords)).encode()).hexdigest()[:16],
            **{
                n: (getattr(self, n).fingerprint if getattr(self, n) is not None else "none")
                for n in GRID_TOKENIZERS
            },
        }

    @classmethod
    def create(
        cls,
        text: TextTokenizer,
        coords: CoordTokenizer | None = None,
        image: GridTokenizerLike | None = None,
        mask: GridTokenizerLike | None = None,
        audio: GridTokenizerLike | None = None,
        num_sentinels: int = 100,
    ) -> Tokenizers:
        """Bundle with the default vocabulary layout sized from the tokenizers. A VQ tokenizer that is not
        loaded keeps its segment at the default size, so the ids of the others do not move."""
        coords = coords or CoordTokenizer(CoordConfig())
        defaults = Vocabulary.default()
        sizes = {
            n: (tok.codebook_size if tok is not None else defaults.segment_size(n))
            for n, tok in (("image", image), ("mask", mask), ("audio", audio))
        }
        vocab = Vocabulary.default(
            text_size=text.vocab_size,
            coord_bins=coords.num_bins,
            image_codes=sizes["image"],
            mask_codes=sizes["mask"],
            audio_codes=sizes["audio"],
            num_sentinels=num_sentinels,
        )
        return cls(vocab, text, coords, image, mask, audio)

    @classmethod
    def from_config(cls, cfg: TokenizersConfig) -> Tokenizers:
        if cfg.text:
            text = TextTokenizer.load(cfg.text)
        else:
            text = TextTokenizer.train(builtin_corpus(), TextTokenizerConfig(vocab_size=cfg.text_vocab_size))
        grids = {kind: load_grid_tokenizer(kind, getattr(cfg, kind)) for kind in GRID_TOKENIZERS}
        return cls.create(
            text,
            CoordTokenizer(CoordConfig(num_bins=cfg.coord_bins)),
            **grids,
            num_sentinels=cfg.num_sentinels,
        )

    # ----------------------------------------------------------------------------- fingerprints
    def fingerprints(self, uses: tuple[str, ...] = GRID_TOKENIZERS) -> dict[str, str]:
        """Fingerprints of the vocabulary, text and coordinate tokenizers, plus the VQ tokenizers in `uses`."""
        keep = ("vocab", "text", "coords", *uses)
        return {k: v for k, v in self._fingerprints.items() if k in keep}

    @property
    def fingerprint(self) -> str:
        """One hash over every component: equal bundles tokenize identically."""
        return hashlib.sha256(json.dumps(self._fingerprints, sort_keys=True).encode()).hexdigest()[:16]

    def require(self, name: str, task: str) -> GridTokenizerLike:
        tok = getattr(self, name)
        if tok is None:
            article = "an" if name[0] in "aeiou" else "a"
            raise ValueError(
                f"task {task!r} needs {article} {name} tokenizer but none is loaded: set "
                f"tokenizers.{name}.path to a tokenizer/ folder saved by `unio-train-tokenizer` (train one "
                f"with `unio-train-tokenizer tokenizer={name}/<preset>`), or set "
                f"tokenizers.{name}.tiny_seed=0 for a smoke run"
            )
        return tok

    # ----------------------------------------------------------------------------- images
    def encode_images(self, images: list[np.ndarray]) -> torch.Tensor:
        """HxWx3 uint8 images of any sizes -> LongTensor[B, h, w] (stretched to the tokenizer input)."""
        tok = self.require("image", "image encoding")
        h, w = tok.input_size
        codes = []
        for start in range(0, len(images), ENCODE_BATCH):
            chunk = [_resize_rgb(img, (w, h)) for img in images[start : start + ENCODE_BATCH]]
            codes.append(tok.encode(np.stack(chunk)).cpu())
        return torch.cat(codes) if codes else torch.zeros(0, *tok.grid_shape, dtype=torch.long)

    def image_codes(self, record: Any) -> torch.Tensor:
        """Codes [h, w] of a record's image. Uses `record.meta["image_codes"]` when a caller (the
        pretokenizer) encoded a whole batch of records in one go beforehand."""
        cached = record.meta.get("image_codes")
        if cached is not None:
            return torch.as_tensor(cached, dtype=torch.long)
        if record.image is None:
            raise ValueError(f"record {record.id!r} ({record.source}) has no image")
        return self.encode_images([record.image])[0]

    def decode_image(self, codes: torch.Tensor, size: tuple[int, int] | None = None) -> np.ndarray:
        """Codes [h, w] -> HxWx3 uint8 image, resized to `size` = (width, height) when given."""
        tok = self.require("image", "image decoding")
        pixels = tok.decode(torch.as_tensor(codes, dtype=torch.long)[None])[0]  # [3, H, W] in [0, 1]
        image = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return _resize_rgb(image, size) if size is not None else image

    # ----------------------------------------------------------------------------- masks
    def encode_masks(self, masks: list[np.ndarray]) -> torch.Tensor:
        """HxW bool masks of any sizes -> LongTensor[B, h, w]."""
        tok = self.require("mask", "mask encoding")
        h, w = tok.input_size
        codes = []
        for start in range(0, len(masks), ENCODE_BATCH):
            chunk = np.stack([_resize_mask(m, (w, h)) for m in masks[start : start + ENCODE_BATCH]])
            codes.append(tok.encode(torch.from_numpy(chunk).float()[:, None]).cpu())
        return torch.cat(codes) if codes else torch.zeros(0, *tok.grid_shape, dtype=torch.long)

    def mask_codes(self, record: Any, index: int) -> torch.Tensor:
        """Codes [h, w] of `record.objects[index].mask`, from `record.meta["mask_codes"][index]` when the
        pretokenizer encoded every mask of a batch of records in one go."""
        cached = record.meta.get("mask_codes")
        if cached is not None and cached[index] is not None:
            return torch.as_tensor(cached[index], dtype=torch.long)
        mask = record.objects[index].mask
        if mask is None:
            raise ValueError(f"record {record.id!r} ({record.source}): objects[{index}] has no mask")
        return self.encode_masks([mask])[0]

    def decode_mask(self, codes: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """Codes [h, w] -> HxW bool mask at `size` = (width, height) (the original image size)."""
        tok = self.require("mask", "mask decoding")
        # [1, H, W] booleans (or probabilities, for tokenizers that return them)
        decoded = tok.decode(torch.as_tensor(codes, dtype=torch.long)[None])
        probs = decoded.reshape(decoded.shape[-2:]).float().cpu().numpy()
        return _resize_probability(probs, size) >= 0.5

    # ----------------------------------------------------------------------------- audio
    def audio_segment_seconds(self) -> float:
        """Length of audio one code grid covers (the audio tokenizer's fixed segment)."""
        audio = self.require("audio", "audio encoding").cfg.audio
        return audio.segment_samples / audio.sample_rate

    def encode_audio(self, waveform: np.ndarray, sample_rate: int) -> torch.Tensor:
        """Mono float waveform -> LongTensor[n, h, w]: one code grid per consecutive segment of
        `audio_segment_seconds()` (the tokenizer resamples each and zero-pads the last one)."""
        tok = self.require("audio", "audio encoding")
        wave = torch.as_tensor(np.asarray(waveform, dtype=np.float32))
        if wave.ndim != 1 or wave.numel() == 0:
            raise ValueError(f"audio must be a non-empty mono waveform, got shape {tuple(wave.shape)}")
        chunk = max(1, round(self.audio_segment_seconds() * sample_rate))
        return tok.encode(list(wave.split(chunk)), sample_rate).cpu()

    def audio_codes(self, record: Any) -> torch.Tensor:
        """Codes [n, h, w] (n segments) of a record's audio, or `record.meta["audio_codes"]` when the
        pretokenizer encoded it beforehand."""
        cached = record.meta.get("audio_codes")
        if cached is not None:
            return torch.as_tensor(cached, dtype=torch.long)
        if record.audio is None:
            raise ValueError(f"record {record.id!r} ({record.source}) has no audio")
        return self.encode_audio(record.audio, record.sample_rate)

    def decode_audio(self, codes: torch.Tensor) -> tuple[np.ndarray, int]:
        """Codes [h, w] -> (mono float32 waveform, sample rate)."""
        tok = self.require("audio", "audio decoding")
        wave = tok.decode(torch.as_tensor(codes, dtype=torch.long)[None])[0]
        return wave.float().cpu().numpy(), int(tok.cfg.audio.sample_rate)


def _coord_config(coords: CoordTokenizer) -> dict[str, Any]:
    return {"num_bins": coords.num_bins, "out_of_image": str(coords.out_of_image)}


def _resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 -> resized to (width, height) with bilinear filtering (a no-op at the same size)."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize(tuple(size), Image.BILINEAR))


def _resize_probability(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxW floats -> (width, height) with bilinear filtering."""
    if (values.shape[1], values.shape[0]) == tuple(size):
        return values
    return np.asarray(
        Image.fromarray(values.astype(np.float32), mode="F").resize(tuple(size), Image.BILINEAR)
    )


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """HxW bool -> (width, height) bool: area-weighted coverage >= 0.5, so thin parts survive shrinking
    as well as nearest-neighbour would and edges do not shift."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask.astype(bool)
    return _resize_probability(mask.astype(np.float32), size) >= 0.5
