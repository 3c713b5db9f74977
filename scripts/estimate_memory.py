"""Training memory per GPU of each model preset (unio/train/memory.py), before you launch.

python scripts/estimate_memory.py                              # the table in docs/training.md
python scripts/estimate_memory.py input_len=1024 target_len=512 gpu_gb=40
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import unio.cli
from unio.model.presets import load_model_preset
from unio.train.memory import estimate_training_memory, largest_batch
from unio.vocab import Vocabulary


@dataclass
class EstimateMemoryConfig:
    presets: list[str] = field(default_factory=lambda: ["tiny", "small", "base", "large", "xl"])
    batch_size: int = 32  # per GPU, for the memory columns
    input_len: int = 512
    target_len: int = 256
    gpu_gb: float = 80.0
    vocab_size: int | None = None  # None: the default vocabulary's size


ConfigStore.instance().store(name="estimate_memory_schema", node=EstimateMemoryConfig)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="estimate_memory")
def hydra_main(cfg) -> None:
    c: EstimateMemoryConfig = OmegaConf.to_object(cfg)
    vocab = c.vocab_size or Vocabulary.default().size
    print(
        f"per GPU, batch {c.batch_size} x ({c.input_len} input + {c.target_len} target) tokens, vocabulary "
        f"{vocab}, AdamW fp32 state, bf16 activations; max batch for a {c.gpu_gb:g} GB GPU"
    )
    print("| preset | params | weights+grads+AdamW GB | activations GB | with checkpointing GB "
          "| total GB | max batch | max batch, checkpointing |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name in c.presets:
        model = load_model_preset(name)
        model.vocab_size = vocab
        est = estimate_training_memory(model, c.batch_size, c.input_len, c.target_len)
        fits = largest_batch(model, c.input_len, c.target_len, c.gpu_gb, checkpointing=False)
        fits_ckpt = largest_batch(model, c.input_len, c.target_len, c.gpu_gb, checkpointing=True)
        states = est.weights_gb + est.gradients_gb + est.optimizer_gb
        print(
            f"| {name} | {est.parameters / 1e6:.0f}M | {states:.1f} | {est.activations_gb:.1f} | "
            f"{est.activations_checkpointed_gb:.1f} | {est.total_gb:.1f} | {fits} | {fits_ckpt} |"
        )


main = unio.cli.entry(hydra_main)

if __name__ == "__main__":
    main()
