"""scripts/bench_data.py runs end to end (tiny model, few records) and reports the documented keys."""

from __future__ import annotations

import pytest

from scripts.bench_data import BenchDataConfig, run


@pytest.mark.slow
def test_bench_data_smoke_run():
    result = run(BenchDataConfig(model_preset="tiny", records=16, loader_batches=5, steps=1, batch_size=4))
    for key in ("loader_samples_per_s", "train_samples_per_s", "loader_to_train_ratio"):
        assert result[key] > 0
    assert result["loader_to_train_ratio"] == pytest.approx(
        result["loader_samples_per_s"] / result["train_samples_per_s"], rel=0.01
    )
    assert result["mean_target_tokens"] >= 2  # at least one token and <eos>
