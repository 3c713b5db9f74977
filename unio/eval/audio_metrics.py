"""Mel distance between generated (or reconstructed) and reference audio, for TTS and audio tokenizers.

The metric is the **log-mel L1 distance in dB**: both waveforms are resampled to 16 kHz, turned into
80-band log-mel spectrograms (`log_mel_db`) and compared frame by frame,

    mel_l1_db = mean over mel bands and the reference's frames of |dB(prediction) - dB(reference)|.

Spectrogram: Hann window of 1024 samples, hop 256, centred frames, magnitude STFT scaled so that a
full-scale sine peaks near 0 dB, unio's triangular HTK-mel filters (`unio.tokenizers.audio.mel_filterbank`,
0-8 kHz, the same filters the audio tokenizer uses) and 20 * log10 floored at -100 dB (so silence is
-100 dB everywhere rather than minus infinity). These are fixed evaluation settings, independent of any
tokenizer's configuration, so numbers are comparable across checkpoints.

Frames are compared in time order, without dynamic time warping: the prediction's spectrogram is cut
to the reference's frames, or padded with silence (-100 dB frames) when shorter. That is the natural measure for reconstruction (the
tokenizer's decode of its own codes). For TTS it is strict: a correct utterance spoken at a different
pace or offset is penalised, unlike MCD-DTW, so read it as "how close to the recorded clip", and
compare checkpoints with it rather than against published MCD numbers. Lower is better; 0 is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from unio.tokenizers.audio import mel_filterbank, resample

SAMPLE_RATE = 16000
N_FFT = 1024
HOP = 256
N_MELS = 80
DB_FLOOR = -100.0

_MEL_FB = mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS, 0.0, SAMPLE_RATE / 2)
_WINDOW = torch.hann_window(N_FFT)


def as_audio(audio: Any) -> tuple[np.ndarray, int]:
    """(mono float waveform, sample rate) from a `(wave, rate)` pair (what `TTSTask.parse` returns) or
    a dict {"audio": wave, "sample_rate": rate}."""
    if isinstance(audio, dict):
        wave, rate = audio["audio"], audio["sample_rate"]
    else:
        wave, rate = audio
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"audio must be a mono 1-D waveform, got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise ValueError("audio contains NaN or infinite samples")
    return wave, int(rate)


def log_mel_db(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono waveform -> log-mel [80, frames] in dB at the fixed evaluation settings (module docstring)."""
    x = resample(torch.from_numpy(np.asarray(wave, dtype=np.float32)), int(sample_rate), SAMPLE_RATE)
    if x.numel() < N_FFT // 2 + 1:  # reflect padding in stft needs at least n_fft / 2 + 1 samples
        x = torch.nn.functional.pad(x, (0, N_FFT // 2 + 1 - x.numel()))
    spec = torch.stft(x, N_FFT, HOP, window=_WINDOW, center=True, return_complex=True)
    mag = spec.abs() / (_WINDOW.sum() / 2)
    mel = _MEL_FB @ mag
    return (20.0 * torch.log10(mel.clamp(min=10 ** (DB_FLOOR / 20)))).numpy()


def mel_l1_db(prediction: Any, reference: Any) -> float:
    """log-mel L1 distance in dB of one prediction against one reference (see the module docstring)."""
    ref = log_mel_db(*as_audio(reference))
    pred = log_mel_db(*as_audio(prediction))
    frames = ref.shape[1]
    if pred.shape[1] < frames:
        silence = np.full((N_MELS, frames - pred.shape[1]), DB_FLOOR, dtype=pred.dtype)
        pred = np.concatenate([pred, silence], axis=1)
    return float(np.abs(pred[:, :frames] - ref).mean())


def mel_distance(predictions: Sequence[Any], references: Sequence[Any]) -> dict[str, float]:
    """Mean `mel_l1_db` over examples: {"mel_l1_db": ..., "missing": fraction with no audio decoded}.
    A missing prediction (None) is scored as silence of the reference's length."""
    if len(predictions) != len(references) or not references:
        raise ValueError(f"mel_distance: {len(predictions)} predictions for {len(references)} references")
    distances, missing = [], 0
    for pred, ref in zip(predictions, references):
        if pred is None:
            missing += 1
            pred = (np.zeros(1, dtype=np.float32), SAMPLE_RATE)
        distances.append(mel_l1_db(pred, ref))
    return {"mel_l1_db": float(np.mean(distances)), "missing": missing / len(references)}
