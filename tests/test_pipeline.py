"""`unio.pipeline.Pipeline` and `unio-predict` on a tiny checkpoint trained once for the module."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.train_helpers import TINY, compose_train
from unio.data.sources import build_source
from unio.pipeline import (
    AudioResult,
    BoxResult,
    DetectionResult,
    ImageResult,
    KeypointsResult,
    MaskResult,
    Pipeline,
    TextResult,
)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from unio.train.trainer import train

    root = tmp_path_factory.mktemp("piperun")
    overrides = [*TINY, f"cache_dir={root / 'cache'}", f"run_dir={root / 'run'}"]
    train(compose_train([*overrides, "trainer.max_steps=2", "trainer.val_every=0"]))
    return root / "run"


@pytest.fixture(scope="module")
def pipe(run_dir) -> Pipeline:
    return Pipeline.from_pretrained(run_dir, device="cpu")


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A non-square picture (40 x 24), so pixel units cannot be confused with the tokenizer's."""
    record = build_source({"kind": "shapes", "num_records": 2, "split": "val", "image_size": 32})[0]
    return np.asarray(Image.fromarray(record.image).resize((40, 24)))


def test_from_pretrained_takes_task_options_from_the_run(run_dir, pipe):
    assert pipe.task("classify").classes == ("circle", "square", "triangle", "diamond", "star", "person")
    checkpoint = sorted((run_dir / "checkpoints").glob("step-*"))[-1]
    again = Pipeline.from_pretrained(checkpoint)
    assert again.task("classify").classes == pipe.task("classify").classes
    result = pipe.classify(np.zeros((16, 16, 3), np.uint8))
    assert isinstance(result, TextResult) and result.text in pipe.task("classify").classes


def test_image_as_path_pil_or_array_gives_the_same_result(pipe, image, tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(image).save(path)
    results = [pipe.detect(x) for x in (image, Image.fromarray(image), str(path), path)]
    assert all(isinstance(r, DetectionResult) for r in results)
    assert all(np.array_equal(r.boxes, results[0].boxes) and r.labels == results[0].labels for r in results)
    grey = pipe.caption(Image.fromarray(image).convert("L"))
    assert isinstance(grey, TextResult) and grey.text  # the answer grammar: never empty


def test_lists_in_lists_out_in_order(pipe, image):
    flipped = image[:, ::-1].copy()
    batch = pipe.vqa([image, flipped, image], "How many shapes are there?")
    assert isinstance(batch, list) and len(batch) == 3
    one = pipe.vqa(image, "How many shapes are there?")
    assert batch[0].text == one.text == batch[2].text
    assert pipe.caption([]) == []


def test_geometry_is_in_the_input_pixels(pipe, image):
    box = pipe.ground(image, "the red circle")
    assert isinstance(box, BoxResult)
    if box.box is not None:
        x1, y1, x2, y2 = box.box
        assert 0 <= x1 <= x2 <= 40 and 0 <= y1 <= y2 <= 24
    mask = pipe.segment(image, "the red circle")
    assert isinstance(mask, MaskResult) and mask.mask.shape == (24, 40)
    points = pipe.keypoints(image, [2, 2, 30, 20])
    assert isinstance(points, KeypointsResult) and points.keypoints.shape == (17, 3)
    visible = points.keypoints[points.keypoints[:, 2] > 0]
    assert ((visible[:, 0] <= 40) & (visible[:, 1] <= 24)).all()
    region = pipe.region_caption([image, image], [[2, 2, 30, 20], [0, 0, 10, 10]])
    assert len(region) == 2 and all(r.text for r in region)


def test_generation_tasks(pipe):
    picture = pipe.generate_image("a red circle")
    assert isinstance(picture, ImageResult) and picture.image.ndim == 3 and picture.image.dtype == np.uint8
    speech = pipe.speak(["seven", "three tones"])
    assert len(speech) == 2 and all(isinstance(s, AudioResult) and s.sample_rate > 0 for s in speech)
    wave = np.sin(np.linspace(0, 400, 8000)).astype(np.float32) * 0.5
    text = pipe.transcribe(wave, sample_rate=8000)
    assert isinstance(text, TextResult) and text.text


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: p.detect(Image.new("RGBA", (8, 8))), "mode 'RGBA'"),
        (lambda p: p.detect(Image.new("RGB", (1, 8))), "size 1x8"),
        (lambda p: p.detect(np.zeros((8, 8, 3), np.float32)), "uint8"),
        (lambda p: p.transcribe(np.zeros(0, np.float32), 8000), "empty"),
        (lambda p: p.transcribe(np.zeros(8000, np.float32), 8000), "silent"),
        (lambda p: p.transcribe(np.ones(80, np.float32)), "sample_rate"),
        (lambda p: p("detekt", image=np.zeros((8, 8, 3), np.uint8)), "unknown task"),
        (lambda p: p.vqa(np.zeros((8, 8, 3), np.uint8), ""), "question"),
        (lambda p: p.caption([np.zeros((8, 8, 3), np.uint8)] * 2 + ["/nonexistent/x.png"]), "no such file"),
    ],
)
def test_bad_inputs_are_one_clear_error(pipe, call, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        call(pipe)


def test_predict_writes_pictures_sounds_and_json(run_dir, image, tmp_path):
    from scripts.predict import PredictConfig, run

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(image).save(folder / f"{i}.png")
    out = run(
        PredictConfig(checkpoint=str(run_dir), task="detect", inputs=str(folder), out_dir=str(tmp_path / "d"))
    )
    report = json.loads((out / "results.json").read_text())
    assert [Path(r["input"]).name for r in report["results"]] == ["0.png", "1.png"]
    assert all((out / r["picture"]).is_file() for r in report["results"])
    out = run(
        PredictConfig(checkpoint=str(run_dir), task="tts", texts=["seven"], out_dir=str(tmp_path / "t"))
    )
    report = json.loads((out / "results.json").read_text())
    assert (out / report["results"][0]["audio"]).read_bytes()[:4] == b"RIFF"
