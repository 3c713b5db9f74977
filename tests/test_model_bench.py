"""The benchmark script's config composes, and the benchmark runs end to end at a toy size."""

from __future__ import annotations

import importlib
import itertools
from dataclasses import replace

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from tests.conftest import CONF_DIR, REPO_ROOT
from unio.model.benchmark import (
    COST_PRESETS,
    COST_RESOLUTIONS,
    BenchConfig,
    _patch_rows,
    codes_input_tokens,
    cost_table_lines,
    input_costs,
    patch_stem_flops,
    run_benchmark,
)
from unio.model.patches import PatchStem, PatchStemConfig
from unio.model.transformer import ModelConfig, build_model
from unio.vocab import Vocabulary

KEYS = (
    "train_speedup_vs_hf",
    "decode_speedup_vs_hf",
    "decode_batch16_speedup_vs_hf",
    "constrained_overhead",
    "train_flops_fraction_of_matmul_peak",
)
PATCH_KEYS = (
    "patch_train_tokens_per_s",
    "patch_codes_train_tokens_per_s",
    "patch_vs_codes_speedup",
    "patch_stem_flops_fraction",
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
        patch_image_size=16,
        patch_size=8,
        patch_prompt_len=4,
        patch_repeats=1,
    )
    lines: list[str] = []
    result = run_benchmark(cfg, log=lines.append)
    assert all(result[k] > 0 for k in KEYS if k != "constrained_overhead")
    assert any("train step tokens/s" in line for line in lines)
    for key in PATCH_KEYS:
        assert result[key] > 0, key
    assert any(line.startswith("patch inputs") for line in lines)


# ---------------------------------------------------------------------- patch inputs and the cost table
@pytest.mark.parametrize(
    ("kind", "image_size", "patch_size", "depth"),
    [("conv", 32, 8, 1), ("conv", [16, 48], 16, 1), ("conv", 32, 8, 2), ("linear", 32, 8, 1)],
)
def test_patch_stem_flops_match_torch_flop_counter(kind, image_size, patch_size, depth):
    stem_cfg = PatchStemConfig(kind=kind, patch_size=patch_size, image_size=image_size, conv_depth=depth)
    stem = PatchStem(stem_cfg, d_model=24)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        stem(torch.zeros(1, 3, *stem_cfg.size))
    assert patch_stem_flops(stem_cfg, 24) == counter.get_total_flops()


def test_patch_rows_hold_prompt_plus_image_and_run_through_a_stem_model():
    cfg = BenchConfig(batch_size=2, text_size=1000, patch_image_size=32, patch_size=8, patch_prompt_len=5)
    vocab = Vocabulary.default(text_size=cfg.text_size)
    stem = PatchStemConfig(patch_size=8, image_size=32)
    patches, codes = _patch_rows(cfg, vocab, stem, torch.Generator().manual_seed(0))
    assert patches["input_ids"].shape == (2, 5 + 16) and patches["input_images"].shape == (2, 3, 32, 32)
    assert codes["input_ids"].shape == (2, 5 + codes_input_tokens(32, 8)) == (2, 5 + 16 + 2)
    assert (patches["input_row"][:, 5:] >= 0).all() and (codes["input_row"][:, [5, -1]] == -1).all()
    model_cfg = ModelConfig(d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=64)
    model = build_model(replace(model_cfg, patch_stem=stem), vocab)
    dec = torch.full((2, 3), vocab.bos_id)
    decoder = {
        "decoder_input_ids": dec,
        "decoder_modality": torch.zeros_like(dec),
        "decoder_position": torch.arange(3).expand(2, 3),
        "decoder_row": torch.full_like(dec, -1),
        "decoder_col": torch.full_like(dec, -1),
    }
    assert model(**patches, **decoder).shape == model(**codes, **decoder).shape == (2, 3, vocab.size)


def test_cost_table_follows_the_formulas():
    costs = input_costs(prompt_tokens=16, target_tokens=32, vocab_size=35456)
    assert len(costs) == len(COST_PRESETS) * len(COST_RESOLUTIONS)
    for c in costs:
        assert c.image_tokens == (c.image_size // c.patch_size) ** 2
        assert c.encoder_tokens == 16 + c.image_tokens
        assert c.codes_encoder_tokens == 16 + (c.image_size // 8) ** 2 + 2
    for preset in COST_PRESETS:  # more pixels (at the same patch size) cost more
        rows = [c for c in costs if c.preset == preset and c.patch_size == 16]
        assert [c.image_size for c in rows] == [224, 256, 384]
        for a, b in itertools.pairwise(rows):
            assert a.forward_flops < b.forward_flops and a.stem_flops < b.stem_flops
    for res in COST_RESOLUTIONS:  # bigger presets cost more
        rows = [c.forward_flops for c in costs if (c.image_size, c.patch_size) == res]
        assert rows == sorted(rows)
    # by hand, tiny (d 128, 2+2 layers, d_ff 512) at 64 px / 8 px, 16 prompt + 64 patches, 32 targets:
    tiny = next(c for c in costs if (c.preset, c.image_size) == ("tiny", 64))
    convs = 2 * (32 * 32 * 32 * 3 * 9 + 16 * 16 * 64 * 32 * 9 + 8 * 8 * 128 * 64 * 9)
    assert tiny.stem_flops == convs + 2 * 64 * 128 * 128 == 22_740_992
    L, T, proj, mlp = 80, 32, 4 * 128 * 128, 3 * 128 * 512
    encoder = 2 * (L * (proj + mlp) + 2 * L * L * 128)
    decoder = 2 * (
        T * proj + T * (T + 1) * 128 + 2 * T * 128 * 128 + 2 * L * 128 * 128 + 2 * T * L * 128 + T * mlp
    )
    assert tiny.forward_flops == 2 * (encoder + decoder + T * 128 * 35456) + tiny.stem_flops


def test_docs_cost_table_is_the_generated_one():
    """docs/model.md shows `python scripts/model_costs.py`'s table with the default options."""
    docs = (REPO_ROOT / "docs" / "model.md").read_text()
    for line in cost_table_lines(input_costs()):
        assert line in docs, f"docs/model.md is stale; regenerate with scripts/model_costs.py: {line}"
