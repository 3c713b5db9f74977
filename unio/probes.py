"""Learning probes: does a model, trained for a few minutes, learn to *see*?

Each probe is a tiny supervised problem on generated images (numpy drawing with the shapes world's
helpers, no files), trained from scratch with a small explicit loop (AdamW, linear warmup, constant
rate) and evaluated on held-out examples by greedy generation:

    shape    one shape on a plain background -> its kind (5 classes)              exact answer
    box      one square -> its box ``<box> x1 y1 x2 y2 </box>``                 IoU >= 0.5 rate
    count    1-5 shapes -> their number ("one" .. "five")                         exact answer
    color    2-3 shapes of distinct kinds and colours, "what color is the star?"  exact answer
    largest  full shapes-world scenes -> kind of the largest shape (6 classes)    exact answer
    reverse  text reverse-copy of 4-8 words (no image; a sanity check of the loop) token accuracy

A run reports (`ProbeReport`): the steps and training seconds (evaluation excluded) to reach the
target on the held-out set (default 0.9; for `box` the fraction of boxes with IoU >= 0.5), the final
held-out metric, the chance level and the *image-blind* baseline (the best answer given only the
text prompt, i.e. the most frequent training answer per prompt; for `box` the hit rate of the median
training box), and the **image dependence**: the mean total-variation distance between the model's
output distributions (teacher-forced, over the target tokens) with each example's own image and with
another held-out example's image. 0 means the output ignores the image; a model that reads the
image and answers a different class for the other image approaches 1.

The image enters either as patches (``input_repr="patches"``: a placeholder span filled by the
model's `PatchStem`, unio/model/patches.py) or as VQ codes (``input_repr="codes"``: the tiny, randomly
initialised image tokenizer of `Tokenizers`, ``<image> codes </image>``), so the two front ends are
compared on identical data, model size, steps and seed. Commands and measured numbers:
docs/results.md.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from unio.data.collate import IGNORE_INDEX, Collator
from unio.data.sources.shapes import COLORS, NUMBERS, SHAPE_KINDS, ShapesConfig, ShapesSource, shape_mask
from unio.eval.image_dependence import total_variation
from unio.model.generate import GenerationConfig, generate
from unio.model.patches import PatchStemConfig, placeholder_span
from unio.model.transformer import UnifiedTransformer, build_model, model_config_from_dict
from unio.sequence import Annotator, Boxes, ImageCodes, Text
from unio.tasks.bundle import Tokenizers, tiny_grid_tokenizer
from unio.tokenizers.builtin_text import builtin_corpus
from unio.tokenizers.coords import CoordConfig, CoordTokenizer
from unio.tokenizers.text import TextTokenizer, TextTokenizerConfig

PROBES = ("shape", "box", "count", "color", "largest", "reverse")
INPUT_REPRS = ("patches", "codes")
# The tiny preset (conf/model/tiny.yaml); vocab_size comes from the probe's vocabulary.
TINY_MODEL: dict[str, Any] = {
    "d_model": 128,
    "n_heads": 4,
    "n_encoder_layers": 2,
    "n_decoder_layers": 2,
    "d_ff": 512,
    "qk_norm": False,
    "rope_theta": 10000.0,
    "init_std": 0.02,
    "condition_dropout": 0.0,
}
REVERSE_WORDS = (
    "red",
    "green",
    "blue",
    "yellow",
    "one",
    "two",
    "three",
    "four",
    "circle",
    "square",
    "star",
    "left",
)


# The stated budget of each probe with the default stem and the tiny preset (docs/results.md): the steps
# within which it reaches its target, with the settings it needs. Binding a named shape to its colour
# (color) and comparing sizes across a full 64 px scene (largest) need a larger pool and more steps.
STATED_BUDGETS: dict[str, dict[str, Any]] = {
    "box": {"max_steps": 400},
    "shape": {"max_steps": 600},
    "count": {"max_steps": 400},
    "reverse": {"max_steps": 500},
    "largest": {"max_steps": 1600, "image_size": 64, "train_examples": 32768},
    "color": {"max_steps": 5500, "train_examples": 32768},
}


@dataclass
class ProbeConfig:
    """One probe run. The defaults are the probe settings of docs/results.md."""

    probe: str = "shape"  # one of PROBES
    input_repr: str = "patches"  # patches | codes
    model: dict[str, Any] = field(default_factory=lambda: dict(TINY_MODEL))  # ModelConfig fields
    stem_kind: str = "conv"  # PatchStemConfig.kind (input_repr=patches)
    stem_position: str = "sine"  # PatchStemConfig.position: none | learned | sine
    patch_size: int = 8  # 4x4 = 16 patches at 32 px: as many input tokens as the tiny VQ tokenizer's codes
    conv_width: int = PatchStemConfig.conv_width
    conv_depth: int = PatchStemConfig.conv_depth
    stem_norm: bool = True  # PatchStemConfig.feature_norm
    image_size: int = 32  # pixels per side of the generated images
    coord_bins: int = 32  # box probe: coordinate bins over the image side
    text_vocab_size: int = 1000  # built-in SentencePiece tokenizer
    vq_seed: int = 0  # the tiny image tokenizer (input_repr=codes)
    train_examples: int = 4096  # training pool, sampled with replacement
    eval_examples: int = 256  # held-out examples (another random stream)
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    max_steps: int = 2000
    max_seconds: float = 300.0  # training-time budget; the run stops at whichever limit comes first
    eval_every: int = 50
    target: float = 0.9
    stop_at_target: bool = True
    seed: int = 0
    threads: int = 1  # torch intra-op threads (the machine has 2 cores shared by several users)

    def __post_init__(self) -> None:
        if self.probe not in PROBES:
            raise ValueError(f"ProbeConfig.probe must be one of {PROBES}, got {self.probe!r}")
        if self.input_repr not in INPUT_REPRS:
            raise ValueError(f"ProbeConfig.input_repr must be one of {INPUT_REPRS}, got {self.input_repr!r}")
        for name in ("train_examples", "eval_examples", "batch_size", "max_steps", "eval_every", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"ProbeConfig.{name} must be >= 1, got {getattr(self, name)}")

    def stem_config(self) -> PatchStemConfig | None:
        if self.input_repr != "patches" or self.probe == "reverse":
            return None
        return PatchStemConfig(
            kind=self.stem_kind,
            patch_size=self.patch_size,
            image_size=self.image_size,
            position=self.stem_position,
            conv_width=self.conv_width,
            conv_depth=self.conv_depth,
            feature_norm=self.stem_norm,
        )

    def front_end(self) -> str:
        if self.probe == "reverse":
            return "text"
        if self.input_repr == "codes":
            return "codes"
        norm = "" if self.stem_norm else "/no-norm"
        # the label names only what differs from the stem's defaults
        conv = self.stem_kind == "conv"
        depth = f"/d{self.conv_depth}" if conv and self.conv_depth != PatchStemConfig.conv_depth else ""
        width = f"/w{self.conv_width}" if conv and self.conv_width != PatchStemConfig.conv_width else ""
        return f"{self.stem_kind}/{self.stem_position}/p{self.patch_size}{width}{depth}{norm}"


@dataclass
class ProbeReport:
    probe: str
    front_end: str  # "codes", "text", or the stem "kind/position/p<patch>"
    metric: str  # accuracy | iou>=0.5 | token_accuracy
    target: float
    reached: bool
    steps_to_target: int | None  # first evaluation step at or above the target
    seconds_to_target: float | None  # training seconds (evaluation excluded) up to that step
    final_step: int
    final_metric: float
    train_seconds: float
    chance: float | None  # uniform guess
    blind: float | None  # best image-blind answer (None: the probe has no image)
    image_dependence: float | None  # mean TV distance, own image vs another example's (None: no image)
    parameters: int
    history: list[tuple[int, float]]  # (step, held-out metric) at every evaluation

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------ examples
@dataclass
class _Example:
    image: np.ndarray | None  # HxWx3 uint8
    prompt: str
    answer: Any  # str, or int box bins [4] (x1 y1 x2 y2, inclusive pixel bins)


def _canvas(size: int, rng: np.random.Generator) -> np.ndarray:
    return np.full((size, size, 3), rng.uniform(90, 170), dtype=np.float32) + rng.uniform(-10, 10, size=3)


def _paint(image: np.ndarray, mask: np.ndarray, color: str, rng: np.random.Generator) -> None:
    image[mask] = np.array(COLORS[color], dtype=np.float32) + rng.uniform(-12, 12, size=3)


def _done(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _place(
    rng: np.random.Generator, size: int, radii: list[float], gap: float = 1.0
) -> list[tuple[float, float]]:
    """Centres for shapes of the given radii, inside the image and with disjoint boxes (rejection)."""
    for _ in range(200):
        centres: list[tuple[float, float]] = []
        for r in radii:
            for _ in range(50):
                cx, cy = rng.uniform(r, size - r, size=2)
                if all(
                    abs(cx - x) >= r + q + gap or abs(cy - y) >= r + q + gap
                    for (x, y), q in zip(centres, radii)
                ):
                    centres.append((cx, cy))
                    break
            else:
                break
        if len(centres) == len(radii):
            return centres
    raise RuntimeError(f"probes: could not place {len(radii)} shapes on a {size}px image")


def _shape_example(rng: np.random.Generator, size: int) -> _Example:
    image = _canvas(size, rng)
    kind = SHAPE_KINDS[rng.integers(len(SHAPE_KINDS))]
    r = rng.uniform(0.2, 0.35) * size
    cx, cy = rng.uniform(r, size - r, size=2)
    _paint(image, shape_mask(kind, cx, cy, r, size), list(COLORS)[rng.integers(len(COLORS))], rng)
    return _Example(_done(image), "what shape is this?", kind)


def _box_example(rng: np.random.Generator, size: int) -> _Example:
    image = _canvas(size, rng)
    r = rng.uniform(0.1, 0.35) * size
    cx, cy = rng.uniform(r, size - r, size=2)
    mask = shape_mask("square", cx, cy, r, size)
    _paint(image, mask, list(COLORS)[rng.integers(len(COLORS))], rng)
    ys, xs = np.nonzero(mask)
    return _Example(_done(image), "where is the square?", np.array([xs.min(), ys.min(), xs.max(), ys.max()]))


def _count_example(rng: np.random.Generator, size: int) -> _Example:
    image = _canvas(size, rng)
    n = int(rng.integers(1, 6))
    radii = list(rng.uniform(0.08, 0.12, size=n) * size)
    for (cx, cy), r in zip(_place(rng, size, radii), radii):
        kind = SHAPE_KINDS[rng.integers(len(SHAPE_KINDS))]
        _paint(image, shape_mask(kind, cx, cy, r, size), list(COLORS)[rng.integers(len(COLORS))], rng)
    return _Example(_done(image), "how many shapes are there?", NUMBERS[n])


def _color_example(rng: np.random.Generator, size: int) -> _Example:
    image = _canvas(size, rng)
    n = int(rng.integers(2, 4))
    kinds = rng.choice(SHAPE_KINDS, size=n, replace=False)
    colors = rng.choice(list(COLORS), size=n, replace=False)
    radii = list(rng.uniform(0.12, 0.18, size=n) * size)
    for (cx, cy), r, kind, color in zip(_place(rng, size, radii), radii, kinds, colors):
        _paint(image, shape_mask(str(kind), cx, cy, r, size), str(color), rng)
    asked = int(rng.integers(n))
    return _Example(_done(image), f"what color is the {kinds[asked]}?", str(colors[asked]))


def _reverse_example(rng: np.random.Generator, size: int) -> _Example:
    words = [REVERSE_WORDS[i] for i in rng.integers(len(REVERSE_WORDS), size=int(rng.integers(4, 9)))]
    return _Example(None, " ".join(words), " ".join(reversed(words)))


_GENERATORS: dict[str, Callable[[np.random.Generator, int], _Example]] = {
    "shape": _shape_example,
    "box": _box_example,
    "count": _count_example,
    "color": _color_example,
    "reverse": _reverse_example,
}


def make_examples(probe: str, n: int, size: int, seed: int, split: str) -> list[_Example]:
    """``n`` examples of ``probe``; ``split`` ("train" / "eval") selects an independent random stream."""
    if probe == "largest":
        source = ShapesSource(ShapesConfig(num_records=n, seed=seed, split=split, image_size=size))
        return [
            _Example(r.image, "what is the largest shape?", r.label)
            for r in (source.load(i) for i in range(n))
        ]
    rng = np.random.default_rng([seed, PROBES.index(probe), 0 if split == "train" else 1])
    return [_GENERATORS[probe](rng, size) for _ in range(n)]


# ------------------------------------------------------------------------------------ encoding
class _Encoder:
    """Examples -> token dicts for the `Collator` (+ the uint8 image tensor for patch inputs)."""

    def __init__(self, cfg: ProbeConfig, tok: Tokenizers) -> None:
        self.cfg, self.tok, self.codec = cfg, tok, tok.codec
        self.stem = cfg.stem_config()

    def image_parts(self, examples: list[_Example]) -> list[Any]:
        """Per example what stands for its image: codes [h, w] (codes), the index (patches), or None."""
        if examples[0].image is None:
            return [None] * len(examples)
        if self.cfg.input_repr == "codes":
            return list(self.tok.encode_images([e.image for e in examples]))
        return list(range(len(examples)))

    def target(self, example: _Example) -> dict[str, np.ndarray]:
        if self.cfg.probe == "box":
            bins = np.minimum(
                example.answer * self.cfg.coord_bins // self.cfg.image_size, self.cfg.coord_bins - 1
            )
            seq = self.codec.encode([Boxes(torch.as_tensor(bins)[None])], add_eos=True)
        else:
            seq = self.codec.encode([Text(example.answer)], add_eos=True)
        return {f"target_{k}": getattr(seq, k).numpy() for k in ("ids", "modality", "row", "col")}

    def inputs(self, image_part: Any, prompt: str) -> dict[str, np.ndarray]:
        if self.cfg.input_repr == "codes" and image_part is not None:
            seq = self.codec.encode([ImageCodes(image_part), Text(prompt)])
            return {f"input_{k}": getattr(seq, k).numpy() for k in ("ids", "modality", "row", "col")}
        seq = self.codec.encode([Text(prompt)])
        parts = {k: getattr(seq, k) for k in ("ids", "modality", "row", "col")}
        if image_part is not None:  # patches: the placeholder span first, then the prompt
            span = placeholder_span(self.stem)
            parts = {k: torch.cat([span[k], v]) for k, v in parts.items()}
        return {f"input_{k}": v.numpy() for k, v in parts.items()}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of inclusive-bin boxes x1 y1 x2 y2."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = lambda z: max(0, z[2] - z[0] + 1) * max(0, z[3] - z[1] + 1)  # noqa: E731
    return inter / max(area(a) + area(b) - inter, 1)


# ------------------------------------------------------------------------------------ the run
class ProbeRun:
    """Data, model and loop of one probe (`run_probe` is the one-call entry point)."""

    def __init__(self, cfg: ProbeConfig, tokenizers: Tokenizers | None = None) -> None:
        self.cfg = cfg
        torch.set_num_threads(cfg.threads)
        self.tok = tokenizers or probe_tokenizers(cfg)
        self.enc = _Encoder(cfg, self.tok)
        self.collator = Collator(self.tok.vocab.bos_id, self.tok.vocab.pad_id)
        self.train = self._prepare(
            make_examples(cfg.probe, cfg.train_examples, cfg.image_size, cfg.seed, "train")
        )
        self.eval = self._prepare(
            make_examples(cfg.probe, cfg.eval_examples, cfg.image_size, cfg.seed, "eval")
        )
        torch.manual_seed(cfg.seed)
        model_cfg = model_config_from_dict(
            {**cfg.model, "patch_stem": cfg.stem_config()}, "ProbeConfig.model"
        )
        self.model: UnifiedTransformer = build_model(model_cfg, self.tok.vocab)

    def _prepare(self, examples: list[_Example]) -> dict[str, Any]:
        parts = self.enc.image_parts(examples)
        images = None
        if examples[0].image is not None:
            images = torch.from_numpy(np.stack([e.image for e in examples])).permute(0, 3, 1, 2).contiguous()
        return {
            "examples": examples,
            "parts": parts,
            "items": [self.enc.inputs(p, e.prompt) | self.enc.target(e) for p, e in zip(parts, examples)],
            "images": images,
        }

    def batch(self, split: dict[str, Any], index: list[int], image_of: list[int] | None = None) -> dict:
        """Collated rows ``index``; ``image_of`` gives each row another example's image (the swap)."""
        image_of = image_of if image_of is not None else index
        if image_of is index:
            items = [split["items"][i] for i in index]
        else:
            items = [
                self.enc.inputs(split["parts"][j], split["examples"][i].prompt)
                | self.enc.target(split["examples"][i])
                for i, j in zip(index, image_of)
            ]
        batch = self.collator(items)
        if split["images"] is not None and self.cfg.input_repr == "patches":
            batch["input_images"] = split["images"][image_of]
        return batch

    # -------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self) -> float:
        """The held-out metric, by greedy generation."""
        self.model.eval()
        split, cfg = self.eval, self.cfg
        index = list(range(len(split["items"])))
        batch = self.batch(split, index)
        max_len = max(len(item["target_ids"]) for item in split["items"])
        out = generate(
            self.model,
            batch,
            self.tok.vocab,
            GenerationConfig(max_new_tokens=max_len),
            annotator_factory=lambda: Annotator(self.tok.codec),
        )
        scores = []
        for i in index:
            got = out.tokens[i, : int(out.lengths[i])].tolist()
            want = split["items"][i]["target_ids"].tolist()
            if cfg.probe == "box":
                decoded = self.tok.codec.decode(got).segments
                box = decoded[0].coords[0].numpy() if decoded and isinstance(decoded[0], Boxes) else None
                truth = np.asarray(want[1:5]) - self.tok.vocab.offset("coord")
                scores.append(float(box is not None and _iou(box, truth) >= 0.5))
            elif cfg.probe == "reverse":
                got = got + [-1] * (len(want) - len(got))
                scores.append(float(np.mean([g == w for g, w in zip(got, want)])))
            else:
                scores.append(float(got == want))
        self.model.train()
        return float(np.mean(scores))

    @torch.no_grad()
    def image_dependence(self) -> float | None:
        """Mean TV distance between teacher-forced output distributions with each held-out example's
        own image and with the next example's image (over the target tokens)."""
        if self.eval["images"] is None:
            return None
        self.model.eval()
        index = list(range(len(self.eval["items"])))
        other = index[1:] + index[:1]
        tv, count = total_variation(
            self.model, self.batch(self.eval, index), self.batch(self.eval, index, other)
        )
        self.model.train()
        return tv / count

    def baselines(self) -> tuple[float | None, float | None]:
        """(chance, image-blind) levels of the held-out metric."""
        cfg, train, held = self.cfg, self.train["examples"], self.eval["examples"]
        if cfg.probe == "reverse":
            return 1.0 / len(REVERSE_WORDS), None
        if cfg.probe == "box":
            median = np.median(np.stack([e.answer for e in train]), axis=0).round().astype(int)
            scale = lambda a: np.minimum(a * cfg.coord_bins // cfg.image_size, cfg.coord_bins - 1)  # noqa: E731
            return None, float(np.mean([_iou(scale(median), scale(e.answer)) >= 0.5 for e in held]))
        classes = {e.answer for e in train} | {e.answer for e in held}
        by_prompt: dict[str, Counter] = {}
        for e in train:
            by_prompt.setdefault(e.prompt, Counter())[e.answer] += 1
        blind = [by_prompt.get(e.prompt, Counter({None: 1})).most_common(1)[0][0] == e.answer for e in held]
        return 1.0 / len(classes), float(np.mean(blind))

    # -------------------------------------------------------------------- training
    def run(self, log: Callable[[str], None] | None = None) -> ProbeReport:
        cfg, model = self.cfg, self.model
        model.train()
        decay = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        optim = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=cfg.lr,
            betas=(0.9, 0.98),
        )
        sched = torch.optim.lr_scheduler.LambdaLR(
            optim, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1))
        )
        sampler = torch.Generator().manual_seed(cfg.seed)
        history: list[tuple[int, float]] = []
        reached_step, reached_seconds, train_seconds, step, metric = None, None, 0.0, 0, 0.0
        n = len(self.train["items"])
        while step < cfg.max_steps and train_seconds < cfg.max_seconds:
            start = time.perf_counter()
            index = torch.randint(n, (cfg.batch_size,), generator=sampler).tolist()
            batch = self.batch(self.train, index)
            targets = batch["targets"]
            logits = model.forward_batch(batch, targets_only=True)
            loss = F.cross_entropy(logits.float(), targets[targets != IGNORE_INDEX])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            sched.step()
            step += 1
            train_seconds += time.perf_counter() - start
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"probe {cfg.probe}: loss is {loss.item()} at step {step}")
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                metric = self.evaluate()
                history.append((step, metric))
                if log is not None:
                    log(
                        f"{cfg.probe} {cfg.front_end()} step {step} loss {loss.item():.3f} metric {metric:.3f} {train_seconds:.1f}s"
                    )
                if reached_step is None and metric >= cfg.target:
                    reached_step, reached_seconds = step, train_seconds
                    if cfg.stop_at_target:
                        break
        if not history or history[-1][0] != step:
            metric = self.evaluate()
            history.append((step, metric))
        chance, blind = self.baselines()
        return ProbeReport(
            probe=cfg.probe,
            front_end=cfg.front_end(),
            metric={"box": "iou>=0.5", "reverse": "token_accuracy"}.get(cfg.probe, "accuracy"),
            target=cfg.target,
            reached=reached_step is not None,
            steps_to_target=reached_step,
            seconds_to_target=round(reached_seconds, 2) if reached_seconds is not None else None,
            final_step=step,
            final_metric=metric,
            train_seconds=round(train_seconds, 2),
            chance=chance,
            blind=blind,
            image_dependence=self.image_dependence(),
            parameters=model.num_parameters(),
            history=history,
        )


