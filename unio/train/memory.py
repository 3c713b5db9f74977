"""Will it fit? Training memory of a preset, computed before launching.

Per GPU, for one data-parallel replica (no sharding; FSDP over N GPUs divides the first three rows
by N):

- weights: fp32 master parameters, 4 bytes each;
- gradients: fp32, 4 bytes each;
- AdamW state: two fp32 moments, 8 bytes each;
- activations: what backward keeps, in bf16 (2 bytes), counted per token and layer from the model's
  shapes (SDPA's memory-efficient kernels keep no attention matrix):
  encoder layer  4 d + 4 inner + 3 ff      (norm inputs/outputs, q/k/v and attention output,
                                            SwiGLU gate/up and product)
  decoder layer  6 d + 6 inner + 3 ff      (plus the cross-attention query/output and norm) and
                 2 inner per *encoder* token (its cross-attention keys/values)
  output         target tokens x vocab x 4 bytes x 2 (fp32 logits and their gradient);
  with activation checkpointing only each layer's input (d per token) is kept, plus one layer's
  activations while it is recomputed.

These are estimates (allocator fragmentation, CUDA context and temporary buffers add roughly
10-20%); `memory_gb` in metrics.jsonl is the measured peak on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

from unio.model.transformer import ModelConfig

GiB = 2**30


@dataclass
class MemoryEstimate:
    parameters: int
    weights_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    activations_checkpointed_gb: float

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.gradients_gb + self.optimizer_gb + self.activations_gb

    @property
    def total_checkpointed_gb(self) -> float:
        return self.weights_gb + self.gradients_gb + self.optimizer_gb + self.activations_checkpointed_gb


def estimate_training_memory(
    cfg: ModelConfig, batch_size: int, input_len: int, target_len: int, activation_bytes: int = 2
) -> MemoryEstimate:
    """Memory of one training step at `batch_size` x (`input_len` + `target_len`) tokens."""
    params = cfg.num_parameters()
    d, inner, ff = cfg.d_model, cfg.inner_dim, cfg.d_ff
    enc_tokens, dec_tokens = batch_size * input_len, batch_size * target_len
    encoder_layer = (4 * d + 4 * inner + 3 * ff) * enc_tokens
    decoder_layer = (6 * d + 6 * inner + 3 * ff) * dec_tokens + 2 * inner * enc_tokens
    layers = cfg.n_encoder_layers * encoder_layer + cfg.n_decoder_layers * decoder_layer
    logits_bytes = dec_tokens * cfg.vocab_size * 4 * 2
    full = layers * activation_bytes + logits_bytes
    kept_inputs = (cfg.n_encoder_layers * enc_tokens + cfg.n_decoder_layers * dec_tokens) * d
    one_layer = max(encoder_layer, decoder_layer)
    checkpointed = (kept_inputs + one_layer) * activation_bytes + logits_bytes
    return MemoryEstimate(
        params, params * 4 / GiB, params * 4 / GiB, params * 8 / GiB, full / GiB, checkpointed / GiB
    )


def largest_batch(
    cfg: ModelConfig, input_len: int, target_len: int, budget_gb: float, checkpointing: bool
) -> int:
    """The largest per-GPU batch whose estimate fits `budget_gb` (0 if not even one example fits)."""
    best, batch = 0, 1
    while batch <= 1 << 16:
        est = estimate_training_memory(cfg, batch, input_len, target_len)
        total = est.total_checkpointed_gb if checkpointing else est.total_gb
        if total > budget_gb:
            break
        best, batch = batch, batch * 2
    if best == 0:
        return 0
    low, high = best, best * 2  # binary search between the last fitting power of two and the next
    while high - low > 1:
        mid = (low + high) // 2
        est = estimate_training_memory(cfg, mid, input_len, target_len)
        total = est.total_checkpointed_gb if checkpointing else est.total_gb
        low, high = (mid, high) if total <= budget_gb else (low, mid)
    return low
