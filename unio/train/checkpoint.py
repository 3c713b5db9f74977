"""Training checkpoints: atomic, resumable, rotated.

Layout inside the run directory:

    tokenizers/                      the tokenizer bundle, written once (unio/model/checkpoint.py)
    checkpoints/step-0000200/        model.safetensors, model_config.json, vocabulary.json,
                                     tokenizers/ (hard links), optimizer.pt, trainer_state.json
    checkpoints/latest               "step-0000200": the newest complete checkpoint
    checkpoints/.tmp-step-0000300/   a checkpoint being written (never read; removed on the next save)

A checkpoint is written into `.tmp-step-N/`, `trainer_state.json` last, then the directory is renamed
to `step-N/` and `latest` is rewritten atomically. A process killed at any point leaves either no
`step-N/` or a complete one, so `resume=auto` can only load complete checkpoints; it still checks
that `trainer_state.json` exists and falls back to the newest complete `step-*` if `latest` is stale.

Distributed: FSDP2 parameters and optimizer state are gathered to full tensors on CPU
(`torch.distributed.checkpoint.state_dict`, `full_state_dict=True`) and rank 0 writes one ordinary
checkpoint, readable by a single process (evaluation, inference) and loadable by any world size
(every rank reads the files and `set_*_state_dict` shards them again). This costs one full copy of
the model and optimizer in rank 0's CPU memory; for models beyond that, switch to sharded
`torch.distributed.checkpoint.save` (docs/training.md says when).

`optimizer.pt` is loaded with `torch.load(weights_only=True)`; `trainer_state.json` is plain JSON
(step, the mixture position of every rank, every rank's RNG states, best validation loss, counters).
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from unio.atomic import atomic_write_text
from unio.model.checkpoint import (
    CHECKPOINTS,
    LATEST,
    STATE,
    TOKENIZERS,
    find_latest,
    list_checkpoints,
    read_model_config,
    read_tokenizer_fingerprints,
    resolve_checkpoint,
    save_model_files,
    step_dir_name,
)
from unio.model.transformer import ModelConfig, UnifiedTransformer
from unio.vocab import Vocabulary

OPTIMIZER = "optimizer.pt"
FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


# --------------------------------------------------------------------------------------- RNG
def rng_state() -> str:
    """This process's torch / CUDA / numpy / Python RNG states, as one base64 string (JSON-safe)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return base64.b64encode(buffer.getvalue()).decode()


def set_rng_state(encoded: str) -> None:
    state = torch.load(io.BytesIO(base64.b64decode(encoded)), weights_only=True)
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------------------- saving
def save_checkpoint(
    run_dir: Path,
    step: int,
    model: UnifiedTransformer,
    optimizer: torch.optim.Optimizer,
    model_config: ModelConfig,
    vocab: Vocabulary,
    state: dict[str, Any],
    keep_last: int,
    keep_best: bool,
    is_main: bool,
    fault_kill_mid_write: bool = False,
) -> Path:
    """Write checkpoint `step` (collective: every rank calls it). `state` is the trainer state (JSON);
    every rank's RNG state is gathered into it here. Returns the checkpoint directory."""
    model_state = get_model_state_dict(model, options=FULL)
    optim_state = get_optimizer_state_dict(model, optimizer, options=FULL)
    rngs = [rng_state()]
    if dist.is_initialized():
        rngs = [None] * dist.get_world_size()
        dist.all_gather_object(rngs, rng_state())
    root = Path(run_dir) / CHECKPOINTS
    final = root / step_dir_name(step)
    if is_main:
        tmp = root / f".tmp-{step_dir_name(step)}"
        shutil.rmtree(tmp, ignore_errors=True)
        save_model_files(tmp, model_state, model_config, vocab, Path(run_dir) / TOKENIZERS)
        with open(tmp / OPTIMIZER, "wb") as f:
            torch.save(optim_state, f)
            f.flush()
            os.fsync(f.fileno())
        if fault_kill_mid_write:  # tests: a process killed while writing leaves only the temp dir
            os.kill(os.getpid(), 9)
        (tmp / STATE).write_text(json.dumps({**state, "step": step, "rng": rngs}, indent=1) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_text(root / LATEST, final.name + "\n")
        _rotate(run_dir, keep_last, state.get("best_step") if keep_best else None)
    if dist.is_initialized():
        dist.barrier()
    return final


def _rotate(run_dir: Path, keep_last: int, best_step: int | None) -> None:
    """Delete all but the newest `keep_last` checkpoints and the best one; clear stale temp dirs."""
    complete = list_checkpoints(run_dir)
    keep = {p.name for p in complete[-keep_last:]} if keep_last > 0 else {p.name for p in complete}
    if best_step is not None:
        keep.add(step_dir_name(best_step))
    for path in complete:
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    for path in (Path(run_dir) / CHECKPOINTS).glob(".tmp-step-*"):
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------- loading
def check_fingerprints(checkpoint: Path, expected: dict[str, str]) -> None:
    """Refuse a checkpoint whose vocabulary or tokenizers differ from the configured ones."""
    found = read_tokenizer_fingerprints(checkpoint / TOKENIZERS)
    changed = [
        f"{name}: checkpoint {found.get(name)} vs configured {value}"
        for name, value in expected.items()
        if found.get(name) != value
    ]
    if changed:
        raise ValueError(
            f"{checkpoint} was trained with other tokenizers or another vocabulary ({'; '.join(changed)}); "
            "configure the same tokenizers, or start a new run (resume=never or another run_dir)"
        )


# ModelConfig fields that steer only training: a resumed run may change them
TRAINING_ONLY_FIELDS = ("condition_dropout", "init_std")


def check_model_config(checkpoint: Path, expected: ModelConfig) -> None:
    """Refuse a checkpoint whose model differs from the configured one. Some changes (n_heads with
    the same width, rope_theta, norm_eps) leave every weight's shape alone, so the strict weight
    load alone would resume them silently as another model."""
    found = json.loads(json.dumps(asdict(read_model_config(checkpoint))))
    wanted = json.loads(json.dumps(asdict(expected)))
    changed = [
        f"{name}: checkpoint {found.get(name)!r} vs configured {value!r}"
        for name, value in wanted.items()
        if name not in TRAINING_ONLY_FIELDS and found.get(name) != value
    ]
    if changed:
        raise ValueError(
            f"{checkpoint} holds another model ({'; '.join(changed)}); configure the same model, or "
            "start a new run (resume=never or another run_dir)"
        )


def load_checkpoint(
    checkpoint: Path, model: UnifiedTransformer, optimizer: torch.optim.Optimizer | None
) -> dict[str, Any]:
    """Load weights (and optimizer state) into the (possibly sharded) model on every rank; returns
    the trainer state. The RNG state of this rank is restored by the caller (`set_rng_state`)."""
    from safetensors.torch import load_file

    state_file = checkpoint / STATE
    try:
        state = json.loads(state_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{state_file}: unreadable trainer state ({err})") from None
    weights = load_file(str(checkpoint / "model.safetensors"))
    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=True))
    if optimizer is not None:
        optim_state = torch.load(checkpoint / OPTIMIZER, map_location="cpu", weights_only=True)
        set_optimizer_state_dict(
            model, optimizer, optim_state, options=StateDictOptions(full_state_dict=True)
        )
    return state


__all__ = [
    "check_model_config",
    "find_latest",
    "list_checkpoints",
    "load_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
    "step_dir_name",
]
