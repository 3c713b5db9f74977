"""The unified vocabulary: one id space shared by every modality.

A `Vocabulary` is an immutable list of named, contiguous segments. Global id = segment offset +
local id. The default layout, in order:

    special  pad, eos, bos, unk, modality brackets, target-modality prefixes,
             keypoint visibility, <sep>, and denoising sentinels <extra_id_i>
    text     SentencePiece pieces (local id = SentencePiece id)
    coord    quantised coordinate bins (local id = bin)
    image    image VQ codes
    mask     mask VQ codes
    audio    audio VQ codes

The total size is padded to a multiple of 128 so embedding and output matrices stay
matmul-friendly; padding ids belong to no segment and are never valid tokens.

The layout is data, not code: it serialises to JSON and has a `fingerprint` (a hash of the layout)
that checkpoints and pretokenized caches store, so a mismatch is refused instead of silently
producing garbage. See docs/vocabulary.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from unio.atomic import atomic_write_text

FORMAT_VERSION = 1

MODALITIES: tuple[str, ...] = ("text", "box", "point", "image", "mask", "audio")
"""Per-token modality ids (index into this tuple) used by the sequence format and the model."""

GRID_MODALITIES: tuple[str, ...] = ("image", "mask", "audio")

BRACKETS: dict[str, tuple[str, str]] = {
    "image": ("<image>", "</image>"),
    "mask": ("<mask>", "</mask>"),
    "audio": ("<audio>", "</audio>"),
    "box": ("<box>", "</box>"),
    "point": ("<point>", "</point>"),
}

TARGET_PREFIXES: dict[str, str] = {m: f"<to_{m}>" for m in MODALITIES}

VISIBILITY_TOKENS: tuple[str, ...] = ("<absent>", "<occluded>", "<visible>")
"""Keypoint visibility in COCO convention: index 0 absent (not labelled), 1 occluded, 2 visible."""

CORE_SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    *(tok for pair in BRACKETS.values() for tok in pair),
    *TARGET_PREFIXES.values(),
    "<visible>",
    "<occluded>",
    "<absent>",
    "<sep>",
)

PAD_MULTIPLE = 128


def sentinel_token(i: int) -> str:
    return f"<extra_id_{i}>"


@dataclass(frozen=True)
class Segment:
    """A named, contiguous block of ids."""

    name: str
    size: int


@dataclass(frozen=True)
class Vocabulary:
    """Immutable layout of the unified id space. Build with `Vocabulary.default(...)`."""

    segments: tuple[Segment, ...]
    special_tokens: tuple[str, ...]
    pad_multiple: int = PAD_MULTIPLE
    _offsets: dict[str, int] = field(init=False, repr=False, compare=False)
    _special_index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [s.name for s in self.segments]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate segment names in vocabulary: {names}")
        if not names or names[0] != "special":
            raise ValueError(f"the first segment must be 'special', got {names[:1]}")
        for seg in self.segments:
            if not isinstance(seg.size, int) or seg.size <= 0:
                raise ValueError(f"segment '{seg.name}' must have a positive integer size, got {seg.size!r}")
        if self.segments[0].size != len(self.special_tokens):
            raise ValueError(
                f"special segment size {self.segments[0].size} != number of special tokens "
                f"{len(self.special_tokens)}"
            )
        if len(set(self.special_tokens)) != len(self.special_tokens):
            raise ValueError("duplicate special token names")
        missing = [t for t in CORE_SPECIAL_TOKENS if t not in self.special_tokens]
        if missing:
            raise ValueError(f"special tokens missing from vocabulary: {missing}")
        if self.pad_multiple <= 0:
            raise ValueError(f"pad_multiple must be positive, got {self.pad_multiple}")
        offsets, start = {}, 0
        for seg in self.segments:
            offsets[seg.name] = start
            start += seg.size
        object.__setattr__(self, "_offsets", offsets)
        object.__setattr__(self, "_special_index", {t: i for i, t in enumerate(self.special_tokens)})

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def default(
        cls,
        text_size: int = 32000,
        coord_bins: int = 1000,
        image_codes: int = 1024,
        mask_codes: int = 256,
        audio_codes: int = 1024,
        num_sentinels: int = 100,
    ) -> Vocabulary:
        """The standard layout. Sizes usually come from the trained tokenizers
        (`TextTokenizer.vocab_size`, `CoordTokenizer.num_bins`, `*.codebook_size`)."""
        special = (*CORE_SPECIAL_TOKENS, *(sentinel_token(i) for i in range(num_sentinels)))
        return cls(
            segments=(
                Segment("special", len(special)),
                Segment("text", text_size),
                Segment("coord", coord_bins),
                Segment("image", image_codes),
                Segment("mask", mask_codes),
                Segment("audio", audio_codes),
            ),
            special_tokens=special,
        )

    # ----------------------------------------------------------------------------- sizes
    @property
    def used_size(self) -> int:
        return sum(s.size for s in self.segments)

    @property
    def size(self) -> int:
        """Rows of the embedding table: `used_size` rounded up to a multiple of `pad_multiple`."""
        m = self.pad_multiple
        return -(-self.used_size // m) * m

    @property
    def segment_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.segments)

    def _segment(self, name: str) -> Segment:
        for seg in self.segments:
            if seg.name == name:
                return seg
        raise KeyError(f"unknown vocabulary segment '{name}'; segments are {self.segment_names}")

    def offset(self, segment: str) -> int:
        self._segment(segment)
        return self._offsets[segment]

    def segment_size(self, segment: str) -> int:
        return self._segment(segment).size

    def segment_range(self, segment: str) -> range:
        return range(self.offset(segment), self.offset(segment) + self.segment_size(segment))

    # ----------------------------------------------------------------------------- id conversion
    def to_global(self, segment: str, local: int | torch.Tensor) -> int | torch.Tensor:
        """Local id within `segment` -> global id. Raises ValueError when out of range."""
        size, off = self.segment_size(segment), self._offsets[segment]
        if isinstance(local, torch.Tensor):
            if local.numel() and (int(local.min()) < 0 or int(local.max()) >= size):
                bad = local[(local < 0) | (local >= size)][0].item()
                raise ValueError(f"local id {bad} out of range for segment '{segment}' (size {size})")
            return local.long() + off
        local = int(local)
        if not 0 <= local < size:
            raise ValueError(f"local id {local} out of range for segment '{segment}' (size {size})")
        return local + off

    def to_local(self, segment: str, ids: int | torch.Tensor) -> int | torch.Tensor:
        """Global id -> local id within `segment`. Raises ValueError when an id is not in it."""
        rng = self.segment_range(segment)
        if isinstance(ids, torch.Tensor):
            outside = (ids < rng.start) | (ids >= rng.stop)
            if outside.any():
                raise ValueError(f"id {ids[outside][0].item()} is not in segment '{segment}' {rng}")
            return ids.long() - rng.start
        ids = int(ids)
        if ids not in rng:
            raise ValueError(f"id {ids} is not in segment '{segment}' {rng}")
        return ids - rng.start

    def segment_of(self, ids: int | torch.Tensor) -> str | torch.Tensor | None:
        """Segment of each id: a name for an int (None for padding ids), or a LongTensor of segment
        indices (into `segment_names`) with -1 for padding / out-of-range ids."""
        if isinstance(ids, torch.Tensor):
            bounds = torch.tensor([self._offsets[n] for n in self.segment_names[1:]] + [self.used_size])
            index = torch.bucketize(ids.long(), bounds.to(ids.device), right=True)
            return torch.where((ids < 0) | (ids >= self.used_size), torch.full_like(index, -1), index)
        ids = int(ids)
        for seg in self.segments:
            if self._offsets[seg.name] <= ids < self._offsets[seg.name] + seg.size:
                return seg.name
        return None

    # ----------------------------------------------------------------------------- special tokens
    def token_id(self, name: str) -> int:
        try:
            return self._special_index[name]
        except KeyError:
            raise KeyError(f"unknown special token '{name}'") from None

    @property
    def pad_id(self) -> int:
        return self._special_index["<pad>"]

    @property
    def eos_id(self) -> int:
        return self._special_index["<eos>"]

    @property
    def bos_id(self) -> int:
        return self._special_index["<bos>"]

    @property
    def unk_id(self) -> int:
        return self._special_index["<unk>"]

    @property
    def num_sentinels(self) -> int:
        return sum(t.startswith("<extra_id_") for t in self.special_tokens)

    def sentinel_id(self, i: int) -> int:
        if not 0 <= i < self.num_sentinels:
            raise ValueError(f"sentinel {i} out of range (vocabulary has {self.num_sentinels})")
        return self._special_index[sentinel_token(i)]

    # ----------------------------------------------------------------------------- masks
    def allow_mask(
        self,
        segments: Iterable[str] = (),
        tokens: Iterable[str | int] = (),
        device: torch.device | None = None,
    ) -> torch.Tensor:
        """Boolean mask over the whole (padded) vocabulary, True for ids in any of `segments` or
        equal to one of `tokens` (special-token names or global ids). Used by constrained decoding."""
        mask = torch.zeros(self.size, dtype=torch.bool, device=device)
        for name in segments:
            rng = self.segment_range(name)
            mask[rng.start : rng.stop] = True
        for tok in tokens:
            tid = self.token_id(tok) if isinstance(tok, str) else int(tok)
            if not 0 <= tid < self.used_size:
                raise ValueError(f"token id {tid} is outside the vocabulary (used size {self.used_size})")
            mask[tid] = True
        return mask

    # ----------------------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "pad_multiple": self.pad_multiple,
            "segments": [{"name": s.name, "size": s.size} for s in self.segments],
            "special_tokens": list(self.special_tokens),
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> Vocabulary:
        """Inverse of `to_dict`. Errors name `source` and the offending field."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: vocabulary must be a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version is None:
            raise ValueError(f"{source}: missing field 'format_version'")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{source}: field 'format_version' is {version!r}; this unio reads version {FORMAT_VERSION}"
            )
        for key, kind in (("segments", list), ("special_tokens", list), ("pad_multiple", int)):
            if key not in data:
                raise ValueError(f"{source}: missing field '{key}'")
            if not isinstance(data[key], kind):
                raise ValueError(f"{source}: field '{key}' must be a {kind.__name__}, got {data[key]!r}")
        segments = []
        for i, seg in enumerate(data["segments"]):
            if not isinstance(seg, dict) or not isinstance(seg.get("name"), str):
                raise ValueError(f"{source}: field 'segments[{i}].name' must be a string, got {seg!r}")
            if not isinstance(seg.get("size"), int) or isinstance(seg.get("size"), bool):
                raise ValueError(f"{source}: field 'segments[{i}].size' must be an integer, got {seg!r}")
            segments.append(Segment(seg["name"], seg["size"]))
        if not all(isinstance(t, str) for t in data["special_tokens"]):
            raise ValueError(f"{source}: field 'special_tokens' must be a list of strings")
        try:
            return cls(
                segments=tuple(segments),
                special_tokens=tuple(data["special_tokens"]),
                pad_multiple=data["pad_multiple"],
            )
        except ValueError as err:
            raise ValueError(f"{source}: invalid vocabulary: {err}") from None

    def to_json(self, path: str | os.PathLike) -> None:
        """Write atomically (temp file + rename) so a crash never leaves a half-written file."""
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Vocabulary:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"vocabulary file not found: {path}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data, source=str(path))

    @property
    def fingerprint(self) -> str:
        """Stable hash of the layout (segments, special tokens, padding). Stored in checkpoints and
        caches; any change to any segment changes it."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def check_fingerprint(self, expected: str, what: str) -> None:
        """Raise a clear error when `what` (a checkpoint, a cache...) was built for another layout."""
        if expected != self.fingerprint:
            raise ValueError(
                f"{what} was built with vocabulary {expected}, but the current vocabulary is "
                f"{self.fingerprint}; rebuild it or load the matching vocabulary.json"
            )

    def describe(self) -> str:
        """Human-readable layout table."""
        lines = [f"{'segment':<8} {'offset':>7} {'size':>7}"]
        lines += [f"{s.name:<8} {self._offsets[s.name]:>7} {s.size:>7}" for s in self.segments]
        lines.append(f"{'(used)':<8} {'':>7} {self.used_size:>7}")
        lines.append(f"{'(padded)':<8} {'':>7} {self.size:>7}   fingerprint {self.fingerprint}")
        return "\n".join(lines)
