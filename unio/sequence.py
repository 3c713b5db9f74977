"""Typed segments <-> global token ids plus the per-token metadata the model needs.

A sequence is a list of typed segments. Token grammar (docs/sequence_format.md has worked examples):

    Text        SentencePiece pieces of the string
    Boxes       per box: <box> [label pieces] x1 y1 x2 y2 </box>        (coord bins, xyxy)
    Points      <point> (x y <visible> | x y <occluded> | <absent>)* </point>
    ImageCodes  <image> H*W image codes, row-major </image>           (MaskCodes, AudioCodes alike)
    ImagePatches  rows*cols <image> placeholder tokens (encoder input only: the pixels travel beside)
    AudioPatches  rows*cols <audio> placeholder tokens (encoder input only: the spectrogram travels beside)
    Special     one special token: <bos>, a target prefix <to_*>, <sep>, a sentinel <extra_id_i>
    targets end with <eos>

Every token gets a modality id (index into `MODALITIES`), a 1-D position, and for grid codes a
(row, col) pair that the model turns into 2-D rotary positions.

Decoding is total: any id sequence yields the longest valid prefix of segments plus a list of
`Problem`s, never an exception. It returns the canonical form of a sequence: adjacent Text segments
are merged, adjacent Boxes segments are merged, empty Text/Boxes are dropped, and a Boxes segment
whose labels are all empty has `labels=None`. `canonicalize` computes that form for encoder input.

The sequence layer deals only in discrete values (bins, codes, strings); pixels <-> bins is the
coordinate tokenizer's job, images <-> codes the VQ tokenizers'. It does not judge geometry
(x2 < x1 is a task-level concern).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from unio.tokenizers.text import TextTokenizer
from unio.vocab import BRACKETS, GRID_MODALITIES, MODALITIES, VISIBILITY_TOKENS, Vocabulary

TEXT, BOX, POINT = MODALITIES.index("text"), MODALITIES.index("box"), MODALITIES.index("point")


# --------------------------------------------------------------------------------------- segments
@dataclass(eq=False)
class Text:
    text: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Text) and other.text == self.text


@dataclass(eq=False)
class Boxes:
    """Boxes as coordinate bins [N, 4] (x1 y1 x2 y2) with optional per-box label strings."""

    coords: torch.Tensor
    labels: list[str] | None = None

    def __post_init__(self) -> None:
        self.coords = torch.as_tensor(self.coords, dtype=torch.long).reshape(-1, 4)
        if self.labels is not None:
            self.labels = list(self.labels)
            if len(self.labels) != len(self.coords):
                raise ValueError(f"Boxes: {len(self.coords)} boxes but {len(self.labels)} labels")

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Boxes)
            and torch.equal(self.coords, other.coords)
            and self.labels == other.labels
        )


@dataclass(eq=False)
class Points:
    """Points as coordinate bins [N, 2] (x y) with COCO visibility [N]: 0 absent, 1 occluded, 2 visible.
    The coordinates of absent points carry no information and are stored as 0."""

    coords: torch.Tensor
    visibility: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.coords = torch.as_tensor(self.coords, dtype=torch.long).reshape(-1, 2)
        if self.visibility is None:
            self.visibility = torch.full((len(self.coords),), 2, dtype=torch.long)
        self.visibility = torch.as_tensor(self.visibility, dtype=torch.long).reshape(-1)
        if len(self.visibility) != len(self.coords):
            raise ValueError(f"Points: {len(self.coords)} points but {len(self.visibility)} visibility flags")
        if ((self.visibility < 0) | (self.visibility > 2)).any():
            raise ValueError(f"Points: visibility must be 0, 1 or 2, got {self.visibility.tolist()}")
        self.coords = torch.where(self.visibility[:, None] == 0, 0, self.coords)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Points)
            and torch.equal(self.coords, other.coords)
            and torch.equal(self.visibility, other.visibility)
        )


@dataclass(eq=False)
class _Grid:
    """A 2-D grid of local VQ code indices [H, W]."""

    codes: torch.Tensor
    modality = ""

    def __post_init__(self) -> None:
        self.codes = torch.as_tensor(self.codes, dtype=torch.long)
        if self.codes.dim() != 2:
            raise ValueError(
                f"{type(self).__name__}: codes must be 2-D [H, W], got shape {tuple(self.codes.shape)}"
            )

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and torch.equal(self.codes, other.codes)


class ImageCodes(_Grid):
    modality = "image"


class MaskCodes(_Grid):
    modality = "mask"


class AudioCodes(_Grid):
    modality = "audio"


GRID_TYPES: dict[str, type[_Grid]] = {"image": ImageCodes, "mask": MaskCodes, "audio": AudioCodes}


@dataclass(frozen=True)
class _Patches:
    """Placeholder span of a continuous input (a patch stem's input, unio/model/patches.py): ``rows *
    cols`` patches. Encodes to that many tokens with the modality's opening bracket id (no closing
    bracket), modality `modality`, (row, col) = the patch's grid position, row-major. A bracket has row
    -1, so a placeholder is ``id == bracket and row >= 0``. The values are not in the ids: they travel
    beside them. Encoder input only: `decode` never produces it (a target never holds one)."""

    rows: int
    cols: int
    modality: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive integer, got {value!r}")

    @property
    def num_tokens(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class ImagePatches(_Patches):
    """An image as ``rows * cols`` ``<image>`` placeholders (`_Patches`); the pixels travel beside
    (`unio.tasks.Example.image`, the batch's ``input_images``)."""

    modality: ClassVar[str] = "image"


@dataclass(frozen=True)
class AudioPatches(_Patches):
    """A log-mel spectrogram ``[mels, frames]`` as ``rows * cols`` ``<audio>`` placeholders (`_Patches`;
    rows over mel bands, cols over time); the spectrogram travels beside (`unio.tasks.Example.audio`,
    the batch's ``input_audio``)."""

    modality: ClassVar[str] = "audio"


@dataclass(frozen=True)
class Special:
    """A single special token outside any bracket: <bos>, <sep>, <to_*> prefixes, sentinels."""

    token: str


Segment = Text | Boxes | Points | ImageCodes | MaskCodes | AudioCodes | ImagePatches | AudioPatches | Special


# --------------------------------------------------------------------------------------- results
@dataclass
class TokenSequence:
    """Global ids and per-token metadata, all LongTensor[L]."""

    ids: torch.Tensor
    modality: torch.Tensor
    position: torch.Tensor
    row: torch.Tensor
    col: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)

    def to_dict(self) -> dict[str, list[int]]:
        return {k: getattr(self, k).tolist() for k in ("ids", "modality", "position", "row", "col")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[int]]) -> TokenSequence:
        return cls(
            **{
                k: torch.as_tensor(data[k], dtype=torch.long)
                for k in ("ids", "modality", "position", "row", "col")
            }
        )


