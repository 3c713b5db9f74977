"""End-to-end demo on built-in data (no downloads, CPU; unio/demo.py): the vocabulary and sequence
format, then the unified model trained on the shapes world, evaluated on held-out scenes and run
through the Pipeline.

unio-demo                          # or: python scripts/demo.py  (about 10 min on 2 CPU cores; again: resumes)
unio-demo train=false              # the format part alone (seconds)
unio-demo train=false text.vocab_size=600 coords.num_bins=500   # the format part with other sizes
unio-demo 'train_overrides=["experiment=shapes_perception","trainer.max_steps=2000","run_dir=runs/demo_long"]'
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import unio.cli
from unio.demo import DemoConfig, run_demo, run_model_demo
from unio.train.trainer import TrainConfig

ConfigStore.instance().store(name="demo_schema", node=DemoConfig)
ConfigStore.instance().store(name="train_schema", node=TrainConfig)  # conf/train.yaml's schema
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: works as a console entry too


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="demo")
def hydra_main(cfg) -> None:
    config: DemoConfig = OmegaConf.to_object(cfg)
    config.output_dir = hydra.core.hydra_config.HydraConfig.get().runtime.output_dir
    result = run_demo(config)
    print(f"format demo ok: {result}\n")
    if config.train:
        # the training config exactly as `unio-train <train_overrides>` composes it
        train_config: TrainConfig = OmegaConf.to_object(
            hydra.compose("train", overrides=config.train_overrides)
        )
        if train_config.experiment_name is None:
            train_config.experiment_name = "demo"
        summary = run_model_demo(train_config, config)
        print(f"model demo ok: {summary['metrics']} (image-blind priors {summary['baselines']})")


main = unio.cli.entry(hydra_main)  # console entry point unio-demo


if __name__ == "__main__":
    main()
