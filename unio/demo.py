"""The end-to-end demo on built-in data: no downloads, CPU only.

1. **The format** (`run_demo`, seconds): build the unified vocabulary, train a small SentencePiece
   model on the built-in corpus, write one detection-style sample (text, labelled boxes, person
   keypoints) as ONE id sequence, show it as readable tokens with its per-token metadata, and decode
   it back to pixels.
2. **The model** (`run_model_demo`, minutes): train the unified model on the shapes world with the
   perception recipe (conf/experiment/shapes_perception.yaml, shortened), evaluate it on held-out
   scenes with every task's standard metric beside the answer prior an image-blind model would reach,
   and run it through `Pipeline` on a few held-out scenes: captions, boxes in pixels, answers and the
   referred region come back as structured results, drawn into one picture per scene.

The entry point (scripts/demo.py) composes the training config from conf/train.yaml with
`train_overrides`, so the demo trains exactly what `unio-train <overrides>` would.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unio.atomic import atomic_write_text
from unio.data.sources import build_source
from unio.eval.evaluate import EvalConfig, EvalOptions, evaluate, summary_markdown
from unio.eval.gallery import annotate
from unio.eval.metrics import HEADLINE
from unio.pipeline import Pipeline
from unio.sequence import Boxes, Points, SequenceCodec, Special, Text
from unio.tokenizers.builtin_text import builtin_corpus
from unio.tokenizers.coords import CoordConfig, CoordTokenizer, OutOfImage
from unio.tokenizers.text import TextTokenizer, TextTokenizerConfig
from unio.train.trainer import TrainConfig, train
from unio.vocab import MODALITIES, Vocabulary


@dataclass
class DemoCoordsConfig:
    """The fields of `CoordConfig`, which is frozen: OmegaConf makes a frozen dataclass read-only, so
    `unio-demo coords.num_bins=500` needs this mutable twin (tests/test_demo.py keeps the two in sync)."""

    num_bins: int = 1000
    out_of_image: OutOfImage = OutOfImage.clip

    def build(self) -> CoordConfig:
        return CoordConfig(num_bins=self.num_bins, out_of_image=self.out_of_image)


@dataclass
class DemoConfig:
    output_dir: str = "."  # vocabulary.json and text.model are written here
    text: TextTokenizerConfig = field(default_factory=lambda: TextTokenizerConfig(vocab_size=1000))
    coords: DemoCoordsConfig = field(default_factory=DemoCoordsConfig)
    corpus_sentences: int = 4000
    seed: int = 0
    # The model part (`run_model_demo`): false shows the format only
    train: bool = True
    # unio-train overrides of the demo's run (a second `unio-demo` resumes it: nothing is retrained)
    train_overrides: list[str] = field(
        default_factory=lambda: [
            "experiment=shapes_perception",
            "trainer.max_steps=1500",
            "run_dir=runs/demo",
        ]
    )
    eval_examples: int = 200  # per held-out task (unio-eval's eval.max_examples)
    scenes: int = 3  # held-out scenes run through the Pipeline and drawn


# One hand-written COCO-like sample: a 640x480 photo with a person and a frisbee.
SAMPLE = {
    "image_size": (640, 480),
    "prompt": "Detect all objects and the keypoints of the person.",
    "boxes": np.array([[100.0, 50.0, 300.0, 460.0], [350.5, 120.25, 420.0, 160.0]]),
    "labels": ["person", "frisbee"],
    # (x, y, visibility) for nose, left eye, right eye; the right eye is not labelled
    "keypoints": np.array([[205.0, 90.0, 2], [215.0, 82.0, 1], [0.0, 0.0, 0]]),
}


def run_demo(cfg: DemoConfig, log=print) -> dict:
    out = Path(cfg.output_dir)
    text = TextTokenizer.train(builtin_corpus(cfg.corpus_sentences, seed=cfg.seed), cfg.text)
    coords = CoordTokenizer(cfg.coords.build() if isinstance(cfg.coords, DemoCoordsConfig) else cfg.coords)
    vocab = Vocabulary.default(text_size=text.vocab_size, coord_bins=coords.num_bins)
    vocab.to_json(out / "vocabulary.json")
    text.save(out / "text.model")
    log(f"== vocabulary ({out / 'vocabulary.json'})\n{vocab.describe()}\n")

    size = SAMPLE["image_size"]
    box_bins = coords.encode_boxes(SAMPLE["boxes"], image_size=size)
    kp = SAMPLE["keypoints"]
    point_bins = coords.encode_points(kp[:, :2], image_size=size)
    segments = [
        Special("<to_box>"),
        Text(SAMPLE["prompt"]),
        Boxes(box_bins, SAMPLE["labels"]),
        Points(point_bins, kp[:, 2].astype(np.int64)),
    ]
    codec = SequenceCodec(vocab, text)
    seq = codec.encode(segments, add_eos=True)
    log(f"== one sequence, {len(seq)} tokens\nids: {seq.ids.tolist()}\n")
    log(f"tokens: {codec.render(seq.ids)}\n")
    log("modality: " + " ".join(MODALITIES[m][0] for m in seq.modality.tolist()) + "\n")

    decoded = codec.decode(seq.ids)
    if not decoded.ok:
        raise RuntimeError(f"demo sequence failed to decode: {decoded.problems}")
    boxes_seg = next(s for s in decoded.segments if isinstance(s, Boxes))
    points_seg = next(s for s in decoded.segments if isinstance(s, Points))
    boxes_px = coords.decode_boxes(boxes_seg.coords.numpy(), image_size=size)
    points_px = coords.decode_points(points_seg.coords.numpy(), image_size=size)
    box_error = float(np.abs(boxes_px - SAMPLE["boxes"]).max())
    visible = kp[:, 2] > 0
    point_error = float(np.abs(points_px[visible] - kp[visible, :2]).max())
    log("== decoded back")
    for label, box in zip(boxes_seg.labels, boxes_px, strict=True):
        log(f"  {label:<8} box {np.round(box, 2).tolist()}")
    for i, (xy, v) in enumerate(zip(points_px, points_seg.visibility.tolist(), strict=True)):
        log(f"  keypoint {i}: {'absent' if v == 0 else np.round(xy, 2).tolist()} (visibility {v})")
    half_bin = 0.5 * max(size) / coords.num_bins
    log(f"  max error: boxes {box_error:.3f} px, points {point_error:.3f} px (half a bin: {half_bin:.3f} px)")
    if box_error > half_bin + 1e-9 or point_error > half_bin + 1e-9:
        raise RuntimeError("round trip exceeded half a bin")
    return {
        "num_tokens": len(seq),
        "vocab_fingerprint": vocab.fingerprint,
        "box_error_px": box_error,
        "point_error_px": point_error,
        "prompt_roundtrip": decoded.segments[1] == Text(SAMPLE["prompt"]),
    }


def _question_kind(question: str) -> str:
    return " ".join(question.rstrip("?").split()[:3])  # "how many shapes", "what color is", "is there a"


def answer_priors(train_records: list, held_out: list, max_examples: int) -> dict[str, float]:
    """What an image-blind model can reach from the text alone, scored like unio-eval on the first
    `max_examples` held-out items: vqa = the most frequent training answer of each question kind (its
    first three words), classify = the most frequent training label."""
    priors: dict[str, float] = {}
    answers: dict[str, Counter] = {}
    for record in train_records:
        for question, answer in record.qa:
            answers.setdefault(_question_kind(question), Counter())[answer] += 1
    asked = [qa for record in held_out for qa in record.qa][:max_examples]
    if asked:
        best = {kind: counts.most_common(1)[0][0] for kind, counts in answers.items()}
        priors["vqa"] = float(np.mean([best.get(_question_kind(q)) == a for q, a in asked]))
    labels = Counter(r.label for r in train_records if r.label is not None)
    held_labels = [r.label for r in held_out if r.label is not None][:max_examples]
    if labels and held_labels:
        majority = labels.most_common(1)[0][0]
        priors["classify"] = float(np.mean([label == majority for label in held_labels]))
    return {k: round(v, 4) for k, v in priors.items()}


def run_model_demo(train_cfg: TrainConfig, cfg: DemoConfig, log=print) -> dict[str, Any]:
    """Train (or resume) the demo run, evaluate it on its held-out data, run it on a few held-out
    scenes; writes eval/ (results.json, summary.md, gallery/index.html), scenes/*.png and
    model_demo.json under ``cfg.output_dir``."""
    out = Path(cfg.output_dir)
    log(f"== training: unio-train {' '.join(cfg.train_overrides)}")
    result = train(train_cfg)
    if result.final_step <= 0:
        raise RuntimeError(f"demo: the run in {result.run_dir} took no training steps")
    log(
        f"   {result.status} at step {result.final_step} (this call: {result.steps} steps), run dir {result.run_dir}"
    )

    log(f"\n== evaluation on held-out data (unio-eval checkpoint={result.run_dir})")
    options = EvalOptions(max_examples=cfg.eval_examples, progress_bar=False, gallery_examples=4)
    report = evaluate(
        EvalConfig(checkpoint=str(result.run_dir), out_dir=str(out / "eval"), eval=options),
        log=lambda _: None,
    )
    log(summary_markdown(report))

    val = [(name, entry) for name, entry in train_cfg.data.items() if not entry.train]
    fit = [(name, entry) for name, entry in train_cfg.data.items() if entry.train]
    if not val:
        raise ValueError(
            "demo: the training config has no `train: false` dataset to show held-out scenes from"
        )
    source = build_source(dict(val[0][1].source))
    held = [source[i] for i in range(min(len(source), max(cfg.scenes, cfg.eval_examples)))]
    records = held[: cfg.scenes]  # shown through the Pipeline
    baselines: dict[str, float] = {}
    if fit:  # the text-only priors of the held-out tasks, from the first training dataset
        train_source = build_source(dict(fit[0][1].source))
        train_records = [train_source[i] for i in range(min(len(train_source), 2000))]
        baselines = answer_priors(train_records, held[: cfg.eval_examples], cfg.eval_examples)
        log("image-blind priors (most frequent training answer / label): " + json.dumps(baselines) + "\n")

    log(f"== the Pipeline on {len(records)} held-out scenes ({val[0][0]})")
    pipe = Pipeline.from_pretrained(result.run_dir)
    scenes, pictures = [], out / "scenes"
    pictures.mkdir(parents=True, exist_ok=True)
    shown = ("caption", "detect", "vqa", "ground")
    missing = [name for name in shown if name not in pipe.tasks]
    if missing or any(r.image is None for r in records):
        raise ValueError(
            f"demo: the Pipeline part shows {list(shown)} on images; the run {result.run_dir} has no "
            f"{missing} task(s) or its held-out dataset {val[0][0]!r} has no images (use train=false, "
            "or a data config with these tasks)"
        )
    for index, record in enumerate(records):
        caption = pipe.caption(record.image)
        detection = pipe.detect(record.image)
        questions = record.qa[:3]
        answers = pipe.vqa(record.image, [q for q, _ in questions]) if questions else []
        target = next((o for o in record.objects if o.referring), None)
        region = pipe.ground(record.image, target.referring[0]) if target is not None else None
        log(f"-- scene {index} ({record.id})")
        log(f"   caption  {caption.text!r}   (reference {record.captions[0] if record.captions else '-'!r})")
        log(
            f"   detect   {len(detection.labels)} objects: "
            + ", ".join(
                f"{label} {np.round(box).astype(int).tolist()}"
                for label, box in zip(detection.labels, detection.boxes, strict=True)
            )
        )
        for (question, truth), answer in zip(questions, answers, strict=True):
            log(f"   vqa      {question} -> {answer.text!r} (truth {truth!r})")
        if region is not None:
            log(
                f"   ground   {target.referring[0]!r} -> {region.box and np.round(region.box).astype(int).tolist()} "
                f"(truth {np.round(target.box).astype(int).tolist()})"
            )
        truth = {
            "boxes": [o.box.tolist() for o in record.objects],
            "labels": [o.category for o in record.objects],
        }
        picture = annotate("detect", record.image, detection.prediction, truth)
        path = pictures / f"scene_{index}.png"
        picture.save(path)
        scenes.append(
            {
                "id": record.id,
                "caption": caption.text,
                "detect": detection.prediction,
                "vqa": [
                    {"question": q, "answer": a.text, "truth": t}
                    for (q, t), a in zip(questions, answers, strict=True)
                ],
                "ground": None
                if region is None
                else {"expression": target.referring[0], "box": region.box, "truth": target.box.tolist()},
                "picture": str(path),
            }
        )
    headline = {
        f"{dataset}/{task}": metrics[HEADLINE[task]]
        for dataset, tasks in report["results"].items()
        for task, metrics in tasks.items()
        if isinstance(metrics.get(HEADLINE.get(task, "")), float)
    }
    summary = {
        "run_dir": str(result.run_dir),
        "final_step": result.final_step,
        "metrics": headline,
        "baselines": baselines,
        "scenes": scenes,
        "gallery": str(out / "eval" / "gallery" / "index.html"),
    }
    atomic_write_text(out / "model_demo.json", json.dumps(summary, indent=2) + "\n")
    log(
        f"\npictures: {pictures}/scene_*.png (predicted boxes red, truth green); gallery: {summary['gallery']}"
    )
    return summary