def probe_tokenizers(cfg: ProbeConfig, text: TextTokenizer | None = None) -> Tokenizers:
    """Built-in text tokenizer (or ``text``), ``coord_bins`` coordinate bins and the tiny image
    tokenizer: the same vocabulary for both input representations, so their runs are comparable."""
    if text is None:
        text = TextTokenizer.train(builtin_corpus(), TextTokenizerConfig(vocab_size=cfg.text_vocab_size))
    image = tiny_grid_tokenizer("image", cfg.vq_seed)
    return Tokenizers.create(
        text, CoordTokenizer(CoordConfig(num_bins=cfg.coord_bins)), image=image, num_sentinels=1
    )


def run_probe(
    cfg: ProbeConfig, tokenizers: Tokenizers | None = None, log: Callable[[str], None] | None = None
) -> ProbeReport:
    """Build, train and evaluate one probe; see the module docstring for what is reported."""
    return ProbeRun(cfg, tokenizers).run(log)


@dataclass
class ProbeSweepConfig(ProbeConfig):
    """`ProbeConfig` plus which probes and input representations to run (scripts/probes.py)."""

    probes: list[str] = field(default_factory=lambda: list(PROBES))
    input_reprs: list[str] = field(default_factory=lambda: ["patches"])
    # Run each probe with its `STATED_BUDGETS` settings (evaluating every 100 steps, no time limit):
    # the acceptance benchmark of issue #12 (all six: about 30 minutes on 2 cores)
    stated_budgets: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = sorted(set(self.probes) - set(PROBES)) + sorted(set(self.input_reprs) - set(INPUT_REPRS))
        if unknown:
            raise ValueError(
                f"probes: unknown probe(s) / input_repr(s) {unknown}; known {PROBES}, {INPUT_REPRS}"
            )

    def runs(self) -> list[ProbeConfig]:
        """One `ProbeConfig` per (probe, input_repr); the text-only probe runs once."""
        base = {f.name: getattr(self, f.name) for f in fields(ProbeConfig)}
        out = []
        for probe in self.probes:
            budget = {}
            if self.stated_budgets:
                budget = {"eval_every": 100, "max_seconds": math.inf, **STATED_BUDGETS[probe]}
            for input_repr in self.input_reprs[:1] if probe == "reverse" else self.input_reprs:
                out.append(ProbeConfig(**{**base, **budget, "probe": probe, "input_repr": input_repr}))
        return out


def run_probes(cfg: ProbeSweepConfig, log: Callable[[str], None] | None = None) -> list[ProbeReport]:
    """Every run of `cfg.runs()`, sharing one tokenizer bundle."""
    runs = cfg.runs()
    tokenizers = probe_tokenizers(runs[0])
    return [run_probe(run, tokenizers, log) for run in runs]
