"""Input tokens and forward FLOPs per example of each model preset at several image resolutions, for
patch inputs (a conv stem by default) and for the same image as VQ codes (unio/model/benchmark.py
`input_costs`). Analytic: nothing is run or timed.

python scripts/model_costs.py                              # the table in docs/model.md
python scripts/model_costs.py prompt_tokens=64 target_tokens=128 'resolutions=[[512,16]]'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import unio.cli
from unio.model.benchmark import COST_PRESETS, COST_RESOLUTIONS, cost_table_lines, input_costs
from unio.vocab import Vocabulary


@dataclass
class ModelCostsConfig:
    presets: list[str] = field(default_factory=lambda: list(COST_PRESETS))
    # [image side px, patch side px] pairs
    resolutions: list[list[int]] = field(default_factory=lambda: [list(r) for r in COST_RESOLUTIONS])
    prompt_tokens: int = 16  # text tokens of the encoder input besides the image
    target_tokens: int = 32  # decoder tokens
    stem_kind: str = "conv"  # PatchStemConfig.kind: conv | linear
    codes_downsample: int = 8  # the codes columns: an f8 VQ tokenizer's grid
    vocab_size: int | None = None  # None: the default vocabulary's size


ConfigStore.instance().store(name="model_costs_schema", node=ModelCostsConfig)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="model_costs")
def hydra_main(cfg) -> None:
    c: ModelCostsConfig = OmegaConf.to_object(cfg)
    for pair in c.resolutions:
        if len(pair) != 2:
            raise ValueError(f"model_costs: resolutions entries are [image px, patch px], got {pair}")
    vocab = c.vocab_size or Vocabulary.default().size
    costs = input_costs(
        c.presets,
        [tuple(pair) for pair in c.resolutions],
        prompt_tokens=c.prompt_tokens,
        target_tokens=c.target_tokens,
        stem_kind=c.stem_kind,
        codes_downsample=c.codes_downsample,
        vocab_size=vocab,
    )
    print(
        f"one example: {c.prompt_tokens} prompt tokens + one image, {c.target_tokens} target tokens, "
        f"vocabulary {vocab}, {c.stem_kind} patch stem; forward FLOPs (training ~3x), 2 per multiply-add"
    )
    for line in cost_table_lines(costs):
        print(line)


main = unio.cli.entry(hydra_main)

if __name__ == "__main__":
    main()
