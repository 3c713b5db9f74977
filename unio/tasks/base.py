"""What a task is: a small object turning a `Record` into (input segments, target segments) and a
decoded target back into a structured prediction.

Every task has
- `prompts`: paraphrases sampled during training, and `eval_prompt`: the one canonical prompt used for
  evaluation (so evaluation is deterministic and comparable across runs);
- `build(record, rng, tok, train, item=None)`: an `Example` (input segments, target segments, meta)
  or None when the record lacks what the task needs (the pretokenizer counts those per task). A record
  may hold several items for a task (VQA questions, grounding's (object, expression) pairs, keypoint
  people): training picks one at random, `item=i` builds the i-th of `num_items(record)`, and
  `eval_examples(record, tok)` builds all of them in order (deterministic evaluation);
- `build_input(tok, image=..., text=..., audio=..., sample_rate=..., box=...)`: the input side only,
  from raw values instead of a record (no ground truth needed): `Example` with `target=[]` and the
  `meta` `parse` needs. Evaluation, `unio.pipeline` and `unio-predict` all reach the model the same
  way: `encode_input(example, tok)` then `unio.data.collate.collate_inputs` (prompt-only batches);
- `grammar(tok, meta)`: the output grammar the constrained decoder enforces (unio/grammar.py); it
  depends on the task options and the tokenizers, not on the example, so build it once per task (grid
  grammars of thousands of codes take seconds to compile). Open-ended text answers use
  `grammar.answer_text`: never the empty string;
- `parse(segments, meta, tok)`: decoded target segments -> prediction in the record's own units
  (pixels of the original image, masks at the original size, text, images, waveforms);
  for a transformed view (a crop, resize or flip of unio/data/transforms.py) geometric tasks keep the
  transform's map in `meta` (`view_geometry`) and parse through its inverse, so predictions land on
  the original image even though targets and ground truth in `meta` describe the view;
- `metric`: the name of the metric the evaluator computes.

Inputs start with the target-modality prefix (`<to_text>`, `<to_box>`, ...), then the prompt text,
then the conditioning segments (an optional region box, the image or audio codes). Targets are
encoded with `<eos>` at the end by the pretokenizer.

Image inputs (`input_repr`, on the tasks with `patch_inputs = True`): ``codes`` puts the image's VQ
codes in the input; ``patches`` (the default since the input comparison of docs/results.md: a model
sees through patches, not through codes) puts an `ImagePatches` placeholder span of
``(input_size / patch_size)**2`` tokens there instead and the pixels in `Example.image` (HxWx3 uint8 at
``input_size``, the image stretched as the VQ tokenizer stretches it, so normalised coordinates are
unchanged), for a model whose patch stem has the same ``image_size`` and ``patch_size``. Outputs (image
and mask codes) are VQ codes either way. `Task.image_input` is the one place that makes that choice;
`Task.vq_tokenizers` lists the VQ tokenizers the task then really runs (no image encoder for patches).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from unio import grammar as grammars
from unio.sequence import AudioCodes, Boxes, ImageCodes, ImagePatches, Segment, Special, Text, TokenSequence
from unio.tasks.bundle import Tokenizers, _resize_rgb
from unio.vocab import TARGET_PREFIXES

INPUT_REPRS = ("codes", "patches")


@dataclass
class Example:
    """One task instance. `meta` is JSON-serialisable: what `parse` and the metric need (original image
    size, reference answers, ...). `noise` holds Pix2Seq noise boxes appended after the real target;
    their coordinates are excluded from the loss. `image` holds the pixels (HxWx3 uint8) of the input's
    `ImagePatches` span, for patch inputs (``input_repr="patches"``); None otherwise. `audio` likewise
    holds the log-mel spectrogram (mels x frames float16 in [0, 1]) of an `AudioPatches` span."""

    input: list[Segment]
    target: list[Segment]
    meta: dict[str, Any] = field(default_factory=dict)
    noise: Boxes | None = None
    image: np.ndarray | None = None
    audio: np.ndarray | None = None


@dataclass
class EncodedExample:
    input: TokenSequence
    target: TokenSequence  # ends with <eos>
    target_loss: torch.Tensor  # LongTensor[L_target]: 1 = trained, 0 = ignored (noise-box coordinates)
    input_image: np.ndarray | None = None  # HxWx3 uint8 pixels of the input's patch span (`Example.image`)
    input_audio: np.ndarray | None = None  # mels x frames float16 spectrogram of the span (`Example.audio`)


def encode_example(example: Example, tok: Tokenizers) -> EncodedExample:
    codec = tok.codec
    inputs = codec.encode(example.input)
    audio = None if example.audio is None else np.asarray(example.audio, dtype=np.float16)
    if example.noise is None:
        target = codec.encode(example.target, add_eos=True)
        return EncodedExample(inputs, target, torch.ones(len(target), dtype=torch.long), example.image, audio)
    real = codec.encode(example.target)
    noise = codec.encode([example.noise], add_eos=True)
    coord = tok.vocab.segment_range("coord")
    noise_loss = ~((noise.ids >= coord.start) & (noise.ids < coord.stop))
    target = TokenSequence(
        ids=torch.cat([real.ids, noise.ids]),
        modality=torch.cat([real.modality, noise.modality]),
        position=torch.arange(len(real) + len(noise)),
        row=torch.cat([real.row, noise.row]),
        col=torch.cat([real.col, noise.col]),
    )
    return EncodedExample(
        inputs,
        target,
        torch.cat([torch.ones(len(real), dtype=torch.long), noise_loss.long()]),
        example.image,
        audio,
    )


def encode_input(example: Example, tok: Tokenizers) -> TokenSequence:
    """The encoder side of an example (its targets, if any, are ignored): ids and metadata."""
    return tok.codec.encode(example.input)


@dataclass(frozen=True)
class Task:
    """Base class; subclasses implement `build` and `parse` and set the class attributes. Tasks are
    immutable values: configure one with `unio.tasks.make_task(name, **options)`."""

    name: str = ""
    prompts: tuple[str, ...] = ()
    eval_prompt: str = ""
    # Image inputs (module docstring): "codes" (VQ codes) | "patches" (placeholder span + pixels for the
    # model's patch stem; only where `patch_inputs`). input_size / patch_size must equal the stem's
    # image_size / patch_size; they are ignored (and left out of the cache key) for codes.
    input_repr: str | None = None  # None: "patches" where `patch_inputs` (issue #12), else "codes"
    input_size: int = 64  # pixels per side the input image is stretched to (patches)
    patch_size: int = 8  # pixels per patch side (patches)
    target_modality: ClassVar[str] = "text"
    metric: ClassVar[str] = ""
    uses: ClassVar[tuple[str, ...]] = ()  # VQ tokenizers the task needs: "image", "mask", "audio"
    # What `build_input` puts after the prompt: the "image" or "audio" codes, or nothing (None).
    condition: ClassVar[str | None] = "image"
    prompt_field: ClassVar[str | None] = None  # the prompt placeholder `build_input(text=...)` fills
    region_input: ClassVar[bool] = False  # the input holds a region box (`build_input(box=...)`)
    patch_inputs: ClassVar[bool] = False  # the input image may be patches (`input_repr="patches"`)

    def __post_init__(self) -> None:
        if not self.prompts or not self.eval_prompt:
            raise ValueError(f"task {self.name!r}: needs at least one training prompt and an eval prompt")
        if self.input_repr is None:  # frozen dataclass: resolve the default once, here
            object.__setattr__(self, "input_repr", "patches" if self.patch_inputs else "codes")
        if self.input_repr not in INPUT_REPRS:
            raise ValueError(
                f"task {self.name!r}: field 'input_repr' must be one of {INPUT_REPRS}, got {self.input_repr!r}"
            )
        if self.input_repr == "patches":
            if not self.patch_inputs:
                raise ValueError(
                    f"task {self.name!r}: input_repr='patches' is not supported (its input has no image); "
                    "tasks with patch inputs: caption, vqa, classify, detect, ground, region_caption, "
                    "refseg, keypoints, masked_image, asr, audio_classify"
                )
            for key in ("input_size", "patch_size"):
                value = getattr(self, key)
                if not isinstance(value, int) or value <= 0:
                    raise ValueError(
                        f"task {self.name!r}: field {key!r} must be a positive integer, got {value!r}"
                    )
            if self.input_size % self.patch_size:
                raise ValueError(
                    f"task {self.name!r}: input_size {self.input_size} must be a multiple of patch_size "
                    f"{self.patch_size}"
                )

    # ----------------------------------------------------------------------------- interface
    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        raise NotImplementedError

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> Any:
        raise NotImplementedError

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        return grammars.answer_text(tok.codec)

    def num_items(self, record: Any) -> int:
        """How many distinct examples `build(record, ..., item=i)` makes (0 when none): one per VQA
        question, per (object, expression) pair, per person, ...; 1 for tasks of the whole record."""
        return 1

    def eval_examples(self, record: Any, tok: Tokenizers) -> list[Example]:
        """Every item of the record, in order, with the canonical eval prompt (deterministic: no
        random choice is left once the item is fixed)."""
        examples = []
        for i in range(self.num_items(record)):
            example = self.build(record, random.Random(0), tok, train=False, item=i)
            if example is not None:
                examples.append(example)
        return examples

    def build_input(
        self,
        tok: Tokenizers,
        *,
        image: np.ndarray | None = None,
        text: str | None = None,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        box: Any = None,
    ) -> Example:
        """The eval-prompt input for raw values, with no target: `<prefix> prompt [<box>] [codes]`.
        `image` is HxWx3 uint8 (any size), `audio` a non-empty mono float waveform at `sample_rate`,
        `text` fills the prompt's placeholder (the question, expression, description or text to say),
        `box` (xyxy pixels of `image`) is the region of region_caption / keypoints. `meta` holds what
        `parse` needs (`image_size`, ...). Missing or malformed values raise ValueError naming them."""
        values: dict[str, str] = {}
        if self.prompt_field is not None:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"task {self.name!r} needs text= (the {self.prompt_field}), got {text!r}")
            values[self.prompt_field] = text.strip()
        inputs: list[Segment] = [self.prefix(), Text(self.eval_prompt.format(**values))]
        meta: dict[str, Any] = {}
        if self.condition == "image" or self.region_input:
            image = check_image(image, self.name)
            meta["image_size"] = [int(image.shape[1]), int(image.shape[0])]
        if self.region_input:
            if box is None:
                raise ValueError(f"task {self.name!r} needs box=[x1, y1, x2, y2] (pixels of the image)")
            region = np.asarray(box, dtype=np.float64).reshape(-1)
            if region.shape != (4,) or not np.isfinite(region).all() or not (region[2:] > region[:2]).all():
                raise ValueError(
                    f"task {self.name!r}: box must be [x1, y1, x2, y2] with x2 > x1, y2 > y1, got {box!r}"
                )
            size = tuple(meta["image_size"])
            inputs.append(Boxes(tok.coords.encode_boxes(region.reshape(1, 4), image_size=size)))
            meta["box"] = region.tolist()
        pixels = None
        if self.condition == "image":
            segment, pixels = self.image_input(image, tok)
            inputs.append(segment)
        elif self.condition == "audio":
            audio, sample_rate = check_audio(audio, sample_rate, self.name)
            codes = tok.encode_audio(audio, sample_rate)
            limit = getattr(self, "max_audio_segments", None)
            if limit is not None and len(codes) > limit:
                raise ValueError(
                    f"task {self.name!r}: the audio is {len(audio) / sample_rate:.2f} s, {len(codes)} segments "
                    f"of {tok.audio_segment_seconds():.3f} s; the task takes at most max_audio_segments={limit}"
                )
            inputs += [AudioCodes(c) for c in codes]
        if self.prompt_field is not None:
            meta[self.prompt_field] = values[self.prompt_field]
        return Example(inputs, [], meta, image=pixels)

    # ----------------------------------------------------------------------------- helpers
    def image_input(self, source: Any, tok: Tokenizers) -> tuple[Segment, np.ndarray | None]:
        """The input segment of an image and, for patch inputs, its pixels (for `Example.image`).
        `source` is a record (codes come from `tok.image_codes`, which uses the pretokenizer's batch
        codes) or an HxWx3 uint8 array. codes: (`ImageCodes`, None); patches: (`ImagePatches` of the
        task's grid, the image stretched to ``input_size`` x ``input_size``)."""
        image = source if isinstance(source, np.ndarray) else None
        if self.input_repr == "codes":
            codes = tok.encode_images([image])[0] if image is not None else tok.image_codes(source)
            return ImageCodes(codes), None
        if image is None:
            image = source.image
            if image is None:
                raise ValueError(f"task {self.name!r}: record {source.id!r} has no image")
        side = self.input_size // self.patch_size
        pixels = _resize_rgb(check_image(image, self.name), (self.input_size, self.input_size))
        return ImagePatches(side, side), np.ascontiguousarray(pixels, dtype=np.uint8)

    def vq_tokenizers(self) -> tuple[str, ...]:
        """The VQ tokenizers the task runs with its options: `uses`, without the image tokenizer when
        the image is only an input and given as patches. Cache fingerprints and `check` use this."""
        if self.input_repr == "patches" and self.target_modality != "image":
            return tuple(u for u in self.uses if u != "image")
        return self.uses

    def prompt(self, rng: random.Random, train: bool, **values: str) -> str:
        template = rng.choice(self.prompts) if train else self.eval_prompt
        return template.format(**values)

    def prefix(self) -> Special:
        return Special(TARGET_PREFIXES[self.target_modality])

    def check(self, tok: Tokenizers) -> None:
        """Fail early, naming the task, when a needed tokenizer is missing."""
        for name in self.vq_tokenizers():
            tok.require(name, self.name)


def first_text(segments: list[Segment]) -> str:
    """The text of a decoded text target (segments are canonical, so there is at most one Text)."""
    return "".join(s.text for s in segments if isinstance(s, Text))


def scene_text_holds(record: Any) -> bool:
    """False when a crop dropped objects: captions, answers and labels about the whole scene may then be
    wrong ("two dogs" with one left), so tasks built on them skip the record."""
    return not record.meta.get("dropped_objects")


def pick(items: list, rng: random.Random, train: bool, item: int | None = None) -> Any:
    """`items[item]` when an item is asked for (evaluation enumerates them all), else a random item for
    training and the first one for evaluation (deterministic references)."""
    if item is not None:
        if not 0 <= item < len(items):
            raise IndexError(f"item {item} out of range: the record has {len(items)}")
        return items[item]
    return rng.choice(items) if train else items[0]


def check_image(image: Any, task: str) -> np.ndarray:
    """An HxWx3 uint8 array, or ValueError naming what is wrong (shape, dtype, size)."""
    if image is None:
        raise ValueError(f"task {task!r} needs an image")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"task {task!r}: the image must be HxWx3 (RGB), got shape {tuple(array.shape)}")
    if array.dtype != np.uint8:
        raise ValueError(f"task {task!r}: the image must be uint8 (0..255), got dtype {array.dtype}")
    if min(array.shape[:2]) < 1:
        raise ValueError(f"task {task!r}: the image is empty ({array.shape[1]}x{array.shape[0]} pixels)")
    return array


