"""Evaluate a checkpoint on every task of its validation data: `unio-eval` (scripts/evaluate.py).

    unio-eval checkpoint=runs/first                        # every `train: false` dataset/task of the run
    unio-eval checkpoint=runs/first tasks=[detect,vqa] eval.max_examples=50
    unio-eval checkpoint=runs/first/checkpoints/step-0000400 data=coco out_dir=/tmp/eval

What is evaluated. By default every dataset with `train: false` in the run's own `config.yaml` and
each of its tasks, rebuilt with the options written there (class lists, categories: never defaults).
`data=<conf/data option>` replaces them (its `train: false` entries, or all of them when it has none).
Records come from the sources themselves (not the pretokenized cache), through the dataset's
transforms (the same deterministic rng as the pretokenizer, repeat 0), and EVERY item of a record is an
example (`Task.eval_examples`: every VQA question, every (object, expression) pair, every person), in
order; `eval.max_examples` caps the examples per (dataset, task).

Ground truth in original units. `Example.meta` describes the transformed view; `references` maps it to
the original image with `boxes_to_original` / `keypoints_to_original` / `mask_to_original`, the same
maps `parse` applies to predictions, so metrics compare like with like in original pixels.

Generation (unio/pipeline.py `predict_examples`): the task's grammar, batches sorted by input length,
KV cache, greedy by default (`eval.generation.num_beams`, `guidance_scale` for beam search and CFG).
Scoring: `METRICS` (unio/eval/metrics.py); text_to_image with a classifier trained on the evaluated
examples' real images (unio/eval/image_classifier.py) and FID with `eval.inception_weights`.
`tokens_per_second` is end to end (input encoding, batching, generate, decoding, parse and scoring);
`generate_tokens_per_second` the model's share alone.

Outputs (`out_dir`, default `<run dir>/eval/<timestamp>`), assembled in a temporary sibling directory
and renamed into place when complete, so a failed run leaves nothing half-written:

    results.json       dataset -> task -> {metrics..., examples, invalid_outputs, tokens_per_second},
                       plus the checkpoint / tokenizer / data fingerprints and the generation totals
    summary.md         one table: dataset, task, headline metric, examples, invalid, tokens/s
    gallery/index.html the first `eval.gallery_examples` examples of each task as pictures and sounds

`make_val_hook(...)` turns the same machinery into the trainer's validation hook
(`unio.train.trainer.train(cfg, val_hook=...)`): task metrics on a few validation examples per step.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from unio.atomic import atomic_write_text
from unio.data.pretokenize import DatasetEntry, build_transforms, encode_views
from unio.eval.gallery import GalleryItem, write_gallery
from unio.eval.metrics import HEADLINE, LOWER_IS_BETTER, METRICS
from unio.model.checkpoint import TOKENIZERS, load_model, read_tokenizer_fingerprints, resolve_checkpoint
from unio.model.patches import check_task_inputs
from unio.model.transformer import UnifiedTransformer
from unio.pipeline import GenerationOptions, GenerationStats, GrammarCache, predict_examples
from unio.tasks import TASKS, Example, Task, Tokenizers, make_task
from unio.tasks.base import boxes_to_original, keypoints_to_original, mask_to_original
from unio.tasks.dense_tasks import rle_to_mask

RUN_CONFIG = "config.yaml"
# Tasks whose metric needs what evaluation cannot supply by itself (see `EvalOptions.inception_weights`).
NEEDS_CONTEXT = {
    "text_to_image": "no class labels (for the classifier) and no eval.inception_weights=<local weights> (FID)"
}


@dataclass
class EvalOptions:
    max_examples: int | None = None  # per (dataset, task); None = every example
    device: str = "cpu"
    dtype: str = "float32"  # float32 | bfloat16 | float16
    num_threads: int | None = None  # torch intra-op threads (None: torch's default)
    seed: int = 0  # the transforms' rng (the pretokenizer's default seed)
    gallery_examples: int = 8  # per (dataset, task); 0 = no gallery
    progress_bar: bool = True
    inception_weights: str | None = None  # local FID Inception weights for text_to_image (never downloaded)
    generation: GenerationOptions = field(default_factory=GenerationOptions)


@dataclass
class EvalConfig:
    checkpoint: str = "???"  # a run directory (its newest checkpoint) or a checkpoint directory
    data: dict[str, DatasetEntry] = field(default_factory=dict)  # empty: the run's `train: false` data
    data_root: str = "../shared/data"  # for conf/data files chosen with data=...
    tasks: list[str] | None = None  # None: every task of each dataset
    out_dir: str | None = None  # default <run dir>/eval/<timestamp> (<checkpoint>/eval/... outside a run)
    eval: EvalOptions = field(default_factory=EvalOptions)


# ------------------------------------------------------------------------------------------ references
def references(
    task: str, meta: dict[str, Any], view: Any = None, tok: Tokenizers | None = None
) -> dict[str, Any]:
    """Example i's ground truth for `METRICS[task]`, in the ORIGINAL image's units: the example's
    `meta` with geometry mapped back through the view's transform (identity without one), plus the
    reference signal for tts (`audio`, `sample_rate`) and masked_image (`image`)."""
    ref = dict(meta)
    if "original_size" in meta and "image_size" in meta:
        ref["image_size"] = [float(v) for v in meta["original_size"]]
    if task == "detect":
        ref["boxes"] = boxes_to_original(
            np.asarray(meta["boxes"], dtype=np.float64).reshape(-1, 4), meta
        ).tolist()
    elif task in ("ground", "region_caption"):
        ref["box"] = boxes_to_original(np.asarray(meta["box"], dtype=np.float64).reshape(1, 4), meta)[
            0
        ].tolist()
    elif task == "keypoints":
        ref["box"] = boxes_to_original(np.asarray(meta["box"], dtype=np.float64).reshape(1, 4), meta)[
            0
        ].tolist()
        ref["keypoints"] = keypoints_to_original(
            np.asarray(meta["keypoints"], dtype=np.float64), meta
        ).tolist()
    elif task == "refseg":
        ref["mask"] = mask_to_original(rle_to_mask(meta["mask"]), meta)
    elif task == "tts" and view is not None:
        ref["audio"], ref["sample_rate"] = np.asarray(view.audio, dtype=np.float32), int(view.sample_rate)
    elif task == "masked_image" and view is not None and tok is not None:
        ref["image"] = tok.decode_image(tok.image_codes(view))
    return ref


# ------------------------------------------------------------------------------------------ data
@dataclass
class TaskExamples:
    """Everything evaluated for one (dataset, task)."""

    dataset: str
    task: Task
    examples: list[Example] = field(default_factory=list)
    references: list[dict[str, Any]] = field(default_factory=list)
    # the original image / clip of the first `gallery_examples` examples (all for text_to_image), else None
    images: list[np.ndarray | None] = field(default_factory=list)
    audio: list[tuple[np.ndarray, int] | None] = field(default_factory=list)
    record_ids: list[str] = field(default_factory=list)


def read_run_config(checkpoint: Path) -> tuple[Path | None, dict[str, Any] | None]:
    """(run dir, its config.yaml as plain data) for a checkpoint inside a run directory, else (None, None)."""
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else None
    if run_dir is None or not (run_dir / RUN_CONFIG).is_file():
        return run_dir, None
    try:
        config = OmegaConf.to_container(OmegaConf.load(run_dir / RUN_CONFIG), resolve=True)
    except Exception as err:  # a YAML or interpolation error in a hand-edited file
        raise ValueError(f"{run_dir / RUN_CONFIG}: unreadable run config ({err})") from None
    return run_dir, config


def select_datasets(
    cfg: EvalConfig, run_config: dict[str, Any] | None, where: str
) -> dict[str, DatasetEntry]:
    """The datasets to evaluate (see the module docstring)."""
    if cfg.data:
        entries = {k: v if isinstance(v, DatasetEntry) else DatasetEntry(**v) for k, v in cfg.data.items()}
        chosen = {k: v for k, v in entries.items() if not v.train}
        return chosen or entries
    if run_config is None:
        raise FileNotFoundError(
            f"{where}: no run config.yaml next to this checkpoint to take the validation data from; "
            "pass data=<conf/data option>"
        )
    data = run_config.get("data") or {}
    chosen = {k: DatasetEntry(**v) for k, v in data.items() if not v.get("train", True)}
    if not chosen:
        raise ValueError(
            f"{where}: the run config has no `train: false` dataset; pass data=<conf/data option>"
        )
    return chosen


def select_tasks(entries: dict[str, DatasetEntry], names: list[str] | None) -> dict[str, dict[str, Task]]:
    """dataset -> task name -> configured task; `names` restricts them (unknown names are errors)."""
    if names is not None:
        unknown = sorted(set(names) - set(TASKS))
        if unknown:
            raise ValueError(f"tasks: unknown task(s) {unknown}; known tasks: {sorted(TASKS)}")
        present = {t for e in entries.values() for t in e.tasks}
        absent = sorted(set(names) - present)
        if absent:
            raise ValueError(
                f"tasks: {absent} not configured for the evaluated data (it has {sorted(present)})"
            )
    out: dict[str, dict[str, Task]] = {}
    for dataset, entry in entries.items():
        tasks = {
            name: make_task(name, **(options or {}))
            for name, options in entry.tasks.items()
            if names is None or name in names
        }
        if tasks:
            out[dataset] = tasks
    return out


RECORD_CHUNK = 32  # records loaded, transformed and VQ-encoded together


def collect_examples(
    dataset: str,
    entry: DatasetEntry,
    tasks: dict[str, Task],
    tok: Tokenizers,
    options: EvalOptions,
    on_bad_sample: str = "raise",
) -> dict[str, TaskExamples]:
    """Every item of every record for each task, until each has `max_examples` (deterministic)."""
    from unio.data.sources import build_source

    source = build_source({"on_bad_sample": on_bad_sample, **entry.source})
    transform = build_transforms(entry.transforms, f"data.{dataset}.transforms")
    total = len(source) if entry.limit is None else min(entry.limit, len(source))
    out = {name: TaskExamples(dataset, task) for name, task in tasks.items()}
    cap = options.max_examples
    uses = {u for task in tasks.values() for u in task.vq_tokenizers()}  # no image encoder for patches
    full = lambda name: cap is not None and len(out[name].examples) >= cap  # noqa: E731
    bar = tqdm(total=total, desc=f"{dataset}: records", disable=not options.progress_bar, leave=False)
    with bar:
        for chunk in range(0, total, RECORD_CHUNK):
            if all(full(name) for name in tasks):
                break
            pairs = []  # (record, view) of this chunk
            for index in range(chunk, min(chunk + RECORD_CHUNK, total)):
                record = source.get(index)
                bar.update(1)
                if record is None:  # skipped under on_bad_sample=skip (counted in the source's report)
                    continue
                view = record
                if transform is not None:
                    rng = np.random.default_rng([options.seed, zlib.crc32(dataset.encode()), index, 0])
                    view = transform(record, rng)
                view = view.replace(meta=dict(view.meta))  # its own meta: it holds this view's codes
                pairs.append((record, view))
            encode_views([v for _, v in pairs], uses, tok)
            for record, view in pairs:
                for name, task in tasks.items():
                    bucket = out[name]
                    if full(name):
                        continue
                    for example in task.eval_examples(view, tok):
                        if full(name):
                            break
                        # originals only where used (gallery, FID's real images): memory stays small
                        keep = len(bucket.examples) < options.gallery_examples or name == "text_to_image"
                        bucket.examples.append(example)
                        bucket.references.append(references(name, example.meta, view, tok))
                        bucket.images.append(record.image if keep else None)
                        has_audio = keep and record.audio is not None
                        bucket.audio.append((record.audio, record.sample_rate) if has_audio else None)
                        bucket.record_ids.append(record.id)
    return out


# ------------------------------------------------------------------------------------------ fingerprints
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def check_tokenizer_fingerprints(checkpoint: Path, run_dir: Path | None, tok: Tokenizers) -> None:
    """The run's tokenizers/ (what its caches and config were built with) must equal the checkpoint's."""
    if run_dir is None or not (run_dir / TOKENIZERS).is_dir():
        return
    stored = read_tokenizer_fingerprints(run_dir / TOKENIZERS)
    current = tok.fingerprints()
    differ = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
    if differ:
        raise ValueError(
            f"{checkpoint}: tokenizer fingerprints differ from the run's {run_dir / TOKENIZERS} for "
            f"{differ} (checkpoint {[current.get(k) for k in differ]}, run {[stored.get(k) for k in differ]})"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def data_fingerprint(entry: DatasetEntry, tasks: dict[str, Task], ids: list[str]) -> str:
    plain = {"entry": _jsonable(asdict(entry)), "tasks": {n: repr(t) for n, t in tasks.items()}, "ids": ids}
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ scoring
def score_task(bucket: TaskExamples, predictions: list[Any], options: EvalOptions) -> dict[str, float]:
    name = bucket.task.name
    if not predictions:
        return {"examples": 0.0}
    context: dict[str, Any] = {}
    if name == "detect" and getattr(bucket.task, "categories", None):
        context["categories"] = list(bucket.task.categories)
    extra: dict[str, float] = {}
    if name == "text_to_image":
        labelled = [
            (img, ref["label"]) for img, ref in zip(bucket.images, bucket.references) if ref.get("label")
        ]
        if len({label for _, label in labelled}) >= 2:
            from unio.eval.image_classifier import train_image_classifier

            classifier = train_image_classifier([i for i, _ in labelled], [label for _, label in labelled])
            context["classifier"] = classifier
            extra["classifier_real_accuracy"] = classifier.real_accuracy
        if options.inception_weights is not None:
            context["real_images"] = [img for img in bucket.images if img is not None]
            context["inception_weights"] = options.inception_weights
        if not context:
            return {"examples": float(len(predictions)), "skipped": NEEDS_CONTEXT[name]}  # type: ignore[dict-item]
    return {**METRICS[name](predictions, bucket.references, **context), **extra}


# ------------------------------------------------------------------------------------------ evaluate
def evaluate(cfg: EvalConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the evaluation described in the module docstring; returns results.json's content."""
    options = cfg.eval
    if options.num_threads:
        torch.set_num_threads(options.num_threads)
    if cfg.checkpoint in (None, "", "???"):
        raise ValueError("checkpoint: missing; pass checkpoint=<run dir or checkpoint dir>")
    checkpoint = resolve_checkpoint(cfg.checkpoint)
    run_dir, run_config = read_run_config(checkpoint)
    entries = select_datasets(cfg, run_config, str(checkpoint))
    plan = select_tasks(entries, cfg.tasks)
    if not plan:
        raise ValueError(f"nothing to evaluate: no task of {sorted(entries)} matches tasks={cfg.tasks}")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        options.dtype
    )
    if dtype is None:
        raise ValueError(f"eval.dtype must be float32, bfloat16 or float16, got {options.dtype!r}")
    model, tok = load_model(checkpoint, device=options.device, dtype=dtype)
    check_tokenizer_fingerprints(checkpoint, run_dir, tok)
    check_task_inputs(
        model.config.patch_stem,
        model.config.audio_stem,
        {f"{d}/{n}": t for d, tasks in plan.items() for n, t in tasks.items()},
        f"unio-eval {checkpoint}",
    )
    for tasks in plan.values():
        for task in tasks.values():
            task.check(tok)
    on_bad = (run_config or {}).get("on_bad_sample", "raise")

    base = run_dir if run_dir is not None else checkpoint
    out_dir = Path(cfg.out_dir) if cfg.out_dir else base / "eval" / datetime.now().strftime("%Y%m%d-%H%M%S")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"out_dir {out_dir} exists and is not empty; choose another out_dir=")
    started = time.perf_counter()
    results: dict[str, Any] = {}
    gallery: list[GalleryItem] = []
    totals = GenerationStats()
    fingerprints: dict[str, str] = {}
    grammars = GrammarCache()
    for dataset, tasks in plan.items():
        log(f"{dataset}: collecting examples for {sorted(tasks)}")
        buckets = collect_examples(dataset, entries[dataset], tasks, tok, options, on_bad)
        ids = sorted({i for b in buckets.values() for i in b.record_ids})
        fingerprints[dataset] = data_fingerprint(entries[dataset], tasks, ids)
        results[dataset] = {}
        for name, bucket in buckets.items():
            stats = GenerationStats()
            bar = tqdm(total=len(bucket.examples), desc=f"{dataset}/{name}", disable=not options.progress_bar)
            with bar:
                raw = predict_examples(
                    model, tok, bucket.task, bucket.examples, options.generation, grammars, stats, bar
                )
            predictions = [r.prediction for r in raw]
            score_start = time.perf_counter()
            metrics = score_task(bucket, predictions, options)
            stats.seconds += time.perf_counter() - score_start  # tokens/s counts scoring too
            metrics.update(
                examples=float(len(predictions)),
                invalid_outputs=float(stats.invalid),
                generated_tokens=float(stats.tokens),
                seconds=stats.seconds,
                tokens_per_second=stats.tokens_per_second,
                generate_seconds=stats.generate_seconds,
                generate_tokens_per_second=stats.generate_tokens_per_second,
            )
            if stats.by_problem:
                metrics["invalid_by_kind"] = dict(stats.by_problem)  # type: ignore[assignment]
            results[dataset][name] = metrics
            totals.tokens += stats.tokens
            totals.seconds += stats.seconds
            totals.generate_seconds += stats.generate_seconds
            totals.examples += stats.examples
            totals.invalid += stats.invalid
            head = HEADLINE.get(name)
            log(f"{dataset}/{name}: {head}={metrics.get(head)} over {len(predictions)} examples")
            for i in range(min(options.gallery_examples, len(raw))):
                example = bucket.examples[i]
                prompt = next((s.text for s in example.input if hasattr(s, "text")), "")
                gallery.append(
                    GalleryItem(
                        dataset, name, i, bucket.images[i], raw[i].prediction, bucket.references[i],
                        prompt, raw[i].valid, bucket.audio[i],
                    )
                )  # fmt: skip
    report = {
        "results": _jsonable(results),
        "checkpoint": str(checkpoint),
        "fingerprints": {
            "weights": file_sha256(checkpoint / "model.safetensors"),
            "tokenizers": tok.fingerprint,
            "data": fingerprints,
        },
        "generation": {
            **asdict(options.generation),
            "examples": totals.examples,
            "tokens": totals.tokens,
            "seconds": totals.seconds,
            "tokens_per_second": totals.tokens_per_second,
            "generate_seconds": totals.generate_seconds,
            "generate_tokens_per_second": totals.generate_tokens_per_second,
            "invalid_outputs": totals.invalid,
        },
        "device": options.device,
        "dtype": options.dtype,
        "seconds": time.perf_counter() - started,
    }
    write_outputs(out_dir, report, gallery)
    report["out_dir"] = str(out_dir)
    log(f"wrote {out_dir}/results.json, summary.md, gallery/index.html")
    return report


