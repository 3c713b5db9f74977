"""Every task builds examples from the shapes world (people with keypoints included), and its target
parses back to the ground truth, also for transformed views, whose predictions land on the original image."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from unio.data.record import COCO_KEYPOINT_NAMES, Record
from unio.data.sources.rendered_text import RenderedTextConfig, RenderedTextSource
from unio.data.sources.shapes import ShapesConfig, ShapesSource
from unio.data.sources.shapes_audio import TonesConfig, TonesSource
from unio.data.transforms import Compose, HorizontalFlip, ResizeToSquare
from unio.sequence import Boxes, ImageCodes, ImagePatches, Special, Text
from unio.tasks import TASKS, Tokenizers, encode_example, make_task
from unio.tasks.base import boxes_to_original
from unio.tasks.bundle import tiny_grid_tokenizer
from unio.tasks.denoise import MASK_FILL, blank_cells, corrupt_spans, fill_spans
from unio.tokenizers.coords import CoordTokenizer


class PatchMaskTokenizer:
    """A lossless mask tokenizer for tests: each 2x2 patch of a R x R mask is one of 16 codes. It makes
    the refseg round trip exact up to the resize to R x R and back, so IoU checks test the task."""

    codebook_size = 16
    weights = torch.tensor([[1, 2], [4, 8]])

    def __init__(self, resolution: int = 64) -> None:
        self.input_size = (resolution, resolution)
        self.grid_shape = (resolution // 2, resolution // 2)
        self.fingerprint = f"patch-mask-2x2-{resolution}"

    def encode(self, masks: torch.Tensor) -> torch.Tensor:
        h, w = self.grid_shape
        m = (masks.reshape(-1, h, 2, w, 2) > 0.5).long()
        return (m * self.weights[None, None, :, None, :]).sum((2, 4))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        bits = (codes[:, :, None, :, None] & self.weights[None, None, :, None, :]) > 0
        return bits.reshape(-1, *self.input_size)


@pytest.fixture(scope="module")
def tok(text_tokenizer) -> Tokenizers:
    return Tokenizers.create(
        text_tokenizer,
        CoordTokenizer(),
        image=tiny_grid_tokenizer("image", 0),
        mask=PatchMaskTokenizer(),
        audio=tiny_grid_tokenizer("audio", 0),
    )


@pytest.fixture(scope="module")
def tiny(text_tokenizer) -> Tokenizers:
    """All-VQ tiny bundle: 4x4 grids keep the grid grammars small."""
    return Tokenizers.create(
        text_tokenizer,
        image=tiny_grid_tokenizer("image", 0),
        mask=tiny_grid_tokenizer("mask", 0),
        audio=tiny_grid_tokenizer("audio", 0),
    )


@pytest.fixture(scope="module")
def shapes(tok) -> list[Record]:
    """Shapes records with their image codes computed in one batch, as the pretokenizer does."""
    source = ShapesSource(ShapesConfig(num_records=8, image_size=64, seed=3))
    records = [source[i] for i in range(len(source))]
    for record, codes in zip(records, tok.encode_images([r.image for r in records])):
        record.meta["image_codes"] = codes
    return records


def rendered_text() -> list[Record]:
    """Images of words (the `ocr` task's records): upper, title and lower case, and numbers."""
    source = RenderedTextSource(RenderedTextConfig(num_records=6, split="val"))
    return [source[i] for i in range(len(source))]


def tones() -> list[Record]:
    """The shapes world's audio side: tone sequences with a text description."""
    source = TonesSource(TonesConfig(num_records=3, seed=1))
    return [source[i] for i in range(len(source))]


def roundtrip(task, example, tok):
    encoded = encode_example(example, tok)
    assert encoded.target.ids[-1].item() == tok.vocab.eos_id
    decoded = tok.codec.decode(encoded.target.ids)
    assert decoded.ok, decoded.problems
    return task.parse(decoded.segments, example.meta, tok)


def half_bin(size: tuple[int, int], bins: int = 1000) -> np.ndarray:
    w, h = size
    return np.array([w, h, w, h]) * 0.5 / bins + 1e-9


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def assert_matches_ground_truth(name: str, record: Record, example, prediction, tok: Tokenizers) -> None:
    """The parsed target of an eval-mode example equals the record's ground truth: exact text, boxes and
    keypoints within half a bin, masks at IoU >= 0.9 (lossless test mask tokenizer), identical codes."""
    meta = example.meta
    if name in ("caption", "region_caption"):
        assert prediction == meta["references"][0]
    elif name == "vqa":
        assert prediction == record.qa[0][1]
    elif name in ("classify", "audio_classify"):
        assert prediction == record.label
    elif name in ("asr", "ocr"):
        assert prediction == record.transcript
    elif name == "detect":
        truth = np.array(meta["boxes"])
        order = np.argsort([np.hypot(b[0], b[1]) for b in truth], kind="stable")[: len(prediction["boxes"])]
        assert len(prediction["boxes"]) == min(len(truth), TASKS["detect"].max_objects)
        assert sorted(prediction["labels"]) == sorted(meta["labels"][i] for i in order)
        assert (np.abs(np.array(prediction["boxes"]) - truth[order]) <= half_bin(record.image_size)).all()
    elif name == "ground":
        obj = next(o for o in record.objects if meta["expression"] in o.referring)
        assert (np.abs(np.array(prediction) - obj.box) <= half_bin(record.image_size)).all()
    elif name == "refseg":
        obj = next(o for o in record.objects if meta["expression"] in o.referring and o.mask is not None)
        assert prediction.shape == obj.mask.shape
        assert mask_iou(prediction, obj.mask) >= 0.9
    elif name == "keypoints":
        person = next(o for o in record.objects if o.box.tolist() == meta["box"])
        truth, got = person.keypoints, np.array(prediction)
        assert (got[:, 2] == truth[:, 2]).all()
        labelled = truth[:, 2] > 0
        assert (np.abs(got[labelled, :2] - truth[labelled, :2]) <= half_bin(record.image_size)[:2]).all()
    elif name in ("text_to_image", "masked_image"):
        assert np.array_equal(prediction, tok.decode_image(tok.image_codes(record)))
    elif name == "tts":
        wave, rate = prediction
        expected, expected_rate = tok.decode_audio(tok.audio_codes(record)[0])
        assert rate == expected_rate and np.allclose(wave, expected)
    elif name == "span_corruption":
        assert fill_spans(example.input[2:], prediction) == meta["text"]
        assert meta["text"] in (*record.captions, record.transcript)
    else:
        pytest.fail(f"no ground-truth check for task {name}")


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_builds_and_parses_back(name, tok, shapes):
    """Eval-mode examples of every task parse back to the ground truth of their record."""
    task = TASKS[name]
    records = tones() if task.uses == ("audio",) else rendered_text() if name == "ocr" else shapes
    if task.target_modality in ("image", "audio"):
        records = records[: 1 if name == "tts" else 2]  # decoding (Griffin-Lim above all) is the slow part
    built = 0
    for record in records:
        example = task.build(record, random.Random(0), tok, train=False)
        if example is None:
            continue
        built += 1
        assert (
            isinstance(example.input[0], Special) and example.input[0].token == f"<to_{task.target_modality}>"
        )
        prediction = roundtrip(task, example, tok)
        assert_matches_ground_truth(name, record, example, prediction, tok)
    assert built > 0, f"task {name} built no example"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_grammar_accepts_its_targets(name, tiny, shapes):
    """The constrained decoder's grammar for each task accepts the task's training targets."""
    task = make_task(name, noise_pad_to=6) if name == "detect" else TASKS[name]
    grammar = task.grammar(tiny).compiled
    records = tones() if task.uses == ("audio",) else rendered_text() if name == "ocr" else shapes[:3]
    accepted = 0
    for seed, record in enumerate(records):
        record = record.replace(meta={})  # image codes of the other bundle's image tokenizer do not apply
        example = task.build(record, random.Random(seed), tiny, train=True)
        if example is not None:
            assert grammar.accepts(encode_example(example, tiny).target.ids.tolist())
            accepted += 1
    assert accepted


def test_training_prompts_vary_and_eval_prompt_is_fixed(tok, shapes):
    task = TASKS["caption"]
    train = {task.build(shapes[0], random.Random(s), tok, train=True).input[1].text for s in range(30)}
    evals = {task.build(shapes[0], random.Random(s), tok, train=False).input[1].text for s in range(5)}
    assert len(train) > 2 and train <= set(task.prompts)
    assert evals == {task.eval_prompt}


def test_detection_orders_and_noise_boxes(tok, shapes):
    record = max(shapes, key=lambda r: len(r.objects))
    assert len(record.objects) >= 3
    by_distance = make_task("detect", order="distance").build(record, random.Random(0), tok, train=True)
    boxes = np.array(by_distance.meta["boxes"])
    corners = [
        np.hypot(*tok.coords.decode_boxes(row[None], image_size=record.image_size)[0, :2])
        for row in by_distance.target[0].coords.numpy()
    ]
    assert corners == sorted(corners) and len(corners) == len(boxes)
    orders = {
        tuple(make_task("detect").build(record, random.Random(s), tok).target[0].labels or ())
        for s in range(20)
    }
    if len({o.category for o in record.objects}) > 1:
        assert len(orders) > 1  # random order differs between draws

    noisy_task = make_task("detect", noise_pad_to=10)
    noisy = noisy_task.build(record, random.Random(1), tok, train=True)
    assert len(noisy.noise.coords) == 10 - len(record.objects)
    encoded = encode_example(noisy, tok)
    coord = tok.vocab.segment_range("coord")
    is_coord = (encoded.target.ids >= coord.start) & (encoded.target.ids < coord.stop)
    n_real_coords = 4 * len(record.objects)
    ignored = (encoded.target_loss == 0).nonzero().flatten()
    assert len(ignored) == 4 * len(noisy.noise.coords) and is_coord[ignored].all()
    assert encoded.target_loss[is_coord.nonzero().flatten()[:n_real_coords]].all()
    decoded = tok.codec.decode(encoded.target.ids)
    assert len(noisy_task.parse(decoded.segments, noisy.meta, tok)["labels"]) == len(record.objects)


def test_span_corruption_rejoins_exactly():
    rng = random.Random(0)
    text = "a small red circle above a large blue square on a plain background."
    for _ in range(50):
        inputs, targets = corrupt_spans(text, rng, 0.3, 2.0, 100)
        spans = {t.token: s.text for t, s in zip(targets[::2], targets[1::2])}
        assert fill_spans(inputs, spans) == text
        assert all(isinstance(t, Special) for t in targets[::2]) and all(
            isinstance(s, Text) for s in targets[1::2]
        )
    assert corrupt_spans("word", rng, 0.15, 3.0, 100) is None


def test_masked_image_corrupts_about_the_ratio(tok, shapes):
    example = make_task("masked_image", mask_ratio=0.5, input_repr="codes").build(
        shapes[0], random.Random(0), tok
    )
    corrupted, original = example.input[2], example.target[0]
    assert isinstance(corrupted, ImageCodes) and isinstance(original, ImageCodes)
    assert len(example.meta["masked_cells"]) == original.codes.numel() // 2
    assert example.image is None


def test_masked_image_patch_input_blanks_the_hidden_cells(tok, shapes):
    """Default (patches): the visible context is the image with the hidden code cells' pixels grey;
    the target is every code, as with code inputs; the same cells are hidden for the same seed."""
    task = make_task("masked_image", mask_ratio=0.5)
    assert task.input_repr == "patches" and task.vq_tokenizers() == ("image",)
    example = task.build(shapes[0], random.Random(0), tok)
    codes_example = make_task("masked_image", mask_ratio=0.5, input_repr="codes").build(
        shapes[0], random.Random(0), tok
    )
    assert isinstance(example.input[2], ImagePatches) and isinstance(example.target[0], ImageCodes)
    assert example.meta == codes_example.meta
    grid_rows, grid_cols = example.target[0].codes.shape
    pixels, side = example.image, task.input_size
    assert pixels.shape == (side, side, 3) and pixels.dtype == np.uint8
    visible = task.image_input(shapes[0], tok)[1]
    cell_h, cell_w = side // grid_rows, side // grid_cols
    hidden = set(example.meta["masked_cells"])
    for cell in range(grid_rows * grid_cols):
        r, c = divmod(cell, grid_cols)
        region = (slice(r * cell_h, (r + 1) * cell_h), slice(c * cell_w, (c + 1) * cell_w))
        if cell in hidden:
            assert (pixels[region] == MASK_FILL).all()
        else:
            assert np.array_equal(pixels[region], visible[region])


def test_blank_cells_rounds_cell_edges_for_any_grid():
    pixels = np.zeros((10, 7, 3), dtype=np.uint8)
    out = blank_cells(pixels, np.array([0, 8]), (3, 3))  # cells of 3-4 rows x 2-3 columns
    assert (out[:3, :2] == MASK_FILL).all() and (out[6:, 4:] == MASK_FILL).all()
    assert int((out == MASK_FILL).sum()) == 3 * (3 * 2 + 4 * 3) and not pixels.any()


def test_make_task_and_missing_tokenizer_errors(text_tokenizer):
    with pytest.raises(ValueError, match="unknown task 'detekt'"):
        make_task("detekt")
    with pytest.raises(ValueError, match="unknown option"):
        make_task("detect", ordr="random")
    with pytest.raises(ValueError, match="field 'order'"):
        make_task("detect", order="sideways")
    text_only = Tokenizers.create(text_tokenizer)
    with pytest.raises(ValueError, match="task 'refseg' needs an? (image|mask) tokenizer"):
        TASKS["refseg"].check(text_only)
    assert make_task("classify", classes=["a", "b"]).classes == ("a", "b")


def test_region_caption_and_ground_inputs_carry_the_box(tok, shapes):
    record = shapes[0]
    example = TASKS["region_caption"].build(record, random.Random(0), tok, train=False)
    region = example.input[2]
    assert isinstance(region, Boxes) and region.labels is None
    obj = next(o for o in record.objects if example.meta["box"] == o.box.tolist())
    assert example.target[0].text in [*obj.referring, obj.category]


def test_keypoint_names_match_default_count():
    assert TASKS["keypoints"].num_keypoints == len(COCO_KEYPOINT_NAMES)


def widened(record: Record, left: int, right: int) -> Record:
    """The scene on a wider canvas: a non-square original image, as most photos are."""

    def pad(array: np.ndarray) -> np.ndarray:
        return np.pad(array, [(0, 0), (left, right)] + [(0, 0)] * (array.ndim - 2))

    objects = []
    for obj in record.objects:
        keypoints = None if obj.keypoints is None else obj.keypoints.copy()
        if keypoints is not None:
            keypoints[keypoints[:, 2] > 0, 0] += left
        objects.append(
            dataclasses.replace(
                obj, box=obj.box + np.array([left, 0, left, 0]), mask=pad(obj.mask), keypoints=keypoints
            )
        )
    meta = {k: v for k, v in record.meta.items() if k != "image_codes"}  # codes of the narrow image
    return record.replace(image=pad(record.image), objects=objects, meta=meta)


@pytest.mark.parametrize("flip", [False, True], ids=["pad", "pad+flip"])
def test_parse_maps_a_transformed_view_back_to_original_pixels(flip, text_tokenizer, tok, shapes):
    """detect / ground / keypoints / refseg targets built from a padded (and mirrored) view parse back to
    the ORIGINAL record's ground truth: boxes and keypoints within half a bin of the view mapped to
    original pixels, masks at the original size with IoU >= 0.9 (lossless test mask tokenizer)."""
    record = next(r for r in shapes if any(o.category == "person" for o in r.objects))
    original = widened(record, left=30, right=10)  # 104 x 64
    transforms = [ResizeToSquare(128, "pad"), *([HorizontalFlip(p=1.0)] if flip else [])]
    view = Compose(transforms)(original, np.random.default_rng(0))
    assert len(view.objects) == len(original.objects)  # nothing dropped: objects correspond by index
    # A mask tokenizer at the view's resolution, so the mask IoU measures the mapping, not the codes.
    bundle = Tokenizers.create(
        text_tokenizer, CoordTokenizer(), image=tok.image, mask=PatchMaskTokenizer(128)
    )
    ax, _, ay, _ = view.meta["affine"]
    tolerance = half_bin(view.image_size) / np.abs([ax, ay, ax, ay]) + 1e-6
    for name in ("detect", "ground", "keypoints", "refseg"):
        task = TASKS[name]
        example = task.build(view, random.Random(0), bundle, train=False)
        assert example.meta["affine"] == list(view.meta["affine"])
        assert example.meta["original_size"] == [104, 64]
        prediction = roundtrip(task, example, bundle)
        if name == "detect":
            assert sorted(prediction["labels"]) == sorted(o.category for o in original.objects)
            boxes = {i: (o.category, o.box) for i, o in enumerate(original.objects)}  # matched once each
            for label, box in zip(prediction["labels"], np.array(prediction["boxes"])):
                match = next(
                    i for i, (c, b) in boxes.items() if c == label and (np.abs(box - b) <= tolerance).all()
                )
                del boxes[match]
        elif name == "ground":
            index = next(i for i, o in enumerate(view.objects) if example.meta["expression"] in o.referring)
            assert (np.abs(np.array(prediction) - original.objects[index].box) <= tolerance).all()
        elif name == "keypoints":
            index = next(i for i, o in enumerate(view.objects) if o.box.tolist() == example.meta["box"])
            truth, got = original.objects[index].keypoints, np.array(prediction)
            assert (got[:, 2] == truth[:, 2]).all()  # left and right swapped back after the flip
            labelled = truth[:, 2] > 0
            assert (np.abs(got[labelled, :2] - truth[labelled, :2]) <= tolerance[:2]).all()
            assert (got[~labelled] == 0).all()
        else:
            index = next(i for i, o in enumerate(view.objects) if example.meta["expression"] in o.referring)
            assert prediction.shape == original.objects[index].mask.shape == (64, 104)
            assert mask_iou(prediction, original.objects[index].mask) >= 0.9
    # Predictions reaching into the padding are clipped to the original image.
    whole_view = boxes_to_original(np.array([[0.0, 0.0, 128.0, 128.0]]), example.meta)
    assert np.allclose(whole_view, [[0, 0, 104, 64]])
