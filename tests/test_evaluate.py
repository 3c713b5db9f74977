"""unio-eval (unio/eval/evaluate.py): every item evaluated, ground truth in original pixels, the three
outputs, clear errors, the trainer's validation hook; prompt-only inputs (Task.build_input,
collate_inputs) and the non-empty answer grammar."""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.train_helpers import TINY, compose_train
from unio import grammar as G
from unio.data import transforms as T
from unio.data.collate import collate_inputs
from unio.data.pretokenize import DatasetEntry
from unio.data.sources import build_source
from unio.eval.evaluate import EvalConfig, EvalOptions, evaluate, make_val_hook, references
from unio.eval.metrics import METRICS
from unio.model.checkpoint import load_model, resolve_checkpoint
from unio.sequence import Text
from unio.tasks import make_task
from unio.tasks.base import encode_input
from unio.tasks.bundle import Tokenizers, TokenizersConfig

# The tiny test set, with shapes_val's vqa and ground kept (they have several items per record).
EVAL_TINY = [o for o in TINY if o not in ("~data.shapes_val.tasks.vqa", "~data.shapes_val.tasks.ground")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny checkpoint, trained once for the module (2 steps: what matters is the format)."""
    from unio.train.trainer import train

    root = tmp_path_factory.mktemp("evalrun")
    overrides = [*EVAL_TINY, f"cache_dir={root / 'cache'}", f"run_dir={root / 'run'}"]
    cfg = compose_train([*overrides, "trainer.max_steps=2", "trainer.val_every=0"])
    # a tones asr task, so the checkpoint has the audio stem the audio tasks' patch inputs need
    # (unio-train builds only the stems its data feeds)
    cfg.data["tones"] = DatasetEntry(source={"kind": "tones", "num_records": 8}, tasks={"asr": {}})
    train(cfg)
    return root / "run"


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Tokenizers:
    cfg = TokenizersConfig()
    cfg.image.tiny_seed = cfg.mask.tiny_seed = 0
    return Tokenizers.from_config(cfg)


def shapes_record(index: int = 0, size: int = 64):
    return build_source({"kind": "shapes", "num_records": 8, "split": "val", "image_size": size})[index]


# ------------------------------------------------------------------------------ inputs and items
def test_answer_grammar_refuses_the_empty_answer(tok):
    g = G.answer_text(tok.codec).compiled
    assert not g.accepts([tok.vocab.eos_id])
    assert g.accepts(tok.codec.encode([Text("red")], add_eos=True).ids.tolist())
    for name in ("caption", "region_caption", "vqa", "asr"):
        assert not make_task(name).grammar(tok).compiled.accepts([tok.vocab.eos_id]), name


def test_every_question_and_expression_is_an_item(tok):
    record = next(
        r for r in build_source({"kind": "shapes", "num_records": 16, "split": "val"}) if len(r.qa) > 1
    )
    vqa = make_task("vqa").eval_examples(record, tok)
    assert [e.meta["question"] for e in vqa] == [q for q, _ in record.qa]
    pairs = [(o.box.tolist(), x) for o in record.objects if not o.crowd for x in o.referring]
    ground = make_task("ground").eval_examples(record, tok)
    assert [(e.meta["box"], e.meta["expression"]) for e in ground] == pairs
    again = make_task("ground").eval_examples(record, tok)
    assert [e.input[1].text for e in again] == [e.input[1].text for e in ground]  # deterministic
    assert len(make_task("region_caption").eval_examples(record, tok)) == len(record.objects)


def test_build_input_matches_build_and_collates(tok):
    record = shapes_record()
    task = make_task("vqa")
    question, _ = record.qa[0]
    built = task.build(record, random.Random(0), tok, train=False, item=0)
    raw = task.build_input(tok, image=record.image, text=question)
    assert raw.target == []
    assert torch.equal(encode_input(raw, tok).ids, encode_input(built, tok).ids)
    short = make_task("caption").build_input(tok, image=record.image)
    batch = collate_inputs([encode_input(raw, tok), encode_input(short, tok)], pad_to_multiple=8)
    n_long, n_short = len(encode_input(raw, tok)), len(encode_input(short, tok))
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].shape[1] >= n_long
    assert batch["input_mask"].sum(1).tolist() == [n_long, n_short]
    assert batch["input_position"][1, :n_short].tolist() == list(range(n_short))
    assert (batch["input_row"][~batch["input_mask"]] == -1).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image": np.zeros((8, 8), np.uint8)}, "HxWx3"),
        ({"image": np.zeros((8, 8, 3), np.float32)}, "uint8"),
        ({}, "needs an image"),
    ],
)
def test_build_input_refuses_bad_images(tok, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_task("caption").build_input(tok, **kwargs)


def test_build_input_refuses_missing_text(tok):
    with pytest.raises(ValueError, match="question"):
        make_task("vqa").build_input(tok, image=np.zeros((8, 8, 3), np.uint8))


# ------------------------------------------------------------------------------ original pixels
def _perfect(task, example, tok):
    """What parse returns for an output equal to the example's target (a perfect model)."""
    ids = tok.codec.encode(example.target, add_eos=True).ids
    return task.parse(tok.codec.decode(ids).segments, example.meta, tok)


@pytest.mark.parametrize(
    ("name", "headline"), [("detect", "map"), ("ground", "accuracy"), ("keypoints", "oks_ap")]
)
def test_perfect_prediction_scores_one_under_crop_resize_flip(tok, name, headline):
    source = build_source({"kind": "shapes", "num_records": 24, "split": "val", "image_size": 64})
    transform = T.Compose(
        [T.RandomResizedCrop(size=48, scale=(0.6, 0.9)), T.ResizeToSquare(size=40), T.HorizontalFlip(p=1.0)]
    )
    task = make_task(name)
    predictions, refs, flipped = [], [], 0
    for index in range(len(source)):
        record = source[index]
        view = transform(record, np.random.default_rng([0, index]))
        flipped += view.meta["affine"][0] < 0
        for example in task.eval_examples(view, tok):
            predictions.append(_perfect(task, example, tok))
            refs.append(references(name, example.meta, view, tok))
    assert predictions and flipped
    assert refs[0]["image_size"] == [64.0, 64.0]  # the original image, not the 40 px view
    assert METRICS[name](predictions, refs)[headline] == pytest.approx(1.0)


# ------------------------------------------------------------------------------ unio-eval
def test_eval_writes_results_summary_and_gallery(run_dir, tmp_path):
    out = tmp_path / "eval"
    cfg = EvalConfig(
        checkpoint=str(run_dir),
        out_dir=str(out),
        eval=EvalOptions(max_examples=3, progress_bar=False, gallery_examples=2),
    )
    report = evaluate(cfg, log=lambda _: None)
    results = json.loads((out / "results.json").read_text())
    expected = {"caption", "vqa", "classify", "detect", "ground"}
    assert set(results["results"]["shapes_val"]) == expected
    for task, metrics in results["results"]["shapes_val"].items():
        assert metrics["examples"] == 3, task
        assert metrics["tokens_per_second"] > 0 and metrics["invalid_outputs"] >= 0
        assert isinstance(
            metrics[
                {
                    "caption": "cider",
                    "vqa": "vqa_accuracy",
                    "classify": "accuracy",
                    "detect": "map",
                    "ground": "accuracy",
                }[task]
            ],
            float,
        )
    assert set(results["fingerprints"]) == {"weights", "tokenizers", "data"}
    assert report["generation"]["tokens"] > 0
    summary = (out / "summary.md").read_text()
    assert "| shapes_val | detect | map |" in summary
    index = (out / "gallery" / "index.html").read_text()
    pictures = sorted((out / "gallery").rglob("*.png"))
    assert len(pictures) == 2 * len(expected)
    for picture in pictures:
        assert str(picture.relative_to(out / "gallery")) in index
    # deterministic: the same examples and data fingerprint on a second run
    again = evaluate(
        EvalConfig(
            checkpoint=str(run_dir),
            out_dir=str(tmp_path / "again"),
            eval=EvalOptions(max_examples=3, progress_bar=False, gallery_examples=0),
        ),
        log=lambda _: None,
    )
    assert again["fingerprints"]["data"] == results["fingerprints"]["data"]


def test_eval_uses_the_task_options_of_the_run(run_dir, tmp_path):
    """classify's class list comes from config.yaml: every prediction is one of the classes."""
    cfg = EvalConfig(
        checkpoint=str(run_dir),
        tasks=["classify"],
        out_dir=str(tmp_path / "o"),
        eval=EvalOptions(max_examples=4, progress_bar=False),
    )
    report = evaluate(cfg, log=lambda _: None)
    assert report["results"]["shapes_val"]["classify"]["invalid_outputs"] == 0
    assert set(report["results"]) == {"shapes_val"} and set(report["results"]["shapes_val"]) == {"classify"}


def test_image_classifier_learns_the_real_images():
    from unio.eval.image_classifier import train_image_classifier
    from unio.eval.image_metrics import classifier_accuracy

    rng = np.random.default_rng(0)
    colors = {"red": (220, 30, 30), "blue": (30, 30, 220)}
    images, labels = [], []
    for i in range(16):
        label = ["red", "blue"][i % 2]
        image = rng.integers(0, 60, size=(20, 24, 3)).astype(np.uint8)
        image[5:15, 6:18] = colors[label]
        images.append(image)
        labels.append(label)
    classifier = train_image_classifier(images, labels, steps=60)
    assert classifier.real_accuracy == 1.0
    # a perfect generator (the real images themselves) scores the ceiling
    assert classifier_accuracy(images, labels, classifier)["classifier_accuracy"] == 1.0
    again = train_image_classifier(images, labels, steps=60)
    assert again(images[:4]) == classifier(images[:4]) and again.real_accuracy == classifier.real_accuracy


def test_text_to_image_is_scored_with_the_data_classifier(run_dir, tmp_path):
    data = {
        "shapes_val": DatasetEntry(
            source={"kind": "shapes", "num_records": 12, "split": "val", "image_size": 32},
            tasks={"text_to_image": {}},
            train=False,
        )
    }
    options = EvalOptions(max_examples=12, progress_bar=False, gallery_examples=1)
    report = evaluate(
        EvalConfig(checkpoint=str(run_dir), data=data, out_dir=str(tmp_path / "o"), eval=options)
    )
    metrics = report["results"]["shapes_val"]["text_to_image"]
    assert 0.0 <= metrics["classifier_accuracy"] <= 1.0 and metrics["classifier_real_accuracy"] > 0.5


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ("unknown_task", ValueError, "unknown task"),
        ("missing", FileNotFoundError, "not found"),
        ("corrupt", ValueError, "corrupt safetensors"),
        ("no_tokenizers", FileNotFoundError, "tokenizers"),
        ("fingerprint", ValueError, "fingerprint"),
    ],
)
def test_bad_checkpoints_and_tasks_are_one_clear_error(run_dir, tmp_path, change, error, match):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, symlinks=False)
    checkpoint = resolve_checkpoint(copy)
    tasks = None
    if change == "unknown_task":
        tasks = ["detekt"]
    elif change == "missing":
        copy = tmp_path / "nowhere"
    elif change == "corrupt":
        (checkpoint / "model.safetensors").write_bytes(b"not a safetensors file")
    elif change == "no_tokenizers":
        shutil.rmtree(checkpoint / "tokenizers")
    elif change == "fingerprint":
        info = json.loads((copy / "tokenizers" / "tokenizers.json").read_text())
        info["fingerprints"]["text"] = "0000000000000000"
        (copy / "tokenizers" / "tokenizers.json").write_text(json.dumps(info))
    out = tmp_path / "out"
    cfg = EvalConfig(
        checkpoint=str(copy),
        tasks=tasks,
        out_dir=str(out),
        eval=EvalOptions(max_examples=1, progress_bar=False),
    )
    with pytest.raises(error, match=match):
        evaluate(cfg, log=lambda _: None)
    assert not out.exists(), "nothing is written by a failed run"


