"""Saved tokenizer format: a directory, loadable without Hydra and without unpickling.

    tokenizer/
      model.safetensors   weights (safetensors: plain tensors, no code execution on load)
      config.json         {"format_version", "kind", "config" (resolved), "codebook_size", "grid_shape",
                           "fingerprint"}

``from_pretrained(path)`` rebuilds the right class from ``kind`` and checks the stored fingerprint, so a
cache built with one tokenizer can never silently be read with another.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from unio.tokenizers.audio import AudioTokenizer
from unio.tokenizers.image import ImageTokenizer
from unio.tokenizers.mask import MaskTokenizer
from unio.tokenizers.vq import GridTokenizer

FORMAT_VERSION = 1
TOKENIZER_CLASSES: dict[str, type[GridTokenizer]] = {
    "image": ImageTokenizer,
    "mask": MaskTokenizer,
    "audio": AudioTokenizer,
}
WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"


def build_tokenizer(kind: str, config: dict[str, Any]) -> GridTokenizer:
    """A freshly initialised tokenizer of ``kind`` from its (plain-dict) config."""
    if kind not in TOKENIZER_CLASSES:
        raise ValueError(f"tokenizer kind {kind!r}: expected one of {sorted(TOKENIZER_CLASSES)}")
    return TOKENIZER_CLASSES[kind].from_config_dict(config)


def save_pretrained(tokenizer: GridTokenizer, path: str | Path) -> Path:
    """Write weights + config atomically (each file via a temp file and rename)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().cpu().clone(memory_format=torch.contiguous_format)
        for k, v in tokenizer.state_dict().items()
    }
    tmp = path / f".{WEIGHTS_FILE}.tmp"
    save_file(state, str(tmp), metadata={"kind": tokenizer.kind})
    os.replace(tmp, path / WEIGHTS_FILE)
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": tokenizer.kind,
        "config": tokenizer.config_dict(),
        "codebook_size": tokenizer.codebook_size,
        "grid_shape": list(tokenizer.grid_shape),
        "fingerprint": tokenizer.fingerprint,
    }
    tmp = path / f".{CONFIG_FILE}.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path / CONFIG_FILE)
    return path


def read_saved_config(path: str | Path) -> dict[str, Any]:
    """The config.json of a saved tokenizer (e.g. to size the vocabulary without loading weights)."""
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise FileNotFoundError(f"not a saved tokenizer directory (missing {CONFIG_FILE}): {path}")
    meta = json.loads(file.read_text())
    for key in ("format_version", "kind", "config", "codebook_size", "grid_shape", "fingerprint"):
        if key not in meta:
            raise ValueError(f"{file}: missing field {key!r}")
    if meta["format_version"] != FORMAT_VERSION:
        raise ValueError(
            f"{file}: format_version {meta['format_version']} is not supported (expected {FORMAT_VERSION})"
        )
    return meta


def from_pretrained(path: str | Path, device: str = "cpu") -> GridTokenizer:
    """Load a saved tokenizer directory (any kind) in eval mode."""
    path = Path(path)
    meta = read_saved_config(path)
    tokenizer = build_tokenizer(meta["kind"], meta["config"])
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"missing weights file {weights}")
    tokenizer.load_state_dict(load_file(str(weights)))
    tokenizer.eval()
    if tokenizer.fingerprint != meta["fingerprint"]:
        raise ValueError(
            f"{path}: weights do not match the stored fingerprint {meta['fingerprint']} (corrupted?)"
        )
    if tokenizer.codebook_size != meta["codebook_size"] or list(tokenizer.grid_shape) != meta["grid_shape"]:
        raise ValueError(f"{path}: codebook_size/grid_shape in {CONFIG_FILE} disagree with the config")
    return tokenizer.to(device)
