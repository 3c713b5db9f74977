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
    assert any("<box> 'person'" in line for line in lines)


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
