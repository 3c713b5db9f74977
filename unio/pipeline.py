"""Inference API: a trained checkpoint as a Python object, no Hydra.

    from unio.pipeline import Pipeline
    pipe = Pipeline.from_pretrained("runs/first")            # a run directory or a checkpoint directory
    found = pipe.detect("photo.jpg")                         # DetectionResult: boxes in the photo's pixels
    answers = pipe.vqa(["a.png", "b.png"], "What color is the circle?")   # lists in -> lists out
    result = pipe("ground", image=array, text="the red circle")          # any task by name

Every call goes the same way as evaluation (unio/eval/evaluate.py) and `unio-predict`:

    raw values --Task.build_input--> Example (input only) --encode_input--> TokenSequence
      --collate_inputs--> encoder batch --generate (the task's grammar, KV cache)--> tokens
      --SequenceCodec.decode--> segments --Task.parse--> prediction in original pixels / samples

`predict_examples` is that loop over already built examples (batched by input length); evaluation
calls it with examples built from records. Results are typed dataclasses (`RESULT_TYPES`), each with
`valid` (False when the output did not decode completely, e.g. it ran out of tokens) and the raw
`prediction` that `parse` returned (what the metrics of unio/eval/metrics.py score).

Inputs: an image is a path, a PIL image (mode RGB or L) or an array (HxWx3 uint8, or HxW greyscale);
audio is a path to a .wav file or a mono float array with `sample_rate`. A wrong image mode, an empty
image, empty or silent audio, or an unknown task raises one ValueError that names the problem.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unio.data.collate import collate_inputs
from unio.model.checkpoint import load_model, resolve_checkpoint
from unio.model.generate import GenerationConfig, generate
from unio.model.guidance import null_condition
from unio.model.patches import task_input_options
from unio.model.transformer import UnifiedTransformer
from unio.sequence import Annotator
from unio.tasks import TASKS, Example, Task, Tokenizers, make_task
from unio.tasks.base import encode_input

MAX_IMAGE_SIDE = 16384  # larger images are almost surely a mistake (and would exhaust memory)
IMAGE_MODES = ("RGB", "L")


# ------------------------------------------------------------------------------------------ results
@dataclass
class TextResult:
    """caption, vqa, classify, ocr, region_caption, asr, audio_classify."""

    text: str
    valid: bool = True

    @property
    def prediction(self) -> str:
        return self.text


@dataclass
class DetectionResult:
    boxes: np.ndarray  # [N, 4] xyxy in pixels of the input image
    labels: list[str]
    valid: bool = True

    @property
    def prediction(self) -> dict[str, Any]:
        return {"boxes": self.boxes.tolist(), "labels": list(self.labels)}


@dataclass
class BoxResult:
    """ground: the referred region, or None when the output held no box."""

    box: list[float] | None
    valid: bool = True

    @property
    def prediction(self) -> list[float] | None:
        return self.box


@dataclass
class MaskResult:
    """refseg: HxW bool mask at the input image's size, or None."""

    mask: np.ndarray | None
    valid: bool = True

    @property
    def prediction(self) -> np.ndarray | None:
        return self.mask


@dataclass
class KeypointsResult:
    """keypoints: [K, 3] (x, y, visibility) in pixels of the input image; absent points are 0, 0, 0."""

    keypoints: np.ndarray
    valid: bool = True

    @property
    def prediction(self) -> list[list[float]]:
        return self.keypoints.tolist()


@dataclass
class ImageResult:
    """text_to_image, masked_image: HxWx3 uint8 at the image tokenizer's resolution, or None."""

    image: np.ndarray | None
    valid: bool = True

    @property
    def prediction(self) -> np.ndarray | None:
        return self.image


@dataclass
class AudioResult:
    """tts: mono float32 waveform at `sample_rate`, or None."""

    waveform: np.ndarray | None
    sample_rate: int = 0
    valid: bool = True

    @property
    def prediction(self) -> tuple[np.ndarray, int] | None:
        return None if self.waveform is None else (self.waveform, self.sample_rate)


@dataclass
class SpansResult:
    spans: dict[str, str]
    valid: bool = True

    @property
    def prediction(self) -> dict[str, str]:
        return self.spans


