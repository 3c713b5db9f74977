"""Data pipeline benchmark: can the pretokenized loader feed training with room to spare?

Pretokenizes the shapes world for eight tasks (tiny tokenizers unless paths are given) twice, once per
image-input representation, and measures on this machine, for each:
- loader samples/s: mixture sampling + Arrow row reads + collation into model batches (one process,
  `num_workers=0`, the way training consumes it);
- train samples/s: forward + backward + AdamW step of the model preset (`small` by default) on those
  same batches, with batches prefetched so only the step is timed.

Rows (the tasks are the same; only the image input differs):
- ``codes``: image inputs as VQ codes (the tiny tokenizer's grid), the preset as it is;
- ``patches``: every task with an image input (caption, vqa, classify, detect, ground,
  region_caption, refseg) takes ``input_repr: patches``: the cache holds its uint8 pixels at
  ``input_size`` and each batch carries ``input_images`` [n, 3, input_size, input_size]; the model is
  the preset plus a patch stem (``stem_kind``, ``patch_size``, ``image_size = input_size``).
  Default 224 px / 16 px patches (196 tokens), the standard resolution of a ViT-S-class encoder, which
  is what the ``small`` preset would use on real images; 64 px / 8 px is the tiny/demo setting.

The loader must be >= 20x faster than training (`MIN_RATIO`): each row prints PASS or FAIL. Last line:
one JSON object (the codes row under the original keys, the patch row under ``patches_*`` keys).

python scripts/bench_data.py                       # small preset, tiny tokenizers, patches at 224/16
python scripts/bench_data.py input_size=64 patch_size=8          # the demo resolution
python scripts/bench_data.py model_preset=tiny steps=3 input_size=64 patch_size=8    # quick smoke run
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

import unio.cli
from unio.data.collate import IMAGE_KEY, Collator
from unio.data.mixture import Mixture, MixtureConfig
from unio.data.pretokenize import DatasetEntry, PretokenizeConfig, load_pretokenized, pretokenize
from unio.data.sources.shapes import ShapesConfig, ShapesSource
from unio.model.loss import SequenceLoss
from unio.model.patches import PatchStemConfig
from unio.model.presets import load_model_preset
from unio.model.transformer import ModelConfig, build_model
from unio.tasks import make_task
from unio.tasks.bundle import GridTokenizerConfig, Tokenizers, TokenizersConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
TASKS = ("caption", "vqa", "classify", "detect", "ground", "region_caption", "refseg", "span_corruption")
MIN_RATIO = 20.0  # the loader must deliver samples this many times faster than training consumes them
ROWS = ("codes", "patches")


@dataclass
class BenchDataConfig:
    model_preset: str = "small"  # a preset in conf/model/, or the path of a model config .yaml
    records: int = 512  # shapes-world records to pretokenize
    image_size: int = 64  # rendered scene size (the patch row stretches it to input_size, as for any source)
    batch_size: int = 16
    loader_batches: int = 200
    steps: int = 5  # timed training steps (after one warm-up step)
    # patch row: the tasks' input_size / patch_size = the stem's image_size / patch_size
    input_size: int = 224
    patch_size: int = 16
    stem_kind: str = "conv"  # PatchStemConfig.kind: conv | linear
    rows: list[str] = field(default_factory=lambda: list(ROWS))  # which rows to measure
    cache_dir: str | None = None  # None: a temporary directory
    tokenizers: TokenizersConfig = field(
        default_factory=lambda: TokenizersConfig(
            image=GridTokenizerConfig(tiny_seed=0), mask=GridTokenizerConfig(tiny_seed=0)
        )
    )
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.rows) - set(ROWS))
        if unknown or not self.rows:
            raise ValueError(f"bench_data: rows must be a non-empty subset of {list(ROWS)}, got {self.rows}")


ConfigStore.instance().store(name="bench_data_schema", node=BenchDataConfig)


def task_options(cfg: BenchDataConfig, row: str) -> dict[str, dict]:
    """Each task's options in a row: patch inputs on every task that can take them (patch row)."""
    if row == "codes":
        options = {"input_repr": "codes"}
    else:
        options = {"input_repr": "patches", "input_size": cfg.input_size, "patch_size": cfg.patch_size}
    return {name: options if make_task(name).patch_inputs else {} for name in TASKS}


def model_config(cfg: BenchDataConfig, row: str) -> ModelConfig:
    """The preset; for the patch row with a stem matching the tasks' input_size / patch_size."""
    preset = replace(load_model_preset(cfg.model_preset), audio_stem=None)  # no audio in the shapes world
    if row == "codes":
        return replace(preset, patch_stem=None)
    stem = PatchStemConfig(kind=cfg.stem_kind, patch_size=cfg.patch_size, image_size=cfg.input_size)
    return replace(preset, patch_stem=stem)


