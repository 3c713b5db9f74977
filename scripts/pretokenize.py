"""Pretokenize datasets for the configured tasks into a `datasets` (Arrow) cache (unio/data/pretokenize.py).

unio-pretokenize data=shapes tokenizers.image.path=runs/tok/image tokenizers.mask.path=runs/tok/mask
unio-pretokenize data=coco num_proc=2 cache_dir=cache/pretokenized   # coco128 + coco_mini
A second run with the same tokenizers is a cache hit; other tokenizers rebuild (on_mismatch=rebuild)
or stop with a message (on_mismatch=refuse).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import unio.cli
from unio.data.pretokenize import PretokenizeConfig, pretokenize

ConfigStore.instance().store(name="pretokenize_schema", node=PretokenizeConfig)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: works as a console entry too


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="pretokenize")
def hydra_main(cfg) -> None:
    config: PretokenizeConfig = OmegaConf.to_object(cfg)
    results = pretokenize(config)
    statuses = {name: result.status for name, result in results.items()}
    print(f"pretokenize ok: {statuses}")


main = unio.cli.entry(hydra_main)  # console entry point unio-pretokenize


if __name__ == "__main__":
    main()