def to_result(task: str, prediction: Any, valid: bool) -> Any:
    """The typed result of `Task.parse`'s output for `task`."""
    if task == "detect":
        boxes = np.asarray(prediction["boxes"], dtype=np.float64).reshape(-1, 4)
        return DetectionResult(boxes, list(prediction["labels"]), valid)
    if task == "ground":
        return BoxResult(prediction, valid)
    if task == "refseg":
        return MaskResult(prediction, valid)
    if task == "keypoints":
        return KeypointsResult(np.asarray(prediction, dtype=np.float64).reshape(-1, 3), valid)
    if task in ("text_to_image", "masked_image"):
        return ImageResult(prediction, valid)
    if task == "tts":
        wave, rate = prediction if prediction is not None else (None, 0)
        return AudioResult(wave, rate, valid)
    if task == "span_corruption":
        return SpansResult(prediction, valid)
    return TextResult(prediction, valid)


RESULT_TYPES: dict[str, type] = {
    "caption": TextResult,
    "vqa": TextResult,
    "classify": TextResult,
    "region_caption": TextResult,
    "asr": TextResult,
    "ocr": TextResult,
    "audio_classify": TextResult,
    "detect": DetectionResult,
    "ground": BoxResult,
    "refseg": MaskResult,
    "keypoints": KeypointsResult,
    "text_to_image": ImageResult,
    "masked_image": ImageResult,
    "tts": AudioResult,
    "span_corruption": SpansResult,
}


# ------------------------------------------------------------------------------------------ generation
@dataclass
class GenerationOptions:
    """How predictions are generated (greedy by default; the eval config's `eval.generation`)."""

    batch_size: int = 16  # examples per generate call (sorted by input length first)
    max_new_tokens: int = 64  # budget of variable-length outputs; fixed-length grammars get their length
    num_beams: int = 1  # > 1: beam search
    length_penalty: float = 1.0
    guidance_scale: float = 1.0  # != 1: classifier-free guidance against the null condition
    constrained: bool = True  # decode with the task's grammar (outputs always parse)


@dataclass
class RawPrediction:
    """One example's output: `parse`'s value, whether the output decoded completely, token count."""

    prediction: Any
    valid: bool
    tokens: int
    problem: str | None = None


@dataclass
class GenerationStats:
    tokens: int = 0  # generated tokens up to and including <eos>
    seconds: float = 0.0  # wall time of the whole loop: input encoding, batching, generate, decode, parse
    generate_seconds: float = 0.0  # the part inside `generate` (the model's share)
    examples: int = 0
    invalid: int = 0
    by_problem: dict[str, int] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        """End to end: generated tokens per second of the whole prediction loop."""
        return self.tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def generate_tokens_per_second(self) -> float:
        return self.tokens / self.generate_seconds if self.generate_seconds > 0 else 0.0


class GrammarCache:
    """Compiled grammars per task (compiling a grid grammar takes a while: do it once)."""

    def __init__(self) -> None:
        self._grammars: dict[Task, Any] = {}

    def get(self, task: Task, tok: Tokenizers) -> Any:
        if task not in self._grammars:
            grammar = task.grammar(tok)
            grammar.compiled  # noqa: B018  (compile now, not inside the first generate call)
            self._grammars[task] = grammar
        return self._grammars[task]


def predict_examples(
    model: UnifiedTransformer,
    tok: Tokenizers,
    task: Task,
    examples: Sequence[Example],
    options: GenerationOptions | None = None,
    grammars: GrammarCache | None = None,
    stats: GenerationStats | None = None,
    progress: Any = None,
) -> list[RawPrediction]:
    """Generate and parse a prediction for every example (its `input`; targets are ignored), in the
    examples' order. Batches are formed after sorting by input length, so padding stays small.
    `stats` accumulates tokens, generate time and invalid outputs; `progress.update(n)` is called per
    batch when given (a tqdm bar)."""
    options = options or GenerationOptions()
    grammars = grammars or GrammarCache()
    stats = stats if stats is not None else GenerationStats()
    loop_start = time.perf_counter()
    grammar = grammars.get(task, tok) if options.constrained else None
    budget = options.max_new_tokens
    if grammar is not None:
        budget = max(budget, grammar.compiled.min_length())
    config = GenerationConfig(
        max_new_tokens=budget,
        num_beams=options.num_beams,
        length_penalty=options.length_penalty,
        guidance_scale=options.guidance_scale,
    )
    annotator = (lambda: Annotator(tok.codec)) if task.target_modality != "text" else None
    device = next(model.parameters()).device
    sequences = [encode_input(example, tok) for example in examples]
    order = sorted(range(len(examples)), key=lambda i: len(sequences[i]))
    out: list[RawPrediction | None] = [None] * len(examples)
    for start in range(0, len(order), options.batch_size):
        index = order[start : start + options.batch_size]
        images = [getattr(examples[i], "image", None) for i in index]  # patch inputs: the pixels
        audio = [getattr(examples[i], "audio", None) for i in index]  # and the spectrograms
        collated = collate_inputs([sequences[i] for i in index], images=images, audio=audio)
        batch = {k: v.to(device) for k, v in collated.items()}
        uncond = None
        if options.guidance_scale != 1.0:
            uncond = null_condition(len(index), tok.vocab, device=device)
        begin = time.perf_counter()
        result = generate(
            model,
            batch,
            tok.vocab,
            config,
            annotator_factory=annotator,
            grammar=grammar,
            unconditional_inputs=uncond,
        )
        stats.generate_seconds += time.perf_counter() - begin
        tokens, lengths, finished = result.tokens.cpu(), result.lengths.cpu(), result.finished.cpu()
        for row, i in enumerate(index):
            n = int(lengths[row])
            decoded = tok.codec.decode(tokens[row, :n])
            problem = None
            if not bool(finished[row]):
                problem = "truncated"
            elif decoded.problems:
                problem = decoded.problems[0].kind
            prediction = task.parse(decoded.segments, examples[i].meta, tok)
            out[i] = RawPrediction(prediction, problem is None, n, problem)
            stats.tokens += n
            if problem is not None:
                stats.invalid += 1
                stats.by_problem[problem] = stats.by_problem.get(problem, 0) + 1
        stats.examples += len(index)
        if progress is not None:
            progress.update(len(index))
    stats.seconds += time.perf_counter() - loop_start
    return [p for p in out if p is not None]


