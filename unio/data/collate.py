"""Pretokenized examples -> padded model batches.

An example (a row of the pretokenized cache) holds `input_ids, input_modality, input_row, input_col`
and `target_ids, target_modality, target_row, target_col` (target ends with <eos>), and optionally
`target_loss` (1 = trained, 0 = ignored, e.g. Pix2Seq noise-box coordinates). The batch holds, all
[B, L] with L a multiple of `pad_to_multiple`:

    input_ids, input_modality, input_position, input_row, input_col      LongTensor
    input_mask                                                           BoolTensor, True = real token
    decoder_input_ids = <bos> + target[:-1], decoder_modality, decoder_position,
    decoder_row, decoder_col                                             LongTensor
    decoder_mask                                                         BoolTensor
    targets = target ids, -100 on padding and on ignored tokens          LongTensor
    target_group (only with `groups`): example group of each target token, -1 on padding

Padding uses <pad> (id 0), modality 0, position 0 and row/col -1 (the "not a grid token" value).

Patch inputs: an example whose input holds an image placeholder span (unio/sequence.py `ImagePatches`)
carries its pixels as `input_image`: an HxWx3 uint8 array, or the pretokenized cache's bytes plus
`input_image_shape`. The batch then has `input_images` [n_images, 3, H, W] uint8: the images of the
examples in row-major order (row 0's examples left to right, then row 1's, ..., also when packed), which
is the order in which the model fills the placeholder spans. The key is absent when no example of the
batch has an image; all images of a batch must have the same size. Audio patch inputs (`AudioPatches`)
alike: `input_audio` is a mels x frames float16 log-mel spectrogram in [0, 1] (or the cache's bytes
plus `input_audio_shape`), and the batch's `input_audio` is [n_clips, 1, mels, frames] float16, in
the same row-major order; a batch may hold both, either or neither.

Packing (`pack=True`) puts several short examples into one row, first-fit in batch order, as long as
both the input and the target part fit `max_input_len` / `max_target_len`. Positions restart at 0 for
every example and `input_segment_ids` / `decoder_segment_ids` ([B, L], 1..k per row, 0 on padding) tell
the model which tokens may attend to each other (block-diagonal attention; without it, packed examples
would see each other). A packed batch has fewer rows than the list of examples it was given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unio.vocab import MODALITIES

IGNORE_INDEX = -100
IMAGE_KEY = "input_images"  # = unio.model.transformer.IMAGE_KEY (collation sits below the model layer)
AUDIO_KEY = "input_audio"  # = unio.model.transformer.AUDIO_KEY
TEXT_MODALITY = MODALITIES.index("text")  # the decoder's leading <bos> is a text-modality token
INPUT_FIELDS = ("ids", "modality", "row", "col")


@dataclass
class CollatorConfig:
    pad_to_multiple: int = 8
    max_input_len: int | None = None  # None = no limit (longer examples raise; the pretokenizer filters)
    max_target_len: int | None = None
    pack: bool = False
    # Names of the example groups (mixture components, "dataset/task"). When set, the batch gets
    # `target_group` [B, T]: the index of each target token's example's `component` (-1 on padding),
    # so the loss can be reported per task.
    groups: tuple[str, ...] | None = None


class Collator:
    """Callable turning a list of examples into a batch dict (see module docstring)."""

    def __init__(self, bos_id: int, pad_id: int = 0, config: CollatorConfig | None = None) -> None:
        self.bos_id = bos_id
        self.pad_id = pad_id
        self.config = config or CollatorConfig()
        if self.config.pad_to_multiple < 1:
            raise ValueError(f"collator: pad_to_multiple must be >= 1, got {self.config.pad_to_multiple}")
        if self.config.pack and (self.config.max_input_len is None or self.config.max_target_len is None):
            raise ValueError("collator: pack=True needs max_input_len and max_target_len")
        self._group_index = {name: i for i, name in enumerate(self.config.groups or ())}

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("collator: empty list of examples")
        items = [self._prepare(ex, i) for i, ex in enumerate(examples)]
        rows = self._pack(items) if self.config.pack else [[item] for item in items]
        images = [ex_image for row in rows for item in row if (ex_image := item.get(IMAGE_KEY)) is not None]
        audio = [clip for row in rows for item in row if (clip := item.get(AUDIO_KEY)) is not None]
        batch = self._pad(
            [
                [{k: v for k, v in item.items() if k not in (IMAGE_KEY, AUDIO_KEY)} for item in row]
                for row in rows
            ]
        )
        if images:
            batch[IMAGE_KEY] = stack_images(images, "collator")
        if audio:
            batch[AUDIO_KEY] = stack_audio(audio, "collator")
        return batch

    # ----------------------------------------------------------------------------- steps
    def _prepare(self, example: Mapping[str, Any], index: int) -> dict[str, np.ndarray]:
        """One example as int64 arrays: encoder side, decoder inputs (shifted) and loss targets."""
        try:
            enc = {f: np.asarray(example[f"input_{f}"], dtype=np.int64) for f in INPUT_FIELDS}
            tgt = {f: np.asarray(example[f"target_{f}"], dtype=np.int64) for f in INPUT_FIELDS}
        except KeyError as err:
            raise KeyError(
                f"collator: example {index} has no field {err}; it has {sorted(example)}"
            ) from None
        n_in, n_tgt = len(enc["ids"]), len(tgt["ids"])
        if n_in == 0 or n_tgt == 0:
            raise ValueError(f"collator: example {index} has an empty input or target")
        for side, n, limit in (
            ("input", n_in, self.config.max_input_len),
            ("target", n_tgt, self.config.max_target_len),
        ):
            if limit is not None and n > limit:
                raise ValueError(
                    f"collator: example {index} has {n} {side} tokens > max_{side}_len={limit}; "
                    "pretokenize with the same limits (it drops and reports longer examples)"
                )
        loss = np.asarray(example.get("target_loss", np.ones(n_tgt)), dtype=np.int64)
        targets = np.where(loss > 0, tgt["ids"], IGNORE_INDEX)
        shift = lambda values, first: np.concatenate([[first], values[:-1]])  # noqa: E731
        out = {
            "input_ids": enc["ids"],
            "input_modality": enc["modality"],
            "input_row": enc["row"],
            "input_col": enc["col"],
            "decoder_input_ids": shift(tgt["ids"], self.bos_id),
            "decoder_modality": shift(tgt["modality"], TEXT_MODALITY),
            "decoder_row": shift(tgt["row"], -1),
            "decoder_col": shift(tgt["col"], -1),
            "targets": targets,
        }
        image = example_image(example, f"collator: example {index}")
        if image is not None:
            out[IMAGE_KEY] = image
        audio = example_audio(example, f"collator: example {index}")
        if audio is not None:
            out[AUDIO_KEY] = audio
        if self.config.groups is not None:
            component = example.get("component")
            if component not in self._group_index:
                raise KeyError(
                    f"collator: example {index} has component {component!r}, not one of the groups "
                    f"{list(self.config.groups)}"
                )
            out["target_group"] = np.full(n_tgt, self._group_index[component], dtype=np.int64)
        return out

    def _pack(self, items: list[dict[str, np.ndarray]]) -> list[list[dict[str, np.ndarray]]]:
        """First-fit: each example goes into the first row where both of its parts still fit."""
        max_in, max_tgt = self.config.max_input_len, self.config.max_target_len
        rows: list[list[dict[str, np.ndarray]]] = []
        used: list[tuple[int, int]] = []
        for item in items:
            n_in, n_tgt = len(item["input_ids"]), len(item["targets"])
            for r, (u_in, u_tgt) in enumerate(used):
                if u_in + n_in <= max_in and u_tgt + n_tgt <= max_tgt:
                    rows[r].append(item)
                    used[r] = (u_in + n_in, u_tgt + n_tgt)
                    break
            else:
                rows.append([item])
                used.append((n_in, n_tgt))
        return rows

    def _pad(self, rows: list[list[dict[str, np.ndarray]]]) -> dict[str, torch.Tensor]:
        m = self.config.pad_to_multiple
        len_in = max(sum(len(it["input_ids"]) for it in row) for row in rows)
        len_dec = max(sum(len(it["targets"]) for it in row) for row in rows)
        len_in, len_dec = -(-len_in // m) * m, -(-len_dec // m) * m
        b = len(rows)
        pads = {
            "input_ids": self.pad_id, "input_modality": 0, "input_row": -1, "input_col": -1,
            "decoder_input_ids": self.pad_id, "decoder_modality": 0, "decoder_row": -1, "decoder_col": -1,
            "targets": IGNORE_INDEX, "target_group": -1,
        }  # fmt: skip
        if self.config.groups is None:
            del pads["target_group"]
        out = {
            k: np.full((b, len_in if k.startswith("input") else len_dec), v, dtype=np.int64)
            for k, v in pads.items()
        }
        for side, length in (("input", len_in), ("decoder", len_dec)):
            out[f"{side}_position"] = np.zeros((b, length), dtype=np.int64)
            out[f"{side}_segment_ids"] = np.zeros((b, length), dtype=np.int64)
        for r, row in enumerate(rows):
            start_in = start_dec = 0
            for s, item in enumerate(row, start=1):
                n_in, n_dec = len(item["input_ids"]), len(item["targets"])
                for key, value in item.items():
                    start = start_in if key.startswith("input") else start_dec
                    out[key][r, start : start + len(value)] = value
                out["input_position"][r, start_in : start_in + n_in] = np.arange(n_in)
                out["decoder_position"][r, start_dec : start_dec + n_dec] = np.arange(n_dec)
                out["input_segment_ids"][r, start_in : start_in + n_in] = s
                out["decoder_segment_ids"][r, start_dec : start_dec + n_dec] = s
                start_in, start_dec = start_in + n_in, start_dec + n_dec
        batch = {k: torch.from_numpy(v) for k, v in out.items()}
        batch["input_mask"] = batch["input_segment_ids"] > 0
        batch["decoder_mask"] = batch["decoder_segment_ids"] > 0
        if not self.config.pack:
            del batch["input_segment_ids"], batch["decoder_segment_ids"]
        return batch


def _stored_array(example: Mapping[str, Any], key: str, dtype: type, where: str) -> np.ndarray | None:
    """`example[key]` as an array of `dtype`: raw bytes (the cache's form, shape in ``<key>_shape``) or
    an array; None when the example has none."""
    value = example.get(key)
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        shape = example.get(f"{key}_shape")
        if shape is None:
            raise KeyError(f"{where}: {key} is bytes but {key}_shape is missing")
        return np.frombuffer(value, dtype=dtype).reshape([int(s) for s in shape])
    array = np.asarray(value)
    if array.dtype != dtype:
        raise ValueError(f"{where}: {key} must be {np.dtype(dtype).name}, got {array.dtype}")
    return array


def _stack(arrays: Sequence[np.ndarray], what: str, tasks: str, options: str, where: str) -> torch.Tensor:
    """Equal-shaped arrays -> one tensor [n, ...]; a batch mixing shapes is an error naming the task
    `options` that must agree."""
    shapes = sorted({tuple(a.shape) for a in arrays})
    if len(shapes) > 1:
        raise ValueError(
            f"{where}: the batch's input {what} have different shapes {shapes}; {tasks} mixed in one batch "
            f"need the same {options}"
        )
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays)))


def example_image(example: Mapping[str, Any], where: str) -> np.ndarray | None:
    """The example's input pixels as a 3xHxW uint8 array, or None when it has none (module docstring)."""
    image = _stored_array(example, "input_image", np.uint8, where)
    if image is None:
        return None
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{where}: input_image must be HxWx3, got shape {tuple(image.shape)}")
    return image.transpose(2, 0, 1)


def stack_images(images: Sequence[np.ndarray], where: str) -> torch.Tensor:
    """3xHxW uint8 arrays -> `input_images` [n, 3, H, W] (one size per batch)."""
    return _stack(images, "images", "patch-input tasks", "input_size", where)


def example_audio(example: Mapping[str, Any], where: str) -> np.ndarray | None:
    """The example's input spectrogram as a 1 x mels x frames float16 array, or None when it has none
    (module docstring)."""
    spectrogram = _stored_array(example, "input_audio", np.float16, where)
    if spectrogram is None:
        return None
    if spectrogram.ndim != 2:
        raise ValueError(f"{where}: input_audio must be mels x frames, got shape {tuple(spectrogram.shape)}")
    return spectrogram[None]


def stack_audio(clips: Sequence[np.ndarray], where: str) -> torch.Tensor:
    """1 x mels x frames float16 arrays -> `input_audio` [n, 1, mels, frames] (one size per batch)."""
    return _stack(clips, "spectrograms", "audio patch-input tasks", "n_mels and num_frames", where)


def collate_inputs(
    inputs: Sequence[Mapping[str, Any]],
    pad_id: int = 0,
    pad_to_multiple: int = 8,
    images: Sequence[np.ndarray | None] | None = None,
    audio: Sequence[np.ndarray | None] | None = None,
) -> dict[str, torch.Tensor]:
    """Prompt-only collation for generation: encoder inputs without targets (evaluation, the pipeline
    and unio-predict). Each item is a `TokenSequence` or a mapping with `ids, modality, row, col`
    (`position` is recomputed). Returns the `input_*` keys of a training batch and `input_mask`,
    right-padded as there, which is what `unio.model.generate.generate` takes. `images` (one per
    input, HxWx3 uint8 or None: `Example.image`) gives `input_images` for patch inputs, in input order
    (absent when all are None); `audio` (one per input, mels x frames float16 or None: `Example.audio`)
    gives `input_audio` alike."""
    if not inputs:
        raise ValueError("collate_inputs: empty list of inputs")
    for name, values in (("images", images), ("audio clips", audio)):
        if values is not None and len(values) != len(inputs):
            raise ValueError(f"collate_inputs: {len(values)} {name} for {len(inputs)} inputs")
    if pad_to_multiple < 1:
        raise ValueError(f"collate_inputs: pad_to_multiple must be >= 1, got {pad_to_multiple}")
    rows = []
    for index, item in enumerate(inputs):
        if isinstance(item, Mapping):
            fields = {f: item.get(f) for f in INPUT_FIELDS}
        else:
            fields = {f: getattr(item, f, None) for f in INPUT_FIELDS}
        missing = [f for f, v in fields.items() if v is None]
        if missing:
            raise KeyError(f"collate_inputs: input {index} has no field(s) {missing}")
        row = {f: np.asarray(v, dtype=np.int64).reshape(-1) for f, v in fields.items()}
        if len(row["ids"]) == 0:
            raise ValueError(f"collate_inputs: input {index} is empty")
        rows.append(row)
    length = -(-max(len(r["ids"]) for r in rows) // pad_to_multiple) * pad_to_multiple
    pads = {"ids": pad_id, "modality": 0, "row": -1, "col": -1}
    out = {f"input_{f}": np.full((len(rows), length), v, dtype=np.int64) for f, v in pads.items()}
    out["input_position"] = np.zeros((len(rows), length), dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=bool)
    for r, row in enumerate(rows):
        n = len(row["ids"])
        for f in INPUT_FIELDS:
            out[f"input_{f}"][r, :n] = row[f]
        out["input_position"][r, :n] = np.arange(n)
        mask[r, :n] = True
    batch = {k: torch.from_numpy(v) for k, v in out.items()}
    batch["input_mask"] = torch.from_numpy(mask)
    arrays = [
        example_image({"input_image": im}, f"collate_inputs: image {i}")
        for i, im in enumerate(images or [])
        if im is not None
    ]
    if arrays:
        batch[IMAGE_KEY] = stack_images(arrays, "collate_inputs")
    clips = [
        example_audio({"input_audio": clip}, f"collate_inputs: audio {i}")
        for i, clip in enumerate(audio or [])
        if clip is not None
    ]
    if clips:
        batch[AUDIO_KEY] = stack_audio(clips, "collate_inputs")
    return batch
