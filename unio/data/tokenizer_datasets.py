"""Datasets for tokenizer training and evaluation: image crops, instance-mask crops, audio clips.

All paths come from ``TokenizerDataConfig`` (Hydra group ``conf/tokenizer_data``). Sources:
- image: folders of .jpg/.jpeg/.png files.
- mask: COCO instance json files; every non-crowd instance with a box side >= ``min_box_side`` pixels
  becomes one square crop centred on its box (side = ``mask_margin`` * longer box side).
- audio: folders of .wav files, or LJSpeech-style ``metadata.csv`` files (``id|text|normalized``, audio in
  ``wavs/{id}.wav`` beside it). ``train_pattern``/``eval_pattern`` (regex on the file name) select a
  split, e.g. FSDD's official test indices 0-4.
Training items are randomly augmented; evaluation items are deterministic (centre crops, clip starts).

Bad files follow ``on_bad_sample`` as in the task sources (unio/data/bad_samples.py): ``raise`` stops at
the first one with a `BadSampleError` naming file, field and reason; ``skip`` leaves it out and lists it in
the dataset's ``bad_samples`` report (``counts`` gives items kept and files skipped). Either way a
dataset with no usable item, or that lost more than ``max_bad_fraction`` of its files, is a ValueError
with the counts per reason and the first offending files.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from unio.data.bad_samples import (
    MALFORMED,
    WRONG_SAMPLE_RATE,
    BadSampleError,
    BadSampleReport,
    check_policy,
)
from unio.data.sources._readers import read_image, read_wav

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class TokenizerDataConfig:
    kind: str = "image"  # image | mask | audio
    train: list[str] = field(default_factory=list)
    eval: list[str] = field(default_factory=list)
    train_pattern: str = ".*"  # regex on file names (images, audio)
    eval_pattern: str = ".*"
    # image: each training crop covers resolution * s native pixels, s log-uniform in train_scale
    # (s=1: native-resolution crop; larger s: zoomed-out views, down to whole-image thumbnails).
    train_scale: list[float] = field(default_factory=lambda: [1.0, 4.0])
    eval_resize: int | None = None  # image eval: resize the shorter side first (None = native pixels)
    min_box_side: float = 8.0  # mask: skip instances whose longer box side is shorter (pixels)
    mask_margin: float = 1.25  # mask: crop side / longer box side
    max_eval_items: int | None = None
    on_bad_sample: str = "raise"  # raise | skip (corrupt or missing files, wrong sample rate, bad masks)
    max_bad_fraction: float = 0.1  # under skip: fail when more than this fraction of the files is bad

    def __post_init__(self) -> None:
        if self.kind not in ("image", "mask", "audio"):
            raise ValueError(f"tokenizer_data.kind={self.kind!r}: expected image, mask or audio")
        try:
            check_policy(self.on_bad_sample)
        except ValueError as error:
            raise ValueError(f"tokenizer_data.{error}") from None


class _Loader:
    """Loads items one by one under the bad-sample policy; `finish` checks what is left."""

    def __init__(self, cfg: TokenizerDataConfig, what: str, train: bool, unit: str = "files") -> None:
        self.cfg, self.what, self.unit = cfg, what, unit
        self.report = BadSampleReport(f"tokenizer_data {what} ({'train' if train else 'eval'})")
        self.attempted = 0

    def __call__(self, load, *args):
        """`load(*args)`, or None when it raised a BadSampleError under `skip`."""
        self.attempted += 1
        try:
            return load(*args)
        except BadSampleError as error:
            if self.cfg.on_bad_sample == "raise":
                raise
            self.report.add(error)
            return None

    def finish(self, kept: int) -> dict[str, int]:
        bad = len(self.report)
        reasons = ", ".join(f"{r} {n}" for r, n in self.report.counts().items())
        detail = f"({reasons}; first: {self.report.first()})" if bad else ""
        if kept == 0:
            raise ValueError(
                f"tokenizer_data: no usable {self.what} {self.unit}: {bad} of {self.attempted} bad {detail}".rstrip()
            )
        if bad and bad / self.attempted > self.cfg.max_bad_fraction:
            raise ValueError(
                f"tokenizer_data: lost {bad} of {self.attempted} {self.what} {self.unit} ({bad / self.attempted:.0%}) > "
                f"max_bad_fraction={self.cfg.max_bad_fraction} {detail}; fix the files or raise "
                "tokenizer_data.max_bad_fraction"
            )
        return {"items": kept, f"bad_{self.unit}": bad}


def _files(roots: list[str], suffixes: tuple[str, ...], pattern: str, what: str) -> list[Path]:
    regex = re.compile(pattern)
    found: list[Path] = []
    for root in roots:
        path = Path(root)
        if not path.is_dir():
            raise FileNotFoundError(f"{what} folder not found: {path}")
        found += [p for p in sorted(path.iterdir()) if p.suffix.lower() in suffixes and regex.search(p.name)]
    if not found:
        raise ValueError(f"no {what} files matching {pattern!r} in {roots}")
    return found


def _to_model_space(img: Image.Image) -> Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 127.5 - 1.0


class ImageCropDataset(Dataset):
    """Float [3, R, R] crops in [-1, 1]; decoded images are cached in memory."""

    def __init__(self, cfg: TokenizerDataConfig, resolution: int, train: bool) -> None:
        self.cfg, self.resolution, self.train = cfg, resolution, train
        files = _files(
            cfg.train if train else cfg.eval,
            IMAGE_SUFFIXES,
            cfg.train_pattern if train else cfg.eval_pattern,
            "image",
        )
        if not train and cfg.max_eval_items:
            files = files[: cfg.max_eval_items]
        loader = _Loader(cfg, "image", train)
        loaded = [(p, loader(read_image, p)) for p in files]
        self.files = [p for p, image in loaded if image is not None]
        self.images = [Image.fromarray(image) for _, image in loaded if image is not None]
        self.bad_samples = loader.report
        self.counts = loader.finish(len(self.images))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Tensor:
        img, r = self.images[index], self.resolution
        if not self.train:
            if self.cfg.eval_resize:
                scale = self.cfg.eval_resize / min(img.size)
                img = img.resize(
                    (max(r, round(img.width * scale)), max(r, round(img.height * scale))), Image.BICUBIC
                )
            left, top = (img.width - r) // 2, (img.height - r) // 2
            return _to_model_space(img.crop((left, top, left + r, top + r)))
        lo, hi = self.cfg.train_scale
        side = r * math.exp(random.uniform(math.log(lo), math.log(hi)))
        side = min(side, float(min(img.size)))
        left, top = random.uniform(0, img.width - side), random.uniform(0, img.height - side)
        crop = img.resize((r, r), Image.BICUBIC, box=(left, top, left + side, top + side))
        if random.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        return _to_model_space(crop)


class MaskCropDataset(Dataset):
    """Float [1, R, R] binary instance masks (0/1), square crops around each instance's box."""

    def __init__(self, cfg: TokenizerDataConfig, resolution: int, train: bool) -> None:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO

        self.cfg, self.resolution, self.train = cfg, resolution, train
        self.rles: list[dict] = []
        self.boxes: list[tuple[float, float, float, float]] = []
        loader = _Loader(cfg, "mask", train, unit="instances")

        def instance(ann_file: str, coco, ann: dict) -> tuple[dict, tuple] | None:
            field_name = f"annotations[id={ann.get('id')}]"
            try:
                box = tuple(float(v) for v in ann["bbox"])
                if len(box) != 4:
                    raise ValueError(f"bbox {ann['bbox']!r} has {len(box)} values")
                if max(box[2:]) < cfg.min_box_side or not ann.get("segmentation"):
                    return None
                rle = coco.annToRLE(ann)
                area = mask_utils.area(rle)
            except (KeyError, TypeError, ValueError, IndexError) as error:
                raise BadSampleError(
                    ann_file, field_name, MALFORMED, str(error), str(ann.get("id"))
                ) from None
            return (rle, box) if area else None

        for ann_file in cfg.train if train else cfg.eval:
            if not Path(ann_file).is_file():
                raise FileNotFoundError(f"COCO instance annotation file not found: {ann_file}")
            coco = COCO(str(ann_file))
            for ann in coco.loadAnns(sorted(coco.getAnnIds(iscrowd=False))):
                found = loader(instance, ann_file, coco, ann)
                if found is not None:
                    self.rles.append(found[0])
                    self.boxes.append(found[1])
        self.bad_samples = loader.report
        if not self.rles and not len(loader.report):
            raise ValueError(
                f"no instance masks with box side >= {cfg.min_box_side} in {cfg.train if train else cfg.eval}"
            )
        self.counts = loader.finish(len(self.rles))
        if not train and cfg.max_eval_items:
            self.rles, self.boxes = self.rles[: cfg.max_eval_items], self.boxes[: cfg.max_eval_items]
        self._decode = mask_utils.decode

        if train:  # cache a 128x128 view of each instance's largest augmented window: no RLE decode per step
            self.views = [
                self._crop(i, *self._window(i, 1.0, 0.0, 0.0, self.MAX_SCALE), self.VIEW)
                for i in range(len(self.rles))
            ]

    MAX_SCALE, VIEW = 1.5, 128  # largest jittered window / base window; cached view size

    def _window(
        self, index: int, scale: float, dx: float, dy: float, extra: float = 1.0
    ) -> tuple[float, float, float]:
        x, y, w, h = self.boxes[index]
        return max(w, h) * self.cfg.mask_margin * scale * extra, x + w / 2 + dx * w, y + h / 2 + dy * h

    def _crop(self, index: int, side: float, cx: float, cy: float, size: int) -> Image.Image:
        full = Image.fromarray(self._decode(self.rles[index]) * 255)
        box = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
        return full.crop(box).resize((size, size), Image.BILINEAR)  # crop pads outside the image with 0

    def __len__(self) -> int:
        return len(self.rles)

    def __getitem__(self, index: int) -> Tensor:
        r = self.resolution
        if self.train:  # jitter scale and centre a little, and flip
            scale = random.uniform(0.9, 1.3)
            dx, dy = random.uniform(-0.1, 0.1), random.uniform(-0.1, 0.1)
            big_side, big_cx, big_cy = self._window(index, 1.0, 0.0, 0.0, self.MAX_SCALE)
            side, cx, cy = self._window(index, scale, dx, dy)
            k = self.VIEW / big_side
            left, top = (
                (cx - side / 2 - (big_cx - big_side / 2)) * k,
                (cy - side / 2 - (big_cy - big_side / 2)) * k,
            )
            crop = self.views[index].resize(
                (r, r), Image.BILINEAR, box=(left, top, left + side * k, top + side * k)
            )
            if random.random() < 0.5:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            crop = self._crop(index, *self._window(index, 1.0, 0.0, 0.0), r)
        return torch.from_numpy((np.asarray(crop) >= 128).astype(np.float32))[None]


