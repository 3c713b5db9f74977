"""Train the unified encoder-decoder (unio/train/trainer.py) from conf/train.yaml.

    unio-train                                           # tiny preset, built-in shapes world, CPU
    unio-train trainer.max_steps=200 run_dir=runs/first  # the README's first run
    unio-train model=small data=coco tokenizers.image.path=artifacts/tokenizers/image_f8_vq1024/tokenizer
    torchrun --nproc_per_node 8 -m scripts.train dist=fsdp run_dir=runs/big   # scripts/launch/torchrun.sh
    unio-train run_dir=runs/first trainer.max_steps=400                        # resumes (resume=auto)
    unio-train val_metrics=true   # task metrics (accuracy, mAP, CIDEr, ...) at every validation

Writes run_dir/{config.yaml, metrics.jsonl, loss_curve.png, tokenizers/, checkpoints/step-NNNNNNN/,
checkpoints/latest} (docs/training.md).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

import unio.cli
from unio.train.distributed import print0, shutdown_distributed
from unio.train.trainer import TrainConfig, train

ConfigStore.instance().store(name="train_schema", node=TrainConfig)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: works as a console entry too


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def hydra_main(cfg) -> None:
    config: TrainConfig = OmegaConf.to_object(cfg)
    if config.experiment_name is None:
        config.experiment_name = HydraConfig.get().runtime.choices.get("experiment")
    val_hook = None
    if config.val_metrics:
        from unio.eval.evaluate import make_val_hook  # the trainer itself never imports evaluation

        val_hook = make_val_hook(config.data, max_examples=config.trainer.val_examples, seed=config.seed)
    try:
        result = train(config, val_hook=val_hook)
        print0(
            f"train {result.status}: {result.steps} steps (now at step {result.final_step}), loss "
            f"{result.first_loss} -> {result.last_loss}, checkpoint {result.checkpoint}"
        )
    finally:
        shutdown_distributed()  # after the last print0: rank 0 is known only while the group exists


main = unio.cli.entry(hydra_main)  # console entry point unio-train


if __name__ == "__main__":
    main()
