"""Train an image, mask or audio VQ tokenizer, then evaluate it on the held-out split.

    python scripts/train_tokenizer.py tokenizer=image/image_f4_fsq1000 tokenizer_data=coco_images
    python scripts/train_tokenizer.py tokenizer=mask/mask_f8_256 tokenizer_data=coco_masks
    python scripts/train_tokenizer.py tokenizer=audio/audio_mel80_vq1024 tokenizer_data=fsdd

Writes <train.out_dir>/{checkpoint.pt, tokenizer/, samples/, train_log.jsonl, eval/report.json}.
Running the same command again resumes from checkpoint.pt (train.resume=true).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

import unio.cli
from unio.data.tokenizer_datasets import TokenizerDataConfig, build_tokenizer_dataset
from unio.eval.tokenizer_metrics import evaluate_tokenizer
from unio.tokenizers.vq import config_from_dict
from unio.train.tokenizer_trainer import TokenizerTrainConfig, train_tokenizer


@dataclass
class TokenizerPreset:
    """A conf/tokenizer/<kind>/<preset>.yaml: `config` is the kind's model config, checked field by
    field when the tokenizer is built (unio/tokenizers/vq.py `config_from_dict`)."""

    name: str = MISSING
    kind: str = MISSING  # image | mask | audio
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class TokenizerEvalOptions:
    batch_size: int = 64
    jpeg: bool = True  # images: JPEG baseline at equal bits per pixel
    num_audio_examples: int = 8


@dataclass
class TrainTokenizerMainConfig:
    """The schema of conf/train_tokenizer.yaml: a typed root, so a misspelled `+field=` is refused."""

    data_root: str = "../shared/data"
    tokenizer_data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    tokenizer: TokenizerPreset = field(default_factory=TokenizerPreset)
    train: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    eval_after_training: bool = True
    eval: TokenizerEvalOptions = field(default_factory=TokenizerEvalOptions)


ConfigStore.instance().store(name="train_tokenizer_schema", node=TrainTokenizerMainConfig)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train (and evaluate) from a composed ``train_tokenizer`` config; returns the eval report (or {})."""
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    train_cfg = config_from_dict(TokenizerTrainConfig, plain["train"], "train")
    data_cfg = config_from_dict(TokenizerDataConfig, plain["tokenizer_data"], "tokenizer_data")
    result = train_tokenizer(plain["tokenizer"]["kind"], plain["tokenizer"]["config"], data_cfg, train_cfg)
    print(f"trained {result.steps} steps in {result.minutes:.1f} min -> {result.out_dir / 'tokenizer'}")
    if not plain["eval_after_training"]:
        return {}
    eval_set = build_tokenizer_dataset(data_cfg, result.tokenizer, train=False)
    training = {
        "train_steps": result.steps,
        "train_minutes": result.minutes,
        "train_clock": train_cfg.budget_clock,
    }
    report = evaluate_tokenizer(
        result.tokenizer, eval_set, result.out_dir / "eval", **plain["eval"], extra=training
    )
    print(json.dumps(report, indent=2, sort_keys=True))
    return report


CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: works as a console entry too


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train_tokenizer")
def hydra_main(cfg: DictConfig) -> None:
    run(cfg)


main = unio.cli.entry(hydra_main)  # console entry point unio-train-tokenizer


if __name__ == "__main__":
    main()
