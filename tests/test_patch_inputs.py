"""Patch inputs end to end: a task with `input_repr: patches` puts a placeholder span in its input and
the pixels beside it; the pretokenizer stores the pixels (no image VQ encoder); the collator stacks
them in row-major order (padding, packing, mixed batches); condition dropout drops the images of
dropped rows; a tiny `unio-train` run trains with them; generation takes them."""

from __future__ import annotations

import math
import random
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from tests.train_helpers import compose_train, tiny_overrides
from unio.data.collate import Collator, CollatorConfig, collate_inputs
from unio.data.pretokenize import DatasetEntry, PretokenizeConfig, cache_key, load_pretokenized, pretokenize
from unio.data.sources.shapes import ShapesConfig, ShapesSource
from unio.model.guidance import drop_condition, images_per_row
from unio.model.patches import PatchStemConfig, placeholder_span
from unio.model.transformer import ModelConfig, build_model
from unio.pipeline import GenerationOptions, predict_examples
from unio.sequence import ImageCodes, ImagePatches
from unio.tasks import Tokenizers, encode_example, make_task
from unio.tasks.bundle import _resize_rgb, tiny_grid_tokenizer
from unio.tokenizers.coords import CoordTokenizer

PATCH = {"input_repr": "patches", "input_size": 32, "patch_size": 8}  # a 4 x 4 grid
CODES = {"input_repr": "codes"}
STEM = PatchStemConfig(kind="linear", patch_size=8, image_size=32)
IMAGE_TASKS = ("caption", "vqa", "classify", "detect", "ground", "region_caption", "refseg", "keypoints")


@pytest.fixture(scope="module")
def tok(text_tokenizer) -> Tokenizers:
    return Tokenizers.create(
        text_tokenizer,
        CoordTokenizer(),
        image=tiny_grid_tokenizer("image", 0),
        mask=tiny_grid_tokenizer("mask", 0),
    )


@pytest.fixture(scope="module")
def tok_no_image(text_tokenizer) -> Tokenizers:
    """No image tokenizer at all: patch-input tasks must not need it."""
    return Tokenizers.create(text_tokenizer, CoordTokenizer(), mask=tiny_grid_tokenizer("mask", 0))


def records(n: int = 8, image_size: int = 48) -> list:
    source = ShapesSource(ShapesConfig(num_records=n, image_size=image_size))
    return [source[i] for i in range(n)]


def first_example(task, tok, recs, train=False):
    for record in recs:
        example = task.build(record, random.Random(0), tok, train=train)
        if example is not None:
            return record, example
    raise AssertionError(f"no record builds {task.name}")


# ----------------------------------------------------------------------------- tasks
@pytest.mark.parametrize("name", IMAGE_TASKS)
def test_patch_task_builds_placeholder_span(name, tok, tok_no_image):
    recs = records(16)
    # keypoints need people; the shapes world draws some
    record, example = first_example(make_task(name, **PATCH), tok_no_image, recs)
    spans = [s for s in example.input if isinstance(s, ImagePatches)]
    assert spans == [ImagePatches(4, 4)] and not any(isinstance(s, ImageCodes) for s in example.input)
    assert example.image.dtype == np.uint8 and example.image.shape == (32, 32, 3)
    np.testing.assert_array_equal(example.image, _resize_rgb(record.image, (32, 32)))
    enc = encode_example(example, tok_no_image)
    np.testing.assert_array_equal(enc.input_image, example.image)
    # the span is exactly the model's contract (unio/model/patches.py placeholder_span)
    span = placeholder_span(STEM)
    image_id = tok.vocab.token_id("<image>")
    slots = (enc.input.ids == image_id) & (enc.input.row >= 0)
    assert int(slots.sum()) == STEM.num_patches == 16
    for key, seq_key in (("modality", "modality"), ("row", "row"), ("col", "col")):
        assert torch.equal(getattr(enc.input, seq_key)[slots], span[key]), key
    assert torch.equal(enc.input.ids[slots], torch.full((16,), image_id))
    # the same record with codes: same target and meta, VQ codes in the input
    _, coded = first_example(make_task(name, **CODES), tok, [record])
    assert coded.target == example.target and coded.meta == example.meta and coded.image is None
    assert encode_example(coded, tok).input_image is None


