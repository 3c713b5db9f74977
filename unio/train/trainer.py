"""Training the unified encoder-decoder: one explicit loop, readable top to bottom.

    pretokenized mixture -> Collator -> UnifiedTransformer -> SequenceLoss -> AdamW

`train(cfg)` does, in order: join the process group; pick the run directory (rank 0 decides, every rank
uses it); build the tokenizers; pretokenize the configured data if its cache is missing (rank 0, the
same fingerprints and cache as `unio-pretokenize`, so a second run reuses it); build the model, wrap it
(unio/train/parallelize.py), build AdamW; resume from the newest complete checkpoint (`resume=auto`);
then loop over optimizer steps.

One optimizer step = `grad_accum` micro-batches per rank, `trainer.batch_size` examples in all.
The loss of the step is the mean cross-entropy over every target token of the global batch: each
micro-batch's summed CE is divided by the global token count (one all-reduce of the counts before the
backward passes) and multiplied by the world size, because DDP and FSDP average gradients over ranks.
So 2 ranks x batch B/2 compute the same gradient as 1 process x batch B, whatever the padding.

Per step: condition dropout (a fraction `model.condition_dropout` of rows get the null condition, for
classifier-free guidance; drawn from a generator keyed by (seed, step, rank, micro-batch), so it does
not depend on RNG history and resumes exactly), clipping, the learning rate of the step
(unio/train/optim.py), and the non-finite guard: a NaN/inf loss or gradient norm skips the update, is
logged and counted, and `trainer.max_nonfinite` in a row abort the run, naming the step and the last
good checkpoint. SIGTERM / SIGUSR1 (SLURM preemption) finish the current step, write a checkpoint and
return with status "preempted"; `resume=auto` continues exactly.

Exact resume: the data order is the mixture's position (saved per rank), the schedule is a function of
the step, condition dropout is keyed by the step, and RNG states are restored: N steps, a kill, and N
more steps give the same losses as 2N steps in one go (tests/test_train.py).
"""

from __future__ import annotations

import math
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from unio.atomic import atomic_write_text
from unio.data.collate import IGNORE_INDEX, Collator, CollatorConfig
from unio.data.mixture import Mixture, MixtureConfig
from unio.data.pretokenize import PretokenizeConfig, load_pretokenized, pretokenize
from unio.model.benchmark import matmul_peak_flops
from unio.model.checkpoint import TOKENIZERS, load_tokenizers, save_tokenizers
from unio.model.guidance import drop_condition
from unio.model.loss import LossConfig, SequenceLoss
from unio.model.patches import check_task_inputs
from unio.model.transformer import (
    AUDIO_KEY,
    IMAGE_KEY,
    MODEL_INPUT_KEYS,
    PATCH_KEYS,
    SEGMENT_KEYS,
    ModelConfig,
    UnifiedTransformer,
    build_model,
)
from unio.tasks import make_task
from unio.tasks.bundle import Tokenizers
from unio.train import checkpoint as ckpt
from unio.train.distributed import (
    DistConfig,
    DistInfo,
    all_gather_object,
    all_reduce_sum,
    barrier,
    broadcast_object,
    init_distributed,
    print0,
)
from unio.train.optim import OptimConfig, build_optimizer, learning_rate, set_learning_rate
from unio.train.parallelize import parallelize
from unio.train.run_logger import METRICS, LoggerConfig, RunLogger, plot_loss_curve


@dataclass
class FaultConfig:
    """Deterministic fault injection, for the tests of the fault handling (never set in real runs)."""

    nan_at_steps: list[int] = field(default_factory=list)  # make the loss NaN at these steps
    kill_at_step: int | None = None  # SIGKILL this process after this step (no checkpoint)
    kill_in_checkpoint_at_step: int | None = None  # SIGKILL while writing this step's checkpoint
    sigterm_at_step: int | None = None  # send SIGTERM to this process after this step


