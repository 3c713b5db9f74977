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


def test_answer_priors_are_the_most_frequent_training_answers():
    from unio.data.record import Record
    from unio.demo import answer_priors

    def record(qa, label):
        return Record(id="r", source="test", qa=qa, label=label)

    train = [
        record([("how many shapes are there?", "two"), ("what color is the star?", "red")], "circle"),
        record([("how many shapes are there?", "two"), ("what color is the circle?", "blue")], "circle"),
        record([("how many shapes are there?", "one"), ("what color is the square?", "blue")], "star"),
    ]
    held = [
        record([("how many shapes are there?", "two"), ("what color is the star?", "blue")], "star"),
        record([("how many shapes are there?", "three"), ("is there a red star?", "yes")], "circle"),
    ]
    # "how many shapes" -> two (1 of 2 right), "what color is" -> blue (right), "is there a" unseen (wrong)
    assert answer_priors(train, held, max_examples=10) == {"vqa": 0.5, "classify": 0.5}
    assert answer_priors(train, held, max_examples=2) == {"vqa": 1.0, "classify": 0.5}  # the first 2 items


def test_model_demo_trains_evaluates_and_predicts_end_to_end(tmp_path):
    """`unio-demo` as a user runs it (a tiny model and data): training, held-out metrics beside the
    image-blind priors, and structured Pipeline results drawn per scene."""
    import os
    import subprocess
    import sys

    overrides = [
        "experiment=shapes_perception",
        "trainer.max_steps=3",
        f"run_dir={tmp_path / 'run'}",
        f"cache_dir={tmp_path / 'cache'}",
        "model.d_model=32",
        "model.n_heads=2",
        "model.d_ff=64",
        "data.shapes.source.num_records=16",
        "data.shapes_val.source.num_records=8",
    ]
    command = [
        sys.executable,
        str(CONF_DIR.parent / "scripts" / "demo.py"),
        f"hydra.run.dir={tmp_path / 'out'}",
        "eval_examples=8",
        "scenes=2",
        "train_overrides=[" + ",".join(f'"{o}"' for o in overrides) + "]",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "WANDB_MODE": "disabled"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "format demo ok" in done.stdout and "model demo ok" in done.stdout
    summary = json.loads((tmp_path / "out" / "model_demo.json").read_text())
    assert summary["final_step"] == 3
    assert set(summary["metrics"]) == {
        f"shapes_val/{t}" for t in ("caption", "vqa", "classify", "detect", "ground")
    }
    assert set(summary["baselines"]) == {"vqa", "classify"}
    assert len(summary["scenes"]) == 2
    for scene in summary["scenes"]:
        assert isinstance(scene["caption"], str) and set(scene["detect"]) == {"boxes", "labels"}
        assert scene["vqa"] and all({"question", "answer", "truth"} <= set(qa) for qa in scene["vqa"])
        assert (tmp_path / "out" / "scenes").is_dir() and os.path.getsize(scene["picture"]) > 0
    assert (tmp_path / "out" / "eval" / "results.json").is_file()
    assert (tmp_path / "out" / "eval" / "gallery" / "index.html").is_file()
