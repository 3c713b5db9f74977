"""Audio folders with the label in the file name, Free Spoken Digit Dataset style: `{digit}_{speaker}_{index}.wav`.

label = the first field ("7"); transcript = its spoken word for digits ("seven"), else the label.
Official FSDD split: index 0-4 test, 5-49 train (`test_indices`). Files whose sample rate differs from
`sample_rate` are bad samples (resample them with transforms.Resample after loading instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from unio.data.bad_samples import MALFORMED, WRONG_SAMPLE_RATE, BadSampleError
from unio.data.record import Record
from unio.data.sources._readers import read_wav
from unio.data.sources.base import Source, require_path

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NAME = re.compile(r"^(?P<label>[^_]+)_(?P<speaker>.+)_(?P<index>\d+)$")


@dataclass
class AudioFolderConfig:
    root: str = ""  # directory of .wav files named {label}_{speaker}_{index}.wav
    split: str = "all"  # train | test | all
    test_indices: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    speakers: list[str] = field(default_factory=list)  # empty = all speakers
    sample_rate: int | None = 8000  # every file must have this rate; None accepts any
    on_bad_sample: str = "raise"


class AudioFolderSource(Source):
    kind = "fsdd"

    def __init__(self, config: AudioFolderConfig) -> None:
        super().__init__(config.on_bad_sample, f"{config.root} split={config.split}")
        if config.split not in ("train", "test", "all"):
            raise ValueError(
                f"fsdd source: config field 'split' must be train, test or all, got {config.split!r}"
            )
        self.config = config
        root = require_path(config.root, "root", "fsdd", is_dir=True)
        files = sorted(root.glob("*.wav"))
        if not files:
            raise ValueError(f"fsdd source: no .wav files in {root}")
        for path in files:
            match = _NAME.match(path.stem)
            if match is None:
                self.reject(
                    BadSampleError(
                        path, "file name", MALFORMED, "expected {label}_{speaker}_{index}.wav", path.stem
                    )
                )
                continue
            is_test = int(match["index"]) in config.test_indices
            if (config.split == "train" and is_test) or (config.split == "test" and not is_test):
                continue
            if config.speakers and match["speaker"] not in config.speakers:
                continue
            self._index.append((path, match["label"], match["speaker"]))

    def load(self, index: int) -> Record:
        path, label, speaker = self._index[index]
        audio, rate = read_wav(path, record_id=path.stem)
        if self.config.sample_rate is not None and rate != self.config.sample_rate:
            raise BadSampleError(
                path,
                "sample_rate",
                WRONG_SAMPLE_RATE,
                f"{rate} Hz, expected {self.config.sample_rate} Hz",
                path.stem,
            )
        transcript = DIGIT_WORDS[int(label)] if label.isdigit() and len(label) == 1 else label
        return Record(
            id=path.stem,
            source=str(path),
            audio=audio,
            sample_rate=rate,
            label=label,
            transcript=transcript,
            meta={"speaker": speaker},
        )