def test_build_input_with_patches(tok_no_image):
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    example = make_task("ground", **PATCH).build_input(tok_no_image, image=image, text="the red circle")
    assert example.image.shape == (32, 32, 3) and example.meta["image_size"] == [30, 20]
    assert example.input[-1] == ImagePatches(4, 4)


def test_patch_options_are_checked():
    with pytest.raises(ValueError, match="input_repr"):
        make_task("classify", input_repr="pixels")
    with pytest.raises(ValueError, match="not supported"):
        make_task("text_to_image", input_repr="patches")
    with pytest.raises(ValueError, match="multiple of patch_size"):
        make_task("classify", input_repr="patches", input_size=30, patch_size=8)
    assert make_task("refseg", **PATCH).vq_tokenizers() == ("mask",)
    assert make_task("refseg", **CODES).vq_tokenizers() == ("image", "mask")
    assert make_task("refseg").input_repr == "patches" and make_task("text_to_image").input_repr == "codes"


def test_cache_key_holds_patch_options_only_for_patches(tok):
    entry, cfg = DatasetEntry(source={"kind": "shapes"}), PretokenizeConfig()
    key = lambda **options: cache_key(make_task("classify", **options), tok, entry, cfg)  # noqa: E731
    assert key(**CODES) == key(**CODES, input_size=128, patch_size=16)  # ignored for codes
    patches = key(**PATCH)
    assert patches != key(**CODES) and patches != key(**{**PATCH, "input_size": 64})
    assert patches != key(**{**PATCH, "patch_size": 16})
    assert "image" not in patches["fingerprints"] and "image" in key(**CODES)["fingerprints"]


# ----------------------------------------------------------------------------- pretokenize
def test_pretokenize_stores_pixels_and_hits(tmp_path, tok_no_image):
    tasks = {"classify": PATCH, "refseg": PATCH, "ground": PATCH}
    entry = DatasetEntry(source={"kind": "shapes"}, tasks=tasks, train=False)
    cfg = PretokenizeConfig(cache_dir=str(tmp_path), data={"shapes": entry}, shard_size=4)
    source = lambda: {"shapes": ShapesSource(ShapesConfig(num_records=6, image_size=48))}  # noqa: E731
    # no image tokenizer in the bundle: the image VQ encoder cannot run (refseg still encodes masks)
    first = pretokenize(cfg, tok_no_image, sources=source(), log=lambda _: None, progress=False)
    assert {r.status for r in first.values()} == {"built"}
    second = pretokenize(cfg, tok_no_image, sources=source(), log=lambda _: None, progress=False)
    assert {r.status for r in second.values()} == {"hit"}
    loaded = load_pretokenized(tmp_path, cfg.data, tok_no_image)
    rows = loaded["shapes/classify"]
    assert len(rows) == 6
    recs = records(6)
    task = make_task("classify", **PATCH)
    for i, row in enumerate(rows):
        expected = task.build(recs[i], random.Random(0), tok_no_image, train=False)
        pixels = np.frombuffer(row["input_image"], dtype=np.uint8).reshape(row["input_image_shape"])
        np.testing.assert_array_equal(pixels, expected.image)
        assert row["input_ids"] == encode_example(expected, tok_no_image).input.ids.tolist()
    assert "input_image" in loaded["shapes/refseg"].column_names


def test_code_input_cache_has_no_pixel_columns(tmp_path, tok):
    entry = DatasetEntry(source={"kind": "shapes"}, tasks={"classify": CODES})
    cfg = PretokenizeConfig(cache_dir=str(tmp_path), data={"shapes": entry}, shard_size=4)
    src = {"shapes": ShapesSource(ShapesConfig(num_records=3, image_size=32))}
    pretokenize(cfg, tok, sources=src, log=lambda _: None, progress=False)
    assert "input_image" not in load_pretokenized(tmp_path, cfg.data, tok)["shapes/classify"].column_names


# ----------------------------------------------------------------------------- collation
def row(tok, name: str, record, patches: bool) -> dict:
    task = make_task(name, **(PATCH if patches else CODES))
    enc = encode_example(task.build(record, random.Random(0), tok, train=False), tok)
    out = {
        f"{side}_{key}": getattr(getattr(enc, side), key).tolist()
        for side in ("input", "target")
        for key in ("ids", "modality", "row", "col")
    }
    if enc.input_image is not None:  # as the cache stores it
        out["input_image"] = enc.input_image.tobytes()
        out["input_image_shape"] = list(enc.input_image.shape)
    return out


