"""Learning probes (unio/probes.py): does the model learn to see? Prints one JSON report per run and,
as the last line, a JSON list of all reports (also written to <output_dir>/probes.json).

python scripts/probes.py                                        # every probe, patch inputs, tiny model
python scripts/probes.py probes=[box] stem_position=sine        # one probe, another position embedding
python scripts/probes.py probes=[shape] input_reprs=[patches,codes] max_steps=800
python scripts/probes.py probes=[largest] model=small threads=2 # another preset from conf/model/
python scripts/probes.py stated_budgets=true                    # each probe within its stated budget (~30 min)
"""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

import unio.cli
from unio.atomic import atomic_write_text
from unio.probes import ProbeSweepConfig, run_probes

ConfigStore.instance().store(name="probes_schema", node=ProbeSweepConfig)
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")  # absolute: works as a console entry too


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="probes")
def hydra_main(cfg) -> None:
    config: ProbeSweepConfig = OmegaConf.to_object(cfg)
    reports = [r.to_dict() for r in run_probes(config, log=print)]
    for report in reports:
        print(json.dumps({k: v for k, v in report.items() if k != "history"}))
    output_dir = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    atomic_write_text(output_dir / "probes.json", json.dumps(reports, indent=2) + "\n")
    print(json.dumps([{k: v for k, v in r.items() if k != "history"} for r in reports]))


main = unio.cli.entry(hydra_main)  # console entry point unio-probes

if __name__ == "__main__":
    main()
