"""Built-in audio: tone sequences with a text description, the audio counterpart of the shapes world.

Record i is 1-4 tones (low / mid / high, an octave apart) with small pitch, loudness and timing
jitter and faint noise, padded to a fixed duration. Deterministic and index-addressable like
`ShapesSource`. Ground truth:
- transcript: the pitch words in order, e.g. "low high high" (for speech-recognition-like tasks and
  text-to-audio)
- label: the number of tones as a word, "one".."four" (for audio classification; uniform by design)
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from unio.data.record import Record
from unio.data.sources.base import Source

PITCHES: dict[str, float] = {"low": 330.0, "mid": 660.0, "high": 1320.0}
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")


@dataclass
class TonesConfig:
    num_records: int = 10000
    seed: int = 0
    split: str = "train"
    sample_rate: int = 8000
    duration_seconds: float = 1.0
    min_tones: int = 1
    max_tones: int = 4
    tone_seconds: float = 0.12
    gap_seconds: float = 0.05
    pitches: list[str] = field(default_factory=lambda: list(PITCHES))
    on_bad_sample: str = "raise"  # generated clips are never bad; kept so every source config has it


class TonesSource(Source):
    kind = "tones"

    def __init__(self, config: TonesConfig) -> None:
        super().__init__(config.on_bad_sample, f"seed={config.seed} split={config.split}")
        unknown = sorted(set(config.pitches) - set(PITCHES))
        if unknown or not config.pitches:
            raise ValueError(
                f"tones: config field 'pitches': unknown or empty {unknown}; known: {tuple(PITCHES)}"
            )
        if not 1 <= config.min_tones <= config.max_tones < len(NUMBERS):
            raise ValueError(
                f"tones: need 1 <= min_tones <= max_tones <= 8, got {config.min_tones}, {config.max_tones}"
            )
        longest = config.max_tones * (config.tone_seconds * 1.1 + config.gap_seconds * 1.5) + 0.05
        if longest > config.duration_seconds:
            raise ValueError(
                f"tones: duration_seconds={config.duration_seconds} is too short for {config.max_tones} tones "
                f"(needs {longest:.2f} s)"
            )
        if config.sample_rate < 4 * max(PITCHES[p] for p in config.pitches):
            raise ValueError(f"tones: sample_rate {config.sample_rate} is too low for the chosen pitches")
        self.config = config
        self._index = range(config.num_records)
        self._split_key = zlib.crc32(config.split.encode())

    def load(self, index: int) -> Record:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self._split_key, index])
        sr = cfg.sample_rate
        count = int(rng.integers(cfg.min_tones, cfg.max_tones + 1))
        words = [cfg.pitches[i] for i in rng.integers(len(cfg.pitches), size=count)]
        audio = rng.normal(0, 0.003, size=int(cfg.duration_seconds * sr)).astype(np.float32)
        t = rng.uniform(0.0, 0.05)
        for word in words:
            length = int(cfg.tone_seconds * rng.uniform(0.9, 1.1) * sr)
            frequency = PITCHES[word] * rng.uniform(0.97, 1.03)
            time = np.arange(length) / sr
            envelope = np.minimum(1.0, np.minimum(time, time[::-1]) / 0.01)  # 10 ms fades: no clicks
            tone = (
                rng.uniform(0.3, 0.6)
                * envelope
                * np.sin(2 * np.pi * frequency * time + rng.uniform(0, 2 * np.pi))
            )
            start = int(t * sr)
            audio[start : start + length] += tone.astype(np.float32)
            t += length / sr + cfg.gap_seconds * rng.uniform(0.5, 1.5)
        return Record(
            id=f"tones-{cfg.split}-{cfg.seed}-{index}",
            source=f"tones(seed={cfg.seed}, split={cfg.split}, index={index})",
            audio=np.clip(audio, -1, 1),
            sample_rate=sr,
            transcript=" ".join(words),
            label=NUMBERS[count],
            meta={"split": cfg.split},
        )