def test_collator_mixed_batch_padding(tok):
    recs = records(3)
    examples = [row(tok, "classify", recs[0], True), row(tok, "classify", recs[1], False)]
    examples.append(row(tok, "caption", recs[2], True))
    batch = Collator(tok.vocab.bos_id)(examples)
    images = batch["input_images"]
    assert images.dtype == torch.uint8 and images.shape == (2, 3, 32, 32)
    for got, record in zip(images, (recs[0], recs[2]), strict=True):
        np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), _resize_rgb(record.image, (32, 32)))
    assert images_per_row(batch, tok.vocab).tolist() == [1, 0, 1]
    # the model fills the placeholders: shape checked there, logits finite
    model = build_model(tiny_model_config(), tok.vocab)
    assert torch.isfinite(model.forward_batch(batch)).all()
    # no example with an image: no key
    assert "input_images" not in Collator(tok.vocab.bos_id)([examples[1]])


def test_collator_packing_keeps_row_major_order(tok):
    recs = records(4)
    names = ("classify", "classify", "vqa", "ground")  # distinct inputs, so each segment is identifiable
    examples = [row(tok, names[i], recs[i], patches=i != 1) for i in range(4)]
    assert len({tuple(ex["input_ids"]) for ex in examples}) == 4
    config = CollatorConfig(pack=True, max_input_len=80, max_target_len=80)
    batch = Collator(tok.vocab.bos_id, config=config)(examples)
    assert batch["input_ids"].shape[0] < 4  # packed
    per_row = images_per_row(batch, tok.vocab).tolist()
    assert sum(per_row) == 3 and batch["input_images"].shape[0] == 3
    # row-major: the images of the examples in the order the packed rows hold them
    order = []
    seg = batch["input_segment_ids"]
    for r in range(seg.shape[0]):
        for s in range(1, int(seg[r].max()) + 1):
            ids = batch["input_ids"][r][seg[r] == s]
            order.append(next(i for i, ex in enumerate(examples) if ex["input_ids"] == ids.tolist()))
    expected = [i for i in order if i != 1]
    for got, i in zip(batch["input_images"], expected, strict=True):
        np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), _resize_rgb(recs[i].image, (32, 32)))
    model = build_model(tiny_model_config(), tok.vocab)
    assert torch.isfinite(model.forward_batch(batch)).all()


def test_collate_inputs_with_images(tok):
    recs = records(2)
    task = make_task("classify", **PATCH)
    examples = [task.build(r, random.Random(0), tok, train=False) for r in recs]
    seqs = [tok.codec.encode(e.input) for e in examples]
    batch = collate_inputs(seqs, images=[examples[0].image, None])
    assert batch["input_images"].shape == (1, 3, 32, 32)
    assert "input_images" not in collate_inputs(seqs)
    with pytest.raises(ValueError, match="2 inputs"):
        collate_inputs(seqs, images=[None])


def test_drop_condition_drops_images_of_dropped_rows(tok):
    recs = records(4)
    examples = [row(tok, "classify", recs[i], patches=True) for i in range(4)]
    batch = Collator(tok.vocab.bos_id)(examples)
    gen = torch.Generator().manual_seed(1)  # drops rows 1 and 2 of 4
    dropped = drop_condition(batch, 0.5, tok.vocab, generator=gen)
    kept = images_per_row(dropped, tok.vocab)
    assert kept.tolist() == [1, 0, 0, 1]
    kept_rows = [0, 3]
    assert torch.equal(dropped["input_images"], batch["input_images"][kept_rows])
    model = build_model(tiny_model_config(), tok.vocab)
    assert torch.isfinite(model.forward_batch(dropped)).all()
    all_dropped = drop_condition(batch, 0.5, tok.vocab, generator=torch.Generator().manual_seed(3))
    assert "input_images" not in all_dropped


# ----------------------------------------------------------------------------- model, train, generate
def tiny_model_config() -> ModelConfig:
    return ModelConfig(
        d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=64, patch_stem=STEM
    )


