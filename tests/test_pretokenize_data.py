"""Pretokenizing coco128 + coco_mini for detect / caption / ground / refseg with tiny tokenizers:
the build finishes, a second run is a cache hit, and a changed tokenizer forces a rebuild."""

from __future__ import annotations

import pytest

from tests.test_tasks_data import CocoTestSource
from unio.data.pretokenize import DatasetEntry, PretokenizeConfig, load_pretokenized, pretokenize
from unio.tasks import Tokenizers
from unio.tasks.bundle import tiny_grid_tokenizer

pytestmark = [pytest.mark.data, pytest.mark.slow]


def bundle(text_tokenizer, mask_seed: int) -> Tokenizers:
    return Tokenizers.create(
        text_tokenizer, image=tiny_grid_tokenizer("image", 0), mask=tiny_grid_tokenizer("mask", mask_seed)
    )


def test_pretokenize_coco128_and_coco_mini(data_dir, tmp_path, text_tokenizer):
    data = {
        "coco128": DatasetEntry(source={"kind": "coco"}, tasks={"detect": {}, "ground": {}, "refseg": {}}),
        "coco_mini": DatasetEntry(
            source={"kind": "coco"}, tasks={"detect": {}, "caption": {}, "ground": {}, "refseg": {}}
        ),
    }
    cfg = PretokenizeConfig(cache_dir=str(tmp_path), data=data, shard_size=64, num_proc=2)

    def sources():
        return {
            "coco128": CocoTestSource(data_dir / "coco128", "train2017", captions=False, keypoints=False),
            "coco_mini": CocoTestSource(data_dir / "coco_mini", "train2017", keypoints=False),
        }

    def run(tok):
        results = pretokenize(cfg, tok, sources=sources(), log=lambda _: None, progress=False)
        return {name: r.status for name, r in results.items()}, results

    tok = bundle(text_tokenizer, mask_seed=0)
    statuses, results = run(tok)
    assert set(statuses.values()) == {"built"} and len(statuses) == 7
    detect = results["coco128/detect"].counts
    assert (
        detect["records"] == 128 and detect["examples"] + detect["not_applicable"] == 128
    )  # 2 have no objects
    assert results["coco_mini/caption"].counts["examples"] == 80
    assert all(r.counts["examples"] > 0 for r in results.values())

    statuses, _ = run(tok)
    assert set(statuses.values()) == {"hit"}

    # A different mask tokenizer rebuilds refseg only: the other tasks do not use it.
    other = bundle(text_tokenizer, mask_seed=1)
    statuses, _ = run(other)
    assert {n for n, s in statuses.items() if s == "rebuilt"} == {"coco128/refseg", "coco_mini/refseg"}
    assert {s for n, s in statuses.items() if not n.endswith("refseg")} == {"hit"}
    components = load_pretokenized(tmp_path, data, other)
    assert len(components["coco_mini/refseg"]) == results["coco_mini/refseg"].counts["examples"]
