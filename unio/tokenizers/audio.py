"""Audio tokenizer: waveform -> log-mel spectrogram -> VQ autoencoder codes, and back.

The spectrogram is computed with ``torch.stft`` (no torchaudio): Hann window, magnitude normalised so a
full-scale sine peaks near 0 dB, triangular HTK-mel filters, 20*log10 with a floor at ``db_min``, then
mapped linearly so [db_min, db_max] -> [-1, 1]. Every input is resampled to ``sample_rate`` (band-limited
FFT resampling) and cut or zero-padded to a fixed segment of ``num_frames * hop_length`` samples, so the
code grid is always (n_mels / f, num_frames / f). Decoding inverts the mel filters with a pseudo-inverse
and runs (fast) Griffin-Lim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from unio.tokenizers.vq import AutoencoderConfig, GridTokenizer, TrainingLoss


@dataclass
class AudioConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 128
    n_mels: int = 80
    num_frames: int = 128  # segment length in frames; samples = num_frames * hop_length
    f_min: float = 0.0
    f_max: float | None = None  # None = Nyquist
    db_min: float = -100.0
    db_max: float = 0.0
    griffin_lim_iters: int = 48

    @property
    def segment_samples(self) -> int:
        return self.num_frames * self.hop_length


@dataclass
class AudioLossConfig:
    l1_weight: float = 1.0
    l2_weight: float = 1.0


@dataclass
class AudioTokenizerConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    autoencoder: AutoencoderConfig = field(
        default_factory=lambda: AutoencoderConfig(in_channels=1, out_channels=1, downsample=8)
    )
    loss: AudioLossConfig = field(default_factory=AudioLossConfig)

    def __post_init__(self) -> None:
        if self.autoencoder.in_channels != 1 or self.autoencoder.out_channels != 1:
            raise ValueError("audio tokenizer: autoencoder.in_channels and out_channels must be 1")
        f = self.autoencoder.downsample
        if self.audio.n_mels % f or self.audio.num_frames % f:
            raise ValueError(
                f"audio: n_mels={self.audio.n_mels} and num_frames={self.audio.num_frames} must be divisible by "
                f"autoencoder.downsample={f}"
            )
        if self.audio.hop_length > self.audio.n_fft:
            raise ValueError(
                f"audio.hop_length={self.audio.hop_length} must not exceed n_fft={self.audio.n_fft}"
            )


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> Tensor:
    """Triangular HTK-mel filters [n_mels, n_fft // 2 + 1] with peak 1."""

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(f_min)), hz_to_mel(np.array(f_max)), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - freqs[None]) / np.maximum(upper - centre, 1e-9)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0.0, None)).float()