def test_predict_examples_with_patch_model(tok):
    torch.manual_seed(0)
    model = build_model(tiny_model_config(), tok.vocab).eval()
    task = make_task("classify", classes=("circle", "square"), **PATCH)
    examples = [task.build_input(tok, image=r.image) for r in records(3)]
    options = GenerationOptions(batch_size=2, max_new_tokens=8)
    raw = predict_examples(model, tok, task, examples, options)
    assert len(raw) == 3 and all(p.valid and p.prediction in ("circle", "square") for p in raw)
    guided = predict_examples(model, tok, task, examples, GenerationOptions(batch_size=2, guidance_scale=2.0))
    assert len(guided) == 3


def test_total_variation_is_zero_for_the_same_image_and_grows_with_another(tok):
    from unio.eval.compare_inputs import _row
    from unio.eval.image_dependence import total_variation

    torch.manual_seed(0)
    model = build_model(tiny_model_config(), tok.vocab).eval()
    task = make_task("classify", classes=("circle", "square"), **PATCH)
    built = (task.build(r, random.Random(0), tok, train=True) for r in records(8))
    examples = [e for e in built if e is not None][:2]  # scenes whose largest shape is a class
    own = Collator(tok.vocab.bos_id)([_row(e, tok) for e in examples])
    tv, count = total_variation(model, own, own)
    assert tv == 0.0 and count == int((own["targets"] != -100).sum()) > 0
    swapped = {**own, "input_images": own["input_images"].flip(0)}  # each row gets the other's image
    tv_swapped, _ = total_variation(model, own, swapped)
    assert 0.0 < tv_swapped / count <= 1.0
    with pytest.raises(ValueError, match="same targets"):
        total_variation(model, own, {**own, "targets": own["targets"].flip(0)})


def test_tiny_train_with_patch_inputs(tmp_path):
    from unio.pipeline import Pipeline
    from unio.train.trainer import train

    image_tasks = {
        "shapes": ("classify", "caption", "vqa", "detect", "ground"),
        "shapes_val": ("classify", "caption", "detect"),
    }
    patch = [  # every image-input task at the stem's 32 px (the check refuses another size)
        f"+data.{split}.tasks.{name}.{key}={value}"
        for split, names in image_tasks.items()
        for name in names
        for key, value in PATCH.items()
    ]
    overrides = tiny_overrides(
        tmp_path,
        tmp_path / "cache",
        *patch,
        "trainer.max_steps=4",
        "trainer.checkpoint_every=4",
        "trainer.val_every=4",
        "++model.patch_stem={"
        + ", ".join(f"{k}: {'null' if v is None else v}" for k, v in asdict(STEM).items())
        + "}",
    )
    cfg = compose_train(overrides)
    assert cfg.model.patch_stem == STEM  # the command-line dict becomes a PatchStemConfig
    result = train(cfg)
    assert result.status == "completed" and result.steps == 4
    assert math.isfinite(result.first_loss) and math.isfinite(result.last_loss)
    pipe = Pipeline.from_pretrained(result.run_dir)
    assert pipe.model.patch_stem is not None and pipe.task("classify").input_repr == "patches"
    image = records(1)[0].image
    out = pipe.classify(image)
    assert out is not None


def _smoke_compare_config(**overrides):
    from unio.eval.compare_inputs import CompareConfig
    from unio.tasks.bundle import GridTokenizerConfig, TokenizersConfig

    model = ModelConfig(d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=64)
    options = dict(
        model=model,
        tokenizers=TokenizersConfig(image=GridTokenizerConfig(tiny_seed=0)),
        tasks=["classify", "vqa", "ground", "detect"],  # detect: scored by its standard metric (COCO AP)
        auxiliary_tasks=["caption"],  # trained, not scored
        train_records=8,
        eval_records=4,
        image_size=32,
        input_size=32,
        stem_kind="linear",
        steps=2,
        batch_size=4,
        threads=1,
        max_eval_examples=4,
    )
    return CompareConfig(**{**options, **overrides})


def test_compare_inputs_smoke():
    from unio.eval.compare_inputs import QUESTION_TYPES, compare_inputs, question_type

    cfg = _smoke_compare_config(parallel_arms=False)
    assert question_type("how many shapes are there?") == "how many shapes"
    assert question_type("how many stars are there?") == "how many"
    assert question_type("is there a red star?") == "is there" and question_type("why?") == "other"
    lines: list[str] = []
    result = compare_inputs(cfg, log=lines.append)
    assert "training examples (classify 8, vqa 8, ground " in lines[0] and "caption 8)" in lines[0]
    assert list(result)[:3] == ["patches", "codes", "blind"]
    for arm in ("patches", "codes", "blind"):
        assert set(result[arm]) == {"classify", "vqa", "ground", "detect"}
        assert all(0.0 <= v <= 1.0 for v in result[arm].values())
        by_question = result["vqa_by_question"][arm]
        assert by_question and set(by_question) <= set(QUESTION_TYPES) | {"other"}
        assert all(0.0 <= v <= 1.0 for v in by_question.values())
    assert set(result["image_dependence"]["blind"].values()) == {0.0}
    assert result["config"]["auxiliary_tasks"] == ["caption"]
    assert result["image_dependence"]["codes"]["classify"] > 0  # swapping the image changes the output


