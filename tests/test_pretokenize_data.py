"""Pretokenizing coco128 + coco_mini for detect / caption / ground / refseg with tiny tokenizers,
through the shipped `conf/data/coco.yaml`: the build finishes, a second run is a cache hit, and a
changed tokenizer forces a rebuild of exactly the caches that use it."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tests.test_pretokenize import _compose
from unio.data.pretokenize import pretokenize

pytestmark = [pytest.mark.data, pytest.mark.slow]
TASKS = ("detect", "caption", "ground", "refseg")


def test_pretokenize_coco128_and_coco_mini(data_dir, tmp_path):
    overrides = [
        "data=coco",
        f"data_root={data_dir}",
        f"cache_dir={tmp_path}",
        "tokenizers.image.tiny_seed=0",
        "tokenizers.mask.tiny_seed=0",
        "shard_size=64",
        "num_proc=2",
    ]
    cfg = OmegaConf.to_object(_compose(overrides))
    del cfg.data["coco_mini_val"]
    for entry in cfg.data.values():
        entry.tasks = {name: options for name, options in entry.tasks.items() if name in TASKS}

    def run(cfg):
        results = pretokenize(cfg, log=lambda _: None, progress=False)
        return {name: r.status for name, r in results.items()}, results

    statuses, results = run(cfg)
    assert set(statuses) == {"coco128/detect", "coco128/ground", "coco128/refseg"} | {
        f"coco_mini/{t}" for t in TASKS
    }
    assert set(statuses.values()) == {"built"}
    detect = results["coco128/detect"].counts
    assert detect == {
        "records": 128,
        "bad_records": 0,
        "bad_annotations": 0,
        "not_applicable": 2,
        "too_long": 0,
        "examples": 126,
    }
    assert results["coco_mini/caption"].counts["examples"] == results["coco_mini/caption"].counts["records"]
    assert all(r.counts["examples"] > 0 for r in results.values())

    statuses, _ = run(cfg)
    assert set(statuses.values()) == {"hit"}

    # Another mask tokenizer rebuilds refseg only: the other tasks do not use it.
    cfg.tokenizers.mask.tiny_seed = 1
    statuses, _ = run(cfg)
    assert {n for n, s in statuses.items() if s == "rebuilt"} == {"coco128/refseg", "coco_mini/refseg"}
    assert {s for n, s in statuses.items() if not n.endswith("refseg")} == {"hit"}
