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


def test_florence_prompts_give_florence_formats_in_input_pixels(pipe, image):
    from unio.florence import PROMPTS, region_from_locations, run_prompt

    assert set(run_prompt(pipe, "<CAPTION>", image)) == {"<CAPTION>"}
    assert isinstance(run_prompt(pipe, "<MORE_DETAILED_CAPTION>", image)["<MORE_DETAILED_CAPTION>"], str)
    found = run_prompt(pipe, "<OD>", image)["<OD>"]
    assert set(found) == {"bboxes", "labels"} and len(found["bboxes"]) == len(found["labels"])
    direct = pipe.detect(image)
    assert found["bboxes"] == direct.boxes.tolist() and found["labels"] == direct.labels
    grounded = run_prompt(pipe, "<CAPTION_TO_PHRASE_GROUNDING>", image, "the red circle")
    boxes = grounded["<CAPTION_TO_PHRASE_GROUNDING>"]
    assert boxes["labels"] == ["the red circle"] * len(boxes["bboxes"])
    for x1, y1, x2, y2 in boxes["bboxes"]:
        assert 0 <= x1 <= x2 <= 40 and 0 <= y1 <= y2 <= 24
    vocabulary = run_prompt(pipe, "<OPEN_VOCABULARY_DETECTION>", image, "circle")[
        "<OPEN_VOCABULARY_DETECTION>"
    ]
    assert set(vocabulary) == {"bboxes", "bboxes_labels", "polygons", "polygons_labels"}
    segmented = run_prompt(pipe, "<REFERRING_EXPRESSION_SEGMENTATION>", image, "the red circle")
    polygons = segmented["<REFERRING_EXPRESSION_SEGMENTATION>"]
    assert set(polygons) == {"polygons", "labels"} and len(polygons["polygons"]) == len(polygons["labels"])
    locations = "<loc_50><loc_83><loc_750><loc_833>"
    region = run_prompt(pipe, "<REGION_TO_DESCRIPTION>", image, locations)
    by_pixels = pipe.region_caption(image, region_from_locations(locations, 40, 24))
    assert region["<REGION_TO_DESCRIPTION>"] == by_pixels.text
    assert run_prompt(pipe, "<REGION_TO_CATEGORY>", image, [2, 2, 30, 20])["<REGION_TO_CATEGORY>"]
    assert run_prompt(pipe, "OCR", image)["<OCR>"] == pipe.read_text(image).text  # brackets optional
    tasks = {"caption", "detect", "ground", "refseg", "region_caption", "ocr"}
    assert all(spec.task in tasks for spec in PROMPTS.values())


@pytest.mark.parametrize(
    ("prompt", "text_input", "match"),
    [
        ("<OCR_WITH_REGION>", None, "<OCR_WITH_REGION> has no unio task yet"),
        ("<CAPTON>", None, "unknown Florence-2 prompt '<CAPTON>'"),
        ("<CAPTION_TO_PHRASE_GROUNDING>", None, "needs text_input \\(the expression\\)"),
        ("<CAPTION>", "a cat", "takes no text_input"),
        ("<REGION_TO_DESCRIPTION>", "<loc_1><loc_2><loc_3>", "four location tokens"),
        ("<REGION_TO_DESCRIPTION>", "<loc_1><loc_2><loc_3><loc_1000>", "N in 0..999"),
    ],
)
def test_florence_prompt_errors_name_the_problem(pipe, image, prompt, text_input, match):
    from unio.florence import run_prompt

    with pytest.raises(ValueError, match=match):
        run_prompt(pipe, prompt, image, text_input)


def test_florence_region_tokens_and_mask_polygons():
    from unio.florence import mask_polygons, region_from_locations

    assert region_from_locations("<loc_0><loc_0><loc_999><loc_999>", 1000, 500) == [0.5, 0.25, 999.5, 499.75]
    mask = np.zeros((10, 12), bool)
    mask[2:6, 3:8] = True  # rows 2-5, columns 3-7: x in [3, 8], y in [2, 6]
    mask[8:, 10:] = True  # a second region, touching the border
    polygons = mask_polygons(mask)
    assert len(polygons) == 2
    extents = sorted(
        (min(p[0::2]), min(p[1::2]), max(p[0::2]), max(p[1::2])) for p in (np.array(q) for q in polygons)
    )
    assert extents == [(3.0, 2.0, 8.0, 6.0), (10.0, 8.0, 12.0, 10.0)]
    assert mask_polygons(np.zeros((4, 4), bool)) == []


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
    out = run(
        PredictConfig(checkpoint=str(run_dir), prompt="OD", inputs=str(folder), out_dir=str(tmp_path / "f"))
    )
    report = json.loads((out / "results.json").read_text())
    assert report["prompt"] == "<OD>" and len(report["results"]) == 2
    assert all(set(r["<OD>"]) == {"bboxes", "labels"} for r in report["results"])
    with pytest.raises(ValueError, match="exactly one"):
        run(PredictConfig(checkpoint=str(run_dir), task="detect", prompt="OD", inputs=str(folder)))
