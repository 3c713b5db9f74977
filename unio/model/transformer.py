"""The unified encoder-decoder transformer.

One embedding table over the unified vocabulary (tied with the output projection), a learned
modality-type embedding added to every token, pre-norm RMSNorm blocks with SwiGLU MLPs, no biases,
optional QK-norm, rotary positions (1-D for sequence tokens, 2-D for grid tokens, see rotary.py) and
``F.scaled_dot_product_attention`` everywhere. The encoder is bidirectional with a key padding mask;
the decoder has causal self-attention plus cross-attention to the encoder. Packed batches (several
examples per row, ``input_segment_ids`` / ``decoder_segment_ids`` from the collator) get
block-diagonal attention: a token attends only to tokens of its own example, on both sides and across.

Initialisation (``UnifiedTransformer._init_weights``): every matrix ~ N(0, ``init_std``), except the
two residual-branch output projections (attention ``out`` and MLP ``down``) which use
``init_std / sqrt(2 * n_layers)`` of their stack (GPT-2 scheme) so the residual stream variance does
not grow with depth; the modality embedding starts at zero (the model begins as a pure token model and
learns modality offsets); norm weights are one. An optional patch stem initialises itself
(unio/model/patches.py) and is built last, so it does not change the other weights of a given seed.

Patch inputs (optional, ``ModelConfig.patch_stem``; see unio/model/patches.py and docs/model.md
"Patch inputs"): ``encode(..., input_images=...)`` takes continuous images ``[n_images, C, H, W]``
(uint8, or float in [0, 1]). In the id stream each image is a *placeholder span* of N tokens: id
``patch_stem.placeholder_id`` (the ``<image>`` bracket id), modality ``image``, (row, col) = its patch
grid position (so the 2-D rotary applies), 1-D positions as usual; an ordinary ``<image>`` bracket has
row -1 and is not a placeholder. The encoder replaces the token embeddings of the placeholders, in
row-major batch order (row 0's spans first, left to right, then row 1's...), by the stem's patch
embeddings, one image per span, and adds the modality embedding as for any token. Rows without an image
have no placeholders, so packed rows and guidance's null rows need nothing special; the number of
placeholders must equal ``n_images * N``. Without ``input_images`` the encoder runs exactly the code it
ran before the stem existed (not one extra op).

Audio inputs (optional, ``ModelConfig.audio_stem``) follow the same contract with a second stem:
``encode(..., input_audio=...)`` takes log-mel spectrograms ``[n_clips, 1, mels, frames]`` (fp16 or
float in [0, 1]) and fills the placeholder spans of ``<audio>`` ids (modality ``audio``, row >= 0), one
clip per span in row-major batch order. Image and audio inputs may be mixed in one batch.

The model is plain single-device code: no DDP, FSDP or ``torch.compile`` in here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unio.model.cpu_weights import Linear, PackedWeight, linear
from unio.model.loss import IGNORE_INDEX
from unio.model.patches import PatchStem, PatchStemConfig
from unio.model.rotary import Rotary, apply_rotary
from unio.model.vision_encoder import PretrainedStem
from unio.vocab import CORE_SPECIAL_TOKENS, MODALITIES, Vocabulary

MODEL_INPUT_KEYS = (
    "input_ids",
    "input_modality",
    "input_position",
    "input_row",
    "input_col",
    "input_mask",
    "decoder_input_ids",
    "decoder_modality",
    "decoder_position",
    "decoder_row",
    "decoder_col",
)
SEGMENT_KEYS = ("input_segment_ids", "decoder_segment_ids")  # optional: packed batches only
IMAGE_KEY = "input_images"  # optional: continuous images for the placeholders (ModelConfig.patch_stem)
AUDIO_KEY = "input_audio"  # optional: spectrograms for the <audio> placeholders (ModelConfig.audio_stem)
PATCH_KEYS = (IMAGE_KEY, AUDIO_KEY)  # the optional continuous inputs of the encoder
# `Vocabulary.default` puts the core special tokens first; `build_model` sets the actual vocabulary's id.
AUDIO_PLACEHOLDER_ID = CORE_SPECIAL_TOKENS.index("<audio>")


@dataclass
class ModelConfig:
    """Size and options of a `UnifiedTransformer`. Presets live in conf/model/*.yaml."""

    vocab_size: int = 35456  # rows of the embedding table: `Vocabulary.size` (set from the vocabulary)
    d_model: int = 256
    n_heads: int = 4
    head_dim: int | None = None  # default d_model // n_heads; must be a multiple of 4 (2-D rotary)
    n_encoder_layers: int = 4
    n_decoder_layers: int = 4
    d_ff: int = 1024  # hidden width of the SwiGLU MLP
    qk_norm: bool = False  # RMSNorm on queries and keys per head (stabilises large / long runs)
    rope_theta: float = 10000.0
    norm_eps: float = 1e-6
    init_std: float = 0.02
    num_modalities: int = len(MODALITIES)
    # Probability with which training replaces a row's encoder input by the null condition (for
    # classifier-free guidance); read by the training loop via unio.model.guidance.drop_condition.
    condition_dropout: float = 0.0
    # Continuous image inputs (unio/model/patches.py); None = token inputs only. A nested dict in YAML.
    # (typed Any so a Hydra override `model.patch_stem={kind: conv, ...}` merges; a dict becomes a
    # PatchStemConfig in __post_init__)
    patch_stem: Any = None
    # Continuous audio inputs: a second stem over log-mel spectrograms [1, mels, frames] (channels 1,
    # image_size [mels, frames], modality audio, `<audio>` placeholders); None = audio codes only. A
    # dict gets those three defaults (give kind, patch_size, image_size) and becomes a PatchStemConfig.
    audio_stem: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.patch_stem, Mapping):
            self.patch_stem = PatchStemConfig.from_dict(self.patch_stem, "ModelConfig.patch_stem")
        if isinstance(self.audio_stem, Mapping):
            defaults = {"channels": 1, "modality": "audio", "placeholder_id": AUDIO_PLACEHOLDER_ID}
            self.audio_stem = PatchStemConfig.from_dict(
                {**defaults, **self.audio_stem}, "ModelConfig.audio_stem"
            )
        if self.audio_stem is not None and (
            self.audio_stem.modality != "audio" or self.audio_stem.kind not in ("linear", "conv")
        ):
            raise ValueError(
                "ModelConfig.audio_stem must have modality 'audio' and kind linear or conv, got "
                f"modality {self.audio_stem.modality!r}, kind {self.audio_stem.kind!r}"
            )
        for name in ("vocab_size", "d_model", "n_heads", "n_encoder_layers", "n_decoder_layers", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.head_dim is None:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"ModelConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
                )
            self.head_dim = self.d_model // self.n_heads
        if self.head_dim % 4:
            raise ValueError(
                f"ModelConfig.head_dim must be a multiple of 4 (2-D rotary), got {self.head_dim}"
            )
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ValueError(f"ModelConfig.condition_dropout must be in [0, 1), got {self.condition_dropout}")

    @property
    def inner_dim(self) -> int:
        return self.n_heads * self.head_dim

    # ------------------------------------------------------------------ analytic counts
    def num_parameters(self) -> int:
        """Exact parameter count (the embedding is counted once: it is tied with the output)."""
        d, inner, ff = self.d_model, self.inner_dim, self.d_ff
        attention = 4 * d * inner + (2 * self.head_dim if self.qk_norm else 0)
        mlp = 3 * d * ff
        encoder_layer = attention + mlp + 2 * d
        decoder_layer = 2 * attention + mlp + 3 * d
        embeddings = self.vocab_size * d + self.num_modalities * d
        final_norms = 2 * d
        stem = self.patch_stem.num_parameters(d) if self.patch_stem is not None else 0
        stem += self.audio_stem.num_parameters(d) if self.audio_stem is not None else 0
        return (
            stem
            + embeddings
            + self.n_encoder_layers * encoder_layer
            + self.n_decoder_layers * decoder_layer
            + final_norms
        )

    def forward_flops(self, input_len: int, target_len: int) -> float:
        """Matmul FLOPs (2 per multiply-add) of one forward pass over one example.

        Counts projections, attention scores and weighted sums, cross-attention keys/values over the
        encoder tokens, and the output projection; ignores norms, activations and softmax (< 1%).
        Training costs about 3x this (backward = 2x forward). The patch stem is not counted:
        `unio.model.benchmark.patch_stem_flops` gives it per image (conv, linear, or a frozen ViT)."""
        d, inner, ff, L, T = self.d_model, self.inner_dim, self.d_ff, input_len, target_len
        proj = 4 * d * inner  # q, k, v, out
        mlp = 3 * d * ff
        encoder = self.n_encoder_layers * (L * (proj + mlp) + 2 * L * L * inner)
        decoder_self = T * proj + 2 * T * (T + 1) / 2 * inner  # causal: half the score matrix
        decoder_cross = T * 2 * d * inner + L * 2 * d * inner + 2 * T * L * inner  # q+out, k+v, scores
        decoder = self.n_decoder_layers * (decoder_self + decoder_cross + T * mlp)
        logits = T * d * self.vocab_size
        return 2.0 * (encoder + decoder + logits)

    def train_flops_per_token(self, input_len: int, target_len: int) -> float:
        """Training FLOPs (forward + backward) per token, tokens = input + target (for MFU)."""
        return 3.0 * self.forward_flops(input_len, target_len) / (input_len + target_len)

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    """``weight * x / (rms(x) + eps)``, rms over the last dimension.

    ``rms + eps`` is one fused ``add(eps, norm, alpha=1/sqrt(dim))`` of a single ``vector_norm``
    reduction, with ``eps`` a 0-dim buffer: four kernels forward and no Python scalars to wrap, which
    halves the cost of the tiny per-token norms of a decoding step (13 per step) and is the fastest
    eager variant we measured for training too."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.inv_sqrt_dim = dim**-0.5
        self.weight = nn.Parameter(torch.ones(dim))
        self.register_buffer("eps", torch.tensor(eps), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        return x * torch.add(self.eps, norm, alpha=self.inv_sqrt_dim).reciprocal() * self.weight


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))`` with gate and up fused into one matmul."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.gate_up = Linear(d_model, 2 * d_ff)
        self.down = Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


@dataclass
class KVCache:
    """Preallocated self-attention keys/values of one decoder layer, layout ``[B, H, max_len, D]``."""

    keys: Tensor
    values: Tensor

    def reorder(self, index: Tensor, length: int) -> None:
        """Keep rows ``index`` (beam search), copying only the filled prefix."""
        self.keys[:, :, :length] = self.keys[index, :, :length]
        self.values[:, :, :length] = self.values[index, :, :length]


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, causal: bool) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.causal = cfg.n_heads, cfg.head_dim, causal
        self.qkv = Linear(cfg.d_model, 3 * cfg.inner_dim)
        self.out = Linear(cfg.inner_dim, cfg.d_model)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None

    def forward(
        self,
        x: Tensor,
        rotation: Tensor,
        key_mask: Tensor | None = None,
        cache: KVCache | None = None,
        cache_pos: int = 0,
    ) -> Tensor:
        """``key_mask``: bool, True = attend, broadcasting to ``[B, H, L, keys]``. In a causal layer a
        given mask replaces the causal one, so it must already be causal (packed decoder rows)."""
        B, L, _ = x.shape
        qkv = self.qkv(x).view(B, L, 3, self.n_heads, self.head_dim)
        # split (not slicing): its backward is one concatenation instead of zero-fill + copy per slice.
        qk, v = qkv.split((2, 1), dim=2)
        v = v.squeeze(2).transpose(1, 2)
        if self.q_norm is not None:
            q, k = qk.unbind(2)
            qk = torch.stack((self.q_norm(q), self.k_norm(k)), dim=2)
        # Rotate queries and keys together: one kernel instead of two.
        q, k = apply_rotary(qk, rotation).transpose(1, 3).unbind(2)
        if cache is not None:
            # Incremental decoding: append this step, attend to everything so far (all earlier
            # positions are real tokens, so no mask is needed and causality is implicit).
            end = cache_pos + L
            cache.keys[:, :, cache_pos:end] = k
            cache.values[:, :, cache_pos:end] = v
            k, v = cache.keys[:, :, :end], cache.values[:, :, :end]
            causal = self.causal and L > 1
            if causal and cache_pos > 0:
                raise ValueError("multi-token cached decoding is only supported from position 0")
        else:
            causal = self.causal and key_mask is None
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, is_causal=causal)
        return self.out(y.transpose(1, 2).reshape(B, L, -1))


class CrossAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.q = Linear(cfg.d_model, cfg.inner_dim)
        self.kv = Linear(cfg.d_model, 2 * cfg.inner_dim)
        self.out = Linear(cfg.inner_dim, cfg.d_model)
        self.q_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(cfg.head_dim, cfg.norm_eps) if cfg.qk_norm else None

    def split_keys_values(self, kv: Tensor) -> tuple[Tensor, Tensor]:
        """``kv`` = ``self.kv(memory)`` ``[B, S, 2 * inner]`` -> keys, values ``[B, H, S, D]``."""
        B, S, _ = kv.shape
        k, v = kv.view(B, S, 2, self.n_heads, self.head_dim).unbind(2)
        if self.k_norm is not None:
            k = self.k_norm(k)
        return k.transpose(1, 2), v.transpose(1, 2)

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], key_mask: Tensor | None) -> Tensor:
        B, L, _ = x.shape
        q = self.q(x).view(B, L, self.n_heads, self.head_dim)
        if self.q_norm is not None:
            q = self.q_norm(q)
        # No rotary here: encoder and decoder positions live in different sequences.
        y = F.scaled_dot_product_attention(q.transpose(1, 2), kv[0], kv[1], attn_mask=key_mask)
        return self.out(y.transpose(1, 2).reshape(B, L, -1))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = SelfAttention(cfg, causal=False)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.d_ff)

    def forward(self, x: Tensor, rotation: Tensor, key_mask: Tensor | None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), rotation, key_mask)
        return x + self.mlp(self.mlp_norm(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.self_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.self_attn = SelfAttention(cfg, causal=True)
        self.cross_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.cross_attn = CrossAttention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.d_ff)

    def forward(
        self,
        x: Tensor,
        rotation: Tensor,
        cross_kv: tuple[Tensor, Tensor],
        memory_mask: Tensor | None,
        cache: KVCache | None = None,
        cache_pos: int = 0,
        self_mask: Tensor | None = None,
    ) -> Tensor:
        x = x + self.self_attn(self.self_norm(x), rotation, self_mask, cache, cache_pos)
        x = x + self.cross_attn(self.cross_norm(x), cross_kv, memory_mask)
        return x + self.mlp(self.mlp_norm(x))


@dataclass
class EncoderOutput:
    """Encoder states plus what the decoder needs: per-layer cross-attention K/V and the key mask."""

    states: Tensor  # [B, S, d_model]
    key_mask: Tensor | None  # [B, 1, 1, S] bool (True = attend) or None when nothing is padded
    cross_kv: list[tuple[Tensor, Tensor]]
    segment_ids: Tensor | None = None  # [B, S] packed example of each input token (0 = padding)


class UnifiedTransformer(nn.Module):
    """Encoder-decoder over the unified vocabulary. ``forward(**model_inputs) -> logits [B, T, V]``."""

    output_packed: PackedWeight | None = None  # set while decoding on CPU (cpu_weights.py)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.modality_embed = nn.Embedding(cfg.num_modalities, cfg.d_model)
        self.rotary = Rotary(cfg.head_dim, cfg.rope_theta)
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_encoder_layers))
        self.encoder_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_decoder_layers))
        self.decoder_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.patch_stem: PatchStem | PretrainedStem | None = None
        self.audio_stem: PatchStem | None = None
        self._init_weights()
        if cfg.patch_stem is not None:
            # Built after the init above (it initialises itself), so the rest of the model gets the
            # same weights for a given seed with or without a stem. kind=pretrained: a frozen ViT
            # loaded from local weights (unio/model/vision_encoder.py), same interface.
            stem_class = PretrainedStem if cfg.patch_stem.kind == "pretrained" else PatchStem
            self.patch_stem = stem_class(cfg.patch_stem, cfg.d_model, cfg.init_std)
        if cfg.audio_stem is not None:  # built last: the image stem and the rest keep their init
            self.audio_stem = PatchStem(cfg.audio_stem, cfg.d_model, cfg.init_std)

    def _init_weights(self) -> None:
        std = self.config.init_std
        for name, module in self.named_modules():
            in_stem = name.startswith(("patch_stem", "audio_stem"))
            if isinstance(module, nn.Linear | nn.Embedding) and not in_stem:
                nn.init.normal_(module.weight, mean=0.0, std=std)
        nn.init.zeros_(self.modality_embed.weight)
        for layers in (self.encoder_layers, self.decoder_layers):
            residual_std = std / math.sqrt(2 * len(layers))
            for layer in layers:
                for name, param in layer.named_parameters():
                    if name.endswith(("out.weight", "down.weight")):
                        nn.init.normal_(param, mean=0.0, std=residual_std)
        for stem in (self.patch_stem, self.audio_stem):
            if stem is not None:
                stem.reset_parameters()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ pieces
    def embed_tokens(self, ids: Tensor, modality: Tensor) -> Tensor:
        return self.embed(ids) + self.modality_embed(modality)

    def embed_with_patches(
        self, ids: Tensor, modality: Tensor, row: Tensor, images: Tensor | None, audio: Tensor | None = None
    ) -> Tensor:
        """`embed_tokens`, with the placeholder tokens' embeddings replaced by the patch embeddings of
        ``images`` (patch stem, ``<image>`` spans) and ``audio`` (audio stem, ``<audio>`` spans), each
        when given (contract in the module docstring)."""
        tokens = self.embed(ids)
        for stem, values, what in (
            (self.patch_stem, images, ("input_images", "patch_stem", "image")),
            (self.audio_stem, audio, ("input_audio", "audio_stem", "audio clip")),
        ):
            if values is None:
                continue
            key, field, item = what
            if stem is None:
                raise ValueError(f"encode: {key} given, but ModelConfig.{field} is None (no {field})")
            slots = (ids == stem.config.placeholder_id) & (row >= 0)
            patches = stem(values)
            if not torch.compiler.is_compiling():
                found, needed = int(slots.sum()), patches.shape[0] * patches.shape[1]
                if found != needed:
                    raise ValueError(
                        f"encode: {values.shape[0]} {item}(s) x {patches.shape[1]} patches need {needed} "
                        f"placeholder tokens (id {stem.config.placeholder_id}, row >= 0), the input has {found}"
                    )
            tokens = tokens.masked_scatter(slots.unsqueeze(-1), patches.to(tokens.dtype))
        return tokens + self.modality_embed(modality)

    def encode(
        self,
        input_ids: Tensor,
        input_modality: Tensor,
        input_position: Tensor,
        input_row: Tensor,
        input_col: Tensor,
        input_mask: Tensor | None = None,
        input_segment_ids: Tensor | None = None,
        input_images: Tensor | None = None,
        input_audio: Tensor | None = None,
    ) -> EncoderOutput:
        """Run the encoder and precompute every decoder layer's cross-attention keys/values.

        ``input_segment_ids`` (packed rows, ``[B, S]``, 0 on padding): tokens attend only within
        their own segment; padding attends to padding, so no attention row is empty.
        ``input_images`` (``[n_images, C, H, W]``) and ``input_audio`` (``[n_clips, 1, mels, frames]``):
        fill the placeholder spans (module docstring)."""
        # Data-dependent checks read tensor values (a graph break under torch.compile): skip them when
        # compiling and always pass the mask, which gives the same result.
        compiling = torch.compiler.is_compiling()
        if input_mask is not None and not compiling and not bool(input_mask.any(dim=1).all()):
            raise ValueError("encode: every row of input_mask needs at least one real (True) token")
        key_mask = None
        if input_mask is not None and (compiling or not bool(input_mask.all())):
            key_mask = input_mask[:, None, None, :]
        self_mask = key_mask
        if input_segment_ids is not None:
            self_mask = (input_segment_ids[:, :, None] == input_segment_ids[:, None, :])[:, None]
        if input_images is None and input_audio is None:
            x = self.embed_tokens(input_ids, input_modality)
        else:
            x = self.embed_with_patches(input_ids, input_modality, input_row, input_images, input_audio)
        rotation = self.rotary.tables(input_position, input_row, input_col)
        for layer in self.encoder_layers:
            x = layer(x, rotation, self_mask)
        states = self.encoder_norm(x)
        return EncoderOutput(states, key_mask, self.cross_keys_values(states), input_segment_ids)

    def cross_keys_values(self, states: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Every decoder layer's cross-attention keys/values of the encoder states. All layers read
        the same states, so their projections run as one wide matmul (same FLOPs, better GEMM
        efficiency, one weight-gradient GEMM in backward); the weights stay per layer."""
        attns = [layer.cross_attn for layer in self.decoder_layers]
        kv = F.linear(states, torch.cat([a.kv.weight for a in attns]))
        return [a.split_keys_values(part) for a, part in zip(attns, kv.chunk(len(attns), dim=-1))]

    def decode(
        self,
        memory: EncoderOutput,
        decoder_input_ids: Tensor,
        decoder_modality: Tensor,
        decoder_position: Tensor,
        decoder_row: Tensor,
        decoder_col: Tensor,
        caches: list[KVCache] | None = None,
        cache_pos: int = 0,
        decoder_segment_ids: Tensor | None = None,
    ) -> Tensor:
        """Decoder hidden states ``[B, T, d_model]`` (final-normed). With ``caches`` the new tokens
        are appended at ``cache_pos`` and attend to the cached prefix. ``decoder_segment_ids``
        (packed rows, with ``memory.segment_ids``) restricts self- and cross-attention to each
        token's own example."""
        self_mask, cross_mask = None, memory.key_mask
        if (decoder_segment_ids is None) != (memory.segment_ids is None):
            raise ValueError("decode: packed rows need both input_segment_ids and decoder_segment_ids")
        if decoder_segment_ids is not None:
            if caches is not None:
                raise ValueError("decode: cached decoding does not support packed (segment id) rows")
            T = decoder_segment_ids.shape[1]
            causal = torch.ones(T, T, dtype=torch.bool, device=decoder_segment_ids.device).tril()
            same = decoder_segment_ids[:, :, None] == decoder_segment_ids[:, None, :]
            self_mask = (same & causal)[:, None]
            # Decoder padding (segment 0) may read every input token: an all-False row would give NaN.
            cross = decoder_segment_ids[:, :, None] == memory.segment_ids[:, None, :]
            cross_mask = (cross | (decoder_segment_ids == 0)[:, :, None])[:, None]
        x = self.embed_tokens(decoder_input_ids, decoder_modality)
        rotation = self.rotary.tables(decoder_position, decoder_row, decoder_col)
        for i, layer in enumerate(self.decoder_layers):
            cache = caches[i] if caches is not None else None
            x = layer(x, rotation, memory.cross_kv[i], cross_mask, cache, cache_pos, self_mask)
        return self.decoder_norm(x)

    def logits(self, hidden: Tensor) -> Tensor:
        """Tied output projection."""
        return linear(hidden, self.embed.weight, self.output_packed)

    def new_caches(self, batch_size: int, max_len: int) -> list[KVCache]:
        cfg, w = self.config, self.embed.weight
        shape = (batch_size, cfg.n_heads, max_len, cfg.head_dim)
        return [KVCache(w.new_empty(shape), w.new_empty(shape)) for _ in range(cfg.n_decoder_layers)]

    # ------------------------------------------------------------------ full pass
    def forward(
        self,
        input_ids: Tensor,
        input_modality: Tensor,
        input_position: Tensor,
        input_row: Tensor,
        input_col: Tensor,
        input_mask: Tensor | None,
        decoder_input_ids: Tensor,
        decoder_modality: Tensor,
        decoder_position: Tensor,
        decoder_row: Tensor,
        decoder_col: Tensor,
        decoder_mask: Tensor | None = None,
        input_segment_ids: Tensor | None = None,
        decoder_segment_ids: Tensor | None = None,
        input_images: Tensor | None = None,
        input_audio: Tensor | None = None,
        logits_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher-forced logits ``[B, T, vocab_size]``; with ``logits_mask`` (bool ``[B, T]``) only
        at its True positions, ``[N, vocab_size]`` in row-major order. A loss needs logits only at real
        targets, and padded decoder positions (a batch mixing one-word answers with 30-token captions
        is mostly padding) would otherwise pay the largest matmul of a small model.

        ``decoder_mask`` is accepted for symmetry with the batch but not needed: decoder padding is
        at the end, so causal attention never lets a real token see a padded one; padded positions
        produce logits that the loss ignores (target -100). Segment ids (packed batches, both or
        neither) give block-diagonal attention, so each packed example gets the logits it would get
        alone."""
        memory = self.encode(
            input_ids,
            input_modality,
            input_position,
            input_row,
            input_col,
            input_mask,
            input_segment_ids,
            input_images,
            input_audio,
        )
        hidden = self.decode(
            memory,
            decoder_input_ids,
            decoder_modality,
            decoder_position,
            decoder_row,
            decoder_col,
            decoder_segment_ids=decoder_segment_ids,
        )
        if logits_mask is not None:
            hidden = hidden[logits_mask]
        return self.logits(hidden)

    def forward_batch(self, batch: Mapping[str, Tensor], targets_only: bool = False) -> Tensor:
        """``forward`` on a collated batch dict (extra keys are ignored; segment ids of a packed
        batch, ``input_images`` and ``input_audio`` are used when present). ``targets_only``: logits
        ``[N, vocab_size]`` at the N real targets (``batch["targets"] != -100``, row-major), to pair
        with ``batch["targets"][batch["targets"] != -100]`` in the loss."""
        missing = [k for k in MODEL_INPUT_KEYS if k not in batch]
        if missing:
            raise KeyError(f"batch is missing model inputs {missing}; it has {sorted(batch)}")
        optional = {k: batch[k] for k in (*SEGMENT_KEYS, *PATCH_KEYS) if k in batch}
        if targets_only:
            optional["logits_mask"] = batch["targets"] != IGNORE_INDEX
        return self(**{k: batch[k] for k in MODEL_INPUT_KEYS}, **optional)


def model_config_from_dict(data: Mapping, source: str = "model config") -> ModelConfig:
    """Build a `ModelConfig` from a plain mapping (e.g. a composed conf/model/*.yaml), naming the
    offending field on a typo."""
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{source}: unknown field(s) {unknown}; ModelConfig has {sorted(known)}")
    return ModelConfig(**dict(data))


def build_model(config: ModelConfig, vocab: Vocabulary) -> UnifiedTransformer:
    """The model for `vocab`: ``vocab_size`` always comes from the vocabulary, not the preset, and a
    patch stem's placeholder id is the vocabulary's ``<image>`` id (an audio stem's: ``<audio>``)."""
    stem, audio = config.patch_stem, config.audio_stem
    if stem is not None:
        stem = replace(stem, placeholder_id=vocab.token_id("<image>"))
    if audio is not None:
        audio = replace(audio, placeholder_id=vocab.token_id("<audio>"))
    return UnifiedTransformer(replace(config, vocab_size=vocab.size, patch_stem=stem, audio_stem=audio))
