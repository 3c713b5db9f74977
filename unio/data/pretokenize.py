"""Pretokenization: records -> task examples -> token ids, written once into a `datasets` (Arrow) cache.

VQ encoders run here, never in the training loop. Layout of the cache (`cache_dir`):

    {cache_dir}/{dataset}/{task}/manifest.json      fingerprints, build options, counts, complete flag
    {cache_dir}/{dataset}/{task}/shard-00000/       a `datasets.Dataset.save_to_disk` directory
    {cache_dir}/{dataset}/{task}/shard-00001/       ...
    {cache_dir}/{dataset}/bad_samples.json          records skipped under on_bad_sample=skip

A shard holds the examples of `shard_size` consecutive records. Work runs shard by shard (in
`num_proc` forked processes); every shard directory is written under a temporary name and renamed
when complete, so an interrupted run resumes where it stopped and never reads half a shard.

The manifest is keyed by the fingerprints of the vocabulary and of every tokenizer the task uses, plus
a hash of the build options (task fields, source config, seed, shard size, length limits). A cache
whose key differs is rebuilt (`on_mismatch: rebuild`) or refused with a message saying what changed
(`refuse`); it is never used silently. Loading (`load_pretokenized`) checks the same key.

Nothing is dropped without a count: per task the manifest records examples written, records the task
does not apply to (e.g. no captions), examples over the length limits, bad records the source skipped
(`on_bad_sample: skip`; both those rejected while the source was indexed and those whose files failed
to load, in `counts.bad_records` and per reason in `bad_records_by_reason`) and annotations dropped
from kept records (`on_bad_annotation: drop_annotation`, `counts.bad_annotations`). Every skipped
record and dropped annotation is listed in bad_samples.json and summarised at the end of the run.

A run that would silently train on too little fails instead, with the counts per reason and the first
offending records in one line: a (dataset, task) that ends with 0 examples, or that lost more than
`max_bad_fraction` of its records as bad. Its manifest stays incomplete ("failed": the message), so
nothing loads it; a rerun with a larger `max_bad_fraction` finishes it without rebuilding the shards.

Patch inputs (a task with ``input_repr: patches``, unio/tasks/base.py): the shards of that task also
hold the input pixels, ``input_image`` (the HxWx3 uint8 array's bytes, C order) and
``input_image_shape`` ([H, W, 3]); the image VQ encoder does not run for them (it still runs for image
targets and for the other tasks of the dataset). The options that decide the pixels (``input_repr``,
``input_size``, ``patch_size``) are task fields, so they are in the key; for code inputs they are left
out of it, so caches built before patch inputs existed stay valid. Audio patch inputs (asr and
audio_classify with ``input_repr: patches``, unio/tasks/audio_tasks.py) store the log-mel spectrogram
instead: ``input_audio`` (the mels x frames float16 array's bytes, C order, bit-exact) and
``input_audio_shape`` ([mels, frames]); the audio VQ encoder does not run for them, and the
preprocessing options (``sample_rate``, ``n_fft``, ``hop_length``, ``n_mels``, ``num_frames``,
``patch_size``) are task fields in the key, left out of it for code inputs.

The bad-sample policies that decide what the cache holds (`on_bad_sample`, `on_bad_annotation`, at
the top level or in `source:`, or those of a `Source` passed in) are part of the key, wherever set.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import shutil
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from unio.atomic import atomic_write_text
from unio.data import transforms as T
from unio.data.bad_samples import BadSampleError, BadSampleReport, check_annotation_policy, check_policy
from unio.tasks import Task, Tokenizers, encode_example, make_task
from unio.tasks.audio_tasks import AUDIO_PATCH_FIELDS
from unio.tasks.bundle import TokenizersConfig

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MISMATCH_POLICIES = ("rebuild", "refuse")

FEATURES = datasets.Features(
    {
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "input_modality": datasets.Sequence(datasets.Value("int8")),
        "input_row": datasets.Sequence(datasets.Value("int16")),
        "input_col": datasets.Sequence(datasets.Value("int16")),
        "target_ids": datasets.Sequence(datasets.Value("int32")),
        "target_modality": datasets.Sequence(datasets.Value("int8")),
        "target_row": datasets.Sequence(datasets.Value("int16")),
        "target_col": datasets.Sequence(datasets.Value("int16")),
        "target_loss": datasets.Sequence(datasets.Value("int8")),
        "task": datasets.Value("string"),
        "record_id": datasets.Value("string"),
        "meta": datasets.Value("string"),  # JSON: what the task's parser and metric need
    }
)
# The shards of a patch-input task add the input pixels (module docstring).
IMAGE_FEATURES = datasets.Features(
    {
        **FEATURES,
        "input_image": datasets.Value("binary"),  # HxWx3 uint8, C order
        "input_image_shape": datasets.Sequence(datasets.Value("int32")),  # [H, W, 3]
    }
)
# The shards of an audio patch-input task add the input spectrogram (module docstring).
AUDIO_FEATURES = datasets.Features(
    {
        **FEATURES,
        "input_audio": datasets.Value("binary"),  # mels x frames float16, C order
        "input_audio_shape": datasets.Sequence(datasets.Value("int32")),  # [mels, frames]
    }
)
# task fields that only matter for patches (the spectrogram options only exist on audio tasks)
PATCH_FIELDS = ("input_repr", "input_size", "patch_size", *AUDIO_PATCH_FIELDS)


def task_features(task: Task) -> datasets.Features:
    """The columns of a task's shards: `FEATURES`, plus the pixels or the spectrogram for patch inputs."""
    if task.input_repr != "patches":
        return FEATURES
    return AUDIO_FEATURES if task.condition == "audio" else IMAGE_FEATURES


