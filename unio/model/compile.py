"""``torch.compile`` for the unified transformer, applied from outside the model.

The model code stays plain eager, single-device PyTorch (transformer.py); this module is the one
place that knows how to compile it. Compiling fuses the elementwise work around the matmuls
(RMSNorm, SwiGLU gating, residual adds, rotary, the backward of each) into generated C++ loops, which
on CPU makes a training step of the benchmark config about 15-20% faster than eager (docs/benchmarks.md).
Compilation costs one to two minutes on a 2-core CPU at the first call of each new input shape, so it
pays off for training runs, not for a handful of steps. A collator that pads lengths to a multiple of 8
keeps the number of distinct shapes (and recompilations) small.

Decoding is not compiled: one decoder step is a few small matmuls over cached keys/values, and a
compiled step measured no faster than eager while costing minutes of compilation.
"""

from __future__ import annotations

import torch

from unio.model.transformer import UnifiedTransformer


def compile_model(model: UnifiedTransformer, mode: str | None = None, dynamic: bool | None = False):
    """A compiled view of ``model`` for training: call it like the model (``compiled(**inputs)``).

    Parameters, buffers and ``state_dict`` are shared with ``model`` (the wrapper holds no copy), so
    optimisers, checkpoints and `unio.model.generate` keep using ``model`` itself.

    mode: ``torch.compile`` mode (``None`` = default; ``"max-autotune-no-cudagraphs"`` compiles
        much longer for a few percent).
    dynamic: ``False`` specialises on each input shape (fastest kernels; padded lengths keep the
        shapes few), ``None`` lets torch decide after a recompilation.
    """
    if not isinstance(model, UnifiedTransformer):
        raise TypeError(f"compile_model expects a UnifiedTransformer, got {type(model).__name__}")
    return torch.compile(model, mode=mode, dynamic=dynamic)