SILENCE = 1e-4  # peak amplitude below which a clip counts as silent


def check_audio(audio: Any, sample_rate: Any, task: str) -> tuple[np.ndarray, int]:
    """(mono float32 waveform, sample rate), or ValueError for missing, empty, silent or non-finite
    audio, a stereo clip or a missing sample rate."""
    if audio is None:
        raise ValueError(f"task {task!r} needs audio")
    wave = np.asarray(audio, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"task {task!r}: audio must be a mono waveform (1-D), got shape {tuple(wave.shape)}")
    if wave.size == 0:
        raise ValueError(f"task {task!r}: the audio is empty (0 samples)")
    if not np.isfinite(wave).all():
        raise ValueError(f"task {task!r}: the audio holds NaN or inf samples")
    if float(np.abs(wave).max()) < SILENCE:
        raise ValueError(f"task {task!r}: the audio is silent (peak amplitude < {SILENCE})")
    if not sample_rate or int(sample_rate) <= 0:
        raise ValueError(f"task {task!r}: audio needs a positive sample_rate, got {sample_rate!r}")
    return wave, int(sample_rate)


# -- transformed views: predictions back on the original image -------------------------------------
GEOMETRY_KEYS = ("affine", "original_size", "keypoint_flip")


def view_geometry(record: Any) -> dict[str, list]:
    """The map from the original image to a transformed view, copied from `record.meta` (where
    unio/data/transforms.py accumulates it) for an example's `meta`: `affine` = (ax, bx, ay, by) with
    x_view = ax * x + bx and y_view = ay * y + by, the `original_size` (width, height), and the
    `keypoint_flip` permutation of the last horizontal flip. Empty for an untransformed record."""
    return {key: list(record.meta[key]) for key in GEOMETRY_KEYS if record.meta.get(key) is not None}