def test_val_hook_reports_task_metrics(run_dir):
    cfg = compose_train([*EVAL_TINY, "cache_dir=/unused", "run_dir=/unused"])
    model, tok = load_model(resolve_checkpoint(run_dir))
    hook = make_val_hook(cfg.data, max_examples=2)
    model.train()
    metrics = hook(model, tok, 5)
    assert model.training, "the hook restores the model's mode"
    assert metrics["shapes_val/classify/accuracy"] in (0.0, 0.5, 1.0)
    assert "shapes_val/detect/map" in metrics and "shapes_val/detect/invalid_outputs" in metrics
    assert hook(model, tok, 10) == metrics  # the same examples every time, greedy decoding


def test_trainer_logs_the_val_hook_metrics(tmp_path):
    """How scripts/train.py wires it: train(cfg, val_hook=make_val_hook(cfg.data, ...))."""
    from unio.train.trainer import train

    overrides = [*EVAL_TINY, f"cache_dir={tmp_path / 'cache'}", f"run_dir={tmp_path / 'run'}"]
    cfg = compose_train([*overrides, "trainer.max_steps=2", "trainer.val_every=2"])
    train(cfg, val_hook=make_val_hook(cfg.data, max_examples=2))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r.get("split") == "val"]
    assert val and "shapes_val/vqa/vqa_accuracy" in val[-1] and "loss" in val[-1]


