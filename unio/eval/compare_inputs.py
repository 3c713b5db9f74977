"""The controlled input comparison of issue #12: does the model see through patch inputs, code inputs,
or neither?

Three arms train the same model (preset, seed, data, steps, batch, optimiser) on one multitask mixture
of shapes-world scenes (classify, vqa, ground, evaluated; caption and detect, auxiliary: trained only)
and are evaluated on held-out scenes:

    patches   the input image as pixels through the model's patch stem (``input_repr: patches``)
    codes     the input image as VQ codes of the configured image tokenizer (``input_repr: codes``)
    blind     the same model given the prompt alone (the image span removed from every input): the
              answer prior, the floor a model that sees must beat

Only the input representation differs: the arms share the text/coordinate tokenizers and vocabulary,
the examples (prompts, items, targets: the same records built with the same seeds), the batch order
(each step draws the same example indices) and the init of every shared weight (the patch stem is
built after the rest of the model, unio/model/transformer.py). The codes and blind arms have no
stem, so their parameter count is the stem's smaller.

Metrics on the held-out scenes (constrained decoding with each task's grammar, greedy): classify =
accuracy, vqa = exact match with the reference answer, ground = fraction of boxes with IoU >= 0.5.
**Image dependence** per task: the mean total variation between the model's teacher-forced next-token
distributions on the target given the scene's own image and given another scene's image (the next
held-out scene's); 0 means the output ignores the image.

The training loop is small and explicit (AdamW, linear warm-up then cosine decay to 0.1 lr, token-mean
cross entropy through `SequenceLoss`) and carries the recipe the probes and these runs found
(docs/results.md): without it every arm learns the answer priors and ignores the image.

- *Dense auxiliary tasks*: captions and detection in the mixture. Every token of their targets
  depends on the image (each object's size, colour and kind; each object's box), so one image gives
  tens of supervised tokens instead of a one-word answer; VQA and grounding reuse what they teach.
- *A visual warm-up*: the first third of the steps draw only classify, ground, caption and detect,
  tasks no text prior solves, so the cross-attention learns to read the image before the
  question-answering task's priors are available (`MixtureConfig.warmup_*` in `unio-train`).
- *Task weights after the warm-up* (`task_weights`): grounding 2x.
- *Coordinate bins matched to the image* (conf/compare_inputs.yaml: 32 bins on 64 px scenes, 2 px
  a bin; 1000 bins make every box coordinate a 1000-way guess).
- The patch stem's defaults (conv stem, feature LayerNorm, sine positions as large as the content).
- *Depth over image tokens*: 16 px patches (4 x 4 on the 64 px scenes, as many as the codes arm's
  codes) with 4 encoder layers (conf/compare_inputs.yaml) find a named shape better than 8 px patches
  with 2 layers, at about the same cost per step.
- *Enough steps*: VQA starts to use the image between 1,700 and 2,400 steps (a run at 1,700 stays
  within 0.1 of the blind prior). Two attention heads of 64 dims instead of four of 32 (the same
  parameters and FLOPs; conf/compare_inputs.yaml) make a CPU step about a fifth cheaper, which is what
  fits 2,400 steps into the budget.
- *Many scenes*: 16,000 training scenes, so that each is seen about once per task (grounding
  generalised better than with 4,000 scenes seen several times each).

The arms run at once, each in its own single-threaded process (`parallel_arms`): the tiny model's
matmuls are too small to use two threads well, so on 2 cores three one-thread processes finish about
1.3x sooner than the arms one after another on two threads. A one-thread arm gives the same numbers
in a worker process and in-process (tested), whatever the machine's core count.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from unio.data.collate import IGNORE_INDEX, Collator
from unio.data.sources.shapes import ShapesConfig, ShapesSource
from unio.eval.dense import box_iou
from unio.eval.evaluate import references
from unio.eval.image_dependence import total_variation
from unio.eval.metrics import HEADLINE, METRICS
from unio.model.loss import LossConfig, SequenceLoss, per_example_weights
from unio.model.patches import PatchStemConfig
from unio.model.transformer import ModelConfig, UnifiedTransformer, build_model
from unio.pipeline import GenerationOptions, predict_examples
from unio.sequence import ImagePatches
from unio.tasks import Example, Tokenizers, encode_example, make_task
from unio.tasks.bundle import TokenizersConfig

ARMS = ("patches", "codes", "blind")
TASK_OPTIONS: dict[str, dict[str, Any]] = {
    "classify": {"classes": ["circle", "square", "triangle", "diamond", "star", "person"]},
    "vqa": {},
    "ground": {},
    "caption": {},
    "detect": {},
}
# Tasks scored per item by `score` (the metrics); the others by their standard corpus metric
# (`HEADLINE` of unio/eval/metrics.py: caption CIDEr-D, detect COCO box AP)
ITEM_SCORED = ("classify", "vqa", "ground")
# Shapes-world question kinds (unio/data/sources/shapes.py `_questions`), for the per-kind VQA accuracy;
# "how many shapes" before "how many" (counting all shapes vs one kind)
QUESTION_TYPES = ("how many shapes", "how many", "what color", "what shape", "where", "what size", "is there")


@dataclass
class CompareConfig:
    """Options of `compare_inputs` (conf/compare_inputs.yaml; `model` is a conf/model preset)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizers: TokenizersConfig = field(default_factory=TokenizersConfig)
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    tasks: list[str] = field(default_factory=lambda: list(ITEM_SCORED))  # trained and evaluated
    # Trained, not evaluated: dense targets that all depend on the image (a caption names every
    # object's size, colour and kind; detection gives every object's box), which teach the model to
    # read the image far faster than one short answer per image does (docs/results.md)
    auxiliary_tasks: list[str] = field(default_factory=lambda: ["caption", "detect"])
    # Shapes-world training scenes (split train). 16,000 rather than 4,000: grounding 0.345 in both
    # 16,000-scene runs against 0.328 (docs/results.md, phase 6); building them costs about a minute
    # per arm
    train_records: int = 16000
    # Training examples per scene and task (as `repeats` of a unio-train dataset): each draws its own
    # prompt and item, so one image is seen with several questions / referring expressions
    repeats: int = 1
    eval_records: int = 200  # held-out scenes (split val)
    image_size: int = 64  # scene size in pixels
    input_size: int = 64  # patch inputs: pixels per side (= the stem's image_size)
    patch_size: int = 16  # 4 x 4 patches of the 64 px scenes: as many image tokens as the codes arm
    stem_kind: str = "conv"  # linear | conv (unio/model/patches.py)
    stem_position: str = "sine"  # none | learned | sine
    # With `parallel_arms` and 2 heads (conf/compare_inputs.yaml) the three arms train and evaluate in
    # about 22 minutes on 2 cores. VQA needs them: 1,700 steps left it within 0.1 of the blind prior
    # (docs/results.md, phases 6-8)
    steps: int = 2400
    batch_size: int = 32
    short_target_len: int = 12  # a batch runs as two micro-batches, targets up to / over this length
    # Visual warm-up (as `MixtureConfig.warmup_*` in unio-train): the first `visual_warmup_fraction` of
    # the steps draw only these tasks (ones a text prior cannot solve), then every task; the same
    # schedule in every arm
    visual_warmup_tasks: list[str] = field(
        default_factory=lambda: ["classify", "ground", "caption", "detect"]
    )
    visual_warmup_fraction: float = 0.33
    # After the warm-up a batch draws task t with probability proportional to task_weights[t] (default 1)
    task_weights: dict[str, float] = field(default_factory=lambda: {"ground": 2.0})
    # Draw VQA questions so each kind's answers are equally frequent (the priors carry no signal, so
    # the loss can fall only through the image; "Making the V in VQA matter", Goyal et al. 2017)
    balance_answers: bool = False
    # The loss is a mean over target tokens ("token", as unio-train) or over examples ("example": every
    # row counts once, so a one-word answer weighs as much as a 30-token caption). "example" did not
    # raise VQA and lowered grounding (docs/results.md, phase 7)
    loss_per: str = "token"
    lr: float = 1e-3
    warmup_steps: int = 100
    coord_sigma: float = 0.0  # Gaussian soft targets over coordinate bins (LossConfig.coord_sigma)
    decay: str = "cosine"  # cosine | constant after the warm-up (cosine: the trainer's default, conf/optim)
    min_lr_ratio: float = 0.1  # cosine ends at lr * min_lr_ratio
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 2  # CPU threads per arm when the arms run one after another
    # Each arm in its own single-threaded process, all at once: on 2 cores three one-thread processes
    # train about 1.3x more examples a second than one two-thread process (small matmuls scale badly
    # across threads), and an arm's numbers no longer depend on the machine's core count
    parallel_arms: bool = True
    eval_batch_size: int = 50
    max_new_tokens: int = 64  # generation length limit (a 4-object detection or caption needs ~30)
    max_eval_examples: int | None = None  # per task (None = every item of the held-out scenes)

    @property
    def trained_tasks(self) -> list[str]:
        return list(dict.fromkeys(self.tasks + self.auxiliary_tasks))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.arms) - set(ARMS)) + sorted(set(self.trained_tasks) - set(TASK_OPTIONS))
        if unknown:
            raise ValueError(
                f"compare_inputs: unknown arms/tasks {unknown}; arms {ARMS}, tasks {list(TASK_OPTIONS)}"
            )
        if not 0.0 <= self.visual_warmup_fraction < 1.0:
            raise ValueError(
                f"compare_inputs: visual_warmup_fraction must be in [0, 1), got {self.visual_warmup_fraction}"
            )
        if self.loss_per not in ("token", "example"):
            raise ValueError(f"compare_inputs: loss_per must be token or example, got {self.loss_per!r}")
        if self.decay not in ("cosine", "constant"):
            raise ValueError(f"compare_inputs: decay must be cosine or constant, got {self.decay!r}")
        for name in ("train_records", "eval_records", "steps", "batch_size", "repeats"):
            if getattr(self, name) <= 0:
                raise ValueError(f"compare_inputs: {name} must be positive, got {getattr(self, name)}")