# Transforms a data config can name (unio/data/transforms.py), e.g. {name: horizontal_flip, p: 0.5}.
TRANSFORMS: dict[str, type] = {
    "resize_to_square": T.ResizeToSquare,
    "random_resized_crop": T.RandomResizedCrop,
    "scale_jitter": T.ScaleJitter,
    "horizontal_flip": T.HorizontalFlip,
    "resample": T.Resample,
    "random_audio_crop": T.RandomAudioCrop,
    "pad_audio": T.PadAudio,
}


@dataclass
class DatasetEntry:
    """One data source and the tasks built from it (a file in conf/data/)."""

    source: dict[str, Any] = field(default_factory=dict)  # `kind` + that source's fields (docs/data.md)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task name -> options (make_task)
    train: bool = True  # training prompts and random choices; False = the canonical eval prompt
    repeats: int = 1  # views per record (each its own augmentation, prompt, caption, object...)
    limit: int | None = None  # use only the first `limit` records
    # Applied in order to every view before the tasks see it, e.g. [{name: horizontal_flip, p: 0.5}]
    transforms: list[dict[str, Any]] = field(default_factory=list)


def build_transforms(specs: list[dict[str, Any]], where: str = "transforms") -> T.Compose | None:
    """`[{name: ..., **fields}]` -> one composed transform (None for an empty list)."""
    steps = []
    for i, spec in enumerate(specs):
        options = dict(spec)
        name = options.pop("name", None)
        if name not in TRANSFORMS:
            raise ValueError(f"{where}[{i}]: unknown transform {name!r}; known: {sorted(TRANSFORMS)}")
        try:
            steps.append(
                TRANSFORMS[name](**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
            )
        except TypeError as err:
            raise ValueError(f"{where}[{i}] ({name}): {err}") from None
    return T.Compose(steps) if steps else None


@dataclass
class PretokenizeConfig:
    cache_dir: str = "cache/pretokenized"
    data_root: str = "../shared/data"  # conf/data files write paths as ${data_root}/...
    data: dict[str, DatasetEntry] = field(default_factory=dict)
    tokenizers: TokenizersConfig = field(default_factory=TokenizersConfig)
    num_proc: int = 1
    shard_size: int = 256
    max_input_len: int = 512
    max_target_len: int = 512
    seed: int = 0
    on_bad_sample: str = "raise"  # default for sources that do not set their own
    # default for sources with annotations (coco, voc, hf): drop_annotation | drop_record | raise
    on_bad_annotation: str = "drop_annotation"
    # fail a (dataset, task) that loses more than this fraction of its records as bad (0 examples always fails)
    max_bad_fraction: float = 0.1
    on_mismatch: str = "rebuild"  # rebuild | refuse: what to do with a cache built with other tokenizers


@dataclass
class CacheResult:
    path: Path
    status: str  # hit | built | resumed | rebuilt
    counts: dict[str, int]
    bad_records_by_reason: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- keys
def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def effective_policies(entry: DatasetEntry, cfg: PretokenizeConfig, source: Any = None) -> dict[str, str]:
    """The bad-sample policies the source of `entry` runs under: those of `source` when given, else the
    source config's own, else the top-level defaults (`on_bad_annotation` only for sources that have it)."""
    if source is not None:
        found = {"on_bad_sample": source.on_bad_sample}
        if getattr(source, "on_bad_annotation", None) is not None:
            found["on_bad_annotation"] = source.on_bad_annotation
        return found
    found = {"on_bad_sample": entry.source.get("on_bad_sample", cfg.on_bad_sample)}
    if _has_field(entry.source.get("kind"), "on_bad_annotation"):
        found["on_bad_annotation"] = entry.source.get("on_bad_annotation", cfg.on_bad_annotation)
    return found


def _has_field(kind: Any, name: str) -> bool:
    from unio.data.sources import SOURCES

    if kind not in SOURCES:
        return False
    import dataclasses

    return name in {f.name for f in dataclasses.fields(SOURCES[kind][0])}


def cache_key(
    task: Task,
    tok: Tokenizers,
    entry: DatasetEntry,
    cfg: PretokenizeConfig,
    policies: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What a cache depends on. Two builds with equal keys produce identical shards. `policies` are
    the effective bad-sample policies (default: `effective_policies(entry, cfg)`)."""
    task_options = asdict(task)
    if task.input_repr == "codes":  # the default: keys (and caches) of code-input tasks are unchanged
        for name in PATCH_FIELDS:
            task_options.pop(name, None)
    options = {
        "task": {"class": type(task).__name__, **task_options},
        "source": {**entry.source, **(policies or effective_policies(entry, cfg))},
        "train": entry.train,
        "repeats": entry.repeats,
        "limit": entry.limit,
        "transforms": entry.transforms,
        "seed": cfg.seed,
        "shard_size": cfg.shard_size,
        "max_input_len": cfg.max_input_len,
        "max_target_len": cfg.max_target_len,
    }
    return {
        "format_version": FORMAT_VERSION,
        "fingerprints": tok.fingerprints(task.vq_tokenizers()),
        "options": _hash(options),
    }


def _describe_mismatch(found: dict[str, Any], expected: dict[str, Any]) -> str:
    if found.get("format_version") != expected["format_version"]:
        return f"cache format {found.get('format_version')} != {expected['format_version']}"
    changed = [
        f"{name} tokenizer {found.get('fingerprints', {}).get(name)} -> {fp}"
        for name, fp in expected["fingerprints"].items()
        if found.get("fingerprints", {}).get(name) != fp
    ]
    if found.get("options") != expected["options"]:
        changed.append(
            "build options (task fields, source, bad-sample policy, seed, shard size or length limits)"
        )
    return "; ".join(changed)


def read_manifest(task_dir: Path) -> dict[str, Any] | None:
    path = task_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt manifest ({err}); delete {task_dir} to rebuild") from None


# --------------------------------------------------------------------------------------- building
# Set in the parent before forking workers, so they inherit tokenizers and sources without pickling.
_STATE: dict[str, Any] = {}


def _example_rng(seed: int, dataset: str, task: str, index: int, repeat: int) -> random.Random:
    return random.Random(f"{seed}/{dataset}/{task}/{index}/{repeat}")


def _build_shard(dataset: str, shard: int, task_names: list[str]) -> dict[str, Any]:
    """Build and write one shard of every task in `task_names`; returns the counts per task."""
    cfg: PretokenizeConfig = _STATE["cfg"]
    tok: Tokenizers = _STATE["tok"]
    source = _STATE["sources"][dataset]
    entry: DatasetEntry = cfg.data[dataset]
    tasks: dict[str, Task] = {name: _STATE["tasks"][dataset][name] for name in task_names}
    total = len(source) if entry.limit is None else min(entry.limit, len(source))
    indices = range(shard * cfg.shard_size, min((shard + 1) * cfg.shard_size, total))
    # This shard's own report (saved with it); the source's report keeps growing (merged, never replaced).
    known = source.bad_samples.copy()
    shard_report = BadSampleReport(source.bad_samples.name)
    records = []
    for i in indices:
        try:
            records.append((i, source[i]))
        except BadSampleError as error:  # the policy of `Source.get`, noting the record in both reports
            if source.on_bad_sample == "raise" or error.fatal:
                raise
            source.bad_samples.add(error)
            shard_report.add(error)
    shard_report.merge(source.bad_samples.difference(known))  # annotations dropped while loading
    # Views: (record index, repeat, record after the transforms). Every task sees the same views, so
    # each view's image, masks and audio are encoded once, in batches.
    transform = _STATE["transforms"][dataset]
    views = []
    for index, record in records:
        for repeat in range(entry.repeats):
            view = record  # without transforms the repeats share one view, encoded once
            if transform is not None:
                rng = np.random.default_rng([cfg.seed, zlib.crc32(dataset.encode()), index, repeat])
                view = transform(record, rng)
                view = view.replace(meta=dict(view.meta))  # its own meta: it holds this view's codes
            views.append((index, repeat, view))
    encode_views([v for _, _, v in views], {u for task in tasks.values() for u in task.vq_tokenizers()}, tok)
    counts = {}
    for name, task in tasks.items():
        features = task_features(task)
        rows: dict[str, list] = {key: [] for key in features}
        n = {"examples": 0, "not_applicable": 0, "too_long": 0, "records": len(records)}
        n["bad_records"] = len(indices) - len(records)  # skipped by the source (on_bad_sample=skip)
        n["bad_annotations"] = len(shard_report.dropped_annotations)  # dropped while loading
        for index, repeat, view in views:
            example = task.build(view, _example_rng(cfg.seed, dataset, name, index, repeat), tok, entry.train)
            if example is None:
                n["not_applicable"] += 1
                continue
            enc = encode_example(example, tok)
            if len(enc.input) > cfg.max_input_len or len(enc.target) > cfg.max_target_len:
                n["too_long"] += 1
                continue
            for side, seq in (("input", enc.input), ("target", enc.target)):
                for key in ("ids", "modality", "row", "col"):
                    rows[f"{side}_{key}"].append(getattr(seq, key).tolist())
            rows["target_loss"].append(enc.target_loss.tolist())
            if "input_image" in rows:
                pixels = _pixels(enc.input_image, name, view.id)
                rows["input_image"].append(pixels.tobytes())
                rows["input_image_shape"].append(list(pixels.shape))
            if "input_audio" in rows:
                spectrogram = _spectrogram(enc.input_audio, name, view.id)
                rows["input_audio"].append(spectrogram.tobytes())
                rows["input_audio_shape"].append(list(spectrogram.shape))
            rows["task"].append(name)
            rows["record_id"].append(view.id)
            meta = dict(example.meta)
            if "affine" in view.meta:  # transformed geometry: how to map back to the original pixels
                meta["affine"], meta["original_size"] = view.meta["affine"], view.meta.get("original_size")
            rows["meta"].append(json.dumps(meta))
            n["examples"] += 1
        _write_shard(Path(cfg.cache_dir) / dataset / name, shard, rows, n, shard_report.to_dict(), features)
        counts[name] = n
    return {"dataset": dataset, "counts": counts}


def _pixels(image: Any, task: str, record_id: str) -> np.ndarray:
    if image is None:
        raise ValueError(
            f"pretokenize: task {task!r} has patch inputs but its example of {record_id!r} has no pixels"
        )
    pixels = np.ascontiguousarray(image, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(
            f"pretokenize: task {task!r}, {record_id!r}: pixels must be HxWx3, got {pixels.shape}"
        )
    return pixels


def _spectrogram(spectrogram: Any, task: str, record_id: str) -> np.ndarray:
    if spectrogram is None:
        raise ValueError(
            f"pretokenize: task {task!r} has audio patch inputs but its example of {record_id!r} has no "
            "spectrogram"
        )
    if spectrogram.dtype != np.float16 or spectrogram.ndim != 2:
        raise ValueError(
            f"pretokenize: task {task!r}, {record_id!r}: the spectrogram must be mels x frames float16, "
            f"got {spectrogram.dtype} {spectrogram.shape}"
        )
    return np.ascontiguousarray(spectrogram)


def encode_views(views: list, uses: set[str], tok: Tokenizers) -> None:
    """Run the VQ encoders the tasks need over all views in batches; codes go into `view.meta` where
    `Tokenizers.image_codes` / `mask_codes` / `audio_codes` find them. Used by the pretokenizer and by
    evaluation (unio/eval/evaluate.py), so both see the same codes."""
    unique = list({id(v): v for v in views}.values())
    if "image" in uses:
        with_image = [v for v in unique if v.image is not None]
        for view, codes in zip(with_image, tok.encode_images([v.image for v in with_image])):
            view.meta["image_codes"] = codes
    if "mask" in uses:
        masks = [(v, i, o.mask) for v in unique for i, o in enumerate(v.objects) if o.mask is not None]
        for view, _, _ in masks:
            view.meta["mask_codes"] = [None] * len(view.objects)
        for (view, i, _), codes in zip(masks, tok.encode_masks([m for _, _, m in masks])):
            view.meta["mask_codes"][i] = codes
    if "audio" in uses:
        for view in unique:
            if view.audio is not None:
                view.meta["audio_codes"] = tok.encode_audio(view.audio, view.sample_rate)


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}"


def _write_shard(
    task_dir: Path,
    shard: int,
    rows: dict[str, list],
    counts: dict[str, int],
    skipped: dict[str, Any],
    features: datasets.Features = FEATURES,
) -> None:
    """Write the shard under a temporary name, then rename: a shard directory is always complete."""
    final = task_dir / shard_name(shard)
    tmp = task_dir / f".{shard_name(shard)}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp))
    (tmp / "counts.json").write_text(json.dumps(counts))
    (tmp / "skipped.json").write_text(json.dumps(skipped))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def _worker_init() -> None:
    torch.set_num_threads(1)  # num_proc processes share the cores
    datasets.disable_progress_bars()


def pretokenize(
    cfg: PretokenizeConfig,
    tok: Tokenizers | None = None,
    sources: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> dict[str, CacheResult]:
    """Build (or reuse) the cache of every (dataset, task) in `cfg.data`. Returns one result per
    "{dataset}/{task}". `tok` and `sources` (dataset name -> `Source`) default to building them from
    the config; pass them to pretokenize objects built in code."""
    if cfg.on_mismatch not in MISMATCH_POLICIES:
        raise ValueError(
            f"pretokenize: on_mismatch must be one of {MISMATCH_POLICIES}, got {cfg.on_mismatch!r}"
        )
    if not cfg.data:
        raise ValueError("pretokenize: no datasets configured (set `data`, e.g. data=shapes)")
    check_policy(cfg.on_bad_sample)
    check_annotation_policy(cfg.on_bad_annotation)
    if not 0.0 <= cfg.max_bad_fraction <= 1.0:
        raise ValueError(f"pretokenize: max_bad_fraction must be in [0, 1], got {cfg.max_bad_fraction!r}")
    tok = tok or Tokenizers.from_config(cfg.tokenizers)
    cache = Path(cfg.cache_dir)
    results: dict[str, CacheResult] = {}
    jobs: list[tuple[str, int, list[str]]] = []
    state: dict[str, Any] = {"cfg": cfg, "tok": tok, "sources": {}, "tasks": {}, "transforms": {}}
    reports: dict[str, BadSampleReport] = {}
    # dataset -> (records rejected while the source was indexed, number of records indexed)
    indexing: dict[str, tuple[BadSampleReport, int]] = {}
    for dataset, entry in cfg.data.items():
        policies = effective_policies(entry, cfg, (sources or {}).get(dataset))
        tasks = {name: make_task(name, **(options or {})) for name, options in entry.tasks.items()}
        state["transforms"][dataset] = build_transforms(entry.transforms, f"data.{dataset}.transforms")
        for task in tasks.values():
            task.check(tok)
        pending: dict[str, list[int]] = {}
        source = None
        for name, task in tasks.items():
            task_dir = cache / dataset / name
            key = cache_key(task, tok, entry, cfg, policies)
            manifest = read_manifest(task_dir)
            status = "built"
            if manifest is not None and {k: manifest.get(k) for k in key} != key:
                reason = _describe_mismatch(manifest, key)
                if cfg.on_mismatch == "refuse":
                    raise ValueError(
                        f"{task_dir} was built with other tokenizers or options ({reason}); delete it, point "
                        "cache_dir elsewhere, or run with on_mismatch=rebuild"
                    )
                log(f"{dataset}/{name}: cache built with other tokenizers or options ({reason}); rebuilding")
                shutil.rmtree(task_dir)
                manifest, status = None, "rebuilt"
            if manifest is not None and manifest.get("complete"):
                results[f"{dataset}/{name}"] = CacheResult(task_dir, "hit", manifest["counts"])
                continue
            if source is None:
                given = (sources or {}).get(dataset)
                source = given if given is not None else _build_source(entry, cfg)
            total = len(source) if entry.limit is None else min(entry.limit, len(source))
            num_shards = max(1, -(-total // cfg.shard_size))
            missing = [s for s in range(num_shards) if not (task_dir / shard_name(s)).is_dir()]
            if manifest is not None and len(missing) < num_shards:
                status = "resumed"
            task_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                task_dir / MANIFEST, json.dumps({**key, "complete": False, "num_shards": num_shards})
            )
            results[f"{dataset}/{name}"] = CacheResult(task_dir, status, {})
            for s in missing:
                pending.setdefault(s, []).append(name)
        if source is not None:
            state["sources"][dataset] = source
            state["tasks"][dataset] = tasks
            reports[dataset] = source.bad_samples  # records dropped while indexing; shards add the rest
            indexing[dataset] = (source.bad_samples.copy(), len(source))
            jobs += [(dataset, s, names) for s, names in sorted(pending.items())]
    _run_jobs(jobs, state, cfg.num_proc, progress)
    failures = []
    for name, result in results.items():
        if result.status != "hit":
            dataset = name.split("/")[0]
            result.counts, result.bad_records_by_reason, failure = _finish(
                name, result.path, reports[dataset], *indexing[dataset], cfg.max_bad_fraction
            )
            if failure:
                failures.append(failure)
                log(f"{name}: FAILED {failure}")
            else:
                log(f"{name}: {result.status} {result.path} {result.counts}")
        else:
            manifest = read_manifest(result.path) or {}
            result.bad_records_by_reason = manifest.get("bad_records_by_reason", {})
            log(f"{name}: cache hit {result.path} {result.counts}")
    for dataset, report in reports.items():
        report.write_json(cache / dataset / "bad_samples.json")
        if len(report) or report.dropped_annotations:
            log(report.summary())
    if failures:
        raise ValueError(
            f"pretokenize failed: {' | '.join(failures)}. Every skipped record is listed in "
            f"{cache}/<dataset>/bad_samples.json; fix the data or the task options, or accept more loss "
            f"with max_bad_fraction=... (now {cfg.max_bad_fraction})"
        )
    return results


def _build_source(entry: DatasetEntry, cfg: PretokenizeConfig) -> Any:
    from unio.data.sources import build_source

    defaults = {"on_bad_sample": cfg.on_bad_sample}
    if _has_field(entry.source.get("kind"), "on_bad_annotation"):
        defaults["on_bad_annotation"] = cfg.on_bad_annotation
    return build_source({**defaults, **entry.source})


def _run_jobs(
    jobs: list[tuple[str, int, list[str]]], state: dict[str, Any], num_proc: int, progress: bool
) -> None:
    if not jobs:
        return
    _STATE.clear()
    _STATE.update(state)
    bar = tqdm(total=len(jobs), unit="shard", desc="pretokenize", disable=not progress)
    bars_were_enabled = not datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # one bar for the whole build, not one per shard write
    try:
        if num_proc <= 1:
            for job in jobs:
                _build_shard(*job)
                bar.update(1)
        else:
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(num_proc, mp_context=context, initializer=_worker_init) as pool:
                for _ in pool.map(_build_shard, *zip(*jobs)):
                    bar.update(1)
    finally:
        bar.close()
        _STATE.clear()
        if bars_were_enabled:
            datasets.enable_progress_bars()


def _finish(
    name: str,
    task_dir: Path,
    report: BadSampleReport,
    indexed: BadSampleReport,
    num_indexed: int,
    max_bad_fraction: float,
) -> tuple[dict[str, int], dict[str, int], str | None]:
    """Sum the shard counts, add the records rejected while indexing, collect every skipped record into
    `report`, and mark the manifest complete; or, if the task ends with 0 examples or lost more than
    `max_bad_fraction` of its records, leave it incomplete and return the failure (one line)."""
    manifest = read_manifest(task_dir)
    totals: dict[str, int] = {}
    loaded = BadSampleReport(report.name)  # what the shards skipped or dropped while loading
    for s in range(manifest["num_shards"]):
        counts = json.loads((task_dir / shard_name(s) / "counts.json").read_text())
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
        loaded.merge(
            BadSampleReport.from_dict(json.loads((task_dir / shard_name(s) / "skipped.json").read_text()))
        )
    # `indexed` may already hold load-time entries (a source passed in and iterated before): count once.
    indexed = indexed.difference(loaded)
    task_report = indexed.copy()
    task_report.merge(loaded)
    report.merge(task_report)
    load_bad = totals.get("bad_records", 0)
    totals["bad_records"] = load_bad + len(indexed)
    totals["bad_annotations"] = totals.get("bad_annotations", 0) + len(indexed.dropped_annotations)
    by_reason = task_report.counts()
    # Fraction of records lost: rejected while indexing (out of every record of the source), then
    # failing to load (out of the records this task read, fewer under `limit`).
    attempted = totals.get("records", 0) + load_bad
    kept_indexing = num_indexed / (num_indexed + len(indexed)) if num_indexed + len(indexed) else 0.0
    kept_loading = (attempted - load_bad) / attempted if attempted else 0.0
    lost = 1.0 - kept_indexing * kept_loading
    failure = None
    detail = ", ".join(f"{k} {v}" for k, v in totals.items())
    if by_reason:
        detail += "; bad records by reason: " + ", ".join(f"{r} {n}" for r, n in by_reason.items())
        detail += f"; first: {task_report.first()}"
    if totals.get("examples", 0) == 0:
        failure = f"{name}: 0 examples ({detail})"
    elif totals["bad_records"] and lost > max_bad_fraction:
        seen = totals["bad_records"] + totals.get("records", 0)
        failure = (
            f"{name}: lost {totals['bad_records']} of {seen} records ({lost:.0%}) > "
            f"max_bad_fraction={max_bad_fraction} ({detail})"
        )
    manifest.update(counts=totals, bad_records_by_reason=by_reason)
    if failure:
        manifest.update(complete=False, failed=failure)
    else:
        manifest.pop("failed", None)
        manifest.update(complete=True, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    atomic_write_text(task_dir / MANIFEST, json.dumps(manifest, indent=1))
    return totals, by_reason, failure


# --------------------------------------------------------------------------------------- loading
def load_task_cache(
    task_dir: str | Path, tok: Tokenizers, uses: tuple[str, ...] | None = None
) -> datasets.Dataset:
    """The examples of one complete (dataset, task) cache, after checking it was built with `tok`."""
    task_dir = Path(task_dir)
    manifest = read_manifest(task_dir)
    if manifest is None:
        raise FileNotFoundError(
            f"no pretokenized cache at {task_dir} (missing {MANIFEST}); run unio-pretokenize"
        )
    if not manifest.get("complete"):
        raise ValueError(
            f"{task_dir}: the cache is incomplete (interrupted build); rerun unio-pretokenize to finish it"
        )
    # Without `uses`, check every tokenizer the cache was built with.
    expected = tok.fingerprints(tuple(uses) if uses is not None else tuple(manifest["fingerprints"]))
    if manifest["fingerprints"] != expected:
        found = manifest["fingerprints"]
        changed = [
            f"{k}: cache {found.get(k)} vs current {v}" for k, v in expected.items() if found.get(k) != v
        ]
        raise ValueError(
            f"{task_dir} was built with other tokenizers ({'; '.join(changed)}); rebuild it with unio-pretokenize"
        )
    shards = [datasets.load_from_disk(str(task_dir / shard_name(s))) for s in range(manifest["num_shards"])]
    return datasets.concatenate_datasets(shards) if len(shards) > 1 else shards[0]


def load_pretokenized(
    cache_dir: str | Path, data: dict[str, DatasetEntry], tok: Tokenizers
) -> dict[str, datasets.Dataset]:
    """Every (dataset, task) of `data` as a component for `Mixture`: name "{dataset}/{task}"."""
    out = {}
    for dataset, entry in data.items():
        for name, options in entry.tasks.items():
            task = make_task(name, **(options or {}))
            out[f"{dataset}/{name}"] = load_task_cache(
                Path(cache_dir) / dataset / name, tok, task.vq_tokenizers()
            )
    return out
