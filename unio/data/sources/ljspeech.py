"""LJSpeech-style speech: `metadata.csv` rows `id|raw text|normalized text` and `wavs/{id}.wav`.

Rows without a wav file (e.g. a partial copy) or with the wrong number of fields are bad samples,
found while indexing; corrupt audio and a sample rate other than `sample_rate` when loading.
"""

from __future__ import annotations

from dataclasses import dataclass

from unio.data.bad_samples import MALFORMED, MISSING_FILE, WRONG_SAMPLE_RATE, BadSampleError
from unio.data.record import Record
from unio.data.sources._readers import read_wav
from unio.data.sources.base import Source, require_path


@dataclass
class LJSpeechConfig:
    metadata: str = ""  # path to metadata.csv
    wavs: str | None = None  # directory of {id}.wav; default: wavs/ beside metadata.csv
    text: str = "normalized"  # normalized | raw
    sample_rate: int | None = 22050
    on_bad_sample: str = "raise"


class LJSpeechSource(Source):
    kind = "ljspeech"

    def __init__(self, config: LJSpeechConfig) -> None:
        super().__init__(config.on_bad_sample, config.metadata)
        if config.text not in ("normalized", "raw"):
            raise ValueError(
                f"ljspeech source: config field 'text' must be normalized or raw, got {config.text!r}"
            )
        self.config = config
        metadata = require_path(config.metadata, "metadata", "ljspeech")
        wav_dir = require_path(config.wavs or str(metadata.parent / "wavs"), "wavs", "ljspeech", is_dir=True)
        with open(metadata, encoding="utf-8") as f:
            for line_number, line in enumerate(f, start=1):
                line = line.rstrip("\n")
                if not line.strip():
                    continue
                fields = line.split("|")
                field = f"line {line_number}"
                if len(fields) not in (2, 3) or not fields[0]:
                    self.reject(
                        BadSampleError(
                            metadata,
                            field,
                            MALFORMED,
                            f"expected id|raw|normalized, got {line[:80]!r}",
                            fields[0],
                        )
                    )
                    continue
                record_id, raw = fields[0], fields[1]
                normalized = fields[2] if len(fields) == 3 and fields[2] else raw
                wav = wav_dir / f"{record_id}.wav"
                if not wav.is_file():
                    self.reject(
                        BadSampleError(
                            wav, "audio", MISSING_FILE, f"listed in {metadata.name} {field}", record_id
                        )
                    )
                    continue
                self._index.append((record_id, wav, normalized if config.text == "normalized" else raw))

    def load(self, index: int) -> Record:
        record_id, wav, text = self._index[index]
        audio, rate = read_wav(wav, record_id=record_id)
        if self.config.sample_rate is not None and rate != self.config.sample_rate:
            raise BadSampleError(
                wav,
                "sample_rate",
                WRONG_SAMPLE_RATE,
                f"{rate} Hz, expected {self.config.sample_rate} Hz",
                record_id,
            )
        return Record(id=record_id, source=str(wav), audio=audio, sample_rate=rate, transcript=text)
