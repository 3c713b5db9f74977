"""The self-contained model checkpoint: everything evaluation and inference need, no Hydra, no pickle.

    <checkpoint>/
      model.safetensors        weights (safetensors: plain tensors, nothing executed on load)
      model_config.json        the resolved `ModelConfig` (vocab_size included)
      vocabulary.json          the unified vocabulary (`Vocabulary.to_json`)
      tokenizers/
        tokenizers.json        coordinate bins, sentinel count, every fingerprint
        text.model             the SentencePiece model
        image/ mask/ audio/    saved VQ tokenizers (unio/tokenizers/saved.py), those that are loaded

`load_model(path)` rebuilds the tokenizer bundle, checks that its fingerprints (and the vocabulary's)
equal the stored ones, builds the model and loads the weights strictly; any difference is an error
naming the file. The trainer adds its own files (`optimizer.pt`, `trainer_state.json`) beside these in
each `checkpoints/step-NNNNNNN/` directory (unio/train/checkpoint.py); this module ignores them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from unio.atomic import atomic_write_text
from unio.model.transformer import ModelConfig, UnifiedTransformer, model_config_from_dict
from unio.tasks.bundle import GRID_TOKENIZERS, Tokenizers
from unio.tokenizers.coords import CoordConfig, CoordTokenizer
from unio.tokenizers.text import TextTokenizer
from unio.vocab import Vocabulary

WEIGHTS, MODEL_CONFIG, VOCABULARY, TOKENIZERS = (
    "model.safetensors",
    "model_config.json",
    "vocabulary.json",
    "tokenizers",
)
TOKENIZERS_JSON, TEXT_MODEL = "tokenizers.json", "text.model"
# A training run directory (unio/train/checkpoint.py writes it): checkpoints/step-NNNNNNN/, complete
# once trainer_state.json exists, and checkpoints/latest naming the newest.
CHECKPOINTS, LATEST, STATE = "checkpoints", "latest", "trainer_state.json"
STEP_DIR = re.compile(r"^step-(\d{7,})$")


def step_dir_name(step: int) -> str:
    return f"step-{step:07d}"


# --------------------------------------------------------------------------------------- tokenizers
def save_tokenizers(tok: Tokenizers, path: str | Path) -> Path:
    """Write the bundle to `path` (a directory); `load_tokenizers(path)` gives an equal bundle."""
    from unio.tokenizers.saved import save_pretrained

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tok.text.save(path / TEXT_MODEL)
    for kind in GRID_TOKENIZERS:
        grid = getattr(tok, kind)
        if grid is not None:
            save_pretrained(grid, path / kind)
    info = {
        "coord_bins": tok.coords.num_bins,
        "coord_out_of_image": str(tok.coords.out_of_image),
        "num_sentinels": tok.vocab.num_sentinels,
        "fingerprints": tok.fingerprints(),
        "fingerprint": tok.fingerprint,
    }
    atomic_write_text(path / TOKENIZERS_JSON, json.dumps(info, indent=1, sort_keys=True) + "\n")
    return path


def read_tokenizer_fingerprints(path: str | Path) -> dict[str, str]:
    """The fingerprints stored in a saved bundle, without loading any tokenizer."""
    file = Path(path) / TOKENIZERS_JSON
    if not file.is_file():
        raise FileNotFoundError(f"{path}: not a saved tokenizer bundle (missing {TOKENIZERS_JSON})")
    return json.loads(file.read_text())["fingerprints"]


def load_tokenizers(path: str | Path) -> Tokenizers:
    """The bundle saved by `save_tokenizers`, checked against its stored fingerprints."""
    from unio.tokenizers.saved import from_pretrained

    path = Path(path)
    file = path / TOKENIZERS_JSON
    if not file.is_file():
        raise FileNotFoundError(f"{path}: not a saved tokenizer bundle (missing {TOKENIZERS_JSON})")
    info = json.loads(file.read_text())
    if not (path / TEXT_MODEL).is_file():
        raise FileNotFoundError(f"{path}: missing the text tokenizer {TEXT_MODEL}")
    grids = {
        kind: from_pretrained(path / kind) if (path / kind).is_dir() else None for kind in GRID_TOKENIZERS
    }
    tok = Tokenizers.create(
        TextTokenizer.load(path / TEXT_MODEL),
        CoordTokenizer(CoordConfig(num_bins=info["coord_bins"])),
        **grids,
        num_sentinels=info["num_sentinels"],
    )
    stored, loaded = info["fingerprints"], tok.fingerprints()
    if loaded != stored:
        changed = [
            f"{k}: stored {v}, loaded {loaded.get(k)}" for k, v in stored.items() if loaded.get(k) != v
        ]
        raise ValueError(
            f"{file}: the saved tokenizers do not match their fingerprints ({'; '.join(changed)})"
        )
    return tok


def link_or_copy_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of `src` into `dst` (no extra disk space; falls back to copying across
    filesystems), so each checkpoint is self-contained without duplicating the tokenizers."""
    for file in src.rglob("*"):
        target = dst / file.relative_to(src)
        if file.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(file, target)
        except OSError:
            shutil.copy2(file, target)


