"""Audio tokenizer: mel front end, resampling, Griffin-Lim, WAV I/O, bad inputs, metrics, save/load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from unio.data.io import load_wav, save_wav
from unio.eval.tokenizer_metrics import mel_l1_db, spectral_convergence
from unio.tokenizers.audio import AudioConfig, AudioTokenizer, AudioTokenizerConfig, mel_filterbank, resample
from unio.tokenizers.saved import from_pretrained, save_pretrained
from unio.tokenizers.vq import AutoencoderConfig, QuantizerConfig

RATE = 8000


def tone(freq: float, seconds: float, rate: int = RATE) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return 0.5 * torch.sin(2 * math.pi * freq * t)


@pytest.fixture(scope="module")
def tokenizer() -> AudioTokenizer:
    torch.manual_seed(0)
    audio = AudioConfig(
        sample_rate=RATE, n_fft=256, hop_length=64, n_mels=16, num_frames=16, griffin_lim_iters=8
    )
    auto = AutoencoderConfig(
        in_channels=1,
        out_channels=1,
        downsample=4,
        channels=8,
        channel_mult=[1, 2],
        latent_dim=4,
        quantizer=QuantizerConfig(kind="fsq", levels=[5, 5, 5]),
    )
    return AudioTokenizer(AudioTokenizerConfig(audio=audio, autoencoder=auto)).eval()


def test_mel_filterbank_covers_the_band() -> None:
    fb = mel_filterbank(8000, 256, 16, 0.0, 4000.0)
    assert fb.shape == (16, 129)
    assert float(fb.max()) == pytest.approx(1.0, abs=0.05)
    assert torch.all(fb.sum(1) > 0)  # no empty filters


def test_mel_of_a_tone_peaks_near_0_db_at_its_band(tokenizer: AudioTokenizer) -> None:
    wave, lengths = tokenizer.prepare_waveforms(tone(1000, 0.2))
    db = tokenizer.mel_db(wave)
    assert db.shape == (1, 16, 16) and int(lengths[0]) == 1024  # cut to the segment
    peak_band = int(db[0, :, 8].argmax())
    centre_hz = 700 * (10 ** (torch.linspace(0, 2595 * math.log10(1 + 4000 / 700), 18)[1:-1] / 2595) - 1)
    assert abs(float(centre_hz[peak_band]) - 1000) < 300
    assert -12 < float(db.max()) < 3


def test_resample_keeps_frequency_and_length() -> None:
    up = resample(tone(440, 0.5), RATE, 16000)
    assert up.shape == (8000,)
    spectrum = torch.fft.rfft(up).abs()
    assert abs(int(spectrum.argmax()) * 16000 / 8000 - 440) <= 2
    assert torch.equal(resample(tone(440, 0.1), RATE, RATE), tone(440, 0.1))


def test_encode_decode_shapes_and_resampling(tokenizer: AudioTokenizer) -> None:
    codes = tokenizer.encode([tone(500, 0.05), tone(700, 0.3)])
    assert codes.shape == (2, 4, 4) and codes.dtype == torch.long
    assert tokenizer.grid_shape == (4, 4)
    same = tokenizer.encode(resample(tone(500, 0.05), RATE, 16000), sample_rate=16000)
    assert (same == codes[:1]).float().mean() > 0.8  # resampled input gives (nearly) the same codes
    db = tokenizer.decode_mel_db(codes)
    assert db.shape == (2, 16, 16) and float(db.min()) >= tokenizer.cfg.audio.db_min
    wave = tokenizer.decode(codes)
    assert wave.shape == (2, 1024) and torch.isfinite(wave).all()


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (torch.zeros(0), "empty"),
        ([torch.zeros(10), torch.zeros(0)], "clip 1 is empty"),
        (torch.full((100,), float("nan")), "NaN"),
        (torch.zeros(1, 2, 100), "mono"),
        ([], "empty audio batch"),
    ],
)
def test_bad_audio_raises(tokenizer: AudioTokenizer, bad: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tokenizer.encode(bad)


def test_griffin_lim_recovers_a_tone(tokenizer: AudioTokenizer) -> None:
    torch.manual_seed(0)
    wave, _ = tokenizer.prepare_waveforms(tone(1000, 0.2) + 0.01 * torch.randn(1600))
    db = tokenizer.mel_db(wave)
    rebuilt = tokenizer.griffin_lim(db, iters=16)
    assert rebuilt.shape == (1, 1024)
    again = tokenizer.mel_db(rebuilt)
    loud = db > -60  # near the -100 dB floor, tiny absolute errors are huge in dB
    assert float((db - again).abs()[loud].mean()) < 6.0
    assert float(spectral_convergence(db, again, torch.tensor([16]))) < 0.35


def test_spectral_metrics_ignore_padding_frames() -> None:
    ref = torch.zeros(1, 4, 8)
    rec = ref.clone()
    rec[..., 4:] = -50  # differences only in padded frames
    assert float(mel_l1_db(ref, rec, torch.tensor([4]))) == 0.0
    assert float(spectral_convergence(ref, rec, torch.tensor([4]))) == 0.0


def test_wav_roundtrip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    save_wav(path, tone(440, 0.1), RATE)
    wave, rate = load_wav(path)
    assert rate == RATE and wave.dtype == torch.float32 and wave.shape == (800,)
    torch.testing.assert_close(wave, tone(440, 0.1), atol=1e-4, rtol=0)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_wav(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not a wav file")
    with pytest.raises(ValueError, match="bad.wav"):
        load_wav(tmp_path / "bad.wav")


def test_save_load_identical_codes(tokenizer: AudioTokenizer, tmp_path: Path) -> None:
    save_pretrained(tokenizer, tmp_path)
    loaded = from_pretrained(tmp_path)
    clip = tone(300, 0.2)
    assert isinstance(loaded, AudioTokenizer)
    assert torch.equal(loaded.encode(clip), tokenizer.encode(clip))
    assert "mel_fb" not in loaded.state_dict()  # derived from the config, not stored
