"""Evaluate a saved tokenizer: PSNR/SSIM + JPEG at equal bpp (images), IoU (masks), mel L1 and spectral
convergence with Griffin-Lim examples (audio); codebook usage, perplexity and bits for all.

    python scripts/eval_tokenizer.py tokenizer_path=artifacts/tokenizers/image_f4_fsq1000/tokenizer \
        tokenizer_data=coco_images
    python scripts/eval_tokenizer.py tokenizer_path=... tokenizer_data=coco_images tokenizer_data.eval_resize=64

Writes <out_dir>/report.json and reconstructions.png (and audio/*.wav).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

import unio.cli
from unio.data.tokenizer_datasets import TokenizerDataConfig, build_tokenizer_dataset
from unio.eval.tokenizer_metrics import evaluate_tokenizer
from unio.tokenizers.saved import from_pretrained
from unio.tokenizers.vq import config_from_dict


@dataclass
class EvalTokenizerMainConfig:
    """The schema of conf/eval_tokenizer.yaml: a typed root, so a misspelled `+field=` is refused."""

    data_root: str = "../shared/data"
    tokenizer_path: str = MISSING  # a saved tokenizer directory (<train.out_dir>/tokenizer)
    tokenizer_data: TokenizerDataConfig = field(default_factory=TokenizerDataConfig)
    out_dir: str | None = None  # default: <tokenizer_path>/../eval_<tokenizer_data kind>
    device: str = "cpu"
    num_threads: int = 2
    batch_size: int = 64
    jpeg: bool = True
    num_audio_examples: int = 8


ConfigStore.instance().store(name="eval_tokenizer_schema", node=EvalTokenizerMainConfig)


def run(cfg: DictConfig) -> dict[str, Any]:
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    torch.set_num_threads(plain["num_threads"])
    data_cfg = config_from_dict(TokenizerDataConfig, plain["tokenizer_data"], "tokenizer_data")
    tokenizer = from_pretrained(plain["tokenizer_path"], device=plain["device"])
    suffix = f"_resize{data_cfg.eval_resize}" if data_cfg.eval_resize else ""
    out_dir = (
        plain["out_dir"] or Path(plain["tokenizer_path"]).resolve().parent / f"eval_{data_cfg.kind}{suffix}"
    )
    dataset = build_tokenizer_dataset(data_cfg, tokenizer, train=False)
    report = evaluate_tokenizer(
        tokenizer,
        dataset,
        out_dir,
        batch_size=plain["batch_size"],
        jpeg=plain["jpeg"],
        num_audio_examples=plain["num_audio_examples"],
    )
    print(json.dumps(report, indent=2, sort_keys=True))
    print(f"report: {Path(out_dir) / 'report.json'}")
    return report


CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: works as a console entry too


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval_tokenizer")
def hydra_main(cfg: DictConfig) -> None:
    run(cfg)


main = unio.cli.entry(hydra_main)  # console entry point unio-eval-tokenizer


if __name__ == "__main__":
    main()
