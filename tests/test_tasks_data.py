"""Every task on real data from ../shared/data: COCO (image tasks), easy-VQA (vqa), MNIST (classify,
text_to_image), FSDD and LJSpeech (audio tasks). Each eval-mode target parses back to the ground truth.

The records are read by the small readers below (pycocotools + the project's WAV/image readers), so
these tests exercise the tasks on real annotations independently of unio/data/sources.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_tasks import PatchMaskTokenizer, assert_matches_ground_truth, roundtrip
from unio.data.io import load_wav
from unio.data.record import Object, Record
from unio.data.sources.base import Source
from unio.data.sources.referring import add_referring_expressions
from unio.tasks import TASKS, Tokenizers
from unio.tasks.bundle import tiny_grid_tokenizer
from unio.tokenizers.coords import CoordTokenizer

pytestmark = pytest.mark.data
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


# --------------------------------------------------------------------------------------- readers
class CocoTestSource(Source):
    """Lazy COCO reader: annotations in memory, images and masks decoded when a record is asked for."""

    kind = "coco-test"

    def __init__(self, root: Path, split: str, captions: bool = True, keypoints: bool = True) -> None:
        from pycocotools.coco import COCO

        super().__init__("raise", f"{root.name}/{split}")

        def load(name: str) -> COCO:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
                return COCO(str(root / "annotations" / f"{name}_{split}.json"))

        self.root, self.split = root, split
        self.instances = load("instances")
        self.captions = load("captions") if captions else None
        self.people = load("person_keypoints") if keypoints else None
        self._index = sorted(self.instances.getImgIds())

    def load(self, index: int) -> Record:
        coco, image_id = self.instances, self._index[index]
        info = coco.loadImgs(image_id)[0]
        image = np.asarray(Image.open(self.root / self.split / info["file_name"]).convert("RGB"))
        h, w = image.shape[:2]
        objects = []
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            x, y, bw, bh = ann["bbox"]
            box = np.clip([x, y, x + bw, y + bh], 0, [w, h, w, h])
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            keypoints = None
            if self.people is not None and ann["id"] in self.people.anns:
                keypoints = np.asarray(self.people.anns[ann["id"]]["keypoints"], dtype=np.float32).reshape(
                    -1, 3
                )
            category = coco.cats[ann["category_id"]]["name"]
            mask = coco.annToMask(ann).astype(bool)
            objects.append(
                Object(box=box, category=category, mask=mask, keypoints=keypoints, crowd=bool(ann["iscrowd"]))
            )
        add_referring_expressions(objects, (w, h))
        caps = self.captions
        texts = [a["caption"].strip() for a in caps.loadAnns(caps.getAnnIds(imgIds=image_id))] if caps else []
        return Record(
            id=str(image_id), source=info["file_name"], image=image, objects=objects, captions=texts
        )


def coco_records(root: Path, split: str, limit: int) -> list[Record]:
    source = CocoTestSource(root, split)
    return [source[i] for i in range(min(limit, len(source)))]


def mnist_records(root: Path, limit: int) -> list[Record]:
    records = []
    with gzip.open(root / "mnist" / "mnist_5k.csv.gz", "rt") as f:
        for i, row in enumerate(csv.reader(f)):
            if i == limit:
                break
            pixels = np.asarray(row[1:], dtype=np.uint8).reshape(28, 28)
            image = np.repeat(pixels[:, :, None], 3, axis=2)
            records.append(Record(id=f"mnist-{i}", source="mnist_5k.csv.gz", image=image, label=row[0]))
    return records


def easy_vqa_records(limit: int) -> list[Record]:
    import easy_vqa

    questions, answers, image_ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    records = []
    for question, answer, image_id in list(zip(questions, answers, image_ids))[:limit]:
        image = np.asarray(Image.open(paths[image_id]).convert("RGB"))
        records.append(
            Record(id=f"easyvqa-{image_id}", source=paths[image_id], image=image, qa=[(question, answer)])
        )
    return records


def fsdd_records(root: Path, limit: int) -> list[Record]:
    records = []
    for path in sorted((root / "fsdd" / "recordings").glob("*.wav"))[:limit]:
        wave, rate = load_wav(path)
        digit = path.stem.split("_")[0]
        records.append(
            Record(
                id=path.stem,
                source=str(path),
                audio=wave.numpy(),
                sample_rate=rate,
                transcript=DIGITS[int(digit)],
                label=digit,
            )
        )
    return records


def ljspeech_records(root: Path, limit: int) -> list[Record]:
    records = []
    with open(root / "ljspeech" / "metadata.csv", encoding="utf-8") as f:
        for line in list(f)[:limit]:
            clip, _, normalized = line.rstrip("\n").split("|")
            path = root / "ljspeech" / "wavs" / f"{clip}.wav"
            wave, rate = load_wav(path)
            records.append(
                Record(id=clip, source=str(path), audio=wave.numpy(), sample_rate=rate, transcript=normalized)
            )
    return records


# --------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def tok(text_tokenizer) -> Tokenizers:
    # A 256x256 lossless mask tokenizer: COCO instance masks survive the resize at IoU >= 0.9.
    return Tokenizers.create(
        text_tokenizer,
        CoordTokenizer(),
        image=tiny_grid_tokenizer("image", 0),
        mask=PatchMaskTokenizer(resolution=256),
        audio=tiny_grid_tokenizer("audio", 0),
    )


def check_task(name: str, records: list[Record], tok: Tokenizers) -> int:
    task = TASKS[name]
    built = 0
    for record in records:
        example = task.build(record, random.Random(0), tok, train=False)
        if example is None:
            continue
        assert_matches_ground_truth(name, record, example, roundtrip(task, example, tok), tok)
        built += 1
    assert built, f"task {name} built no example from {[r.source for r in records[:3]]}"
    return built


COCO_TASKS = (
    "caption",
    "detect",
    "ground",
    "region_caption",
    "refseg",
    "keypoints",
    "text_to_image",
    "masked_image",
    "span_corruption",
)


@pytest.mark.slow
def test_image_tasks_on_coco(data_dir, tok):
    records = coco_records(data_dir / "coco_mini", "train2017", limit=12)
    # refseg IoU is checked on objects of at least 32x32 pixels (smaller ones lose detail at 256x256).
    for name in COCO_TASKS:
        usable = records
        if name == "refseg":
            usable = [
                r.replace(
                    objects=[o for o in r.objects if min(o.box[2] - o.box[0], o.box[3] - o.box[1]) >= 32]
                )
                for r in records
            ]
            for r in usable:
                for o in r.objects:
                    o.referring = []
                add_referring_expressions(r.objects, r.image_size)
        check_task(name, usable, tok)


def test_vqa_on_easy_vqa(tok):
    check_task("vqa", easy_vqa_records(limit=8), tok)


def test_classify_and_text_to_image_on_mnist(data_dir, tok):
    records = mnist_records(data_dir, limit=8)
    assert check_task("classify", records, tok) == 8
    check_task("text_to_image", records[:2], tok)


@pytest.mark.slow
@pytest.mark.parametrize("reader", [fsdd_records, ljspeech_records], ids=["fsdd", "ljspeech"])
def test_audio_tasks_on_fsdd_and_ljspeech(reader, data_dir, tok):
    records = reader(data_dir, limit=3)
    for name in ("asr", "tts"):
        check_task(name, records, tok)
    if reader is fsdd_records:
        check_task("audio_classify", records, tok)  # labelled digits
    else:
        check_task("span_corruption", records, tok)  # transcripts as denoising text
