"""Audio tasks: speech recognition, speech synthesis, audio classification.

    asr             <to_text> "Transcribe the audio." <audio> codes </audio>  -> "printing, in the only sense" <eos>
    tts             <to_audio> "Read the text aloud: seven"                 -> <audio> codes </audio> <eos>
    audio_classify  <to_text> "What is heard in the audio?" <audio> ...     -> "7" <eos>

The audio tokenizer codes a fixed segment (about a second) per grid. Inputs hold one `<audio>` grid per
consecutive segment, up to `max_audio_segments` (longer clips are not examples of the task, and the
pretokenizer counts them). A TTS target is a single grid: clips longer than one segment are not TTS
examples (crop them with the source transforms, or train the audio tokenizer on longer segments).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from unio import grammar as grammars
from unio.sequence import AudioCodes, Segment, Text
from unio.tasks.base import Example, Task, first_text
from unio.tasks.bundle import Tokenizers


def audio_input(record: Any, tok: Tokenizers, max_segments: int) -> list[AudioCodes] | None:
    """One `AudioCodes` grid per segment of the clip, or None when it has more than `max_segments`."""
    codes = tok.audio_codes(record)
    return [AudioCodes(c) for c in codes] if len(codes) <= max_segments else None


@dataclass(frozen=True)
class ASRTask(Task):
    name: str = "asr"
    prompts: tuple[str, ...] = (
        "Transcribe the audio.",
        "What is said in the audio?",
        "Write down what you hear.",
        "Speech to text.",
    )
    eval_prompt: str = "Transcribe the audio."
    max_audio_segments: int = 12
    metric: ClassVar[str] = "wer"
    condition: ClassVar[str | None] = "audio"
    uses: ClassVar[tuple[str, ...]] = ("audio",)

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        if record.audio is None or not record.transcript:
            return None
        audio = audio_input(record, tok, self.max_audio_segments)
        if audio is None:
            return None
        inputs = [self.prefix(), Text(self.prompt(rng, train)), *audio]
        return Example(inputs, [Text(record.transcript)], {"transcript": record.transcript})

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> str:
        return first_text(segments)


@dataclass(frozen=True)
class TTSTask(Task):
    name: str = "tts"
    prompts: tuple[str, ...] = (
        "Read the text aloud: {text}",
        "Say: {text}",
        "Speak the following text. {text}",
        "Text to speech: {text}",
    )
    eval_prompt: str = "Read the text aloud: {text}"
    target_modality: ClassVar[str] = "audio"
    metric: ClassVar[str] = "mel_distance"
    condition: ClassVar[str | None] = None
    prompt_field: ClassVar[str | None] = "text"
    uses: ClassVar[tuple[str, ...]] = ("audio",)

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        if record.audio is None or not record.transcript:
            return None
        codes = tok.audio_codes(record)
        if len(codes) != 1:  # the target grammar is one grid: the clip must fit one segment
            return None
        inputs = [self.prefix(), Text(self.prompt(rng, train, text=record.transcript))]
        return Example(inputs, [AudioCodes(codes[0])], {"transcript": record.transcript})

    def parse(
        self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers
    ) -> tuple[np.ndarray, int] | None:
        """(mono float32 waveform, sample rate) from the audio codes, or None without them."""
        codes = next((s for s in segments if isinstance(s, AudioCodes)), None)
        return tok.decode_audio(codes.codes) if codes is not None else None

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        return grammars.grid(tok.codec, "audio")


@dataclass(frozen=True)
class AudioClassifyTask(Task):
    """The clip's label as text (e.g. the spoken digit). `classes` restricts decoding to a closed list."""

    name: str = "audio_classify"
    prompts: tuple[str, ...] = (
        "What is heard in the audio?",
        "Classify the audio clip.",
        "Which class does this sound belong to?",
    )
    eval_prompt: str = "What is heard in the audio?"
    classes: tuple[str, ...] | None = None
    max_audio_segments: int = 12
    metric: ClassVar[str] = "accuracy"
    condition: ClassVar[str | None] = "audio"
    uses: ClassVar[tuple[str, ...]] = ("audio",)

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        if record.audio is None or record.label is None:
            return None
        if self.classes is not None and record.label not in self.classes:
            return None
        audio = audio_input(record, tok, self.max_audio_segments)
        if audio is None:
            return None
        inputs = [self.prefix(), Text(self.prompt(rng, train)), *audio]
        return Example(inputs, [Text(record.label)], {"label": record.label})

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> str:
        return first_text(segments)

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        if self.classes:
            return grammars.closed_answers(tok.codec, list(self.classes))
        return grammars.answer_text(tok.codec)