@dataclass(frozen=True)
class Problem:
    """One reason a token sequence is malformed. `position` indexes the offending token."""

    position: int
    kind: str  # truncated | unexpected_token | unbalanced | grid_size | bad_box | bad_point | padding
    message: str


@dataclass
class Decoded:
    segments: list[Segment] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ended_with_eos: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


# --------------------------------------------------------------------------------------- codec
class SequenceCodec:
    """Encodes typed segments to ids + metadata and decodes ids back.

    grid_shapes: expected (H, W) of each grid modality, from the VQ tokenizers' `grid_shape`.
    A modality without a shape accepts any 2-D grid on encode and square grids on decode.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        text_tokenizer: TextTokenizer,
        grid_shapes: Mapping[str, tuple[int, int]] | None = None,
    ):
        if text_tokenizer.vocab_size > vocab.segment_size("text"):
            raise ValueError(
                f"text tokenizer has {text_tokenizer.vocab_size} pieces but the vocabulary's text segment "
                f"holds {vocab.segment_size('text')}"
            )
        self.vocab = vocab
        self.text = text_tokenizer
        self.grid_shapes = {k: tuple(v) for k, v in (grid_shapes or {}).items()}
        unknown = set(self.grid_shapes) - set(GRID_MODALITIES)
        if unknown:
            raise ValueError(
                f"grid_shapes has unknown modalities {sorted(unknown)}; expected {GRID_MODALITIES}"
            )
        self._open = {m: vocab.token_id(o) for m, (o, _) in BRACKETS.items()}
        self._close = {m: vocab.token_id(c) for m, (_, c) in BRACKETS.items()}
        self._open_to_modality = {v: k for k, v in self._open.items()}
        self._close_to_modality = {v: k for k, v in self._close.items()}
        self._visibility_ids = [vocab.token_id(t) for t in VISIBILITY_TOKENS]
        self._text_range = vocab.segment_range("text")
        self._coord_range = vocab.segment_range("coord")
        self._code_ranges = {m: vocab.segment_range(m) for m in GRID_MODALITIES}
        # Specials that may stand alone as a `Special` segment: everything that is not structure.
        structural = {
            vocab.pad_id,
            vocab.eos_id,
            *self._open.values(),
            *self._close.values(),
            *self._visibility_ids,
        }
        self._free_specials = {i for i in range(len(vocab.special_tokens)) if i not in structural}

    # ----------------------------------------------------------------------------- encode
    def encode(self, segments: Sequence[Segment], add_eos: bool = False) -> TokenSequence:
        ids: list[int] = []
        modality: list[int] = []
        row: list[int] = []
        col: list[int] = []

        def emit(
            tokens: list[int], mod: int, rows: list[int] | None = None, cols: list[int] | None = None
        ) -> None:
            ids.extend(tokens)
            modality.extend([mod] * len(tokens))
            row.extend(rows if rows is not None else [-1] * len(tokens))
            col.extend(cols if cols is not None else [-1] * len(tokens))

        v = self.vocab
        for seg in segments:
            if isinstance(seg, Text):
                emit(self._text_ids(seg.text), TEXT)
            elif isinstance(seg, Boxes):
                self._check_bins(seg.coords, "Boxes")
                for i, box in enumerate(seg.coords.tolist()):
                    label = seg.labels[i] if seg.labels is not None else ""
                    tokens = [self._open["box"], *self._text_ids(label)]
                    tokens += [self._coord_range.start + c for c in box] + [self._close["box"]]
                    emit(tokens, BOX)
            elif isinstance(seg, Points):
                self._check_bins(seg.coords, "Points")
                tokens = [self._open["point"]]
                for (x, y), vis in zip(seg.coords.tolist(), seg.visibility.tolist(), strict=True):
                    if vis == 0:
                        tokens.append(self._visibility_ids[0])
                    else:
                        tokens += [
                            self._coord_range.start + x,
                            self._coord_range.start + y,
                            self._visibility_ids[vis],
                        ]
                emit([*tokens, self._close["point"]], POINT)
            elif isinstance(seg, _Grid):
                m = seg.modality
                h, w = seg.codes.shape
                expected = self.grid_shapes.get(m)
                if expected is not None and (h, w) != expected:
                    raise ValueError(
                        f"{type(seg).__name__}: grid shape {(h, w)} != expected {expected} for '{m}'"
                    )
                codes = v.to_global(m, seg.codes.reshape(-1)).tolist()
                mod = MODALITIES.index(m)
                emit([self._open[m]], mod)
                emit(codes, mod, [i // w for i in range(h * w)], [i % w for i in range(h * w)])
                emit([self._close[m]], mod)
            elif isinstance(seg, _Patches):
                n, cols = seg.num_tokens, seg.cols
                rows_, cols_ = [i // cols for i in range(n)], [i % cols for i in range(n)]
                emit([self._open[seg.modality]] * n, MODALITIES.index(seg.modality), rows_, cols_)
            elif isinstance(seg, Special):
                tid = v.token_id(seg.token)
                if tid not in self._free_specials:
                    raise ValueError(f"Special({seg.token!r}) is structural; use the matching typed segment")
                emit([tid], TEXT)
            else:
                raise TypeError(f"not a sequence segment: {seg!r}")
        if add_eos:
            emit([v.eos_id], TEXT)
        n = len(ids)
        as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
        return TokenSequence(as_long(ids), as_long(modality), torch.arange(n), as_long(row), as_long(col))

    def _text_ids(self, text: str) -> list[int]:
        start = self._text_range.start
        return [start + i for i in self.text.encode(text)]

    def _check_bins(self, coords: torch.Tensor, what: str) -> None:
        n = len(self._coord_range)
        if coords.numel() and (int(coords.min()) < 0 or int(coords.max()) >= n):
            raise ValueError(f"{what}: coordinate bins must be in [0, {n}), got {coords.tolist()}")

    # ----------------------------------------------------------------------------- decode
    def decode(self, ids: Sequence[int] | torch.Tensor) -> Decoded:
        """Total decoder: the longest valid prefix of segments plus the first problem found.
        Decoding stops at <eos>; trailing <pad> tokens are ignored."""
        ids = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
        out = Decoded()
        v = self.vocab
        text_buffer: list[int] = []
        i, n = 0, len(ids)

        def flush_text() -> None:
            if text_buffer:
                _append(
                    out.segments, Text(self.text.decode([t - self._text_range.start for t in text_buffer]))
                )
                text_buffer.clear()

        def fail(pos: int, kind: str, message: str) -> Decoded:
            flush_text()
            out.problems.append(Problem(pos, kind, message))
            return out

        while i < n:
            tok = ids[i]
            if tok == v.eos_id:
                flush_text()
                out.ended_with_eos = True
                return out
            if tok == v.pad_id:
                if any(t != v.pad_id for t in ids[i:]):
                    return fail(i, "padding", f"<pad> at {i} followed by non-pad tokens")
                break
            if tok in self._text_range:
                text_buffer.append(tok)
                i += 1
                continue
            flush_text()
            if tok in self._open_to_modality:
                m = self._open_to_modality[tok]
                if m == "box":
                    seg, i, problem = self._decode_box(ids, i)
                elif m == "point":
                    seg, i, problem = self._decode_points(ids, i)
                else:
                    seg, i, problem = self._decode_grid(ids, i, m)
                if problem is not None:
                    return fail(*problem)
                _append(out.segments, seg)
            elif tok in self._free_specials:
                out.segments.append(Special(v.special_tokens[tok]))
                i += 1
            else:
                return fail(i, *self._unexpected(tok, "outside any bracket"))
        flush_text()
        return out

    def _unexpected(self, tok: int, where: str) -> tuple[str, str]:
        if tok == self.vocab.eos_id:
            return "truncated", f"<eos> {where}: the group is cut short"
        if tok in self._close_to_modality:
            return "unbalanced", f"closing {self.describe_token(tok)} without an opening bracket"
        return "unexpected_token", f"{self.describe_token(tok)} {where}"

    def _decode_box(self, ids: list[int], start: int) -> tuple[Boxes | None, int, tuple | None]:
        i, label, coords = start + 1, [], []
        while i < len(ids):
            tok = ids[i]
            if tok == self._close["box"]:
                if len(coords) != 4:
                    return (
                        None,
                        i,
                        (i, "bad_box", f"box opened at {start} has {len(coords)} coordinates, needs 4"),
                    )
                text = self.text.decode([t - self._text_range.start for t in label])
                return Boxes(torch.tensor([coords]), [text]), i + 1, None
            if tok in self._text_range and not coords:
                label.append(tok)
            elif tok in self._coord_range and len(coords) < 4:
                coords.append(tok - self._coord_range.start)
            else:
                return None, i, (i, *self._unexpected(tok, f"inside the box opened at {start}"))
            i += 1
        return None, i, (start, "truncated", f"box opened at {start} is not closed")

    def _decode_points(self, ids: list[int], start: int) -> tuple[Points | None, int, tuple | None]:
        i, pending, coords, vis = start + 1, [], [], []
        absent, occluded, visible = self._visibility_ids
        while i < len(ids):
            tok = ids[i]
            if tok == self._close["point"] and not pending:
                return (
                    Points(torch.tensor(coords, dtype=torch.long).reshape(-1, 2), torch.tensor(vis)),
                    i + 1,
                    None,
                )
            if tok in self._coord_range and len(pending) < 2:
                pending.append(tok - self._coord_range.start)
            elif tok in (occluded, visible) and len(pending) == 2:
                coords.append(pending)
                vis.append(1 if tok == occluded else 2)
                pending = []
            elif tok == absent and not pending:
                coords.append([0, 0])
                vis.append(0)
            else:
                return (
                    None,
                    i,
                    (
                        i,
                        "bad_point",
                        f"{self.describe_token(tok)} is not valid here in the points opened at {start}",
                    ),
                )
            i += 1
        return None, i, (start, "truncated", f"points opened at {start} are not closed")

    def _decode_grid(self, ids: list[int], start: int, m: str) -> tuple[_Grid | None, int, tuple | None]:
        i, codes, code_range = start + 1, [], self._code_ranges[m]
        while i < len(ids) and ids[i] in code_range:
            codes.append(ids[i] - code_range.start)
            i += 1
        if i >= len(ids):
            return None, i, (start, "truncated", f"{m} grid opened at {start} is not closed")
        if ids[i] != self._close[m]:
            return None, i, (i, *self._unexpected(ids[i], f"inside the {m} grid opened at {start}"))
        shape = self.grid_shapes.get(m)
        if shape is None:
            side = round(len(codes) ** 0.5)
            shape = (side, side) if side * side == len(codes) and codes else None
        if shape is None or shape[0] * shape[1] != len(codes):
            return (
                None,
                i,
                (i, "grid_size", f"{m} grid opened at {start} has {len(codes)} codes, expected {shape}"),
            )
        return GRID_TYPES[m](torch.tensor(codes).reshape(shape)), i + 1, None

    # ----------------------------------------------------------------------------- display
    def describe_token(self, tok: int) -> str:
        """Readable name of one global id: special names, text pieces in quotes, <coord_k>, <image_k>..."""
        v = self.vocab
        seg = v.segment_of(tok)
        if seg == "special":
            return v.special_tokens[tok]
        if seg == "text":
            return repr(self.text.piece(tok - self._text_range.start))
        if seg is None:
            return f"<invalid_{tok}>"
        return f"<{seg}_{tok - v.offset(seg)}>"

    def render(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The sequence as readable tokens, for logs and docs."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return " ".join(self.describe_token(int(t)) for t in ids)


def _append(segments: list[Segment], seg: Segment) -> None:
    """Append in canonical form: merge adjacent Text and adjacent Boxes."""
    if isinstance(seg, Text) and not seg.text:
        return
    if isinstance(seg, Boxes) and len(seg.coords) == 0:
        return
    last = segments[-1] if segments else None
    if isinstance(seg, Text) and isinstance(last, Text):
        segments[-1] = Text(last.text + seg.text)
    elif isinstance(seg, Boxes) and isinstance(last, Boxes):
        labels = [*(last.labels or [""] * len(last.coords)), *(seg.labels or [""] * len(seg.coords))]
        segments[-1] = Boxes(torch.cat([last.coords, seg.coords]), labels if any(labels) else None)
    elif isinstance(seg, Boxes):
        segments.append(Boxes(seg.coords, seg.labels if seg.labels and any(seg.labels) else None))
    else:
        segments.append(seg)


def canonicalize(segments: Sequence[Segment]) -> list[Segment]:
    """The form `decode(encode(segments))` returns."""
    out: list[Segment] = []
    for seg in segments:
        _append(out, seg)
    return out


# --------------------------------------------------------------------------------------- streaming
class Annotator:
    """Streaming per-token metadata for generated decoder tokens.

    `push(token_id)` returns (modality, row, col) of that token given all tokens pushed before, the
    same values `SequenceCodec.encode` assigns. Generation calls it once per new token per row.
    Grid rows/columns need the codec's `grid_shapes` for that modality.
    """

    def __init__(self, codec: SequenceCodec):
        self.codec = codec
        self.context: str | None = None  # the bracket we are inside, if any
        self.count = 0  # grid codes seen in the current grid

    def push(self, token_id: int) -> tuple[int, int, int]:
        c = self.codec
        tok = int(token_id)
        if self.context is None:
            m = c._open_to_modality.get(tok)
            if m is None:
                return TEXT, -1, -1
            self.context, self.count = m, 0
            return MODALITIES.index(m), -1, -1
        m = self.context
        mod = MODALITIES.index(m)
        if tok == c._close[m]:
            self.context = None
            return mod, -1, -1
        if m in GRID_MODALITIES and tok in c._code_ranges[m]:
            shape = c.grid_shapes.get(m)
            if shape is None:
                raise ValueError(f"Annotator needs grid_shapes['{m}'] to place {m} codes in rows and columns")
            r, col = divmod(self.count, shape[1])
            self.count += 1
            return mod, r, col
        return mod, -1, -1

    def annotate(self, ids: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
        out = [self.push(t) for t in ids]
        return [o[0] for o in out], [o[1] for o in out], [o[2] for o in out]
