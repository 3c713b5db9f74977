"""Model size presets: conf/model/<name>.yaml -> `ModelConfig`, the one loader every entry point uses.

Hydra mains get the preset composed into their config (`model=small`); code outside Hydra (benchmarks,
notebooks) calls `load_model_preset("small")` or passes the path of a preset file. `vocab_size` in a
preset is a placeholder: `build_model` always takes it from the vocabulary.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from unio.model.transformer import ModelConfig, model_config_from_dict

PRESET_DIR = Path(__file__).resolve().parents[2] / "conf" / "model"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_model_preset(name_or_path: str | Path) -> ModelConfig:
    """`"tiny"`, `"small"`, ... (conf/model/) or the path of a preset .yaml file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"model preset {name_or_path!r} not found; presets: {preset_names()}")
    elif not path.is_file():
        raise FileNotFoundError(f"model preset file not found: {path}")
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=True) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a model preset must be a mapping of ModelConfig fields")
    return model_config_from_dict({k: v for k, v in values.items() if not str(k).startswith("_")}, str(path))
