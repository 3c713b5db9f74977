"""What a task is: a small object turning a `Record` into (input segments, target segments) and a
decoded target back into a structured prediction.

Every task has
- `prompts`: paraphrases sampled during training, and `eval_prompt`: the one canonical prompt used for
  evaluation (so evaluation is deterministic and comparable across runs);
- `build(record, rng, tok, train)`: an `Example` (input segments, target segments, meta) or None
  when the record lacks what the task needs (the pretokenizer counts those per task);
- `grammar(tok, meta)`: the output grammar the constrained decoder enforces (unio/grammar.py); it
  depends on the task options and the tokenizers, not on the example, so build it once per task (grid
  grammars of thousands of codes take seconds to compile);
- `parse(segments, meta, tok)`: decoded target segments -> prediction in the record's own units
  (pixels of the original image, masks at the original size, text, images, waveforms);
- `metric`: the name of the metric the evaluator computes.

Inputs start with the target-modality prefix (`<to_text>`, `<to_box>`, ...), then the prompt text,
then the conditioning segments (an optional region box, the image or audio codes). Targets are
encoded with `<eos>` at the end by the pretokenizer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from unio import grammar as grammars
from unio.sequence import Boxes, Segment, Special, Text, TokenSequence
from unio.tasks.bundle import Tokenizers
from unio.vocab import TARGET_PREFIXES


@dataclass
class Example:
    """One task instance. `meta` is JSON-serialisable: what `parse` and the metric need (original image
    size, reference answers, ...). `noise` holds Pix2Seq noise boxes appended after the real target;
    their coordinates are excluded from the loss."""

    input: list[Segment]
    target: list[Segment]
    meta: dict[str, Any] = field(default_factory=dict)
    noise: Boxes | None = None


@dataclass
class EncodedExample:
    input: TokenSequence
    target: TokenSequence  # ends with <eos>
    target_loss: torch.Tensor  # LongTensor[L_target]: 1 = trained, 0 = ignored (noise-box coordinates)


def encode_example(example: Example, tok: Tokenizers) -> EncodedExample:
    codec = tok.codec
    inputs = codec.encode(example.input)
    if example.noise is None:
        target = codec.encode(example.target, add_eos=True)
        return EncodedExample(inputs, target, torch.ones(len(target), dtype=torch.long))
    real = codec.encode(example.target)
    noise = codec.encode([example.noise], add_eos=True)
    coord = tok.vocab.segment_range("coord")
    noise_loss = ~((noise.ids >= coord.start) & (noise.ids < coord.stop))
    target = TokenSequence(
        ids=torch.cat([real.ids, noise.ids]),
        modality=torch.cat([real.modality, noise.modality]),
        position=torch.arange(len(real) + len(noise)),
        row=torch.cat([real.row, noise.row]),
        col=torch.cat([real.col, noise.col]),
    )
    return EncodedExample(
        inputs, target, torch.cat([torch.ones(len(real), dtype=torch.long), noise_loss.long()])
    )


@dataclass(frozen=True)
class Task:
    """Base class; subclasses implement `build` and `parse` and set the class attributes. Tasks are
    immutable values: configure one with `unio.tasks.make_task(name, **options)`."""

    name: str = ""
    prompts: tuple[str, ...] = ()
    eval_prompt: str = ""
    target_modality: ClassVar[str] = "text"
    metric: ClassVar[str] = ""
    uses: ClassVar[tuple[str, ...]] = ()  # VQ tokenizers the task needs: "image", "mask", "audio"

    def __post_init__(self) -> None:
        if not self.prompts or not self.eval_prompt:
            raise ValueError(f"task {self.name!r}: needs at least one training prompt and an eval prompt")

    # ----------------------------------------------------------------------------- interface
    def build(self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True) -> Example | None:
        raise NotImplementedError

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> Any:
        raise NotImplementedError

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        return grammars.free_text(tok.codec)

    # ----------------------------------------------------------------------------- helpers
    def prompt(self, rng: random.Random, train: bool, **values: str) -> str:
        template = rng.choice(self.prompts) if train else self.eval_prompt
        return template.format(**values)

    def prefix(self) -> Special:
        return Special(TARGET_PREFIXES[self.target_modality])

    def check(self, tok: Tokenizers) -> None:
        """Fail early, naming the task, when a needed tokenizer is missing."""
        for name in self.uses:
            tok.require(name, self.name)


def first_text(segments: list[Segment]) -> str:
    """The text of a decoded text target (segments are canonical, so there is at most one Text)."""
    return "".join(s.text for s in segments if isinstance(s, Text))


def scene_text_holds(record: Any) -> bool:
    """False when a crop dropped objects: captions, answers and labels about the whole scene may then be
    wrong ("two dogs" with one left), so tasks built on them skip the record."""
    return not record.meta.get("dropped_objects")


def pick(items: list, rng: random.Random, train: bool) -> Any:
    """A random item for training, the first one for evaluation (deterministic references)."""
    return rng.choice(items) if train else items[0]
