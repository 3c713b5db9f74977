"""Everything that makes the single-device model run at scale, applied from outside in one fixed order
(torchtitan's `parallelize` pattern): activation checkpointing -> torch.compile -> DDP or FSDP2.

`unio/model/transformer.py` stays plain single-device code; nothing in it knows about processes.

- **Activation checkpointing** wraps every encoder and decoder layer (`checkpoint_wrapper`, non-reentrant):
  a layer's activations are recomputed in backward instead of kept, so activation memory is one layer
  plus the layer inputs. The wrapper strips its prefix from `state_dict`, so checkpoints are unchanged.
- **torch.compile**: the whole model for `single` and `ddp` (DDP's optimizer splits the graph at bucket
  boundaries), each layer for `fsdp` (FSDP2's hooks stay outside the compiled regions).
- **DDP**: gradients averaged over ranks in backward (the trainer scales each rank's loss so the result
  equals one process on the global batch, see trainer.py).
- **FSDP2** (`fully_shard`): parameters, gradients and optimizer state sharded over ranks. Each encoder
  layer is its own unit (gathered for its forward, freed after); the decoder layers stay in the root unit
  with the embeddings, because the encoder computes every decoder layer's cross-attention keys/values in
  one matmul (`UnifiedTransformer.cross_keys_values`) before the decoder runs. Mixed precision: bf16
  parameters with fp32 gradient reduction on CUDA, fp32 on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unio.model.compile import compile_model
from unio.model.transformer import UnifiedTransformer
from unio.train.distributed import DistConfig, DistInfo


@dataclass
class Parallelized:
    model: UnifiedTransformer  # the module whose parameters the optimizer steps and checkpoints save
    train_model: nn.Module  # what the training step calls (possibly compiled / DDP-wrapped)
    fsdp: bool = False


def apply_activation_checkpointing(model: UnifiedTransformer) -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
        CheckpointImpl,
        checkpoint_wrapper,
    )

    for layers in (model.encoder_layers, model.decoder_layers):
        for i, layer in enumerate(layers):
            layers[i] = checkpoint_wrapper(layer, checkpoint_impl=CheckpointImpl.NO_REENTRANT)


def parallelize(
    model: UnifiedTransformer,
    dist_cfg: DistConfig,
    info: DistInfo,
    compile: bool = False,
    activation_checkpointing: bool = False,
    bf16: bool = False,
) -> Parallelized:
    """Move `model` to `info.device` and apply the options in the fixed order above."""
    model.to(info.device)
    if activation_checkpointing:
        apply_activation_checkpointing(model)
    if dist_cfg.strategy == "fsdp" and info.world_size > 1:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        if compile:
            for layer in model.encoder_layers:
                layer.compile()
        mesh = init_device_mesh(info.device.type, (info.world_size,))
        policy = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16 if bf16 else torch.float32, reduce_dtype=torch.float32
        )
        for layer in model.encoder_layers:
            fully_shard(
                layer, mesh=mesh, mp_policy=policy, reshard_after_forward=dist_cfg.reshard_after_forward
            )
        fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=dist_cfg.reshard_after_forward)
        return Parallelized(model, model, fsdp=True)
    train_model: nn.Module = model
    if dist_cfg.strategy == "ddp" and info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [info.device.index] if info.device.type == "cuda" else None
        train_model = DistributedDataParallel(model, device_ids=ids)
    if compile:
        # one process: the model's own compile entry (unio/model/compile.py); DDP: compile the wrapper,
        # so DDP's optimizer can split the graph at its bucket boundaries
        train_model = (
            compile_model(model) if train_model is model else torch.compile(train_model, dynamic=False)
        )
    return Parallelized(model, train_model)
