"""Pretokenization: builds an Arrow cache, a second run is a cache hit, an interrupted run resumes,
changed tokenizers rebuild or are refused, and cached rows decode back to the task's ground truth."""

from __future__ import annotations

import json
import shutil

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

import scripts.pretokenize  # noqa: F401  (registers the config schema)
from tests.conftest import CONF_DIR
from unio.data.bad_samples import CORRUPT_FILE, DEGENERATE_BOX, BadSampleError
from unio.data.pretokenize import (
    DatasetEntry,
    PretokenizeConfig,
    load_pretokenized,
    load_task_cache,
    pretokenize,
    shard_name,
)
from unio.data.sources.shapes import ShapesConfig, ShapesSource
from unio.tasks import TASKS, Tokenizers, make_task
from unio.tasks.bundle import tiny_grid_tokenizer
from unio.tokenizers.coords import CoordTokenizer

TASK_NAMES = ("detect", "caption", "refseg")


def bundle(text_tokenizer, image_seed: int = 0) -> Tokenizers:
    return Tokenizers.create(
        text_tokenizer,
        CoordTokenizer(),
        image=tiny_grid_tokenizer("image", image_seed),
        mask=tiny_grid_tokenizer("mask", 0),
    )


@pytest.fixture(scope="module")
def tok(text_tokenizer) -> Tokenizers:
    return bundle(text_tokenizer)


def config(tmp_path, tasks=TASK_NAMES, **changes) -> PretokenizeConfig:
    entry = DatasetEntry(source={"kind": "shapes"}, tasks={name: {} for name in tasks})
    return PretokenizeConfig(cache_dir=str(tmp_path), data={"shapes": entry}, shard_size=8, **changes)


def sources() -> dict:
    return {"shapes": ShapesSource(ShapesConfig(num_records=12, image_size=32))}


def run(cfg, tok, **kw):
    return pretokenize(cfg, tok, sources=sources(), log=lambda _: None, progress=False, **kw)


def statuses(results) -> dict[str, str]:
    return {name.split("/")[1]: r.status for name, r in results.items()}


def test_build_then_hit_then_rows_parse_back(tmp_path, tok):
    cfg = config(tmp_path)
    first = run(cfg, tok)
    assert statuses(first) == dict.fromkeys(TASK_NAMES, "built")
    assert first["shapes/detect"].counts == {
        "examples": 12,
        "not_applicable": 0,
        "too_long": 0,
        "records": 12,
        "bad_records": 0,
        "bad_annotations": 0,
    }
    assert (tmp_path / "shapes" / "detect" / shard_name(1)).is_dir()  # 12 records / 8 per shard

    assert statuses(run(cfg, tok)) == dict.fromkeys(TASK_NAMES, "hit")

    components = load_pretokenized(tmp_path, cfg.data, tok)
    detect = components["shapes/detect"]
    assert len(detect) == 12
    row = detect[0]
    decoded = tok.codec.decode(row["target_ids"])
    assert decoded.ok and row["target_ids"][-1] == tok.vocab.eos_id
    meta = json.loads(row["meta"])
    prediction = TASKS["detect"].parse(decoded.segments, meta, tok)
    assert sorted(prediction["labels"]) == sorted(meta["labels"])
    assert len(row["input_ids"]) == len(row["input_row"]) == len(row["input_modality"])