@pytest.mark.slow  # a subprocess importing torch & co.: ~10 s
def test_eval_entry_point_one_line_error(tmp_path):
    from tests.test_cli import assert_one_line_error, run_entry

    result = run_entry("unio-eval", [f"checkpoint={tmp_path}/missing"], tmp_path)
    assert_one_line_error(result, "unio-eval", str(tmp_path / "missing"))


# ------------------------------------------------------------------------------ slow: real data, browser
@pytest.mark.slow
@pytest.mark.data
@pytest.mark.parametrize("data", ["coco", "audio", "mnist", "raccoon"])
def test_eval_on_real_data(run_dir, tmp_path, data_dir, data):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    import scripts.evaluate  # noqa: F401  (registers the schema)
    from tests.conftest import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        raw = compose(
            "evaluate",
            overrides=[
                f"checkpoint={run_dir}",
                f"data={data}",
                f"data_root={data_dir}",
                f"out_dir={tmp_path / 'o'}",
                "eval.max_examples=2",
                "eval.progress_bar=false",
            ],
        )
    cfg = OmegaConf.to_object(raw)
    report = evaluate(cfg, log=lambda _: None)
    assert report["results"] and all(
        m["examples"] > 0 for t in report["results"].values() for m in t.values()
    )
    assert (tmp_path / "o" / "gallery" / "index.html").is_file()


