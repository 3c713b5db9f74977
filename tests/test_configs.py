"""Every Hydra config composes (lightning-hydra-template style): primary configs with their script's
schema registered, and every experiment file on top of its primary config."""

from __future__ import annotations

import importlib
import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR, REPO_ROOT

PRIMARY = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))
EXPERIMENTS = (
    sorted((CONF_DIR / "experiment").glob("**/*.yaml")) if (CONF_DIR / "experiment").is_dir() else []
)


def _compose(config_name: str, overrides: list[str]):
    # Importing the script registers its structured-config schema in Hydra's ConfigStore.
    if (REPO_ROOT / "scripts" / f"{config_name}.py").exists():
        importlib.import_module(f"scripts.{config_name}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("config_name", PRIMARY)
def test_primary_config_composes(config_name):
    cfg = _compose(config_name, [])
    assert OmegaConf.to_container(cfg, resolve=False)


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_composes(experiment):
    # Hydra reads `# @package _global_` only as the very first line, so the launch command comes right after it.
    header = experiment.read_text().splitlines()[:2]
    assert header[0] == "# @package _global_", f"{experiment}: first line must be '# @package _global_'"
    first_line = header[1]
    assert first_line.startswith("#") and ("unio-" in first_line or "python" in first_line), (
        f"{experiment}: the line after the package header must be the launch command as a comment"
    )
    # the launch command names the primary config's entry point, e.g. `unio-train experiment=...`
    # whole names only: `unio-train-tokenizer` is train_tokenizer, not train
    primary = next(
        (p for p in PRIMARY if re.search(rf"(unio-{p.replace('_', '-')}|\b{p}\.py)(?![\w-])", first_line)),
        None,
    )
    assert primary is not None, f"{experiment}: cannot tell which primary config it overrides"
    name = experiment.relative_to(CONF_DIR / "experiment").with_suffix("").as_posix()
    assert _compose(primary, [f"experiment={name}"]) is not None
