"""End-to-end demo on built-in data (no downloads, CPU).

unio-demo                          # or: python scripts/demo.py
unio-demo text.vocab_size=600 coords.num_bins=500
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import unio.cli
from unio.demo import DemoConfig, run_demo

ConfigStore.instance().store(name="demo_schema", node=DemoConfig)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: works as a console entry too


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="demo")
def hydra_main(cfg) -> None:
    config: DemoConfig = OmegaConf.to_object(cfg)
    config.output_dir = hydra.core.hydra_config.HydraConfig.get().runtime.output_dir
    result = run_demo(config)
    print(f"demo ok: {result}")


main = unio.cli.entry(hydra_main)  # console entry point unio-demo


if __name__ == "__main__":
    main()