def _with_codes(records: list, tok: Tokenizers) -> list:
    """The records with their image codes precomputed in one batched pass (as the pretokenizer does)."""
    codes = tok.encode_images([r.image for r in records])
    return [r.replace(meta={**r.meta, "image_codes": c}) for r, c in zip(records, codes, strict=True)]


def _swap_images(records: list) -> list:
    """Each record with the next record's image (and its codes, when precomputed)."""
    out = []
    for i, record in enumerate(records):
        other = records[(i + 1) % len(records)]
        meta = {**record.meta}
        if "image_codes" in other.meta:
            meta["image_codes"] = other.meta["image_codes"]
        out.append(record.replace(image=other.image, meta=meta))
    return out


def _without_image(example: Example) -> Example:
    """The example with its image span and pixels removed: what the blind arm sees."""
    return replace(example, input=[s for s in example.input if not isinstance(s, ImagePatches)], image=None)


def _task(name: str, arm: str, cfg: CompareConfig):
    options = dict(TASK_OPTIONS[name])
    if arm == "codes":
        options.update(input_repr="codes")
    else:
        options.update(input_repr="patches", input_size=cfg.input_size, patch_size=cfg.patch_size)
    return make_task(name, **options)


def _model(arm: str, cfg: CompareConfig, tok: Tokenizers) -> UnifiedTransformer:
    stem = None
    if arm == "patches":
        stem = PatchStemConfig(
            kind=cfg.stem_kind,
            patch_size=cfg.patch_size,
            image_size=cfg.input_size,
            position=cfg.stem_position,
        )
    torch.manual_seed(cfg.seed)
    return build_model(replace(cfg.model, patch_stem=stem), tok.vocab)


