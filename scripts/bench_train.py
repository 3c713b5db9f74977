"""Trainer overhead benchmark (unio/train/benchmark.py): `unio-train`'s tokens/s against bare steps.

python scripts/bench_train.py                          # small preset, the numbers in docs/benchmarks.md
python scripts/bench_train.py model_preset=tiny steps=5   # quick smoke run

Last line: one JSON object with trainer_tokens_per_s, bare_step_tokens_per_s, trainer_efficiency, mfu.
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import unio.cli
from unio.train.benchmark import BenchTrainConfig, run_benchmark

ConfigStore.instance().store(name="bench_train_schema", node=BenchTrainConfig)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="bench_train")
def hydra_main(cfg) -> None:
    result = run_benchmark(OmegaConf.to_object(cfg))
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result))


main = unio.cli.entry(hydra_main)

if __name__ == "__main__":
    main()
