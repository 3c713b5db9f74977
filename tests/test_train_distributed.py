"""Data parallel training on CPU with two gloo processes equals one process on the same global batch.

DDP and FSDP2 (`fully_shard`, which runs on CPU with gloo) are both checked against `dist=single`:
20 steps, global batch 8 (one process x 8, or two processes x 4), the same losses to 1e-4 relative.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch.multiprocessing as mp

from tests.train_helpers import compose_train, tiny_overrides, train_losses

STEPS = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, overrides: list[str]) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WANDB_MODE="disabled",
    )
    from unio.train.distributed import shutdown_distributed
    from unio.train.trainer import train

    try:
        train(compose_train(overrides))
    finally:
        shutdown_distributed()


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    from unio.train.trainer import train

    tmp = tmp_path_factory.mktemp("dist")
    overrides = _overrides(tmp, "single")
    train(compose_train(overrides))
    return tmp, train_losses(tmp / "single")


def _overrides(tmp, run: str, *extra: str) -> list[str]:
    return tiny_overrides(
        tmp,
        tmp / "cache",
        f"trainer.max_steps={STEPS}",
        "trainer.val_every=10",
        "trainer.checkpoint_every=10",
        *extra,
        run=run,
    )


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(single_run, strategy):
    tmp, expected = single_run
    overrides = _overrides(tmp, strategy, f"dist={strategy}")
    mp.start_processes(_worker, args=(2, _free_port(), overrides), nprocs=2, join=True, start_method="spawn")
    found = train_losses(tmp / strategy)
    assert sorted(found) == sorted(expected) == list(range(1, STEPS + 1))
    for step in expected:
        assert found[step] == pytest.approx(expected[step], rel=1e-4), (strategy, step)
    # one checkpoint, written by rank 0, loadable by a single process
    from unio.model.checkpoint import load_model
    from unio.train.checkpoint import find_latest

    model, _ = load_model(find_latest(tmp / strategy))
    assert sum(p.numel() for p in model.parameters()) > 0


def test_resume_a_single_process_checkpoint_on_two_processes(single_run):
    """A checkpoint of a 1-process run resumed by 2 DDP processes continues the same global data
    stream (Mixture.seek) and optimizer state: steps 11-20 have the single run's losses."""
    tmp, expected = single_run
    checkpoint = tmp / "single" / "checkpoints" / "step-0000010"
    overrides = _overrides(tmp, "resumed", "dist=ddp", f"resume={checkpoint}")
    mp.start_processes(_worker, args=(2, _free_port(), overrides), nprocs=2, join=True, start_method="spawn")
    found = train_losses(tmp / "resumed")
    assert sorted(found) == list(range(11, STEPS + 1))
    for step in found:
        assert found[step] == pytest.approx(expected[step], rel=1e-4), step