@pytest.mark.slow
def test_gallery_opens_in_headless_chromium(run_dir, tmp_path):
    """Every picture and sound of a gallery with images, boxes, masks, keypoints and audio loads in a
    real browser, with no console error (the page's own self-check in `data-check`)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    from omegaconf import OmegaConf

    shapes = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"))["data"]["shapes_val"]
    shapes["tasks"] |= {"refseg": {}, "keypoints": {}}
    data = {
        "shapes_val": DatasetEntry(**shapes),
        "tones": DatasetEntry(
            source={"kind": "tones", "num_records": 2, "split": "val"},
            tasks={"asr": {}, "tts": {}},
            train=False,
        ),
    }
    out = tmp_path / "eval"
    options = EvalOptions(max_examples=2, progress_bar=False)
    evaluate(
        EvalConfig(checkpoint=str(run_dir), data=data, out_dir=str(out), eval=options), log=lambda _: None
    )
    index = out / "gallery" / "index.html"
    assert index.read_text().count("<audio") >= 4
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
    ]
    result = subprocess.run(
        [*flags, "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0", "--dump-dom", index.as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    check = re.search(r'data-check="([^"]*)"', result.stdout)
    assert check, f"the page's load check did not run:\n{result.stdout[-2000:]}"
    counts = dict(part.split("=") for part in check.group(1).split())
    assert int(counts["images"]) > 10 and int(counts["audio"]) >= 4, counts
    assert counts["broken"] == "0" and counts["audio_errors"] == "0", counts
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, "\n".join(console)
    screenshot = tmp_path / "gallery.png"
    subprocess.run([*flags, f"--screenshot={screenshot}", "--window-size=1200,900", index.as_uri()], capture_output=True, timeout=180)  # fmt: skip
    assert screenshot.is_file() and screenshot.stat().st_size > 1000


@pytest.mark.slow
def test_eval_runs_every_task_of_the_shapes_world(run_dir, tmp_path):
    """Every task conf/data/shapes.yaml trains (images, boxes, masks, keypoints, generated images,
    denoising, tones audio) evaluates end to end and gets its headline metric."""
    from omegaconf import OmegaConf

    from tests.conftest import CONF_DIR

    entries = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "data" / "shapes.yaml"))
    data = {}
    for name, entry in entries.items():
        entry["source"] |= {"num_records": 12, "split": "val"}  # enough scenes for a person
        entry["train"], entry["repeats"] = False, 1
        data[name] = DatasetEntry(**entry)
    out = tmp_path / "eval"
    options = EvalOptions(max_examples=2, progress_bar=False, gallery_examples=1)
    report = evaluate(
        EvalConfig(checkpoint=str(run_dir), data=data, out_dir=str(out), eval=options), log=lambda _: None
    )
    evaluated = {task for tasks in report["results"].values() for task in tasks}
    expected = {task for entry in entries.values() for task in entry["tasks"]}
    assert evaluated == expected
    for tasks in report["results"].values():
        for task, metrics in tasks.items():
            assert metrics["examples"] > 0, task
    assert (out / "results.json").is_file() and (out / "summary.md").is_file()
    assert (out / "gallery" / "index.html").is_file()