def _examples(arm: str, cfg: CompareConfig, tok: Tokenizers, records: list, train: bool) -> dict[str, list]:
    """Per task, the examples of `records` (training: one per record with the training prompts and a
    seeded choice of item; evaluation: every item with the eval prompt). Same records, same seeds in
    every arm, so only the image input differs."""
    out = {}
    for name in cfg.trained_tasks if train else cfg.tasks:
        task = _task(name, arm, cfg)
        examples = []
        for index, record in enumerate(records):
            if train:  # `repeats` views of the scene, each its own prompt and item (question, object)
                seeds = [f"{cfg.seed}/{name}/{index}"] + [
                    f"{cfg.seed}/{name}/{index}/{r}" for r in range(1, cfg.repeats)
                ]
                built = [
                    e
                    for e in (task.build(record, random.Random(s), tok, train=True) for s in seeds)
                    if e is not None
                ]
            else:
                built = task.eval_examples(record, tok)
            examples += [_without_image(e) for e in built] if arm == "blind" else built
        out[name] = examples[: cfg.max_eval_examples] if not train and cfg.max_eval_examples else examples
    return out


def _row(example: Example, tok: Tokenizers) -> dict[str, Any]:
    enc = encode_example(example, tok)
    row = {
        f"{side}_{key}": getattr(getattr(enc, side), key).tolist()
        for side in ("input", "target")
        for key in ("ids", "modality", "row", "col")
    }
    row["target_loss"] = enc.target_loss.tolist()
    if enc.input_image is not None:
        row["input_image"] = enc.input_image
    return row


