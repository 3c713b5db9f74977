"""Audio tasks: speech recognition, speech synthesis, audio classification.

    asr             <to_text> "Transcribe the audio." <audio> codes </audio>  -> "printing, in the only sense" <eos>
    tts             <to_audio> "Read the text aloud: seven"                 -> <audio> codes </audio> <eos>
    audio_classify  <to_text> "What is heard in the audio?" <audio> ...     -> "7" <eos>

The audio tokenizer codes a fixed segment (about a second) per grid. Inputs hold one `<audio>` grid per
consecutive segment, up to `max_audio_segments` (longer clips are not examples of the task, and the
pretokenizer counts them). A TTS target is a single grid: clips longer than one segment are not TTS
examples (crop them with the source transforms, or train the audio tokenizer on longer segments).

Audio inputs as patches (asr and audio_classify, ``input_repr: patches``; codes stay the default): the
clip becomes a log-mel spectrogram for the model's audio stem (``ModelConfig.audio_stem``, a patch stem
with ``channels: 1``, ``image_size: [n_mels, num_frames]`` and the task's ``patch_size``), and the
input holds an `AudioPatches` placeholder span of ``(n_mels / patch_size) x (num_frames / patch_size)``
``<audio>`` tokens instead of the codes; the spectrogram travels in `Example.audio`. `log_mel_spectrogram`
computes it as the audio tokenizer does (its mel filters and resampling, unio/tokenizers/audio.py):
resample to ``sample_rate``, zero-pad to a fixed window of ``num_frames * hop_length`` samples
(``audio_seconds``), Hann-window STFT (``n_fft``, ``hop_length``), magnitude normalised so a full-scale
sine peaks near 0 dB, triangular HTK-mel filters (0 Hz to Nyquist), dB floored at -100, then mapped
[-100 dB, 0 dB] -> [0, 1] and stored as float16. A clip longer than the window is not an example of
the task (counted by the pretokenizer like an over-long clip for codes; crop with the
`random_audio_crop` source transform to use it). The spectrogram options are task fields, so they key
the pretokenized cache (for patch inputs only: caches of code inputs are unchanged), and the audio VQ
tokenizer is not needed for patch inputs.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from unio import grammar as grammars
from unio.sequence import AudioCodes, AudioPatches, Segment, Text
from unio.tasks.base import Example, Task, check_audio, first_text
from unio.tasks.bundle import Tokenizers
from unio.tokenizers.audio import mel_filterbank, resample

# Task fields that decide the spectrogram (with the base fields input_repr and patch_size); the
# pretokenizer leaves them out of the cache key for code inputs.
AUDIO_PATCH_FIELDS = ("sample_rate", "n_fft", "hop_length", "n_mels", "num_frames")
DB_MIN, DB_MAX = -100.0, 0.0  # the dB range mapped to [0, 1] (the audio tokenizer's default range)


@functools.lru_cache(maxsize=8)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int) -> tuple[Tensor, Tensor]:
    """(mel filters [n_mels, n_fft // 2 + 1], Hann window [n_fft]), built once per setting."""
    return mel_filterbank(sample_rate, n_fft, n_mels, 0.0, sample_rate / 2), torch.hann_window(n_fft)


def log_mel_spectrogram(
    wave: np.ndarray,
    sample_rate: int,
    *,
    target_rate: int = 16000,
    n_fft: int = 512,
    hop_length: int = 160,
    n_mels: int = 64,
    num_frames: int = 128,
) -> np.ndarray:
    """A mono waveform at `sample_rate` -> its log-mel spectrogram ``[n_mels, num_frames]`` float16 in
    [0, 1] (module docstring). The clip is resampled to `target_rate`, then cut or zero-padded to
    ``num_frames * hop_length`` samples, so the shape never depends on the clip's length."""
    x = resample(torch.as_tensor(np.asarray(wave, dtype=np.float32)).reshape(-1), sample_rate, target_rate)
    window_samples = num_frames * hop_length
    x = torch.nn.functional.pad(x[:window_samples], (0, max(0, window_samples - x.numel())))
    filters, window = _mel_basis(target_rate, n_fft, n_mels)
    spec = torch.stft(x, n_fft, hop_length, window=window, center=True, return_complex=True)
    magnitude = spec.abs()[:, :num_frames] / (window.sum() / 2)
    db = 20.0 * torch.log10((filters @ magnitude).clamp(min=10 ** (DB_MIN / 20)))
    return ((db - DB_MIN) / (DB_MAX - DB_MIN)).clamp(0.0, 1.0).numpy().astype(np.float16)


@dataclass(frozen=True)
class AudioInputTask(Task):
    """A task whose input is a clip: as one `AudioCodes` grid per audio-tokenizer segment (``codes``)
    or as an `AudioPatches` span plus its spectrogram (``patches``; module docstring). Subclasses
    build their example around `audio_input`."""

    max_audio_segments: int = 12  # codes: longer clips are not examples
    # patches: the spectrogram (module docstring); n_mels and num_frames are multiples of patch_size,
    # and [n_mels, num_frames] is the audio stem's image_size
    sample_rate: int = 16000  # Hz the clip is resampled to
    n_fft: int = 512
    hop_length: int = 160  # samples per frame (10 ms at 16 kHz)
    n_mels: int = 64
    # frames of the fixed window: 512 x 10 ms = 5.12 s (spoken words and most sentences; LJSpeech recipes
    # use 1024, AST's 10.24 s); with 16 x 16 patches that is 4 x 32 = 128 encoder tokens
    num_frames: int = 512
    patch_size: int = 16  # spectrogram patches are 16 x 16 (AST, Unified-IO 2's audio encoder)
    condition: ClassVar[str | None] = "audio"
    uses: ClassVar[tuple[str, ...]] = ("audio",)
    patch_inputs: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.input_repr != "patches":
            return
        for key in AUDIO_PATCH_FIELDS:
            value = getattr(self, key)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"task {self.name!r}: field {key!r} must be a positive integer, got {value!r}"
                )
        for key in ("n_mels", "num_frames"):
            if getattr(self, key) % self.patch_size:
                raise ValueError(
                    f"task {self.name!r}: {key} {getattr(self, key)} must be a multiple of patch_size "
                    f"{self.patch_size}"
                )
        if self.hop_length > self.n_fft or self.num_frames * self.hop_length < self.n_fft:
            raise ValueError(
                f"task {self.name!r}: need hop_length <= n_fft <= num_frames * hop_length, got hop_length "
                f"{self.hop_length}, n_fft {self.n_fft}, num_frames {self.num_frames}"
            )

    @property
    def audio_seconds(self) -> float:
        """Length of the spectrogram's window (patches): longer clips are not examples."""
        return self.num_frames * self.hop_length / self.sample_rate

    @property
    def audio_grid(self) -> tuple[int, int]:
        """(rows, cols) of the `AudioPatches` span: mel bands x time, in patches."""
        return self.n_mels // self.patch_size, self.num_frames // self.patch_size

    def audio_input(
        self, source: Any, tok: Tokenizers, sample_rate: int | None = None
    ) -> tuple[list[Segment], np.ndarray | None] | None:
        """The input segments of a clip and, for patches, its spectrogram (for `Example.audio`); None
        when the clip is too long for the task. `source` is a record (codes come from
        `tok.audio_codes`, which uses the pretokenizer's batch codes) or a mono waveform at
        `sample_rate`."""
        wave = source if isinstance(source, np.ndarray) else None
        if self.input_repr == "codes":
            codes = tok.encode_audio(wave, sample_rate) if wave is not None else tok.audio_codes(source)
            return ([AudioCodes(c) for c in codes], None) if len(codes) <= self.max_audio_segments else None
        if wave is None:
            wave, sample_rate = source.audio, source.sample_rate
        if round(len(wave) * self.sample_rate / sample_rate) > self.num_frames * self.hop_length:
            return None
        spectrogram = log_mel_spectrogram(
            wave,
            sample_rate,
            target_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            n_mels=self.n_mels,
            num_frames=self.num_frames,
        )
        return [AudioPatches(*self.audio_grid)], spectrogram

    def build_input(
        self,
        tok: Tokenizers,
        *,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        **values: Any,
    ) -> Example:
        """`Task.build_input`; for patches the eval prompt then the clip's `AudioPatches` span, with its
        spectrogram in `Example.audio` (a clip longer than `audio_seconds` raises ValueError)."""
        if self.input_repr == "codes":
            return super().build_input(tok, audio=audio, sample_rate=sample_rate, **values)
        wave, rate = check_audio(audio, sample_rate, self.name)
        made = self.audio_input(wave, tok, rate)
        if made is None:
            raise ValueError(
                f"task {self.name!r}: the audio is {len(wave) / rate:.2f} s; with input_repr=patches the task "
                f"takes at most {self.audio_seconds:.2f} s (num_frames * hop_length / sample_rate)"
            )
        segments, spectrogram = made
        return Example([self.prefix(), Text(self.eval_prompt), *segments], [], {}, audio=spectrogram)

    def vq_tokenizers(self) -> tuple[str, ...]:
        """No audio tokenizer for patch inputs (the clip is only an input)."""
        return tuple(u for u in self.uses if u != "audio") if self.input_repr == "patches" else self.uses


@dataclass(frozen=True)
class ASRTask(AudioInputTask):
    name: str = "asr"
    prompts: tuple[str, ...] = (
        "Transcribe the audio.",
        "What is said in the audio?",
        "Write down what you hear.",
        "Speech to text.",
    )
    eval_prompt: str = "Transcribe the audio."
    metric: ClassVar[str] = "wer"

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        if record.audio is None or not record.transcript:
            return None
        made = self.audio_input(record, tok)
        if made is None:
            return None
        audio, spectrogram = made
        inputs = [self.prefix(), Text(self.prompt(rng, train)), *audio]
        return Example(
            inputs, [Text(record.transcript)], {"transcript": record.transcript}, audio=spectrogram
        )

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
class AudioClassifyTask(AudioInputTask):
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

    def build(
        self, record: Any, rng: random.Random, tok: Tokenizers, train: bool = True, item: int | None = None
    ) -> Example | None:
        if record.audio is None or record.label is None:
            return None
        if self.classes is not None and record.label not in self.classes:
            return None
        made = self.audio_input(record, tok)
        if made is None:
            return None
        audio, spectrogram = made
        inputs = [self.prefix(), Text(self.prompt(rng, train)), *audio]
        return Example(inputs, [Text(record.label)], {"label": record.label}, audio=spectrogram)

    def parse(self, segments: list[Segment], meta: dict[str, Any], tok: Tokenizers) -> str:
        return first_text(segments)

    def grammar(self, tok: Tokenizers, meta: dict[str, Any] | None = None) -> Any:
        if self.classes:
            return grammars.closed_answers(tok.codec, list(self.classes))
        return grammars.answer_text(tok.codec)