def loader_rate(loader_iter, batches: int, batch_size: int) -> tuple[float, list[dict]]:
    next(loader_iter)  # first batch pays for opening the Arrow files
    start = time.perf_counter()
    kept = [next(loader_iter) for _ in range(batches)]
    return batches * batch_size / (time.perf_counter() - start), kept


def train_rate(
    cfg: BenchDataConfig, model_cfg: ModelConfig, tok: Tokenizers, batches: list[dict]
) -> tuple[float, ModelConfig]:
    """Training samples/s of `model_cfg` on `batches` (cycled), and the built model's config."""
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg, tok.vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = SequenceLoss(tok.vocab)

    def step(batch: dict) -> None:
        logits = model.forward_batch(batch)
        loss = loss_fn(logits, batch["targets"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    batches = itertools.cycle(batches)
    step(next(batches))  # warm-up: allocator, optimiser state
    start = time.perf_counter()
    for _ in range(cfg.steps):
        step(next(batches))
    return cfg.steps * cfg.batch_size / (time.perf_counter() - start), model.config


def measure_row(cfg: BenchDataConfig, row: str, tok: Tokenizers, cache_dir: str) -> dict[str, float]:
    """Pretokenize, load and train one row; its figures (keys without the row prefix)."""
    dataset = f"shapes_{row}"
    entry = DatasetEntry(
        source={"kind": "shapes", "num_records": cfg.records, "image_size": cfg.image_size, "seed": cfg.seed},
        tasks=task_options(cfg, row),
    )
    pre = PretokenizeConfig(cache_dir=cache_dir, data={dataset: entry}, seed=cfg.seed)
    source = ShapesSource(ShapesConfig(num_records=cfg.records, image_size=cfg.image_size, seed=cfg.seed))
    start = time.perf_counter()
    pretokenize(pre, tok, sources={dataset: source}, log=lambda _: None, progress=False)
    pretokenize_seconds = time.perf_counter() - start

    components = load_pretokenized(pre.cache_dir, pre.data, tok)
    mixture = Mixture(components, MixtureConfig(seed=cfg.seed))
    collate = Collator(tok.vocab.bos_id, tok.vocab.pad_id)
    loader = DataLoader(mixture, batch_size=cfg.batch_size, collate_fn=collate, num_workers=0)
    loader_samples, batches = loader_rate(iter(loader), cfg.loader_batches, cfg.batch_size)
    train_samples, built = train_rate(cfg, model_config(cfg, row), tok, batches[: max(cfg.steps, 1)])

    n = len(batches) * cfg.batch_size
    input_len = sum(b["input_mask"].sum().item() for b in batches) / n
    target_len = sum(b["decoder_mask"].sum().item() for b in batches) / n
    images = sum(b[IMAGE_KEY].shape[0] for b in batches if IMAGE_KEY in b) / n
    result = {
        "model_parameters": built.num_parameters(),
        "mean_input_tokens": round(input_len, 1),
        "mean_target_tokens": round(target_len, 1),
        "input_images_per_sample": round(images, 3),
        "pretokenize_seconds": round(pretokenize_seconds, 2),
        "pretokenize_records_per_s": round(cfg.records / pretokenize_seconds, 1),
        "loader_samples_per_s": round(loader_samples, 1),
        "train_samples_per_s": round(train_samples, 2),
        "loader_to_train_ratio": round(loader_samples / train_samples, 1),
    }
    if row == "patches":
        result = {"input_size": cfg.input_size, "patch_size": cfg.patch_size, **result}
    return result


def run(cfg: BenchDataConfig) -> dict[str, float]:
    """Every row of `cfg.rows`: the codes row under plain keys, the patch row under ``patches_*``."""
    tok = Tokenizers.from_config(cfg.tokenizers)
    result: dict = {"model": cfg.model_preset, "batch_size": cfg.batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        for row in cfg.rows:
            prefix = "" if row == "codes" else f"{row}_"
            for key, value in measure_row(cfg, row, tok, cfg.cache_dir or tmp).items():
                result[prefix + key] = value
    return result


def verdicts(result: dict) -> list[str]:
    """One line per measured row: its loader/train ratio against `MIN_RATIO`, PASS or FAIL."""
    lines = []
    for row in ROWS:
        prefix = "" if row == "codes" else f"{row}_"
        ratio = result.get(prefix + "loader_to_train_ratio")
        if ratio is not None:
            verdict = "PASS" if ratio >= MIN_RATIO else "FAIL"
            lines.append(
                f"{row:<8} loader {result[prefix + 'loader_samples_per_s']} samples/s, train "
                f"{result[prefix + 'train_samples_per_s']} samples/s: ratio {ratio} "
                f"(target >= {MIN_RATIO:g}) {verdict}"
            )
    return lines


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="bench_data")
def hydra_main(cfg) -> None:
    config: BenchDataConfig = OmegaConf.to_object(cfg)
    result = run(config)
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    for line in verdicts(result):
        print(line)
    print(json.dumps(result))


main = unio.cli.entry(hydra_main)


if __name__ == "__main__":
    main()