@dataclass
class TrainerConfig:
    max_steps: int = 1000
    batch_size: int = 32  # global: examples per optimizer step over all ranks and micro-batches
    grad_accum: int = 1
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16
    compile: bool = False  # torch.compile (minutes of compilation on CPU; pays off on long runs)
    activation_checkpointing: bool = False
    seed: int = 0
    num_threads: int | None = None  # torch intra-op threads (None: torch's default)
    pack: bool = False  # pack several short examples per row (needs length limits, see collate.py)
    pad_to_multiple: int = 8
    prefetch: int = 2  # batches collated ahead in a background thread (0 = inline)
    log_every: int = 10
    val_every: int = 250  # 0 = only at the end
    val_examples: int = 64  # per validation component (dataset/task with train: false)
    val_batch_size: int = 32
    checkpoint_every: int = 500  # also at the end and on SIGTERM/SIGUSR1
    keep_last: int = 2
    keep_best: bool = True  # also keep the checkpoint with the lowest validation loss
    max_nonfinite: int = 5  # consecutive non-finite steps before the run aborts
    progress_bar: bool = True
    peak_flops: float | None = None  # per device, for MFU; None = measured with a matmul at start
    loss: LossConfig = field(default_factory=LossConfig)
    fault: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "grad_accum", "log_every", "max_nonfinite"):
            if getattr(self, name) < 1:
                raise ValueError(f"trainer.{name} must be >= 1, got {getattr(self, name)}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"trainer.precision must be auto, fp32 or bf16, got {self.precision!r}")


@dataclass
class TrainConfig(PretokenizeConfig):
    """Everything `unio-train` reads (conf/train.yaml). The pretokenization fields (data, tokenizers,
    cache_dir, length limits, bad-sample policy) are inherited, so the cache is the one
    `unio-pretokenize` builds from the same data config."""

    model: ModelConfig = field(default_factory=ModelConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    run_dir: str | None = None  # default runs/<experiment or "train">/<timestamp>
    experiment_name: str | None = None  # set by the entry point from the chosen experiment
    resume: str = "auto"  # auto (newest complete checkpoint of run_dir) | never | <checkpoint dir>
    # Task metrics (generation + unio.eval scorers) beside the validation loss, on the first
    # trainer.val_examples items of each validation task; the entry point builds the hook.
    val_metrics: bool = False

    def pretokenize_config(self) -> PretokenizeConfig:
        return PretokenizeConfig(**{f.name: getattr(self, f.name) for f in fields(PretokenizeConfig)})


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # completed | preempted
    steps: int  # optimizer steps taken by this call
    final_step: int
    first_loss: float | None
    last_loss: float | None
    nonfinite_steps: int
    checkpoint: Path | None
    # Wall-clock accounting of this call's loop (steps after the first, which pays for warm-up):
    # seconds, real tokens, and the seconds spent in checkpoint writes and validation.
    timing: dict[str, float] = field(default_factory=dict)


class NonFiniteLossError(ValueError):
    """Training diverged (too many non-finite steps in a row): a run-level failure the command line
    reports in one line (a ValueError), not a bug with a traceback."""


# --------------------------------------------------------------------------------------- data
class BatchStream:
    """Collated batches of one rank, each with the mixture state *after* it, so a checkpoint saves the
    position of what was consumed, not of what a prefetching thread already read."""

    def __init__(self, mixture: Mixture, collator: Collator, batch_size: int, prefetch: int) -> None:
        self.mixture, self.collator, self.batch_size = mixture, collator, batch_size
        self._examples = iter(mixture)
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        if prefetch > 0:
            self._queue = queue.Queue(maxsize=prefetch)
            self._thread = threading.Thread(target=self._produce, daemon=True, name="unio-batches")
            self._thread.start()

    def _make(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        examples = [next(self._examples) for _ in range(self.batch_size)]
        state = self.mixture.state_dict()
        return self.collator(examples), state

    def _produce(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._make()
            except BaseException as err:  # surfaced in the training thread by __next__
                item = err
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def __next__(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if self._queue is None:
            return self._make()
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        if self._queue is not None:
            self._thread.join(timeout=5)


def _validation_batches(
    components: dict[str, Any], collator: Collator, info: DistInfo, limit: int, batch_size: int
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """This rank's share of the first `limit` examples of every validation component, as batches plus
    a per-row weight (0 for the filler rows that keep every rank's batch count equal, which FSDP's
    collective forward needs)."""
    work: list[tuple[dict, float]] = []
    for name, data in components.items():
        n = min(limit, len(data))
        per_rank = -(-n // info.world_size)
        for j in range(per_rank):
            index = info.rank + j * info.world_size
            real = index < n
            row = dict(data[index if real else 0])
            row["component"] = name
            work.append((row, 1.0 if real else 0.0))
    for start in range(0, len(work), batch_size):
        chunk = work[start : start + batch_size]
        yield collator([row for row, _ in chunk]), torch.tensor([w for _, w in chunk])


# --------------------------------------------------------------------------------------- setup
def _run_dir(cfg: TrainConfig, info: DistInfo) -> Path:
    path = cfg.run_dir
    if path is None and info.is_main:
        path = f"runs/{cfg.experiment_name or 'train'}/{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    path = Path(broadcast_object(path))
    if info.is_main:
        path.mkdir(parents=True, exist_ok=True)
    barrier()
    return path


def _tokenizers(cfg: TrainConfig, run_dir: Path, info: DistInfo) -> Tokenizers:
    tok = Tokenizers.from_config(cfg.tokenizers)
    saved = run_dir / TOKENIZERS
    if info.is_main:
        if saved.is_dir():
            stored = load_tokenizers(saved)
            if stored.fingerprints() != tok.fingerprints():
                raise ValueError(
                    f"{saved} holds other tokenizers ({stored.fingerprints()}) than configured "
                    f"({tok.fingerprints()}); use another run_dir"
                )
        else:
            tmp = run_dir / f".{TOKENIZERS}.tmp"
            save_tokenizers(tok, tmp)
            tok.vocab.to_json(tmp.parent / "vocabulary.json")
            tmp.rename(saved)
    barrier()
    return tok


def _data(cfg: TrainConfig, tok: Tokenizers, info: DistInfo) -> tuple[dict, dict]:
    """(training components, validation components); rank 0 builds any missing cache first."""
    if info.is_main:
        pretokenize(cfg.pretokenize_config(), tok, log=print0, progress=cfg.trainer.progress_bar)
    barrier()
    train = {k: v for k, v in cfg.data.items() if v.train}
    val = {k: v for k, v in cfg.data.items() if not v.train}
    if not train:
        raise ValueError(f"no training data: every dataset in `data` ({sorted(cfg.data)}) has train: false")
    return load_pretokenized(cfg.cache_dir, train, tok), (
        load_pretokenized(cfg.cache_dir, val, tok) if val else {}
    )


# --------------------------------------------------------------------------------------- training
def train(
    cfg: TrainConfig,
    val_hook: Callable[[UnifiedTransformer, Tokenizers, int], dict[str, float]] | None = None,
) -> TrainResult:
    """Run (or resume) training as configured; see the module docstring. `val_hook(model, tok, step)`
    may add task metrics (e.g. from unio.eval) to each validation record."""
    tcfg = cfg.trainer
    if tcfg.num_threads:
        torch.set_num_threads(tcfg.num_threads)
    info = init_distributed(cfg.dist, tcfg.device)
    micro = tcfg.batch_size // (info.world_size * tcfg.grad_accum)
    if micro * info.world_size * tcfg.grad_accum != tcfg.batch_size:
        raise ValueError(
            f"trainer.batch_size={tcfg.batch_size} is not divisible by world_size ({info.world_size}) "
            f"x trainer.grad_accum ({tcfg.grad_accum})"
        )
    # Fail before pretokenizing when the model cannot embed a task's patch inputs; a stem no task
    # feeds is not built (it would get no gradient: no optimizer state to checkpoint, DDP would stall).
    used_stems = check_task_inputs(
        cfg.model.patch_stem,
        cfg.model.audio_stem,
        {
            f"data.{d}.tasks.{n}": make_task(n, **(o or {}))
            for d, e in cfg.data.items()
            for n, o in e.tasks.items()
        },
        "unio-train",
    )
    torch.manual_seed(tcfg.seed)
    run_dir = _run_dir(cfg, info)
    tok = _tokenizers(cfg, run_dir, info)
    train_components, val_components = _data(cfg, tok, info)
    total = tcfg.max_steps * tcfg.batch_size
    mixture = Mixture(train_components, cfg.mixture, info.rank, info.world_size, total)
    if cfg.mixture.warmup_fraction:
        warm = {k: round(v, 3) for k, v in mixture.warmup_rates().items() if v}
        print0(
            f"visual warm-up: the first {mixture.warmup_examples} examples from {warm}"
            if warm
            else f"no visual warm-up: mixture.warmup_weights {dict(cfg.mixture.warmup_weights)} name no training task"
        )
    groups = tuple(train_components) + tuple(n for n in val_components if n not in train_components)
    collator = Collator(
        tok.vocab.bos_id,
        tok.vocab.pad_id,
        CollatorConfig(tcfg.pad_to_multiple, cfg.max_input_len, cfg.max_target_len, tcfg.pack, groups=groups),
    )
    # validation weighs whole rows (filler rows count 0), so it never packs
    val_collator = Collator(tok.vocab.bos_id, tok.vocab.pad_id, replace(collator.config, pack=False))
    torch.manual_seed(tcfg.seed)  # the same initial weights on every rank, whatever ran before
    unused = {name: None for name in ("patch_stem", "audio_stem") if name not in used_stems}
    model = build_model(replace(cfg.model, **unused), tok.vocab)
    model_config = model.config
    bf16 = tcfg.precision == "bf16" or (tcfg.precision == "auto" and info.device.type == "cuda")
    wrapped = parallelize(
        model,
        cfg.dist,
        info,
        tcfg.compile,
        tcfg.activation_checkpointing,
        bf16 and cfg.dist.strategy == "fsdp",
    )
    optimizer = build_optimizer(wrapped.model, cfg.optim)
    loss_fn = SequenceLoss(tok.vocab, tcfg.loss)

    # ---- resume
    state: dict[str, Any] = {
        "step": 0,
        "examples": 0,  # global examples consumed (all ranks), for resuming with another world size
        "nonfinite_steps": 0,
        "best_val_loss": None,
        "best_step": None,
    }
    source = None
    if cfg.resume == "auto":
        source = ckpt.find_latest(run_dir)
    elif cfg.resume != "never":
        source = ckpt.resolve_checkpoint(cfg.resume)
    if source is not None:
        ckpt.check_fingerprints(source, tok.fingerprints())
        ckpt.check_model_config(source, model_config)
        loaded = ckpt.load_checkpoint(source, wrapped.model, optimizer)
        state.update({k: loaded[k] for k in state if k in loaded})
        if loaded.get("world_size", info.world_size) == info.world_size:
            mixture.load_state_dict(loaded["mixture"][info.rank])
            ckpt.set_rng_state(loaded["rng"][info.rank])
        else:  # another world size: continue the global stream where the old ranks left it together
            mixture.seek(state["examples"])
            print0(f"resuming {source} with world size {info.world_size} (was {loaded['world_size']})")
        print0(f"resumed from {source} at step {state['step']}")

    config_dict = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    if info.is_main:
        atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(config_dict))
    logger = RunLogger(cfg.logger, run_dir, config_dict, info.is_main, resume_step=state["step"])
    if not tcfg.peak_flops:  # MFU's denominator: the best dense matmul of this device and dtype
        size = 2048 if info.device.type == "cuda" else 1024
        dtype = torch.bfloat16 if bf16 else torch.float32
        peak = matmul_peak_flops(size, repeats=4, device=info.device, dtype=dtype)
    else:
        peak = tcfg.peak_flops
    print0(
        f"training {model_config.num_parameters() / 1e6:.2f}M parameters on {info.world_size} x "
        f"{info.device.type}, {len(train_components)} training components, run dir {run_dir}"
    )

    # ---- signals: finish the step, checkpoint, exit cleanly
    stop_signal: list[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            previous[sig] = signal.signal(sig, lambda signum, _frame: stop_signal.append(signum))

    start_step = state["step"]
    consumed_state = mixture.state_dict()  # before the stream starts: from then on only its thread reads it
    stream = BatchStream(mixture, collator, micro, tcfg.prefetch)
    first_loss = last_loss = None
    consecutive_nonfinite = 0
    last_checkpoint = ckpt.find_latest(run_dir)
    num_groups = len(groups)
    window = {"tokens": 0.0, "input_tokens": 0.0, "target_tokens": 0.0, "time": 0.0, "steps": 0}
    is_ddp = cfg.dist.strategy == "ddp" and info.world_size > 1
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and not wrapped.fsdp else nullcontext()
    bar = tqdm(
        total=tcfg.max_steps,
        initial=start_step,
        disable=not (info.is_main and tcfg.progress_bar),
        unit="step",
        dynamic_ncols=True,
    )
    status = "completed"
    timing = {"loop_tokens": 0.0, "checkpoint_seconds": 0.0, "validation_seconds": 0.0}
    loop_start = time.perf_counter()

    def save(step: int, val_loss: float | None) -> Path:
        mixtures = all_gather_object(consumed_state)
        extra = {"mixture": mixtures, "world_size": info.world_size, "val_loss": val_loss}
        kill = tcfg.fault.kill_in_checkpoint_at_step == step
        return ckpt.save_checkpoint(
            run_dir,
            step,
            wrapped.model,
            optimizer,
            model_config,
            tok.vocab,
            {**state, **extra},
            tcfg.keep_last,
            tcfg.keep_best,
            info.is_main,
            fault_kill_mid_write=kill,
        )

    try:
        wrapped.train_model.train()
        for step in range(start_step, tcfg.max_steps):
            step_start = time.perf_counter()
            batches = []
            for _ in range(tcfg.grad_accum):
                batch, consumed_state = next(stream)
                batches.append(batch)
            counts = torch.tensor([float((b["targets"] != IGNORE_INDEX).sum()) for b in batches])
            global_tokens = float(all_reduce_sum(counts.sum().to(info.device)))
            # stats: ce sum, tokens, real input+target tokens, stop flag, then segments and groups
            n_seg = len(tok.vocab.segment_names)
            stats = torch.zeros(4 + 2 * n_seg + 2 * num_groups, device=info.device)
            for i, batch in enumerate(batches):
                batch = {k: v.to(info.device, non_blocking=True) for k, v in batch.items()}
                if model_config.condition_dropout > 0:
                    key = np.random.SeedSequence([tcfg.seed, step, info.rank, i]).generate_state(1)[0]
                    gen = torch.Generator().manual_seed(int(key))
                    batch = drop_condition(batch, model_config.condition_dropout, tok.vocab, generator=gen)
                sync = nullcontext() if not is_ddp or i == len(batches) - 1 else wrapped.train_model.no_sync()
                with sync:
                    # logits only at real targets: padding would pay the [tokens, vocab] projection
                    real_targets = batch["targets"] != IGNORE_INDEX
                    with autocast:
                        inputs = _model_inputs(batch, model_config)
                        logits = wrapped.train_model(**inputs, logits_mask=real_targets)
                    out = loss_fn(
                        logits,
                        batch["targets"][real_targets],
                        batch["target_group"][real_targets],
                        num_groups,
                    )
                    fault = math.nan if step in tcfg.fault.nan_at_steps else 1.0  # tests: inject a NaN
                    (out.loss * (fault * out.num_tokens * info.world_size / global_tokens)).backward()
                real = float(batch["input_mask"].sum() + batch["decoder_mask"].sum())
                ce_sum = out.ce * (fault * out.num_tokens)
                stats[:4] += torch.stack(
                    [ce_sum, torch.tensor(float(out.num_tokens)), torch.tensor(real), torch.tensor(0.0)]
                ).to(info.device)
                stats[4 : 4 + n_seg] += out.segment_sums
                stats[4 + n_seg : 4 + 2 * n_seg] += out.segment_counts
                stats[4 + 2 * n_seg : 4 + 2 * n_seg + num_groups] += out.group_sums
                stats[4 + 2 * n_seg + num_groups :] += out.group_counts
            if tcfg.fault.sigterm_at_step == step + 1:
                os.kill(os.getpid(), signal.SIGTERM)  # tests: a real signal, handled like SLURM's
            stats[3] = float(bool(stop_signal))
            all_reduce_sum(stats)
            loss = float(stats[0] / stats[1])
            params = [p for p in wrapped.model.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, _clip_value(cfg.optim.grad_clip))
            if hasattr(grad_norm, "full_tensor"):
                grad_norm = grad_norm.full_tensor()
            grad_norm = float(grad_norm)
            lr = learning_rate(step, cfg.optim, tcfg.max_steps)
            if math.isfinite(loss) and math.isfinite(grad_norm):
                set_learning_rate(optimizer, lr)
                optimizer.step()
                consecutive_nonfinite = 0
                first_loss = loss if first_loss is None else first_loss
                last_loss = loss
            else:
                consecutive_nonfinite += 1
                state["nonfinite_steps"] += 1
                logger.log(
                    {
                        "step": step + 1,
                        "event": "nonfinite_loss",
                        "loss": None,
                        "grad_norm": None,
                        "nonfinite_steps": state["nonfinite_steps"],
                        "consecutive": consecutive_nonfinite,
                    }
                )
                print0(f"step {step + 1}: non-finite loss or gradient ({loss}, {grad_norm}); update skipped")
                if consecutive_nonfinite >= tcfg.max_nonfinite:
                    good = (
                        f"the last good checkpoint is {last_checkpoint}"
                        if last_checkpoint
                        else "no checkpoint was written"
                    )
                    raise NonFiniteLossError(
                        f"{consecutive_nonfinite} non-finite steps in a row, the last at step {step + 1}; "
                        f"{good}. Lower optim.lr or raise optim.warmup_steps, then resume"
                    )
            optimizer.zero_grad(set_to_none=True)
            state["step"] = step + 1
            state["examples"] += tcfg.batch_size
            window["time"] += time.perf_counter() - step_start
            if step > start_step:
                timing["loop_tokens"] += float(stats[2])
            window["tokens"] += float(stats[2])
            window["input_tokens"] += float(stats[2] - stats[1])
            window["target_tokens"] += float(stats[1])
            window["steps"] += 1
            done = step + 1

            log_now = done % tcfg.log_every == 0 or done in (tcfg.max_steps, start_step + 1)
            if math.isfinite(loss) and log_now:
                tokens_per_s = window["tokens"] / max(window["time"], 1e-9)
                flops_per_token = _flops_per_token(model_config, window, tcfg.batch_size)
                record = {
                    "step": done, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                    "tokens_per_s": tokens_per_s, "mfu": tokens_per_s * flops_per_token / (peak * info.world_size),
                    "epoch_examples": done * tcfg.batch_size, "nonfinite_steps": state["nonfinite_steps"],
                }  # fmt: skip
                record.update(_breakdown(stats, n_seg, groups, tok))
                record["memory_gb"] = _peak_memory_gb(info.device)
                logger.log(record)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
                window = {"tokens": 0.0, "input_tokens": 0.0, "target_tokens": 0.0, "time": 0.0, "steps": 0}
            bar.update(1)

            val_loss = None
            if val_components and ((tcfg.val_every and done % tcfg.val_every == 0) or done == tcfg.max_steps):
                val_start = time.perf_counter()
                val_loss = _validate(wrapped, val_components, val_collator, info, tcfg, loss_fn, groups, tok)
                timing["validation_seconds"] += time.perf_counter() - val_start
                record = {"step": done, "split": "val", **val_loss}
                if val_hook is not None:
                    record.update(val_hook(wrapped.model, tok, done))
                logger.log(record)
                wrapped.train_model.train()
                val_loss = val_loss["loss"]
                improved = state["best_val_loss"] is None or val_loss < state["best_val_loss"]
                if improved and (done % tcfg.checkpoint_every == 0 or done == tcfg.max_steps):
                    state["best_val_loss"], state["best_step"] = val_loss, done
            stopping = bool(stats[3])  # any rank got SIGTERM/SIGUSR1: all stop at this step
            if stopping or done % tcfg.checkpoint_every == 0 or done == tcfg.max_steps:
                save_start = time.perf_counter()
                last_checkpoint = save(done, val_loss)
                timing["checkpoint_seconds"] += time.perf_counter() - save_start
            if step == start_step:
                loop_start = time.perf_counter()  # the loop clock starts after the warm-up step
            if tcfg.fault.kill_at_step == done:
                os.kill(os.getpid(), signal.SIGKILL)
            if stopping and done < tcfg.max_steps:
                status = "preempted"
                logger.log({"step": done, "event": "preempted", "checkpoint": str(last_checkpoint)})
                print0(
                    f"stopped by a signal at step {done}; checkpoint {last_checkpoint}; run the same command "
                    "with the same run_dir (resume=auto) to continue"
                )
                break
        timing["loop_seconds"] = time.perf_counter() - loop_start
    finally:
        stream.close()
        bar.close()
        logger.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    steps = state["step"] - start_step
    if info.is_main:
        plot_loss_curve(run_dir / METRICS, run_dir / "loss_curve.png")
    if steps == 0 and start_step < tcfg.max_steps:
        raise RuntimeError("training ended without a single optimizer step")
    if steps == 0:
        print0(f"{run_dir}: already trained to step {start_step} (trainer.max_steps={tcfg.max_steps})")
    return TrainResult(
        run_dir,
        status,
        steps,
        state["step"],
        first_loss,
        last_loss,
        state["nonfinite_steps"],
        last_checkpoint,
        timing,
    )


def _model_inputs(
    batch: dict[str, torch.Tensor], config: ModelConfig | None = None
) -> dict[str, torch.Tensor]:
    """The model's keyword inputs from a collated batch: the token streams, plus the segment ids of
    packed rows (block-diagonal attention) and the images / spectrograms of patch inputs when the batch
    has them. With `config` (training), a stem whose input the batch lacks gets an empty batch
    ``[0, C, H, W]``: its parameters then take part with zero gradients, which DDP and FSDP need (every
    rank must reduce the same parameters, whatever its micro-batch holds)."""
    optional = [k for k in (*SEGMENT_KEYS, *PATCH_KEYS) if k in batch]
    inputs = {k: batch[k] for k in (*MODEL_INPUT_KEYS, *optional)}
    for key, stem in ((IMAGE_KEY, config and config.patch_stem), (AUDIO_KEY, config and config.audio_stem)):
        if stem and key not in inputs:
            inputs[key] = torch.zeros((0, stem.channels, *stem.size), device=batch["input_ids"].device)
    return inputs


def _flops_per_token(model_config: ModelConfig, window: dict[str, float], batch_size: int) -> float:
    """Training FLOPs per real token at the window's mean input and target lengths."""
    steps = max(window["steps"], 1)
    input_len = max(1, round(window["input_tokens"] / steps / batch_size))
    target_len = max(1, round(window["target_tokens"] / steps / batch_size))
    return model_config.train_flops_per_token(input_len, target_len)


def _peak_memory_gb(device: torch.device) -> float:
    """Peak memory so far: allocated tensors on CUDA, the process's peak resident set on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def _clip_value(value: float) -> float:
    return value if value > 0 else float("inf")


def _breakdown(stats: torch.Tensor, n_seg: int, groups: tuple[str, ...], tok: Tokenizers) -> dict[str, float]:
    """Per-segment and per-task mean CE from the summed stats vector (only what occurred)."""
    out = {}
    seg_sums, seg_counts = stats[4 : 4 + n_seg], stats[4 + n_seg : 4 + 2 * n_seg]
    for name, s, c in zip(tok.vocab.segment_names, seg_sums.tolist(), seg_counts.tolist()):
        if c > 0:
            out[f"loss/segment/{name}"] = s / c
    g = len(groups)
    group_sums, group_counts = stats[4 + 2 * n_seg : 4 + 2 * n_seg + g], stats[4 + 2 * n_seg + g :]
    for name, s, c in zip(groups, group_sums.tolist(), group_counts.tolist()):
        if c > 0:
            out[f"loss/task/{name}"] = s / c
    return out


@torch.no_grad()
def _validate(wrapped, components, collator, info, tcfg, loss_fn, groups, tok) -> dict[str, float]:
    """Token-mean CE over the validation examples, overall and per component."""
    model = wrapped.train_model
    model.eval()
    num_groups = len(groups)
    n_seg = len(tok.vocab.segment_names)
    stats = torch.zeros(4 + 2 * n_seg + 2 * num_groups, device=info.device)
    for batch, weights in _validation_batches(
        components, collator, info, tcfg.val_examples, tcfg.val_batch_size
    ):
        batch = {k: v.to(info.device) for k, v in batch.items()}
        targets = batch["targets"].masked_fill(weights.to(info.device)[:, None] == 0, IGNORE_INDEX)
        if not bool((targets != IGNORE_INDEX).any()):
            targets = batch["targets"]  # an all-filler batch still runs (FSDP), its stats are dropped
            keep = 0.0
        else:
            keep = 1.0
        logits = model(**_model_inputs(batch))
        out = loss_fn(logits, targets, batch["target_group"], num_groups)
        stats[0] += keep * float(out.ce) * out.num_tokens
        stats[1] += keep * out.num_tokens
        stats[4 + 2 * n_seg : 4 + 2 * n_seg + num_groups] += keep * out.group_sums
        stats[4 + 2 * n_seg + num_groups :] += keep * out.group_counts
        stats[4 : 4 + n_seg] += keep * out.segment_sums
        stats[4 + n_seg : 4 + 2 * n_seg] += keep * out.segment_counts
    all_reduce_sum(stats)
    return {"loss": float(stats[0] / stats[1].clamp(min=1)), **_breakdown(stats, n_seg, groups, tok)}