def _audio_files(sources: list[str], pattern: str) -> list[Path]:
    regex = re.compile(pattern)
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_file() and path.name.endswith(".csv"):  # LJSpeech-style metadata
            for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                clip_id = line.split("|", 1)[0].strip()
                if not clip_id:
                    raise ValueError(f"{path}:{line_no}: empty clip id")
                wav = path.parent / "wavs" / f"{clip_id}.wav"
                if regex.search(wav.name):
                    files.append(wav)
        elif path.is_dir():
            files += [
                p for p in sorted(path.iterdir()) if p.suffix.lower() == ".wav" and regex.search(p.name)
            ]
        else:
            raise FileNotFoundError(f"audio source not found (expected a folder or metadata.csv): {path}")
    if not files:
        raise ValueError(f"no .wav files matching {pattern!r} in {sources}")
    return files


class AudioClipDataset(Dataset):
    """(waveform [segment_samples] float32, valid_length) at ``sample_rate``; clips cached in memory.

    Training picks a random window of long clips; evaluation takes the start. Short clips are zero-padded.
    """

    def __init__(
        self, cfg: TokenizerDataConfig, sample_rate: int, segment_samples: int, train: bool, resample=None
    ) -> None:
        self.cfg, self.segment, self.train = cfg, segment_samples, train
        files = _audio_files(
            cfg.train if train else cfg.eval, cfg.train_pattern if train else cfg.eval_pattern
        )
        if not train and cfg.max_eval_items:
            files = files[: cfg.max_eval_items]
        self.files: list[Path] = []
        self.clips: list[Tensor] = []

        def clip(path: Path) -> Tensor:
            samples, rate = read_wav(path, "audio")
            wav = torch.from_numpy(samples)
            if rate != sample_rate:
                if resample is None:
                    raise BadSampleError(path, "sample_rate", WRONG_SAMPLE_RATE,
                                         f"{rate} Hz, expected {sample_rate} Hz (pass resample=)")  # fmt: skip
                wav = resample(wav, rate, sample_rate)
            return wav

        loader = _Loader(cfg, "audio", train)
        for path in files:
            wav = loader(clip, path)
            if wav is not None:
                self.files.append(path)
                self.clips.append(wav)
        self.bad_samples = loader.report
        self.counts = loader.finish(len(self.clips))

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        wav = self.clips[index]
        start = (
            random.randint(0, wav.numel() - self.segment) if self.train and wav.numel() > self.segment else 0
        )
        piece = wav[start : start + self.segment]
        out = torch.zeros(self.segment)
        out[: piece.numel()] = piece
        return out, piece.numel()


def build_tokenizer_dataset(cfg: TokenizerDataConfig, tokenizer, train: bool) -> Dataset:
    """Dataset matching a tokenizer (an ImageTokenizer, MaskTokenizer or AudioTokenizer)."""
    if cfg.kind != tokenizer.kind:
        raise ValueError(f"tokenizer_data.kind={cfg.kind!r} does not match the {tokenizer.kind!r} tokenizer")
    if cfg.kind == "image":
        return ImageCropDataset(cfg, tokenizer.cfg.resolution, train)
    if cfg.kind == "mask":
        return MaskCropDataset(cfg, tokenizer.cfg.resolution, train)
    return AudioClipDataset(
        cfg, tokenizer.cfg.audio.sample_rate, tokenizer.cfg.audio.segment_samples, train, tokenizer.resample
    )