def learning_rate(cfg: CompareConfig, step: int) -> float:
    """Linear warm-up to `lr`, then constant or cosine down to ``lr * min_lr_ratio`` at the last step."""
    if step <= cfg.warmup_steps:
        return cfg.lr * step / max(1, cfg.warmup_steps)
    if cfg.decay == "constant":
        return cfg.lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_indices(
    cfg: CompareConfig, tasks: list[str], answers: list[str | None] | None = None
) -> Iterator[np.ndarray]:
    """The pool rows of each step's batch (``tasks[i]`` = row i's task); the same in every arm.

    Warm-up steps draw rows of the visual warm-up tasks uniformly; later steps draw row i with
    probability ``task_weights[task] / rows of that task``, so a batch mixes tasks. With
    `balance_answers`, rows with an ``answers[i]`` of ``"<question kind>/<answer>"`` are drawn so that
    each question kind keeps its share of its task while its answers become equally frequent."""
    order = np.random.default_rng(cfg.seed)
    labels = np.array(tasks)
    warm = np.flatnonzero(np.isin(labels, cfg.visual_warmup_tasks))
    warmup_steps = round(cfg.visual_warmup_fraction * cfg.steps) if len(warm) else 0
    sizes = {name: int((labels == name).sum()) for name in set(tasks)}
    p = np.array([cfg.task_weights.get(t, 1.0) / sizes[t] for t in tasks])
    if cfg.balance_answers and answers is not None:
        groups = Counter(a for a in answers if a is not None)
        kinds = Counter(a.split("/")[0] for a in answers if a is not None)
        choices = Counter(g.split("/")[0] for g in groups)  # distinct answers per kind
        for i, group in enumerate(answers):
            if group is not None:
                kind = group.split("/")[0]
                p[i] *= kinds[kind] / (choices[kind] * groups[group])
    p /= p.sum()
    for step in range(1, cfg.steps + 1):
        if step <= warmup_steps:
            yield warm[order.integers(0, len(warm), cfg.batch_size)]
        else:
            yield order.choice(len(tasks), cfg.batch_size, p=p)


def split_by_target_length(rows: list[dict[str, Any]], short_target_len: int) -> list[list[dict[str, Any]]]:
    """The rows of one batch as micro-batches of short (<= `short_target_len` tokens) and long targets.
    A batch mixing one-word answers with 30-token captions pads every row to the longest target; two
    micro-batches whose token-weighted losses are summed give the same step with about 40% fewer
    decoder positions (a few percent faster a step on the tiny preset, where the encoder dominates)."""
    short = [r for r in rows if len(r["target_ids"]) <= short_target_len]
    long = [r for r in rows if len(r["target_ids"]) > short_target_len]
    return [group for group in (short, long) if group]


def micro_batch_losses(
    model: UnifiedTransformer, loss_fn: SequenceLoss, micro: list[dict[str, Any]], per_example: bool
) -> Iterator[tuple[torch.Tensor, float]]:
    """(loss, share) of each collated micro-batch of one step: ``sum(loss * share)`` is the loss of
    the whole batch in one pass, a mean over its target tokens, or with `per_example` over its rows."""
    real = [batch["targets"] != IGNORE_INDEX for batch in micro]
    sizes = [len(mask) if per_example else int(mask.sum()) for mask in real]
    for batch, mask, size in zip(micro, real, sizes, strict=True):
        weights = per_example_weights(batch["targets"])[mask] if per_example else None
        logits = model.forward_batch(batch, targets_only=True)
        yield loss_fn(logits, batch["targets"][mask], token_weights=weights).loss, size / sum(sizes)