def resample(wave: Tensor, orig_rate: int, new_rate: int) -> Tensor:
    """Band-limited resampling of [..., T] by zero-padding / truncating the spectrum."""
    if orig_rate == new_rate:
        return wave
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_rate} -> {new_rate}")
    n = wave.shape[-1]
    m = max(1, round(n * new_rate / orig_rate))
    spec = torch.fft.rfft(wave.float(), dim=-1)
    keep = min(spec.shape[-1], m // 2 + 1)
    out = torch.zeros(*spec.shape[:-1], m // 2 + 1, dtype=spec.dtype, device=spec.device)
    out[..., :keep] = spec[..., :keep]
    return torch.fft.irfft(out, n=m, dim=-1) * (m / n)


class AudioTokenizer(GridTokenizer):
    kind = "audio"
    config_class = AudioTokenizerConfig

    def __init__(self, cfg: AudioTokenizerConfig) -> None:
        super().__init__(cfg)
        a = cfg.audio
        fb = mel_filterbank(a.sample_rate, a.n_fft, a.n_mels, a.f_min, a.f_max or a.sample_rate / 2)
        # derived constants, rebuilt from the config, so they stay out of the saved weights
        self.register_buffer("mel_fb", fb, persistent=False)
        self.register_buffer("mel_pinv", torch.linalg.pinv(fb), persistent=False)
        self.register_buffer("window", torch.hann_window(a.n_fft), persistent=False)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.cfg.audio.n_mels, self.cfg.audio.num_frames

    @staticmethod
    def resample(wave: Tensor, orig_rate: int, new_rate: int) -> Tensor:
        return resample(wave, orig_rate, new_rate)

    # waveform <-> normalised log-mel ------------------------------------------------------------------

    def prepare_waveforms(self, audio: object, sample_rate: int | None = None) -> tuple[Tensor, Tensor]:
        """Waveform(s) -> ([B, segment_samples] float32, valid lengths [B]) at the tokenizer's rate.

        Accepts Tensor/ndarray [T] or [B, T], or a list of 1-D clips of any lengths.
        """
        a = self.cfg.audio
        rate = sample_rate or a.sample_rate
        clips = list(audio) if isinstance(audio, list | tuple) else None
        if clips is None:
            x = torch.as_tensor(audio) if isinstance(audio, np.ndarray) else audio
            if not isinstance(x, Tensor):
                raise TypeError(
                    f"audio must be a tensor, ndarray or list of clips, got {type(audio).__name__}"
                )
            if x.ndim not in (1, 2):
                raise ValueError(f"audio shape {tuple(x.shape)}: expected [T] or [B, T] mono waveforms")
            clips = [x] if x.ndim == 1 else list(x)
        if not clips:
            raise ValueError("empty audio batch")
        out = torch.zeros(len(clips), a.segment_samples)
        lengths = torch.zeros(len(clips), dtype=torch.long)
        for i, clip in enumerate(clips):
            clip = torch.as_tensor(clip).float().cpu()
            if clip.ndim != 1:
                raise ValueError(
                    f"audio clip {i} has shape {tuple(clip.shape)}: expected a 1-D mono waveform"
                )
            if clip.numel() == 0:
                raise ValueError(f"audio clip {i} is empty (0 samples)")
            if not torch.isfinite(clip).all():
                raise ValueError(f"audio clip {i} contains NaN or infinite samples")
            clip = resample(clip, rate, a.sample_rate)[: a.segment_samples]
            out[i, : clip.numel()] = clip
            lengths[i] = clip.numel()
        return out.to(self.device), lengths

    def mel_db(self, wave: Tensor) -> Tensor:
        """[B, T] waveforms -> log-mel in dB [B, n_mels, num_frames] (floored at db_min), fp32."""
        a = self.cfg.audio
        with torch.autocast(device_type=wave.device.type, enabled=False):
            spec = torch.stft(
                wave.float(), a.n_fft, a.hop_length, window=self.window, center=True, return_complex=True
            )
            mag = spec.abs()[..., : a.num_frames] / (self.window.sum() / 2)
            mel = torch.einsum("mf,bft->bmt", self.mel_fb, mag)
            return 20.0 * torch.log10(mel.clamp(min=10 ** (a.db_min / 20)))

    def normalise(self, db: Tensor) -> Tensor:
        a = self.cfg.audio
        return ((db - a.db_min) / (a.db_max - a.db_min) * 2.0 - 1.0).unsqueeze(1)

    def denormalise(self, x: Tensor) -> Tensor:
        a = self.cfg.audio
        return ((x[:, 0].float() + 1.0) / 2.0 * (a.db_max - a.db_min) + a.db_min).clamp(min=a.db_min)

    def griffin_lim(self, db: Tensor, iters: int | None = None) -> Tensor:
        """Log-mel dB [B, n_mels, F] -> waveform [B, F * hop] (fast Griffin-Lim, momentum 0.99)."""
        a = self.cfg.audio
        mel = 10.0 ** (db.float() / 20.0)
        mag = torch.einsum("fm,bmt->bft", self.mel_pinv, mel).clamp(min=0.0) * (self.window.sum() / 2)
        length = db.shape[-1] * a.hop_length
        generator = torch.Generator(device="cpu").manual_seed(0)  # deterministic decode
        angles = torch.exp(2j * math.pi * torch.rand(mag.shape, generator=generator)).to(mag.device)
        previous = torch.zeros_like(angles)
        stft = dict(n_fft=a.n_fft, hop_length=a.hop_length, window=self.window, center=True)
        wave = torch.zeros(mag.shape[0], length, device=mag.device)
        for _ in range(iters or a.griffin_lim_iters):
            wave = torch.istft(mag * angles, length=length, **stft)
            rebuilt = torch.stft(wave, return_complex=True, **stft)[..., : mag.shape[-1]]
            accelerated = rebuilt - 0.99 * previous
            previous = rebuilt
            angles = accelerated / accelerated.abs().clamp(min=1e-8)
        return torch.istft(mag * angles, length=length, **stft)

    # public API ---------------------------------------------------------------------------------------

    def encode(self, audio: object, sample_rate: int | None = None) -> Tensor:
        """Waveform(s) at ``sample_rate`` (default: the tokenizer's) -> LongTensor[B, h, w] codes."""
        wave, _ = self.prepare_waveforms(audio, sample_rate)
        return self.autoencoder.encode(self.normalise(self.mel_db(wave)))

    def decode_mel_db(self, codes: Tensor) -> Tensor:
        """Codes -> reconstructed log-mel in dB [B, n_mels, num_frames]."""
        return self.denormalise(self.autoencoder.decode(self.check_codes(codes)))

    def decode(self, codes: Tensor) -> Tensor:
        """Codes -> waveform [B, segment_samples] at ``cfg.audio.sample_rate`` via Griffin-Lim."""
        return self.griffin_lim(self.decode_mel_db(codes))

    def training_loss(self, batch: Tensor, lengths: Tensor | None = None) -> TrainingLoss:
        """``batch``: [B, segment_samples] waveforms at the tokenizer's rate (what the datasets yield)."""
        with torch.no_grad():
            target = self.normalise(self.mel_db(batch))
        out = self.autoencoder(target)
        recon = out.reconstruction.float()
        l1 = (recon - target).abs().mean()
        l2 = (recon - target).pow(2).mean()
        loss = self.cfg.loss.l1_weight * l1 + self.cfg.loss.l2_weight * l2 + out.aux_loss
        a = self.cfg.audio
        parts = {"l1": l1.detach(), "l2": l2.detach(), "quantizer": out.aux_loss.detach()}
        parts["mel_l1_db"] = l1.detach() * (a.db_max - a.db_min) / 2
        return TrainingLoss(loss=loss, parts=parts, target=target, reconstruction=recon, codes=out.codes)
