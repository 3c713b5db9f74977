"""Every task on real data from ../shared/data, read by unio's own sources: COCO (image tasks),
easy-VQA (vqa), MNIST (classify, text_to_image), FSDD and LJSpeech (audio tasks). Each eval-mode
target parses back to the ground truth."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch

from tests.test_tasks import PatchMaskTokenizer, assert_matches_ground_truth, roundtrip
from unio.data.record import Record
from unio.data.sources import Source, build_source
from unio.data.sources.referring import add_referring_expressions
from unio.tasks import TASKS, Tokenizers
from unio.tasks.bundle import TINY_CONFIGS, tiny_grid_tokenizer
from unio.tokenizers.coords import CoordTokenizer
from unio.tokenizers.saved import build_tokenizer

pytestmark = pytest.mark.data


# --------------------------------------------------------------------------------------- sources
def coco_source(data_dir: Path, dataset: str = "coco_mini", split: str = "train2017") -> Source:
    ann = data_dir / dataset / "annotations"
    options = {"images": str(data_dir / dataset / split), "instances": str(ann / f"instances_{split}.json")}
    if dataset == "coco_mini":
        options["captions"] = str(ann / f"captions_{split}.json")
        options["keypoints"] = str(ann / f"person_keypoints_{split}.json")
    return build_source("coco", options)


def first(source: Source, limit: int) -> list[Record]:
    return [source[i] for i in range(min(limit, len(source)))]


# --------------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def tok(text_tokenizer) -> Tokenizers:
    # A 256x256 lossless mask tokenizer: COCO instance masks survive the resize at IoU >= 0.9.
    # An audio tokenizer with 11.3 s segments, so LJSpeech sentences fit one TTS target grid.
    long_audio = copy.deepcopy(TINY_CONFIGS["audio"])
    long_audio["audio"]["num_frames"] = 704
    torch.manual_seed(0)
    return Tokenizers.create(
        text_tokenizer,
        CoordTokenizer(),
        image=tiny_grid_tokenizer("image", 0),
        mask=PatchMaskTokenizer(resolution=256),
        audio=build_tokenizer("audio", long_audio).eval(),
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
    records = first(coco_source(data_dir), 12)
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
    check_task("vqa", first(build_source("easyvqa", {"split": "test"}), 8), tok)


@pytest.mark.slow
def test_classify_and_text_to_image_on_mnist(data_dir, tok):
    source = build_source("mnist", {"path": str(data_dir / "mnist" / "mnist_5k.csv.gz")})
    records = [source[i] for i in range(0, len(source), len(source) // 8)][:8]  # the file is sorted by class
    assert len({r.label for r in records}) == 8
    assert check_task("classify", records, tok) == 8
    check_task("text_to_image", records[:2], tok)


AUDIO_SOURCES = {
    "fsdd": lambda d: build_source("fsdd", {"root": str(d / "fsdd" / "recordings"), "split": "test"}),
    "ljspeech": lambda d: build_source("ljspeech", {"metadata": str(d / "ljspeech" / "metadata.csv")}),
}


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(AUDIO_SOURCES))
def test_audio_tasks_on_fsdd_and_ljspeech(dataset, data_dir, tok):
    records = first(AUDIO_SOURCES[dataset](data_dir), 3)
    for name in ("asr", "tts"):
        check_task(name, records, tok)
    if dataset == "fsdd":
        check_task("audio_classify", records, tok)  # labelled digits
    else:
        check_task("span_corruption", records, tok)  # transcripts as denoising text
