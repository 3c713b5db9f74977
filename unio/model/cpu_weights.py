"""Weight layouts for fast decoding on CPU, applied around a `generate` call and undone after it.

A decoding step multiplies every decoder weight matrix by only a few rows (the batch), hundreds of
times with the same weights. CPU GEMMs are tuned for the opposite case, so `generate` re-lays the
weights out for the duration of the call:

- **Prepacked (MKL), at 2 or more rows.** ``cblas_sgemm_pack`` stores a weight in MKL's internal
  blocked format once; every step then skips re-packing it. The decoder's matrices and the output
  projection get a packed copy (`PackedWeight`), which `linear` uses for inputs with exactly that many
  rows. 15-35% faster matmuls at 16 rows on the benchmark machine (docs/benchmarks.md). Costs one
  extra copy of those weights while decoding, so it is skipped above `PACK_MAX_BYTES`.
- **Column-major, at one row (or without MKL).** ``F.linear(x, W)`` multiplies by ``W.T``; with ``W``
  column-major that is a plain row-major matrix, which is faster for a single row (about 10% of a
  batch-1 greedy decode). No extra memory: each matrix is copied into a new storage in place.

Values are identical either way. Training never sees either layout: both are undone when `generate`
returns, and the model code only knows the optional ``packed`` attribute of its `Linear` layers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PACK_MIN_ROWS = 2  # one row: the column-major layout is faster than MKL's packed GEMM
PACK_MAX_BYTES = 2**30  # decoder + output weights above this are not duplicated into packed copies


@dataclass(frozen=True)
class PackedWeight:
    """An MKL-prepacked copy of a ``[out, in]`` weight, for inputs of exactly ``rows`` rows."""

    data: Tensor  # opaque MKL buffer
    rows: int


def linear(x: Tensor, weight: Tensor, packed: PackedWeight | None = None) -> Tensor:
    """``F.linear(x, weight)`` (no bias), through ``packed`` when ``x`` has exactly its row count."""
    if packed is not None and x.numel() == packed.rows * x.shape[-1]:
        rows = x.reshape(packed.rows, x.shape[-1])
        out = torch.ops.mkl._mkl_linear(rows, packed.data, weight, None, packed.rows)
        return out.view(*x.shape[:-1], weight.shape[0])
    return F.linear(x, weight)


class Linear(nn.Linear):
    """Bias-free ``nn.Linear`` that can multiply through a `PackedWeight` (set by `decoding_weights`
    only; it is a plain attribute, not in the state dict)."""

    packed: PackedWeight | None = None

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.packed is None:  # the usual case, without a second Python call per matmul
            return F.linear(x, self.weight)
        return linear(x, self.weight, self.packed)


def mkl_packing_available() -> bool:
    if not torch.backends.mkl.is_available():
        return False
    try:
        torch.ops.mkl._mkl_linear  # noqa: B018 - registered only in MKL builds of torch
        torch.ops.mkl._mkl_reorder_linear_weight  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


def pack(weight: Tensor, rows: int) -> PackedWeight:
    with torch.inference_mode(False), torch.no_grad():
        data = torch.ops.mkl._mkl_reorder_linear_weight(weight.detach().contiguous(), rows)
    return PackedWeight(data, rows)


@contextmanager
def decoding_weights(model: nn.Module, rows: int) -> Iterator[None]:
    """Lay the weights of ``model`` (a `UnifiedTransformer`) out for decoding steps of ``rows`` rows
    while the block runs; restore them afterwards. No-op off CPU."""
    if model.embed.weight.device.type != "cpu":
        yield
        return
    # The matrices a decoding step multiplies by: the decoder's, except the cross-attention keys/values
    # (computed once from the encoder output), and the tied output projection.
    step_layers = [
        m
        for layer in model.decoder_layers
        for m in layer.modules()
        if isinstance(m, Linear) and m is not layer.cross_attn.kv
    ]
    weights = [m.weight for m in step_layers] + [model.embed.weight]
    packed_bytes = sum(w.numel() * w.element_size() for w in weights)
    # MKL's packed GEMM is sgemm on plain tensors only (not e.g. FSDP's sharded DTensor parameters).
    packable = all(type(w.data) is torch.Tensor and w.dtype == torch.float32 for w in weights)
    if rows >= PACK_MIN_ROWS and packable and packed_bytes <= PACK_MAX_BYTES and mkl_packing_available():
        for m in step_layers:
            m.packed = pack(m.weight, rows)
        model.output_packed = pack(model.embed.weight, rows)
        try:
            yield
        finally:
            for m in step_layers:
                m.packed = None
            model.output_packed = None
        return
    with _column_major(model):
        yield


@contextmanager
def _column_major(model: nn.Module) -> Iterator[None]:
    # Only plain, self-owned row-major matrices: a parameter that is a view into a shared buffer
    # (e.g. an FSDP flat parameter) must keep its storage, so it is left as it is. The parameters
    # keep their identity (optimisers are unaffected) but get new storage; peak memory grows by the
    # largest matrix only.
    matrices = [
        p
        for p in model.parameters()
        if p.dim() == 2 and type(p.data) is torch.Tensor and p.data._base is None and p.is_contiguous()
    ]
    with torch.inference_mode(False), torch.no_grad():
        for p in matrices:
            p.data = p.data.t().contiguous().t()
    try:
        yield
    finally:
        with torch.inference_mode(False), torch.no_grad():
            for p in matrices:
                p.data = p.data.contiguous()
