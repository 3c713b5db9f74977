"""Image -> text tasks: captioning, visual question answering, image classification.

caption   <to_text> "Describe the image." <image> codes </image>      -> "a red circle ..." <eos>
          (with input_repr=patches: <image> x rows*cols placeholders instead of the codes, see base.py)
vqa       <to_text> "Question: what color is the circle?" <image> ... -> "red" <eos>
classify  <to_text> "What class is this image?" <image> ...           -> "circle" <eos>
ocr       <to_text> "What is the text in the image?" <image> ...     -> "HOW cup CAN" <eos>
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

from unio import grammar as grammars
from unio.sequence import Segment, Text
from unio.tasks.base import Example, Task, first_text, pick, scene_text_holds
from unio.tasks.bundle import Tokenizers


@dataclass(frozen=True)
class CaptionTask(Task):
    name: str = "caption"
    prompts: tuple[str, ...] = (
        "Describe the image.",
        "What is in this picture?",
        "Write a short caption for the image.",
        "Caption this image.",
        "Give a one-sentence description of the picture.",
    )
    eval_prompt: str = "Describe the image."
    metric: ClassVar[str] = "cider"
    uses: ClassVar[tuple[str, ...]] = ("image",)
    patch_inputs: ClassVar[bool] = True

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        if record.image is None or not record.captions or not scene_text_holds(record):
            return None
        visual, pixels = self.image_input(record, tok)
        inputs = [self.prefix(), Text(self.prompt(rng, train)), visual]
        return Example(
            inputs,
            [Text(pick(record.captions, rng, train))],
            {"references": list(record.captions)},
            image=pixels,
        )

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> str:
        return first_text(segments)


@dataclass(frozen=True)
class VQATask(Task):
    """One question per example (a random one in training). With `answers` set, decoding is restricted
    to that closed list (e.g. easy-VQA's 13 answers) and only questions with a listed answer are used;
    otherwise answers are free text."""

    name: str = "vqa"
    prompts: tuple[str, ...] = (
        "{question}",
        "Question: {question}",
        "Answer the question about the image: {question}",
        "{question} Answer briefly.",
    )
    eval_prompt: str = "Question: {question}"
    answers: tuple[str, ...] | None = None
    metric: ClassVar[str] = "vqa_accuracy"
    prompt_field: ClassVar[str | None] = "question"
    uses: ClassVar[tuple[str, ...]] = ("image",)
    patch_inputs: ClassVar[bool] = True

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        qa = self._questions(record)
        if not qa:
            return None
        question, answer = pick(qa, rng, train, item)
        visual, pixels = self.image_input(record, tok)
        inputs = [self.prefix(), Text(self.prompt(rng, train, question=question)), visual]
        return Example(inputs, [Text(answer)], {"question": question, "answers": [answer]}, image=pixels)

    def _questions(self, record: Any) -> list[tuple[str, str]]:
        if record.image is None or not scene_text_holds(record):
            return []
        return [(q, a) for q, a in record.qa if self.answers is None or a in self.answers]

    def num_items(self, record: Any) -> int:
        return len(self._questions(record))

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> str:
        return first_text(segments)

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        if self.answers:
            return grammars.closed_answers(tok.codec, list(self.answers))
        return grammars.answer_text(tok.codec)


@dataclass(frozen=True)
class ClassifyTask(Task):
    """The class name as text. `classes` (e.g. the ten digits, the shape kinds) restricts decoding to a
    closed list; a record whose label is not in it is not an example of this task."""

    name: str = "classify"
    prompts: tuple[str, ...] = (
        "What class is this image?",
        "What is shown in the image?",
        "Classify the image.",
        "Which category does this image belong to?",
    )
    eval_prompt: str = "What class is this image?"
    classes: tuple[str, ...] | None = None
    metric: ClassVar[str] = "accuracy"
    uses: ClassVar[tuple[str, ...]] = ("image",)
    patch_inputs: ClassVar[bool] = True

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        if record.image is None or record.label is None or not scene_text_holds(record):
            return None
        if self.classes is not None and record.label not in self.classes:
            return None
        visual, pixels = self.image_input(record, tok)
        inputs = [self.prefix(), Text(self.prompt(rng, train)), visual]
        return Example(inputs, [Text(record.label)], {"label": record.label}, image=pixels)

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> str:
        return first_text(segments)

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        if self.classes:
            return grammars.closed_answers(tok.codec, list(self.classes))
        return grammars.answer_text(tok.codec)


@dataclass(frozen=True)
class OCRTask(Task):
    """The text written in the image, in reading order (lines top to bottom, words left to right), as
    the record's `transcript` (e.g. the `rendered_text` source). Scored by character error rate,
    case-sensitive (unio/eval/text_metrics.py `ocr_error_rates`)."""

    name: str = "ocr"
    prompts: tuple[str, ...] = (
        "What is the text in the image?",
        "Read the text in the image.",
        "What does the image say?",
        "Transcribe the text in the picture.",
    )
    eval_prompt: str = "What is the text in the image?"
    metric: ClassVar[str] = "cer"
    uses: ClassVar[tuple[str, ...]] = ("image",)
    patch_inputs: ClassVar[bool] = True

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        if record.image is None or not record.transcript:
            return None
        visual, pixels = self.image_input(record, tok)
        inputs = [self.prefix(), Text(self.prompt(rng, train)), visual]
        return Example(inputs, [Text(record.transcript)], {"text": record.transcript}, image=pixels)

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> str:
        return first_text(segments)
