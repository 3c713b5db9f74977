"""Evaluate a checkpoint on its validation data with the standard metrics (unio/eval/evaluate.py).

    unio-eval checkpoint=runs/first                                 # every train: false dataset/task
    unio-eval checkpoint=runs/first tasks=[detect,vqa] eval.max_examples=50
    unio-eval checkpoint=runs/first/checkpoints/step-0000400 data=coco out_dir=/tmp/eval
    unio-eval checkpoint=runs/first eval.generation.num_beams=4      # beam search
    unio-eval checkpoint=runs/first eval.generation.guidance_scale=3 tasks=[text_to_image] \\
        eval.inception_weights=/path/to/pt_inception.pth          # CFG + FID

Writes <out_dir>/{results.json, summary.md, gallery/index.html} (default out_dir
<run dir>/eval/<timestamp>), all at once when the run completes (docs/evaluation.md).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import unio.cli
from unio.eval.evaluate import EvalConfig, evaluate

ConfigStore.instance().store(name="eval_schema", node=EvalConfig)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: works as a console entry too


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def hydra_main(cfg) -> None:
    config: EvalConfig = OmegaConf.to_object(cfg)
    report = evaluate(config)
    print(f"eval done: {report['out_dir']}")


main = unio.cli.entry(hydra_main)  # console entry point unio-eval


if __name__ == "__main__":
    main()
