"""Rotary position embeddings: 1-D for sequence tokens, 2-D (row, column) for grid tokens.

Every token carries a 1-D ``position`` and, if it is a grid code (image / mask / audio), its ``row`` and
``col`` (``row >= 0``; ``-1`` otherwise). The head dimension is split into ``head_dim / 2`` rotation
pairs of adjacent channels ``(2i, 2i + 1)``, rotated as one complex multiplication (one kernel
forward and backward, about half the memory traffic of the rotate-half formulation). A sequence token rotates pair ``i`` by ``position * theta**(-2i / head_dim)``. A grid token
rotates the first half of the pairs by ``row * theta**(-4j / head_dim)`` and the second half by
``col * theta**(-4j / head_dim)`` (axial 2-D RoPE), so the attention score between two grid codes
depends only on their row and column offsets. The choice is made per token, so one attention call
mixes both kinds (text attends to image codes and vice versa).

The angles are computed once per stack (encoder or decoder) and shared by all its layers.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Rotary(torch.nn.Module):
    """Computes ``(cos, sin)`` tables from token metadata and applies them to queries and keys."""

    def __init__(self, head_dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 4 != 0:
            raise ValueError(f"Rotary: head_dim must be a multiple of 4 for 2-D rotary, got {head_dim}")
        self.head_dim = head_dim
        pairs = head_dim // 2
        inv_freq_1d = theta ** (-torch.arange(pairs, dtype=torch.float64) * 2 / head_dim)
        inv_freq_2d = theta ** (-torch.arange(pairs // 2, dtype=torch.float64) * 4 / head_dim)
        self.register_buffer("inv_freq_1d", inv_freq_1d.float(), persistent=False)
        self.register_buffer("inv_freq_2d", inv_freq_2d.float(), persistent=False)

    def angles(self, position: Tensor, row: Tensor, col: Tensor) -> Tensor:
        """Rotation angle per token and pair: ``[B, L, head_dim / 2]`` (float32)."""
        seq = position.float().unsqueeze(-1) * self.inv_freq_1d
        grid = torch.cat(
            (row.float().unsqueeze(-1) * self.inv_freq_2d, col.float().unsqueeze(-1) * self.inv_freq_2d),
            dim=-1,
        )
        return torch.where((row >= 0).unsqueeze(-1), grid, seq)

    def tables(self, position: Tensor, row: Tensor, col: Tensor) -> Tensor:
        """Unit complex rotations ``[B, L, 1, 1, head_dim / 2]`` (complex64), broadcasting over a
        ``[B, L, n, H, head_dim / 2]`` stack of complex queries/keys."""
        angle = self.angles(position, row, col)
        return torch.polar(torch.ones_like(angle), angle)[:, :, None, None, :]


def apply_rotary(x: Tensor, rotation: Tensor) -> Tensor:
    """Rotate channel pairs ``(x[..., 2i], x[..., 2i + 1])`` of ``x`` (``[B, L, n, H, D]``) by ``rotation``."""
    dtype = x.dtype
    if dtype not in (torch.float32, torch.float64):
        x = x.float()  # complex arithmetic needs fp32; low-precision activations round-trip
    pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotation).flatten(-2).to(dtype)