def train_arm(
    arm: str, cfg: CompareConfig, tok: Tokenizers, pool: list[dict[str, Any]], log: Callable[[str], None]
) -> UnifiedTransformer:
    """Train one arm's model on `pool` (encoded rows, all tasks): step s uses the same indices in
    every arm."""
    model = _model(arm, cfg, tok)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": other, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    collate = Collator(tok.vocab.bos_id)
    loss_fn = SequenceLoss(tok.vocab, LossConfig(coord_sigma=cfg.coord_sigma))
    start = time.perf_counter()
    rows = batch_indices(cfg, [row["task"] for row in pool], [row.get("answer") for row in pool])
    for step, index in enumerate(rows, start=1):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step)
        optimizer.zero_grad(set_to_none=True)
        micro = [
            collate(rows) for rows in split_by_target_length([pool[i] for i in index], cfg.short_target_len)
        ]
        value = 0.0
        for loss, share in micro_batch_losses(model, loss_fn, micro, cfg.loss_per == "example"):
            (loss * share).backward()
            value += float(loss.detach()) * share
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if not math.isfinite(value):
            raise FloatingPointError(f"compare_inputs: {arm} loss is {value} at step {step}")
        if step == 1 or step % max(1, cfg.steps // 10) == 0 or step == cfg.steps:
            log(f"{arm} step {step}/{cfg.steps} loss {value:.4f} ({time.perf_counter() - start:.0f} s)")
    return model.eval()


def score(name: str, prediction: Any, meta: dict[str, Any]) -> float:
    """1.0 when the prediction is right: classify label, vqa answer, ground IoU >= 0.5."""
    if name == "classify":
        return float(prediction == meta["label"])
    if name == "vqa":
        return float(
            isinstance(prediction, str) and prediction.strip().lower() in [a.lower() for a in meta["answers"]]
        )
    if name == "ground":
        return float(prediction is not None and box_iou(prediction, meta["box"]) >= 0.5)
    raise ValueError(f"compare_inputs: no score for task {name!r}")


def image_dependence(
    model: UnifiedTransformer, tok: Tokenizers, own: list[Example], swapped: list[Example], batch_size: int
) -> float:
    """Mean total variation between the teacher-forced next-token distributions over the targets of
    `own` and of `swapped` (the same examples with another scene's image)."""
    collate = Collator(tok.vocab.bos_id)
    total, count = 0.0, 0
    for start in range(0, len(own), batch_size):
        a = collate([_row(e, tok) for e in own[start : start + batch_size]])
        b = collate([_row(e, tok) for e in swapped[start : start + batch_size]])
        tv, n = total_variation(model, a, b)
        total, count = total + tv, count + n
    return total / max(count, 1)


def answer_group(example: Example) -> str:
    """``"<question kind>/<answer>"`` of a VQA example (`balance_answers`)."""
    return f"{question_type(example.meta['question'])}/{example.meta['answers'][0]}"


def question_type(question: str) -> str:
    """The kind of a shapes-world question (`QUESTION_TYPES`; "other" for none)."""
    return next((t for t in QUESTION_TYPES if question.startswith(t)), "other")


def evaluate_arm(
    arm: str,
    model: UnifiedTransformer,
    cfg: CompareConfig,
    tok: Tokenizers,
    records: list,
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """(metric per task, image dependence per task, vqa accuracy per `question_type`) on the held-out
    `records`."""
    if arm == "codes":
        records = _with_codes(records, tok)
    own = _examples(arm, cfg, tok, records, train=False)
    # another scene's image: the next record's, with this record's objects, questions and targets
    # (the blind arm has no image to swap: its dependence is 0 by construction)
    other = None if arm == "blind" else _examples(arm, cfg, tok, _swap_images(records), train=False)
    metrics, dependence, by_question = {}, {}, {}
    options = GenerationOptions(batch_size=cfg.eval_batch_size, max_new_tokens=cfg.max_new_tokens)
    for name in cfg.tasks:
        task = _task(name, arm, cfg)
        raw = predict_examples(model, tok, task, own[name], options)
        if name in ITEM_SCORED:
            scores = [score(name, r.prediction, e.meta) for r, e in zip(raw, own[name], strict=True)]
            metrics[name] = round(float(np.mean(scores)) if scores else 0.0, 4)
            if name == "vqa":
                kinds = [question_type(e.meta["question"]) for e in own[name]]
                for kind in sorted(set(kinds)):
                    hits = [s for s, k in zip(scores, kinds, strict=True) if k == kind]
                    by_question[kind] = round(float(np.mean(hits)), 4)
        else:
            refs = [references(name, e.meta) for e in own[name]]
            metrics[name] = round(METRICS[name]([r.prediction for r in raw], refs)[HEADLINE[name]], 4)
        dependence[name] = (
            0.0
            if other is None
            else round(image_dependence(model, tok, own[name], other[name], cfg.eval_batch_size), 4)
        )
    return metrics, dependence, by_question


def _records(cfg: CompareConfig, split: str, count: int) -> list:
    source = ShapesSource(
        ShapesConfig(num_records=count, split=split, image_size=cfg.image_size, seed=cfg.seed)
    )
    return [source[i] for i in range(len(source))]


def run_arm(
    arm: str,
    cfg: CompareConfig,
    threads: int,
    log: Callable[[str], None] = print,
    scenes: tuple[list, list] | None = None,
) -> dict[str, Any]:
    """Train and evaluate one arm on `scenes` (training, held-out records; built here when None, as in
    a worker process): ``{"metrics", "image_dependence", "vqa_by_question", "seconds"}``.
    Deterministic for a given `threads` (the same in a worker process or in-process)."""
    torch.set_num_threads(threads)
    begin = time.perf_counter()
    tok = Tokenizers.from_config(cfg.tokenizers)
    train_records, eval_records = scenes or (
        _records(cfg, "train", cfg.train_records),
        _records(cfg, "val", cfg.eval_records),
    )
    records = _with_codes(train_records, tok) if arm == "codes" else train_records
    per_task = _examples(arm, cfg, tok, records, train=True)
    pool = [
        {**_row(e, tok), "task": name, "answer": answer_group(e) if name == "vqa" else None}
        for name in cfg.trained_tasks
        for e in per_task[name]
    ]
    log(f"{arm}: {len(pool)} training examples ({', '.join(f'{k} {len(v)}' for k, v in per_task.items())})")
    model = train_arm(arm, cfg, tok, pool, log)
    metrics, dependence, by_question = evaluate_arm(arm, model, cfg, tok, eval_records)
    seconds = round(time.perf_counter() - begin, 1)
    log(f"{arm}: {json.dumps(metrics)} image dependence {json.dumps(dependence)} ({seconds:.0f} s)")
    return {
        "metrics": metrics,
        "image_dependence": dependence,
        "vqa_by_question": by_question,
        "seconds": seconds,
    }


def _print_flushed(line: str) -> None:
    print(line, flush=True)  # worker processes: lines reach a redirected log as they happen


def compare_inputs(cfg: CompareConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train and evaluate every arm (each in its own one-thread process with `parallel_arms`, else one
    after another in this process with `threads` threads); returns ``{arm: {task: metric},
    "image_dependence": {arm: {task: tv}}, "vqa_by_question": {arm: {question type: accuracy}},
    "seconds": {arm: s}, "config": {...}}``."""
    begin = time.perf_counter()
    if cfg.parallel_arms and len(cfg.arms) > 1:
        # spawn: a fresh interpreter per arm (no forked OpenMP/torch thread state); workers log to stdout
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=len(cfg.arms), mp_context=context) as pool:
            futures = {arm: pool.submit(run_arm, arm, cfg, 1, _print_flushed) for arm in cfg.arms}
            runs = {arm: future.result() for arm, future in futures.items()}
    else:
        # one process: the arms share one build of the scenes
        scenes = (_records(cfg, "train", cfg.train_records), _records(cfg, "val", cfg.eval_records))
        runs = {arm: run_arm(arm, cfg, cfg.threads, log, scenes) for arm in cfg.arms}
    # arms first: the JSON line reads left to right
    result: dict[str, Any] = {arm: runs[arm]["metrics"] for arm in cfg.arms}
    result["image_dependence"] = {arm: runs[arm]["image_dependence"] for arm in cfg.arms}
    result["vqa_by_question"] = {
        arm: runs[arm]["vqa_by_question"] for arm in cfg.arms if runs[arm]["vqa_by_question"]
    }
    result["seconds"] = {arm: runs[arm]["seconds"] for arm in cfg.arms}
    result["seconds"]["total"] = round(time.perf_counter() - begin, 1)
    result["config"] = {
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "train_records": cfg.train_records,
        "eval_records": cfg.eval_records,
        "tasks": list(cfg.tasks),
        "auxiliary_tasks": list(cfg.auxiliary_tasks),
        "stem": f"{cfg.stem_kind}/{cfg.patch_size}px/{cfg.stem_position}",
        "seed": cfg.seed,
        "threads_per_arm": 1 if cfg.parallel_arms and len(cfg.arms) > 1 else cfg.threads,
    }
    return result