def _inverse(meta: dict[str, Any]) -> tuple[float, float, float, float, float, float] | None:
    if meta.get("affine") is None:
        return None
    ax, bx, ay, by = (float(v) for v in meta["affine"])
    w, h = (float(v) for v in meta["original_size"])
    return ax, bx, ay, by, w, h


def boxes_to_original(boxes: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """[N, 4] xyxy boxes in the view's pixels -> the original image's pixels, clipped to it (parts in
    the view's padding fall outside). Unchanged when `meta` holds no affine."""
    geometry = _inverse(meta)
    if geometry is None:
        return boxes
    ax, bx, ay, by, w, h = geometry
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    xs = np.sort((boxes[:, [0, 2]] - bx) / ax, axis=1).clip(0, w)  # sorted: a mirror swaps x1 and x2
    ys = np.sort((boxes[:, [1, 3]] - by) / ay, axis=1).clip(0, h)
    return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)


def keypoints_to_original(keypoints: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Kx3 (x, y, visibility) in the view's pixels -> the original image's pixels. Absent points stay
    (0, 0, 0); after an odd number of flips left and right points are swapped back (`keypoint_flip`)."""
    geometry = _inverse(meta)
    if geometry is None:
        return keypoints
    ax, bx, ay, by, w, h = geometry
    out = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3).copy()
    labelled = out[:, 2] > 0
    out[labelled, 0] = ((out[labelled, 0] - bx) / ax).clip(0, w)
    out[labelled, 1] = ((out[labelled, 1] - by) / ay).clip(0, h)
    flip = meta.get("keypoint_flip")
    if ax < 0 and flip is not None:
        if len(flip) != len(out):
            raise ValueError(f"meta 'keypoint_flip' has {len(flip)} entries for {len(out)} keypoints")
        out = out[list(flip)]  # a flip permutation is its own inverse
    return out


def mask_to_original(mask: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """HxW bool mask of the view -> the original image's size, sampling the view bilinearly at the
    original pixel centres (pixels that map outside the view, e.g. cropped away, are False)."""
    geometry = _inverse(meta)
    if geometry is None:
        return mask
    ax, bx, ay, by, w, h = geometry
    rows = _linear_weights(ay * (np.arange(round(h)) + 0.5) + by - 0.5, mask.shape[0])
    cols = _linear_weights(ax * (np.arange(round(w)) + 0.5) + bx - 0.5, mask.shape[1])
    return rows @ mask.astype(np.float32) @ cols.T >= 0.5


def _linear_weights(positions: np.ndarray, n: int) -> np.ndarray:
    """[len(positions), n] linear interpolation weights at continuous pixel indices (pixel i's centre
    is at i); positions more than half a pixel outside 0..n-1 get no weight."""
    weights = np.zeros((len(positions), n), dtype=np.float32)
    inside = np.flatnonzero((positions >= -0.5) & (positions <= n - 0.5))
    p = positions[inside].clip(0, n - 1)
    low = np.floor(p).astype(np.int64)
    high = np.minimum(low + 1, n - 1)
    weights[inside, low] += (1 - (p - low)).astype(np.float32)
    weights[inside, high] += (p - low).astype(np.float32)
    return weights
