import json

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR
from unio.demo import DemoConfig, run_demo
from unio.vocab import Vocabulary


def test_demo_runs_and_round_trips(tmp_path):
    lines: list[str] = []
    result = run_demo(DemoConfig(output_dir=str(tmp_path)), log=lines.append)
    assert result["prompt_roundtrip"]
    assert result["box_error_px"] <= 0.5 * 640 / 1000 + 1e-9
    vocab = Vocabulary.from_json(tmp_path / "vocabulary.json")
    assert vocab.fingerprint == result["vocab_fingerprint"]
    assert (tmp_path / "text.model").stat().st_size > 0
    assert any(line.startswith("tokens: <to_box>") and "<box>" in line for line in lines)
    assert any(line.split()[:2] == ["person", "box"] for line in lines)  # the label decodes back


def test_demo_config_overrides_are_typed(tmp_path):
    import scripts.demo  # noqa: F401  (registers the schema)

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("demo", overrides=["text.vocab_size=600", f"output_dir={tmp_path}"])
        config = OmegaConf.to_object(cfg)
        assert isinstance(config, DemoConfig) and config.text.vocab_size == 600
        with pytest.raises(Exception, match="vocab_sizee"):
            compose("demo", overrides=["text.vocab_sizee=600"])
    assert json.dumps(config.text.__dict__)


def test_demo_coords_are_overridable_and_match_coord_config(tmp_path):
    """Issue #10 defect 9: `unio-demo coords.num_bins=500` (the README's example). CoordConfig is frozen,
    which OmegaConf turns into a read-only node; the demo's mutable twin must keep CoordConfig's fields."""
    import dataclasses

    import scripts.demo  # noqa: F401  (registers the schema)
    from unio.demo import DemoCoordsConfig
    from unio.tokenizers.coords import CoordConfig

    twin = {f.name: f.default for f in dataclasses.fields(DemoCoordsConfig)}
    assert twin == {f.name: f.default for f in dataclasses.fields(CoordConfig)}
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("demo", overrides=["coords.num_bins=500", "coords.out_of_image=reject"])
    config = OmegaConf.to_object(cfg)
    assert config.coords.build() == CoordConfig(num_bins=500, out_of_image="reject")
    config.output_dir = str(tmp_path)
    result = run_demo(config, log=lambda _: None)
    assert result["box_error_px"] <= 0.5 * 640 / 500 + 1e-9