def test_compare_inputs_parallel_arms_equal_the_sequential_run():
    """One single-thread process per arm gives exactly the one-thread in-process numbers."""
    from unio.eval.compare_inputs import compare_inputs

    cfg = _smoke_compare_config(arms=["patches", "blind"], steps=3)
    parallel = compare_inputs(cfg)
    sequential = compare_inputs(
        _smoke_compare_config(arms=["patches", "blind"], steps=3, parallel_arms=False)
    )
    for key in ("patches", "blind", "image_dependence", "vqa_by_question"):
        assert parallel[key] == sequential[key], key
    assert parallel["config"]["threads_per_arm"] == 1 and set(parallel["seconds"]) == {
        "patches",
        "blind",
        "total",
    }


@pytest.mark.parametrize("per_example", [False, True])
def test_compare_micro_batches_by_target_length_give_the_one_pass_loss(tok, per_example):
    from unio.eval.compare_inputs import (
        CompareConfig,
        _examples,
        _model,
        _row,
        micro_batch_losses,
        split_by_target_length,
    )
    from unio.model.loss import SequenceLoss, per_example_weights

    model = ModelConfig(d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=64)
    cfg = CompareConfig(model=model, tasks=["vqa"], auxiliary_tasks=["caption"], image_size=32, input_size=32)
    records = [ShapesSource(ShapesConfig(num_records=3, image_size=32, seed=0))[i] for i in range(3)]
    per_task = _examples("patches", cfg, tok, records, train=True)
    rows = [_row(e, tok) for name in ("vqa", "caption") for e in per_task[name]]
    groups = split_by_target_length(rows, cfg.short_target_len)
    assert [len(g) for g in groups] == [3, 3]
    assert sorted(id(r) for g in groups for r in g) == sorted(map(id, rows))
    assert split_by_target_length(rows[:3], cfg.short_target_len) == [rows[:3]]  # one group: one pass
    net, loss_fn, collate = _model("patches", cfg, tok), SequenceLoss(tok.vocab), Collator(tok.vocab.bos_id)
    whole = collate(rows)
    weights = per_example_weights(whole["targets"]) if per_example else None
    one_pass = loss_fn(net.forward_batch(whole), whole["targets"], token_weights=weights).loss
    parts = micro_batch_losses(net, loss_fn, [collate(g) for g in groups], per_example)
    torch.testing.assert_close(sum(loss * share for loss, share in parts), one_pass, rtol=1e-5, atol=1e-6)
    if per_example:  # a one-word answer weighs as much as a caption: not the token mean
        assert not torch.allclose(one_pass, loss_fn(net.forward_batch(whole), whole["targets"]).loss)


def test_compare_blind_arm_sees_the_prompt_alone(tok):
    from unio.eval.compare_inputs import CompareConfig, _examples, _model
    from unio.sequence import ImagePatches

    cfg = CompareConfig(tasks=["classify", "vqa"], auxiliary_tasks=[], image_size=32, input_size=32)
    records = [ShapesSource(ShapesConfig(num_records=2, image_size=32, seed=0))[i] for i in range(2)]
    seen = _examples("patches", cfg, tok, records, train=True)
    blind = _examples("blind", cfg, tok, records, train=True)
    for name in ("classify", "vqa"):
        for with_image, without in zip(seen[name], blind[name], strict=True):
            assert with_image.image is not None and without.image is None
            assert [s for s in with_image.input if not isinstance(s, ImagePatches)] == without.input
            assert with_image.target == without.target
    assert _model("blind", cfg, tok).config.patch_stem is None
    assert _model("patches", cfg, tok).config.patch_stem is not None


