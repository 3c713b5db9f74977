"""The controlled input comparison (unio/eval/compare_inputs.py): the same model, data, steps and seed
with patch inputs, VQ-code inputs and an image-blind model, on classify, vqa and ground of the shapes
world; held-out metrics and image dependence per task. The last line is the JSON
``{"patches": {task: metric}, "codes": {...}, "blind": {...}, "image_dependence": {...}, ...}``, also
written to <output_dir>/compare_inputs.json.

python scripts/compare_inputs.py                 # the acceptance run of issue #12 (~22 min, 2 cores)
python scripts/compare_inputs.py tokenizers.image.path=artifacts/tokenizers/image_f8_vq1024/tokenizer
python scripts/compare_inputs.py steps=20 train_records=64 eval_records=16 max_eval_examples=16   # smoke
python scripts/compare_inputs.py arms=[patches,blind] stem_kind=linear model=small
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import unio.cli
from unio.atomic import atomic_write_text
from unio.eval.compare_inputs import CompareConfig, compare_inputs

ConfigStore.instance().store(name="compare_inputs_schema", node=CompareConfig)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: works as a console entry too


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="compare_inputs")
def hydra_main(cfg) -> None:
    config: CompareConfig = OmegaConf.to_object(cfg)
    result = compare_inputs(config, log=print)
    output_dir = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    atomic_write_text(output_dir / "compare_inputs.json", json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


main = unio.cli.entry(hydra_main)

if __name__ == "__main__":
    main()