# ------------------------------------------------------------------------------------------ inputs
def load_image_input(image: Any, what: str = "image") -> np.ndarray:
    """A path, PIL image or array -> HxWx3 uint8, or ValueError naming the problem."""
    if isinstance(image, str | Path):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{what}: no such file: {path}")
        try:
            with Image.open(path) as opened:
                opened.load()
                image = opened.copy()
        except OSError as err:
            raise ValueError(f"{what}: {path} is not a readable image ({err})") from None
        what = f"{what} {path}"
    if isinstance(image, Image.Image):
        if image.mode not in IMAGE_MODES:
            raise ValueError(
                f"{what}: image mode {image.mode!r} is not supported (use {' or '.join(IMAGE_MODES)}: "
                f"image.convert('RGB'))"
            )
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what}: expected a path, a PIL image or an array, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what}: expected HxWx3 (RGB) or HxW (greyscale), got shape {tuple(image.shape)}")
    if image.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 pixels (0..255), got dtype {image.dtype}")
    h, w = image.shape[:2]
    if min(h, w) < 2 or max(h, w) > MAX_IMAGE_SIDE:
        raise ValueError(f"{what}: size {w}x{h} pixels is outside 2..{MAX_IMAGE_SIDE} per side")
    return np.ascontiguousarray(image)


def load_audio_input(audio: Any, sample_rate: int | None, what: str = "audio") -> tuple[np.ndarray, int]:
    """A .wav path or a mono array (+ sample_rate) -> (float32 waveform, rate); checks happen in
    `Task.build_input` (empty, silent, stereo)."""
    if isinstance(audio, str | Path):
        from unio.data.io import load_wav

        path = Path(audio)
        if not path.is_file():
            raise FileNotFoundError(f"{what}: no such file: {path}")
        wave, rate = load_wav(path)
        wave = wave.numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
        if wave.ndim == 2:  # [channels, samples] -> mono
            wave = wave.mean(axis=0) if wave.shape[0] < wave.shape[1] else wave.mean(axis=1)
        return wave.astype(np.float32), int(rate)
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    if sample_rate is None:
        raise ValueError(f"{what}: an audio array needs sample_rate=...")
    return np.asarray(audio, dtype=np.float32), int(sample_rate)


def _as_list(value: Any) -> tuple[list, bool]:
    if isinstance(value, list | tuple):
        return list(value), True
    return [value], False


