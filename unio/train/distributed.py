"""Process-group setup and rank-aware helpers, on PyTorch's own engine (torch.distributed).

One entry, `init_distributed`, covers the three ways a training process is started:

- **torchrun** (single node or multi-node rendezvous): `RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
  `MASTER_ADDR`, `MASTER_PORT` are set by torchrun;
- **SLURM** (`srun`, or the submitit launcher, one process per task): `SLURM_PROCID`, `SLURM_NTASKS`,
  `SLURM_LOCALID`; the rendezvous address is the first host of `SLURM_JOB_NODELIST` (or
  `MASTER_ADDR` when the launch script exports it) and the port `MASTER_PORT` (default 29500);
- **a plain process**: world size 1, no process group.

The backend is NCCL when every rank has a CUDA device and gloo otherwise (CPU tests use 2 gloo
processes). Ranks other than 0 print nothing (`print0`) and log nothing (the trainer passes
`is_main` to the logger), so a 64-GPU job reads like a one-GPU job.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistConfig:
    """How the model is replicated or sharded across processes (conf/dist/*.yaml)."""

    strategy: str = "single"  # single | ddp | fsdp
    backend: str | None = None  # None: nccl when CUDA is available, else gloo
    timeout_minutes: int = 30
    # FSDP2 (`fully_shard`): free the gathered parameters after forward (saves memory, costs one more
    # all-gather in backward).
    reshard_after_forward: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in ("single", "ddp", "fsdp"):
            raise ValueError(f"dist.strategy must be single, ddp or fsdp, got {self.strategy!r}")


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def initialized(self) -> bool:
        return self.world_size > 1


def _launch_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun or SLURM variables; (0, 1, 0) otherwise."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", 1)) > 1:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def _slurm_master_addr() -> str:
    nodes = os.environ.get("SLURM_JOB_NODELIST", "")
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    except FileNotFoundError:
        pass
    # "node[01-04],gpu7" -> "node01": the first host without scontrol
    match = re.match(r"([^,\[]+)(?:\[(\d+)[^\]]*\])?", nodes)
    if not match:
        raise ValueError(
            f"cannot tell the SLURM master node from SLURM_JOB_NODELIST={nodes!r}; export MASTER_ADDR"
        )
    return match.group(1) + (match.group(2) or "")


def init_distributed(cfg: DistConfig, device: str = "auto") -> DistInfo:
    """Join the process group (if launched with several processes) and pick this rank's device."""
    rank, world_size, local_rank = _launch_env()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("trainer.device=cuda but no CUDA device is available; use trainer.device=cpu")
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device(device)
    if world_size == 1:  # dist=ddp/fsdp in one process trains exactly like dist=single
        return DistInfo(0, 1, 0, torch_device)
    if cfg.strategy == "single":
        raise ValueError(f"launched with {world_size} processes but dist=single; use dist=ddp or dist=fsdp")
    if not dist.is_initialized():
        if "RANK" not in os.environ:  # SLURM without torchrun: tell init_process_group where to meet
            os.environ.setdefault("MASTER_ADDR", _slurm_master_addr())
            os.environ.setdefault("MASTER_PORT", "29500")
        backend = cfg.backend or ("nccl" if torch_device.type == "cuda" else "gloo")
        dist.init_process_group(
            backend,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(minutes=cfg.timeout_minutes),
        )
    return DistInfo(rank, world_size, local_rank, torch_device)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.barrier()  # no rank tears down the group while another still has work in flight
        dist.destroy_process_group()


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def print0(*args: Any, **kwargs: Any) -> None:
    """`print` on rank 0 only."""
    if is_main_process():
        print(*args, **kwargs, flush=True)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (e.g. the run directory rank 0 chose)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-element list in a single process)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place (identity in a single process)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor
