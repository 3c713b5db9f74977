"""The task library: a plain dict from task name to a default-configured `Task`.

    from unio.tasks import TASKS, make_task
    example = TASKS["caption"].build(record, random.Random(0), tokenizers)
    detect = make_task("detect", order="distance", noise_pad_to=20)

See docs/tasks.md for every task's prompts and token sequences, and unio/tasks/base.py for the API.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from unio.tasks.audio_tasks import ASRTask, AudioClassifyTask, TTSTask
from unio.tasks.base import EncodedExample, Example, Task, encode_example
from unio.tasks.box_tasks import DetectTask, GroundTask, KeypointsTask, RegionCaptionTask
from unio.tasks.bundle import Tokenizers
from unio.tasks.denoise import MaskedImageTask, SpanCorruptionTask
from unio.tasks.dense_tasks import RefSegTask, TextToImageTask
from unio.tasks.text_tasks import CaptionTask, ClassifyTask, OCRTask, VQATask

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        CaptionTask(),
        VQATask(),
        ClassifyTask(),
        OCRTask(),
        DetectTask(),
        GroundTask(),
        RegionCaptionTask(),
        RefSegTask(),
        KeypointsTask(),
        TextToImageTask(),
        ASRTask(),
        TTSTask(),
        AudioClassifyTask(),
        SpanCorruptionTask(),
        MaskedImageTask(),
    )
}


def make_task(name: str, **options: Any) -> Task:
    """`TASKS[name]` with some fields changed (from config), e.g. `make_task("classify", classes=[...])`.
    Unknown task names and unknown fields are errors that list the valid ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
    base = TASKS[name]
    fields = {f.name for f in dataclasses.fields(base) if f.init}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(f"task {name!r}: unknown option(s) {unknown}; valid: {sorted(fields - {'name'})}")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return dataclasses.replace(base, **options)


__all__ = ["TASKS", "EncodedExample", "Example", "Task", "Tokenizers", "encode_example", "make_task"]