# ------------------------------------------------------------------------------------------ pipeline
class Pipeline:
    """A loaded checkpoint: `pipe(task, image=..., text=..., audio=...)` and one helper per task."""

    def __init__(
        self,
        model: UnifiedTransformer,
        tok: Tokenizers,
        tasks: dict[str, Task] | None = None,
        options: GenerationOptions | None = None,
    ) -> None:
        self.model, self.tok = model, tok
        self.tasks = dict(tasks or {})  # task name -> configured task (options from the training config)
        self.options = options or GenerationOptions()
        self.grammars = GrammarCache()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        options: GenerationOptions | None = None,
    ) -> Pipeline:
        """Load a checkpoint directory (or a run directory's newest checkpoint). Task options (class
        lists, detection categories) come from the run's config.yaml when there is one."""
        checkpoint = resolve_checkpoint(path)
        model, tok = load_model(checkpoint, device=device, dtype=dtype)
        return cls(model, tok, tasks_from_run(checkpoint), options)

    def task(self, name: str) -> Task:
        if name in self.tasks:
            return self.tasks[name]
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}")
        # not configured by the run: the task's defaults, its inputs fitted to the model's stems
        config = self.model.config
        self.tasks[name] = make_task(
            name, **task_input_options(config.patch_stem, config.audio_stem, TASKS[name])
        )
        return self.tasks[name]

    def __call__(
        self,
        task: str,
        image: Any = None,
        text: Any = None,
        audio: Any = None,
        sample_rate: int | None = None,
        box: Any = None,
    ) -> Any:
        """Run one task. Any of image/text/audio/box may be a list (of equal lengths; a single value is
        repeated): the result is then a list, in the same order."""
        spec = self.task(task)
        spec.check(self.tok)
        args = {"image": image, "text": text, "audio": audio, "box": box}
        lists = {k: _as_list(v) for k, v in args.items() if v is not None}
        if box is not None and np.ndim(box) == 1:
            lists["box"] = ([box], False)  # one box (4 numbers), not a list of boxes
        sizes = {len(v) for v, is_list in lists.values() if is_list}
        if len(sizes) > 1:
            raise ValueError(f"task {task!r}: list arguments have different lengths {sorted(sizes)}")
        batched = bool(sizes)
        n = sizes.pop() if sizes else 1
        if n == 0:
            return []
        examples = []
        for i in range(n):
            one = {k: (v[i] if is_list else v[0]) for k, (v, is_list) in lists.items()}
            kwargs: dict[str, Any] = {"text": one.get("text"), "box": one.get("box")}
            if one.get("image") is not None:
                kwargs["image"] = load_image_input(one["image"])
            if one.get("audio") is not None:
                kwargs["audio"], kwargs["sample_rate"] = load_audio_input(one["audio"], sample_rate)
            examples.append(spec.build_input(self.tok, **kwargs))
        raw = predict_examples(self.model, self.tok, spec, examples, self.options, self.grammars)
        results = [to_result(spec.name, r.prediction, r.valid) for r in raw]
        return results if batched else results[0]

    # helpers: one per task, the same arguments as __call__ minus the task name
    def detect(self, image: Any) -> Any:
        return self("detect", image=image)

    def caption(self, image: Any) -> Any:
        return self("caption", image=image)

    def vqa(self, image: Any, question: Any) -> Any:
        return self("vqa", image=image, text=question)

    def classify(self, image: Any) -> Any:
        return self("classify", image=image)

    def read_text(self, image: Any) -> Any:
        return self("ocr", image=image)

    def ground(self, image: Any, expression: Any) -> Any:
        return self("ground", image=image, text=expression)

    def segment(self, image: Any, expression: Any) -> Any:
        return self("refseg", image=image, text=expression)

    def keypoints(self, image: Any, box: Any) -> Any:
        return self("keypoints", image=image, box=box)

    def region_caption(self, image: Any, box: Any) -> Any:
        return self("region_caption", image=image, box=box)

    def transcribe(self, audio: Any, sample_rate: int | None = None) -> Any:
        return self("asr", audio=audio, sample_rate=sample_rate)

    def classify_audio(self, audio: Any, sample_rate: int | None = None) -> Any:
        return self("audio_classify", audio=audio, sample_rate=sample_rate)

    def speak(self, text: Any) -> Any:
        return self("tts", text=text)

    def generate_image(self, description: Any) -> Any:
        return self("text_to_image", text=description)


def tasks_from_run(checkpoint: Path) -> dict[str, Task]:
    """Tasks configured as in the run's config.yaml (`<run>/checkpoints/<step>/` -> `<run>/config.yaml`):
    the options of the first dataset that names each task (validation datasets first). Empty when the
    checkpoint is not inside a run directory."""
    config = checkpoint.parent.parent / "config.yaml"
    if checkpoint.parent.name != "checkpoints" or not config.is_file():
        return {}
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(OmegaConf.load(config), resolve=False).get("data") or {}
    entries = sorted(data.values(), key=lambda e: bool(e.get("train", True)))  # validation first
    tasks: dict[str, Task] = {}
    for entry in entries:
        for name, options in (entry.get("tasks") or {}).items():
            if name not in tasks:
                tasks[name] = make_task(name, **(options or {}))
    return tasks