# --------------------------------------------------------------------------------------- run directories
def _complete(path: Path) -> bool:
    return path.is_dir() and (path / STATE).is_file()


def find_latest(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run directory (or None)."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    pointer = root / LATEST
    if pointer.is_file():
        named = root / pointer.read_text().strip()
        if _complete(named) and STEP_DIR.match(named.name):
            newer = [p for p in list_checkpoints(run_dir) if _step_of(p) > _step_of(named)]
            if not newer:
                return named
    complete = list_checkpoints(run_dir)
    return complete[-1] if complete else None


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete `step-*` checkpoints, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if STEP_DIR.match(p.name) and _complete(p)]
    return sorted(found, key=_step_of)


def _step_of(path: Path) -> int:
    return int(STEP_DIR.match(path.name).group(1))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a run directory (its newest checkpoint) or a checkpoint directory."""
    path = Path(path)
    if _complete(path):
        return path
    if (path / CHECKPOINTS).is_dir():
        found = find_latest(path)
        if found is None:
            raise FileNotFoundError(f"{path}: the run has no complete checkpoint under {CHECKPOINTS}/")
        return found
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    raise FileNotFoundError(f"{path}: neither a run directory nor a complete checkpoint (no {STATE})")


# --------------------------------------------------------------------------------------- model
def save_model_files(
    path: str | Path,
    state_dict: dict[str, torch.Tensor],
    config: ModelConfig,
    vocab: Vocabulary,
    tokenizers_dir: str | Path,
) -> None:
    """Write weights, model config, vocabulary and (linked) tokenizers into the directory `path`.
    Callers write into a temporary directory and rename it (unio/train/checkpoint.py)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(path / WEIGHTS), metadata={"format": "unio"})
    (path / MODEL_CONFIG).write_text(json.dumps(asdict(config), indent=1, sort_keys=True) + "\n")
    vocab.to_json(path / VOCABULARY)
    link_or_copy_tree(Path(tokenizers_dir), path / TOKENIZERS)


def read_model_config(path: str | Path) -> ModelConfig:
    file = Path(path) / MODEL_CONFIG
    if not file.is_file():
        raise FileNotFoundError(f"{path}: not a unio checkpoint (missing {MODEL_CONFIG})")
    return model_config_from_dict(json.loads(file.read_text()), str(file))


def load_model(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> tuple[UnifiedTransformer, Tokenizers]:
    """(model in eval mode, tokenizer bundle) from a checkpoint directory."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {path}")
    config = read_model_config(path)
    tok = load_tokenizers(path / TOKENIZERS)
    vocab_file = path / VOCABULARY
    if vocab_file.is_file():
        stored = Vocabulary.from_json(vocab_file)
        if stored.fingerprint != tok.vocab.fingerprint:
            raise ValueError(
                f"{vocab_file}: vocabulary {stored.fingerprint} differs from the one the tokenizers "
                f"build ({tok.vocab.fingerprint})"
            )
    if config.vocab_size != tok.vocab.size:
        raise ValueError(
            f"{path / MODEL_CONFIG}: vocab_size {config.vocab_size} != vocabulary size {tok.vocab.size}"
        )
    try:
        weights = load_file(str(path / WEIGHTS))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing weights {WEIGHTS}") from None
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path / WEIGHTS}: corrupt safetensors file ({err})") from None
    stem, built = config.patch_stem, config
    if stem is not None and stem.kind == "pretrained":
        # the frozen ViT's weights are in this checkpoint: read them here, not from the file the run
        # was configured with (it may have moved); the model keeps the run's config
        vit = replace(stem.pretrained, weights=str(path / WEIGHTS), prefix="patch_stem.encoder.")
        built = replace(config, patch_stem=replace(stem, pretrained=vit))
    model = UnifiedTransformer(built)
    model.config = config
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path / WEIGHTS}: weights do not fit the model config (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    model.to(device=device, dtype=dtype).eval()
    return model, tok
