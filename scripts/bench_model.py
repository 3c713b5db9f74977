"""unio transformer vs Hugging Face T5 at matched size: training and decoding speed, memory, MFU.

    python scripts/bench_model.py                       # needs the bench extra: pip install -e .[bench]
    python scripts/bench_model.py train_repeats=5 decode_repeats=3

The last line of output is one JSON object (train_speedup_vs_hf, decode_speedup_vs_hf,
decode_batch16_speedup_vs_hf, constrained_overhead, train_flops_fraction_of_matmul_peak, ...).
"""

from __future__ import annotations

import json

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import unio.cli
from unio.model.benchmark import BenchConfig, run_benchmark

ConfigStore.instance().store(name="bench_model", node=BenchConfig)


@hydra.main(version_base="1.3", config_path=None, config_name="bench_model")
def hydra_main(cfg) -> None:
    import transformers  # noqa: F401  (the bench extra: fail before any timing, with the install hint)

    result = run_benchmark(OmegaConf.to_object(cfg))
    print(json.dumps({k: round(v, 4) for k, v in result.items()}))


main = unio.cli.entry(hydra_main)


if __name__ == "__main__":
    main()