def summary_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Evaluation of `{report['checkpoint']}`",
        "",
        "| dataset | task | metric | value | examples | invalid | tokens/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset, tasks in report["results"].items():
        for task, metrics in tasks.items():
            head = HEADLINE.get(task, "")
            value = metrics.get(head, metrics.get("skipped", ""))
            value = f"{value:.4f}" if isinstance(value, float) else str(value)
            arrow = " (lower is better)" if head in LOWER_IS_BETTER else ""
            lines.append(
                f"| {dataset} | {task} | {head}{arrow} | {value} | {int(metrics['examples'])} | "
                f"{int(metrics['invalid_outputs'])} | {metrics['tokens_per_second']:.1f} |"
            )
    gen = report["generation"]
    lines += [
        "",
        f"Generation: {gen['tokens']} tokens in {gen['seconds']:.2f} s ({gen['tokens_per_second']:.1f} tokens/s).",
    ]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, report: dict[str, Any], gallery: list[GalleryItem]) -> None:
    """results.json, summary.md and gallery/ written into a temporary sibling, then renamed to out_dir."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write_gallery(tmp / "gallery", gallery, title=f"unio evaluation: {report['checkpoint']}")
        atomic_write_text(tmp / "summary.md", summary_markdown(report))
        atomic_write_text(tmp / "results.json", json.dumps(report, indent=1, sort_keys=True) + "\n")
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked before the run)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ------------------------------------------------------------------------------------------ trainer hook
def make_val_hook(
    data: dict[str, DatasetEntry],
    max_examples: int = 16,
    generation: GenerationOptions | None = None,
    seed: int = 0,
) -> Callable[[UnifiedTransformer, Tokenizers, int], dict[str, float]]:
    """A `val_hook(model, tok, step) -> {"<dataset>/<task>/<metric>": value}` for
    `unio.train.trainer.train(cfg, val_hook=...)`: the headline metric and invalid-output count of
    every task of the `train: false` datasets in `data` (a TrainConfig's `data`), on the first
    `max_examples` examples (collected once, on the first call). The model is put in eval mode for
    the call and restored to its previous mode."""
    entries = {k: v for k, v in data.items() if not v.train}
    plan = select_tasks(entries, None)
    options = EvalOptions(max_examples=max_examples, seed=seed, progress_bar=False, gallery_examples=0)
    options.generation = generation or GenerationOptions(max_new_tokens=32)
    cache: dict[str, dict[str, TaskExamples]] = {}
    grammars = GrammarCache()

    def hook(model: UnifiedTransformer, tok: Tokenizers, step: int) -> dict[str, float]:
        if not cache:
            for dataset, tasks in plan.items():
                cache[dataset] = collect_examples(dataset, entries[dataset], tasks, tok, options)
        was_training = model.training
        model.eval()
        out: dict[str, float] = {}
        try:
            for dataset, buckets in cache.items():
                for name, bucket in buckets.items():
                    if not bucket.examples or name in NEEDS_CONTEXT:
                        continue
                    stats = GenerationStats()
                    raw = predict_examples(
                        model, tok, bucket.task, bucket.examples, options.generation, grammars, stats
                    )
                    metrics = score_task(bucket, [r.prediction for r in raw], options)
                    head = HEADLINE[name]
                    out[f"{dataset}/{name}/{head}"] = float(metrics[head])
                    out[f"{dataset}/{name}/invalid_outputs"] = float(stats.invalid)
        finally:
            model.train(was_training)
        return out

    return hook
