"""The benchmark script's config composes, and the benchmark runs end to end at a toy size."""

from __future__ import annotations

import importlib

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR
from unio.model.benchmark import BenchConfig, run_benchmark

KEYS = (
    "train_speedup_vs_hf",
    "decode_speedup_vs_hf",
    "decode_batch16_speedup_vs_hf",
    "constrained_overhead",
    "train_flops_fraction_of_matmul_peak",
)


def test_bench_config_composes_and_rejects_typos():
    importlib.import_module("scripts.bench_model")  # registers the schema
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="bench_model", overrides=["train_repeats=2"])
        assert OmegaConf.to_object(cfg).train_repeats == 2
        with pytest.raises(Exception, match="trian_repeats"):
            compose(config_name="bench_model", overrides=["trian_repeats=2"])


@pytest.mark.slow
def test_benchmark_runs_at_toy_size():
    pytest.importorskip("transformers")
    cfg = BenchConfig(
        d_model=32,
        n_layers=1,
        n_heads=2,
        d_ff=64,
        text_size=1000,
        batch_size=2,
        input_len=16,
        target_len=8,
        train_repeats=1,
        decode_tokens=9,
        decode_input_len=8,
        decode_repeats=1,
        constrained_repeats=1,
        constrained_grid=(2, 3),
        peak_matmul_size=256,
    )
    lines: list[str] = []
    result = run_benchmark(cfg, log=lines.append)
    assert all(result[k] > 0 for k in KEYS if k != "constrained_overhead")
    assert any("train step tokens/s" in line for line in lines)
