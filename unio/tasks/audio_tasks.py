"""Audio tasks: speech recognition, speech synthesis, audio classification.

    asr             <to_text> "Transcribe the audio." <audio> codes </audio>  -> "printing, in the only sense" <eos>
    tts             <to_audio> "Read the text aloud: seven"                 -> <audio> codes </audio> <eos>
    audio_classify  <to_text> "What is heard in the audio?" <audio> ...     -> "7" <eos>

The audio tokenizer resamples, crops and pads every clip to its fixed segment, so clips longer than the
segment are cut; keep them short (FSDD digits, LJSpeech sentences) or crop them in the source transforms.
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
    metric: ClassVar[str] = "wer"
    uses: ClassVar[tuple[str, ...]] = ("audio",)

    def build(self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True) -> Example | None:
        if record.audio is None or not record.transcript:
            return None
        inputs = [self.prefix(), Text(self.prompt(rng, train)), AudioCodes(tok.audio_codes(record))]
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
    uses: ClassVar[tuple[str, ...]] = ("audio",)

    def build(self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True) -> Example | None:
        if record.audio is None or not record.transcript:
            return None
        inputs = [self.prefix(), Text(self.prompt(rng, train, text=record.transcript))]
        return Example(inputs, [AudioCodes(tok.audio_codes(record))], {"transcript": record.transcript})

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
    metric: ClassVar[str] = "accuracy"
    uses: ClassVar[tuple[str, ...]] = ("audio",)

    def build(self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True) -> Example | None:
        if record.audio is None or record.label is None:
            return None
        if self.classes is not None and record.label not in self.classes:
            return None
        inputs = [self.prefix(), Text(self.prompt(rng, train)), AudioCodes(tok.audio_codes(record))]
        return Example(inputs, [Text(record.label)], {"label": record.label})

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> str:
        return first_text(segments)

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        if self.classes:
            return grammars.closed_answers(tok.codec, list(self.classes))
        return grammars.free_text(tok.codec)