def test_interrupted_build_resumes_only_missing_shards(tmp_path, tok):
    cfg = config(tmp_path, tasks=("detect", "caption"))
    run(cfg, tok)
    task_dir = tmp_path / "shapes" / "caption"
    kept = (task_dir / shard_name(0) / "counts.json").stat().st_mtime_ns
    # Simulate a crash during shard 1: its directory never got renamed into place.
    shutil.rmtree(task_dir / shard_name(1))
    (task_dir / f".{shard_name(1)}.tmp").mkdir()
    manifest = json.loads((task_dir / "manifest.json").read_text())
    (task_dir / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(ValueError, match="incomplete"):
        load_task_cache(task_dir, tok)

    result = run(cfg, tok)
    assert statuses(result) == {"detect": "hit", "caption": "resumed"}
    assert (task_dir / shard_name(0) / "counts.json").stat().st_mtime_ns == kept
    assert result["shapes/caption"].counts["examples"] == 12
    assert len(load_task_cache(task_dir, tok)) == 12


def test_changed_tokenizer_rebuilds_or_is_refused(tmp_path, tok, text_tokenizer):
    # text_to_image generates image codes; detect's image input is patches (no image tokenizer)
    cfg = config(tmp_path, tasks=("text_to_image", "detect", "span_corruption"))
    run(cfg, tok)
    other = bundle(text_tokenizer, image_seed=1)
    with pytest.raises(ValueError, match="image tokenizer"):
        run(config(tmp_path, tasks=("text_to_image",), on_mismatch="refuse"), other)
    with pytest.raises(ValueError, match="built with other tokenizers"):
        load_task_cache(tmp_path / "shapes" / "text_to_image", other)
    # Only the task that uses the image tokenizer is rebuilt; detect (patches) and text-only span
    # corruption stay valid.
    assert statuses(run(cfg, other)) == {
        "text_to_image": "rebuilt",
        "detect": "hit",
        "span_corruption": "hit",
    }
    assert len(load_task_cache(tmp_path / "shapes" / "text_to_image", other)) == 12


def test_changed_options_and_length_limits_are_counted(tmp_path, tok):
    run(config(tmp_path, tasks=("refseg",)), tok)
    # 16 mask codes + brackets + eos = 19 tokens > 10: every example is too long, and a task that ends
    # with 0 examples fails the run (issue #10 defect 4) with the counts.
    with pytest.raises(ValueError, match=r"shapes/refseg: 0 examples .*too_long 12"):
        run(config(tmp_path, tasks=("refseg",), max_target_len=10), tok)
    manifest = json.loads((tmp_path / "shapes" / "refseg" / "manifest.json").read_text())
    assert manifest["complete"] is False and "0 examples" in manifest["failed"]


def test_parallel_build_matches_serial(tmp_path, tok):
    serial = run(config(tmp_path / "serial", tasks=("caption",)), tok)
    parallel = run(config(tmp_path / "parallel", tasks=("caption",), num_proc=2), tok)
    for name in serial:
        a = load_task_cache(serial[name].path, tok)
        b = load_task_cache(parallel[name].path, tok)
        assert a.to_dict() == b.to_dict()


def _compose(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="pretokenize", overrides=overrides)


def test_hydra_config_is_typed_and_rejects_typos():
    cfg = OmegaConf.to_object(_compose(["data=shapes", "tokenizers.image.tiny_seed=0", "num_proc=2"]))
    assert isinstance(cfg, PretokenizeConfig) and cfg.num_proc == 2
    assert isinstance(cfg.data["shapes"], DatasetEntry) and "detect" in cfg.data["shapes"].tasks
    assert cfg.tokenizers.image.tiny_seed == 0
    with pytest.raises((ConfigCompositionException, ValidationError)):
        _compose(["num_prc=2"])
    with pytest.raises((ConfigCompositionException, ValidationError)):
        _compose(["data.shapes.repeets=2"])


@pytest.mark.parametrize("data", sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml")))
def test_every_data_config_composes_with_valid_tasks(data):
    cfg = OmegaConf.to_object(_compose([f"data={data}"]))
    assert cfg.data
    for entry in cfg.data.values():
        assert entry.source.get("kind"), f"conf/data/{data}.yaml: every dataset needs source.kind"
        for name, options in entry.tasks.items():
            make_task(name, **options)  # unknown task names or options raise


class BrokenShapes(ShapesSource):
    """Shapes whose record 3 has a corrupt image file."""

    def load(self, index):
        if index == 3:
            raise BadSampleError("images/3.png", "image", CORRUPT_FILE, "truncated", "shapes-3")
        return super().load(index)


def test_bad_records_raise_or_are_skipped_and_reported(tmp_path, tok):
    cfg = config(tmp_path, tasks=("caption",))
    source = BrokenShapes(ShapesConfig(num_records=12, image_size=32, on_bad_sample="raise"))
    with pytest.raises(BadSampleError, match=r"images/3.png .*field 'image': corrupt file"):
        pretokenize(cfg, tok, sources={"shapes": source}, log=lambda _: None, progress=False)

    source = BrokenShapes(ShapesConfig(num_records=12, image_size=32, on_bad_sample="skip"))
    messages = []
    results = pretokenize(cfg, tok, sources={"shapes": source}, log=messages.append, progress=False)
    assert results["shapes/caption"].counts["bad_records"] == 1
    assert results["shapes/caption"].counts["examples"] == 11
    report = json.loads((tmp_path / "shapes" / "bad_samples.json").read_text())
    assert [e["path"] for e in report["skipped"]] == ["images/3.png"]
    assert any("skipped 1 bad records" in m for m in messages)


def test_transforms_make_one_view_per_repeat_shared_by_the_tasks(tmp_path, tok):
    flip = [{"name": "horizontal_flip", "p": 1.0}]
    cfg = config(tmp_path, tasks=("detect", "caption"))
    cfg.data["shapes"].transforms = flip
    cfg.data["shapes"].repeats = 2
    results = run(cfg, tok)
    assert results["shapes/detect"].counts["examples"] == 24  # 12 records x 2 views
    row = load_task_cache(results["shapes/detect"].path, tok)[0]
    meta = json.loads(row["meta"])
    record = sources()["shapes"][0]
    w = record.image_size[0]
    mirrored = sorted(round(w - b[2], 3) for b in (o.box.tolist() for o in record.objects))
    assert sorted(round(b[0], 3) for b in meta["boxes"]) == mirrored  # ground truth of the flipped view
    assert meta["affine"][0] == -1.0  # x' = -x + w: how to map predictions back

    cfg.data["shapes"].transforms = [{"name": "flip_vertically"}]
    with pytest.raises(ValueError, match=r"data.shapes.transforms\[0\]: unknown transform 'flip_vertically'"):
        run(cfg, tok)


def test_crops_that_drop_objects_skip_scene_level_text(tmp_path, tok):
    crop = [{"name": "random_resized_crop", "size": 32, "scale": [0.1, 0.5], "min_visible": 0.9}]
    cfg = config(tmp_path, tasks=("detect", "caption"))
    cfg.data["shapes"].transforms = crop
    results = run(cfg, tok)
    caption = results["shapes/caption"].counts
    assert caption["not_applicable"] > 0  # small crops drop objects: the captions no longer hold
    assert caption["examples"] + caption["not_applicable"] == 12 and caption["examples"] > 0


# ---- issue #10: bad-record bookkeeping (defects 1-4, 8) ----


class RejectingShapes(ShapesSource):
    """Shapes with record ids in `rejected` refused while indexing and `broken` failing when loaded."""

    def __init__(self, config, rejected=(), broken=()):
        super().__init__(config)
        self.broken = set(broken)
        for i in rejected:
            self.reject(
                BadSampleError("ann.json", f"annotations[id={i}].bbox", DEGENERATE_BOX, "no area", f"r{i}")
            )
        self._kept = [i for i in self._index if i not in set(rejected)]

    def __len__(self):
        return len(self._kept)

    def load(self, index):
        if self._kept[index] in self.broken:
            raise BadSampleError(
                f"images/{self._kept[index]}.png", "image", CORRUPT_FILE, "truncated", str(index)
            )
        return super().load(self._kept[index])


def _skip_source(**kw):
    return RejectingShapes(ShapesConfig(num_records=12, image_size=32, on_bad_sample="skip"), **kw)


def test_records_rejected_while_indexing_are_counted_per_reason(tmp_path, tok):
    """Defect 1: records the source rejected while indexing were listed but counted 0 in the manifest."""
    cfg = config(tmp_path, tasks=("caption",), max_bad_fraction=0.5)
    source = _skip_source(rejected=(5,), broken=(9,))
    results = pretokenize(cfg, tok, sources={"shapes": source}, log=lambda _: None, progress=False)
    counts = results["shapes/caption"].counts
    assert counts["bad_records"] == 2 and counts["examples"] == 10
    manifest = json.loads((tmp_path / "shapes" / "caption" / "manifest.json").read_text())
    assert manifest["counts"] == counts
    assert manifest["bad_records_by_reason"] == {DEGENERATE_BOX: 1, CORRUPT_FILE: 1}
    saved = json.loads((tmp_path / "shapes" / "bad_samples.json").read_text())
    assert saved["counts"] == {DEGENERATE_BOX: 1, CORRUPT_FILE: 1}


def test_source_report_is_merged_not_replaced_per_shard(tmp_path, tok):
    """Defect 2: each shard replaced `source.bad_samples`, so a caller's source kept only the last shard's."""
    cfg = config(tmp_path, tasks=("caption",), max_bad_fraction=0.5)
    source = _skip_source(
        rejected=(0,), broken=(2, 10)
    )  # kept index 1 -> record 2 (shard 0), 9 -> 10 (shard 1)
    pretokenize(cfg, tok, sources={"shapes": source}, log=lambda _: None, progress=False)
    assert source.bad_samples.counts() == {CORRUPT_FILE: 2, DEGENERATE_BOX: 1}


def test_effective_bad_sample_policy_is_in_the_cache_key(tmp_path, tok):
    """Defect 3: a cache built under `skip` was a silent hit when rerun under `raise`."""

    def cfg(policy_top, policy_source=None):
        source = {"kind": "shapes", "num_records": 12, "image_size": 32}
        if policy_source:
            source["on_bad_sample"] = policy_source
        entry = DatasetEntry(source=source, tasks={"caption": {}})
        return PretokenizeConfig(
            cache_dir=str(tmp_path), data={"shapes": entry}, shard_size=8, on_bad_sample=policy_top
        )

    def status(c):
        return pretokenize(c, tok, log=lambda _: None, progress=False)["shapes/caption"].status

    assert status(cfg("skip")) == "built"
    assert status(cfg("raise")) == "rebuilt"
    assert status(cfg("raise", "skip")) == "rebuilt"
    assert status(cfg("skip")) == "hit", "the same effective policy, wherever set, is the same cache"


def test_all_bad_or_too_many_bad_records_fail_the_run(tmp_path, tok):
    """Defect 4: a source whose every record is bad gave an empty cache, status "built" and exit 0."""
    cfg = config(tmp_path, tasks=("caption",))
    source = _skip_source(broken=range(12))
    with pytest.raises(ValueError) as raised:
        pretokenize(cfg, tok, sources={"shapes": source}, log=lambda _: None, progress=False)
    message = str(raised.value)
    assert "\n" not in message, "one line for the CLI"
    assert "shapes/caption: 0 examples" in message and "corrupt file 12" in message
    assert "images/0.png" in message and "images/1.png" in message  # the first offending records
    manifest = json.loads((tmp_path / "shapes" / "caption" / "manifest.json").read_text())
    assert manifest["complete"] is False, "a failed run leaves no manifest that says built (defect 8)"
    with pytest.raises(ValueError, match="incomplete"):
        load_task_cache(tmp_path / "shapes" / "caption", tok)

    # 2 of 12 records lost (17%) > max_bad_fraction 0.1: fails; allowed with 0.2 (no rebuild needed).
    shutil.rmtree(tmp_path / "shapes")
    with pytest.raises(
        ValueError, match=r"shapes/caption: lost 2 of 12 records \(17%\) > max_bad_fraction=0.1"
    ):
        pretokenize(
            cfg,
            tok,
            sources={"shapes": _skip_source(rejected=(1,), broken=(4,))},
            log=lambda _: None,
            progress=False,
        )
    cfg.max_bad_fraction = 0.2
    results = pretokenize(
        cfg,
        tok,
        sources={"shapes": _skip_source(rejected=(1,), broken=(4,))},
        log=lambda _: None,
        progress=False,
    )
    assert (
        results["shapes/caption"].status == "resumed" and results["shapes/caption"].counts["examples"] == 10
    )
    assert len(load_task_cache(tmp_path / "shapes" / "caption", tok)) == 10


def test_dropped_annotations_are_counted_and_the_policy_is_keyed(tmp_path, tok):
    """Defect 5: a bad box is dropped alone and counted; `on_bad_annotation` is part of the key."""
    from tests.test_bad_data import make_coco

    options = make_coco(tmp_path / "coco")
    data = json.loads((tmp_path / "coco" / "instances.json").read_text())
    data["annotations"].append({"id": 13, "image_id": 0, "category_id": 2, "bbox": [20, 10, 30, 8]})
    (tmp_path / "coco" / "instances.json").write_text(json.dumps(data))
    source = {"kind": "coco", **options, "load_masks": False}
    cfg = PretokenizeConfig(
        cache_dir=str(tmp_path / "cache"),
        data={"coco": DatasetEntry(source=source, tasks={"detect": {}})},
        max_bad_fraction=0.5,
    )
    result = pretokenize(cfg, tok, log=lambda _: None, progress=False)["coco/detect"]
    assert result.counts["bad_annotations"] == 1 and result.counts["records"] == 3
    assert result.counts["bad_records"] == 0
    saved = json.loads((tmp_path / "cache" / "coco" / "bad_samples.json").read_text())
    assert saved["dropped_annotation_counts"] == {"box outside image": 1}
    cfg.on_bad_annotation, cfg.on_bad_sample = "drop_record", "skip"
    result = pretokenize(cfg, tok, log=lambda _: None, progress=False)["coco/detect"]
    assert result.status == "rebuilt" and result.counts["bad_records"] == 1 and result.counts["records"] == 2


def test_a_source_iterated_before_counts_each_bad_record_once(tmp_path, tok):
    cfg = config(tmp_path, tasks=("caption",), max_bad_fraction=0.5)
    source = _skip_source(rejected=(0,), broken=(2, 10))
    assert len(list(source)) == 9 and len(source.bad_samples) == 3
    counts = pretokenize(cfg, tok, sources={"shapes": source}, log=lambda _: None, progress=False)[
        "shapes/caption"
    ].counts
    assert counts["bad_records"] == 3 and counts["records"] == 9