def test_compare_repeats_add_views_of_each_scene(tok):
    from unio.eval.compare_inputs import CompareConfig, _examples

    records = [ShapesSource(ShapesConfig(num_records=2, image_size=32, seed=0))[i] for i in range(2)]
    one = CompareConfig(tasks=["vqa"], auxiliary_tasks=[], image_size=32, input_size=32)
    three = CompareConfig(tasks=["vqa"], auxiliary_tasks=[], image_size=32, input_size=32, repeats=3)
    single, views = (
        _examples("patches", one, tok, records, train=True),
        _examples("patches", three, tok, records, train=True),
    )
    assert len(single["vqa"]) == 2 and len(views["vqa"]) == 6
    assert views["vqa"][0] == single["vqa"][0] and views["vqa"][3] == single["vqa"][1]  # view 0 unchanged
    for scene in (views["vqa"][:3], views["vqa"][3:]):
        assert all(e.image is scene[0].image for e in scene)  # one scene's views
        assert len({e.meta["question"] for e in scene}) > 1  # ... with different questions
    with pytest.raises(ValueError, match="repeats"):
        CompareConfig(repeats=0)


def test_compare_balanced_answers_keep_kind_shares_and_even_out_answers():
    from collections import Counter

    from unio.eval.compare_inputs import CompareConfig, batch_indices

    # vqa: "how many" 300 rows (one 240, two 60), "what size" 100 rows (small 50, large 50); classify 400
    answers = (
        ["how many/one"] * 240 + ["how many/two"] * 60 + ["what size/small"] * 50 + ["what size/large"] * 50
    )
    tasks = ["vqa"] * 400 + ["classify"] * 400
    cfg = CompareConfig(
        steps=400, batch_size=50, visual_warmup_fraction=0.0, balance_answers=True, task_weights={}
    )
    drawn = Counter(
        (tasks[i], answers[i] if i < 400 else None)
        for index in batch_indices(cfg, tasks, answers + [None] * 400)
        for i in index
    )
    total = sum(drawn.values())
    assert abs(sum(v for (t, _), v in drawn.items() if t == "vqa") / total - 0.5) < 0.02  # task share kept
    assert abs(drawn["vqa", "how many/one"] / drawn["vqa", "how many/two"] - 1) < 0.1  # answers even
    assert (
        abs((drawn["vqa", "how many/one"] + drawn["vqa", "how many/two"]) / (total / 2) - 0.75) < 0.02
    )  # kind share kept
    plain = replace(cfg, balance_answers=False)
    assert [i.tolist() for i in batch_indices(plain, tasks, answers + [None] * 400)] == [
        i.tolist() for i in batch_indices(plain, tasks)
    ]


def test_compare_batches_follow_the_warm_up_and_the_task_weights():
    from unio.eval.compare_inputs import CompareConfig, batch_indices

    tasks = ["classify"] * 50 + ["vqa"] * 100 + ["ground"] * 50 + ["caption"] * 50 + ["detect"] * 50
    cfg = CompareConfig(steps=600, batch_size=8, visual_warmup_fraction=0.25)
    cfg.task_weights = {"ground": 3.0}
    batches = [[tasks[i] for i in index] for index in batch_indices(cfg, tasks)]
    assert len(batches) == 600 and all(len(b) == 8 for b in batches)
    warm, rest = batches[:150], batches[150:]
    assert all(t != "vqa" for b in warm for t in b)  # vqa is not a warm-up task
    drawn = [t for b in rest for t in b]
    share = {t: drawn.count(t) / len(drawn) for t in set(tasks)}
    assert abs(share["ground"] - 3 / 7) < 0.05 and abs(share["vqa"] - 1 / 7) < 0.05  # weights, not pool sizes
    again = [[tasks[i] for i in index] for index in batch_indices(cfg, tasks)]
    assert again == batches  # seeded: the same draws in every arm


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"arms": ["pixels"]}, "unknown arms/tasks \\['pixels'\\]"),
        ({"visual_warmup_fraction": 1.0}, "visual_warmup_fraction must be in"),
        ({"loss_per": "batch"}, "loss_per must be token or example, got 'batch'"),
        ({"decay": "linear"}, "decay must be cosine or constant"),
        ({"steps": 0}, "steps must be positive, got 0"),
    ],
)
def test_compare_config_names_the_bad_option(bad, message):
    from unio.eval.compare_inputs import CompareConfig

    with pytest.raises(ValueError, match=message):
        CompareConfig(**bad)
