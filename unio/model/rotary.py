"""Rotary position embeddings: 1-D for sequence tokens, 2-D (row, column) for grid tokens.

Every token carries a 1-D ``position`` and, if it is a grid code (image / mask / audio), its ``row`` and
``col`` (``row >= 0``; ``-1`` otherwise). The head dimension is split into ``head_dim / 2`` rotation
pairs. A sequence token rotates pair ``i`` by ``position * theta**(-2i / head_dim)``. A grid token
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
            (row.float().unsqueeze(-1) * self.inv_freq_2d, col.float().unsqueeze(-1) * self.inv_freq_2d), dim=-1
        )
        return torch.where((row >= 0).unsqueeze(-1), grid, seq)

    def tables(self, position: Tensor, row: Tensor, col: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(cos, sin)`` of shape ``[B, L, 1, head_dim]`` ready to broadcast over heads (layout B L H D)."""
        angle = self.angles(position, row, col)
        angle = torch.cat((angle, angle), dim=-1).unsqueeze(2)
        return angle.cos().to(dtype), angle.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` (``[B, L, H, D]``) pairwise: pair ``i`` is ``(x[..., i], x[..., i + D/2])``."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rotated = torch.cat((-x2, x1), dim=-1)
    return x * cos + rotated * sin
