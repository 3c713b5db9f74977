"""scripts/bench_data.py: the rows it builds (codes, patch inputs) and an end-to-end run at toy size."""

from __future__ import annotations

import pytest

from scripts.bench_data import BenchDataConfig, model_config, run, task_options, verdicts
from unio.tasks import make_task

IMAGE_INPUT_TASKS = {"caption", "vqa", "classify", "detect", "ground", "region_caption", "refseg"}


def test_patch_row_puts_every_image_input_task_on_patches_with_a_matching_stem():
    cfg = BenchDataConfig(model_preset="tiny", input_size=64, patch_size=8)
    codes = task_options(cfg, "codes")
    assert {name for name, options in codes.items() if options} == IMAGE_INPUT_TASKS
    assert all(options in ({}, {"input_repr": "codes"}) for options in codes.values())
    options = task_options(cfg, "patches")
    assert {n for n, o in options.items() if o.get("input_repr") == "patches"} == IMAGE_INPUT_TASKS
    assert options["span_corruption"] == {}
    for name, opts in options.items():
        make_task(name, **opts)  # valid task options
    assert model_config(cfg, "codes").patch_stem is None
    stem = model_config(cfg, "patches").patch_stem
    assert (stem.kind, stem.image_size, stem.patch_size, stem.num_patches) == ("conv", 64, 8, 64)


def test_verdicts_compare_each_row_with_20x():
    result = {
        "loader_samples_per_s": 100.0,
        "train_samples_per_s": 2.0,
        "loader_to_train_ratio": 50.0,
        "patches_loader_samples_per_s": 30.0,
        "patches_train_samples_per_s": 2.0,
        "patches_loader_to_train_ratio": 15.0,
    }
    lines = verdicts(result)
    assert lines[0].startswith("codes") and lines[0].endswith("PASS")
    assert lines[1].startswith("patches") and lines[1].endswith("FAIL")
    assert verdicts({k: v for k, v in result.items() if not k.startswith("patches")}) == lines[:1]


def test_config_refuses_unknown_rows():
    with pytest.raises(ValueError, match="rows"):
        BenchDataConfig(rows=["codes", "pixels"])


@pytest.mark.slow
def test_bench_data_smoke_run():
    cfg = BenchDataConfig(
        model_preset="tiny", records=16, loader_batches=5, steps=1, batch_size=4, input_size=32, patch_size=8
    )
    result = run(cfg)
    for prefix in ("", "patches_"):
        for key in ("loader_samples_per_s", "train_samples_per_s", "loader_to_train_ratio"):
            assert result[prefix + key] > 0
        assert result[prefix + "loader_to_train_ratio"] == pytest.approx(
            result[prefix + "loader_samples_per_s"] / result[prefix + "train_samples_per_s"], rel=0.01
        )
        assert result[prefix + "mean_target_tokens"] >= 2  # at least one token and <eos></output>
    assert result["input_images_per_sample"] == 0  # codes: images only as VQ codes
    assert result["patches_input_images_per_sample"] > 0  # the batches carry input_images
    # the stem adds parameters; nothing else changes
    assert result["patches_model_parameters"] > result["model_parameters"]
