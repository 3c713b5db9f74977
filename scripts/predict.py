"""Run one task of a checkpoint on files or a folder (unio/pipeline.py), writing pictures, sounds and JSON.

    unio-predict checkpoint=runs/first task=detect inputs=photos/             # every image in the folder
    unio-predict checkpoint=runs/first task=vqa inputs=cat.jpg text="What color is the cat?"
    unio-predict checkpoint=runs/first task=keypoints inputs=person.jpg box=[10,20,200,380]
    unio-predict checkpoint=runs/first task=asr inputs=clips/                 # .wav files
    unio-predict checkpoint=runs/first task=tts texts=["seven","three tones"]
    unio-predict checkpoint=runs/first prompt=OD inputs=photos/               # Florence-2 prompt and format

Writes <out_dir>/results.json (one entry per input, geometry in the input's pixels), an annotated PNG
per image input (boxes, masks, keypoints drawn on it), a PNG per generated image and a WAV per
generated clip. Default out_dir: predictions/<task>-<timestamp>. With `prompt=` (a Florence-2 task prompt,
with or without its brackets: OD, CAPTION, CAPTION_TO_PHRASE_GROUNDING text=..., REGION_TO_DESCRIPTION
box=[...]; unio/florence.py) instead of `task=`, each entry holds Florence-2's post-processed output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf
from PIL import Image

import unio.cli
from unio.atomic import atomic_write_bytes, atomic_write_text
from unio.data.io import encode_wav
from unio.eval.gallery import annotate
from unio.florence import canonical_prompt, run_prompt
from unio.pipeline import GenerationOptions, Pipeline, load_image_input
from unio.tasks.dense_tasks import mask_to_rle

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav"}
TEXT_ONLY = {"tts", "text_to_image"}


@dataclass
class PredictConfig:
    checkpoint: str = MISSING
    task: str | None = None
    prompt: str | None = None  # a Florence-2 task prompt instead of `task` (unio/florence.py)
    inputs: str | None = None
    text: str | None = None
    texts: list[str] | None = None
    box: list[float] | None = None
    out_dir: str | None = None
    device: str = "cpu"
    batch_size: int = 16
    max_new_tokens: int = 64


ConfigStore.instance().store(name="predict_schema", node=PredictConfig)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def list_inputs(path: str, audio: bool) -> list[Path]:
    root = Path(path)
    suffixes = AUDIO_SUFFIXES if audio else IMAGE_SUFFIXES
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"inputs: no such file or folder: {root}")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in suffixes)
    if not files:
        raise ValueError(f"inputs: {root} holds no {'/'.join(sorted(suffixes))} file")
    return files


def _png(image: Image.Image | np.ndarray) -> bytes:
    import io

    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def to_json(task: str, result: Any, out: Path, stem: str, image: np.ndarray | None) -> dict[str, Any]:
    """One result as JSON; pictures and sounds go next to results.json."""
    entry: dict[str, Any] = {"valid": result.valid}
    prediction = result.prediction
    if task == "refseg":
        entry["mask_rle"] = mask_to_rle(prediction) if prediction is not None else None
    elif task in ("text_to_image", "masked_image"):
        if prediction is not None:
            atomic_write_bytes(out / f"{stem}.png", _png(prediction))
            entry["image"] = f"{stem}.png"
    elif task == "tts":
        if prediction is not None:
            atomic_write_bytes(out / f"{stem}.wav", encode_wav(prediction[0], prediction[1]))
            entry["audio"] = f"{stem}.wav"
    else:
        entry["prediction"] = prediction
    if image is not None and task not in ("text_to_image", "masked_image"):
        picture = annotate(task, image, prediction)
        if picture is not None:
            atomic_write_bytes(out / f"{stem}.png", _png(picture))
            entry["picture"] = f"{stem}.png"
    return entry


def run(cfg: PredictConfig) -> Path:
    if (cfg.task is None) == (cfg.prompt is None):
        raise ValueError("unio-predict: give task=<unio task> or prompt=<Florence-2 prompt>, exactly one")
    options = GenerationOptions(batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens)
    pipe = Pipeline.from_pretrained(cfg.checkpoint, device=cfg.device, options=options)
    if cfg.prompt is not None:
        return run_prompts(cfg, pipe)
    task = pipe.task(cfg.task)
    names: list[str]
    images: list[np.ndarray | None]
    if cfg.task in TEXT_ONLY:
        if not cfg.texts:
            raise ValueError(f"task {cfg.task!r} takes texts=[...] (one output per text), not inputs")
        results = pipe(cfg.task, text=list(cfg.texts))
        names, images = [f"text-{i:04d}" for i in range(len(results))], [None] * len(results)
        sources = list(cfg.texts)
    else:
        if cfg.inputs is None:
            raise ValueError(f"task {cfg.task!r} needs inputs=<file or folder>")
        audio = task.condition == "audio"
        files = list_inputs(cfg.inputs, audio)
        images = [None] * len(files) if audio else [load_image_input(f) for f in files]
        kwargs: dict[str, Any] = {"audio": [str(f) for f in files]} if audio else {"image": images}
        results = pipe(cfg.task, text=cfg.text, box=cfg.box, **kwargs)
        names, sources = [f.stem for f in files], [str(f) for f in files]
    out = Path(cfg.out_dir or f"predictions/{cfg.task}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (name, result) in enumerate(zip(names, results)):
        entry = {"input": sources[i], **to_json(cfg.task, result, out, f"{i:04d}-{name}", images[i])}
        entries.append(entry)
    report = {"checkpoint": cfg.checkpoint, "task": cfg.task, "text": cfg.text, "results": entries}
    atomic_write_text(out / "results.json", json.dumps(report, indent=1, default=float) + "\n")
    return out


def run_prompts(cfg: PredictConfig, pipe: Pipeline) -> Path:
    """`prompt=`: every image of `inputs` through one Florence-2 prompt; results.json in its format."""
    prompt = canonical_prompt(cfg.prompt)
    if cfg.inputs is None:
        raise ValueError(f"prompt {prompt} needs inputs=<image file or folder>")
    files = list_inputs(cfg.inputs, audio=False)
    text_input = cfg.text if cfg.text is not None else cfg.box
    entries = [{"input": str(f), **run_prompt(pipe, prompt, f, text_input)} for f in files]
    name = prompt.strip("<>").lower()
    out = Path(cfg.out_dir or f"predictions/{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    report = {"checkpoint": cfg.checkpoint, "prompt": prompt, "text_input": text_input, "results": entries}
    atomic_write_text(out / "results.json", json.dumps(report, indent=1, default=float) + "\n")
    return out


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
def hydra_main(cfg) -> None:
    out = run(OmegaConf.to_object(cfg))
    print(f"predict done: {out}/results.json")


main = unio.cli.entry(hydra_main)  # console entry point unio-predict


if __name__ == "__main__":
    main()
