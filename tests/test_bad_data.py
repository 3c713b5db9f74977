"""The bad-sample policy for every source: `raise` names file and field, `skip` reports every record.

Each case builds a tiny hermetic dataset in tmp_path with exactly one broken record, then checks:
- raise: a BadSampleError with the expected reason whose message names the broken file and field;
- skip: every other record loads, and the report lists exactly the broken one with its reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unio.data.bad_samples import (
    BOX_OUTSIDE_IMAGE,
    CORRUPT_FILE,
    DEGENERATE_BOX,
    EMPTY_ANNOTATIONS,
    MALFORMED,
    MISSING_FILE,
    SIZE_MISMATCH,
    UNKNOWN_CATEGORY,
    WRONG_SAMPLE_RATE,
    BadSampleError,
    BadSampleReport,
)
from unio.data.io import save_wav as write_wav
from unio.data.sources import build_source

# -- tiny datasets ------------------------------------------------------------------------------


def write_image(path: Path, width: int = 32, height: int = 24, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_coco(root: Path) -> dict:
    for i in range(3):
        write_image(root / "images" / f"{i}.png", seed=i)
    images = [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 24} for i in range(3)]
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    keypoints = [0.0] * 51
    keypoints[0:3] = [5, 6, 2]
    annotations = [
        {"id": 10, "image_id": 0, "category_id": 1, "bbox": [2, 2, 10, 8], "iscrowd": 0,
         "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]], "keypoints": keypoints},
        {"id": 11, "image_id": 1, "category_id": 2, "bbox": [0, 0, 4, 3], "iscrowd": 1,
         "segmentation": {"size": [24, 32], "counts": [0, 3, 21, 3, 21, 3, 21, 3, 693]}},
        {"id": 12, "image_id": 2, "category_id": 1, "bbox": [20, 10, 8, 8], "iscrowd": 0,
         "segmentation": [[20, 10, 28, 10, 28, 18]]},
    ]  # fmt: skip
    data = {"images": images, "annotations": annotations, "categories": categories}
    captions = {"images": images, "annotations": [{"id": 1, "image_id": 0, "caption": "a cat"}]}
    (root / "instances.json").write_text(json.dumps(data))
    (root / "captions.json").write_text(json.dumps(captions))
    return {
        "images": str(root / "images"),
        "instances": str(root / "instances.json"),
        "captions": str(root / "captions.json"),
    }


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def make_voc(root: Path) -> dict:
    (root / "ann").mkdir(parents=True)
    for i, name in enumerate(["cat", "dog", "cat"]):
        write_image(root / "img" / f"{i}.jpg", seed=i)
        (root / "ann" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>32</width><height>24</height></size>"
            f"<object><name>{name}</name><difficult>0</difficult>"
            f"<bndbox><xmin>3</xmin><ymin>4</ymin><xmax>20</xmax><ymax>18</ymax></bndbox></object></annotation>"
        )
    return {"annotations": str(root / "ann"), "images": str(root / "img"), "classes": ["cat", "dog"]}


def tone(seconds: float = 0.2, rate: int = 8000) -> np.ndarray:
    return 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)


def make_fsdd(root: Path) -> dict:
    root.mkdir(parents=True)
    for name in ("0_anna_0", "1_anna_7", "2_bob_9"):
        write_wav(root / f"{name}.wav", tone(), 8000)
    return {"root": str(root)}


def make_ljspeech(root: Path) -> dict:
    (root / "wavs").mkdir(parents=True)
    rows = []
    for i in range(3):
        write_wav(root / "wavs" / f"LJ-{i}.wav", tone(rate=22050), 22050)
        rows.append(f"LJ-{i}|Text {i}.|Text {i}.")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return {"metadata": str(root / "metadata.csv")}


def make_mnist_csv(root: Path) -> dict:
    root.mkdir(parents=True)
    rows = [",".join(map(str, [*np.full(784, 7 * i), i])) for i in range(3)]
    (root / "digits.csv").write_text("\n".join(rows) + "\n")
    return {"path": str(root / "digits.csv")}


def make_easyvqa(root: Path) -> dict:
    for i in range(3):
        write_image(root / "train" / "images" / f"{i}.png", 64, 64, seed=i)
    questions = [["what shape is it?", "circle", i] for i in range(3)]
    (root / "train" / "questions.json").write_text(json.dumps(questions))
    return {"root": str(root), "split": "train"}


def make_image_folder(root: Path) -> dict:
    for i, label in enumerate(["cat", "dog", "cat"]):
        write_image(root / label / f"{i}.png", seed=i)
    return {"root": str(root), "classes": ["cat", "dog"]}


def make_hf(root: Path) -> dict:
    rows = []
    for i in range(3):
        write_image(root / f"{i}.png", seed=i)
        rows.append(
            {"file": str(root / f"{i}.png"), "name": "cat", "boxes": [[2, 3, 10, 12]], "cats": ["cat"]}
        )
    (root / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    columns = {"image": "file", "label": "name", "boxes": "boxes", "categories": "cats"}
    return {"builder": "json", "data_files": [str(root / "data.jsonl")], "columns": columns}


def corrupt(path: Path) -> None:
    path.write_bytes(b"this is not an image or a wav file" * 3)


def rewrite_jsonl(path: Path, index: int, **changes: object) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[index].update(changes)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


# (kind, builder, breakage, expected reason, a string the error must name (file), field substring)
CASES = [
    ("coco", make_coco, lambda r: corrupt(r / "images" / "1.png"), CORRUPT_FILE, "1.png", "image"),
    ("coco", make_coco, lambda r: (r / "images" / "2.png").unlink(), MISSING_FILE, "2.png", "image"),
    ("coco", make_coco, lambda r: edit_json(r / "instances.json", lambda d: d["annotations"][2].update(bbox=[20, 10, 20, 8])),
     BOX_OUTSIDE_IMAGE, "instances.json", "bbox"),
    ("coco", make_coco, lambda r: edit_json(r / "instances.json", lambda d: d["annotations"][1].update(category_id=99)),
     UNKNOWN_CATEGORY, "instances.json", "category_id"),
    ("coco", make_coco, lambda r: edit_json(r / "instances.json", lambda d: d["annotations"].pop(2)),
     EMPTY_ANNOTATIONS, "instances.json", "annotations"),
    ("coco", make_coco, lambda r: write_image(r / "images" / "1.png", 40, 24), SIZE_MISMATCH, "1.png", "image"),
    ("voc", make_voc, lambda r: corrupt(r / "img" / "1.jpg"), CORRUPT_FILE, "1.jpg", "image"),
    ("voc", make_voc, lambda r: (r / "img" / "2.jpg").unlink(), MISSING_FILE, "2.jpg", "image"),
    ("voc", make_voc, lambda r: (r / "ann" / "1.xml").write_text((r / "ann" / "1.xml").read_text().replace(">20<", ">90<")),
     BOX_OUTSIDE_IMAGE, "1.xml", "bndbox"),
    ("voc", make_voc, lambda r: (r / "ann" / "0.xml").write_text((r / "ann" / "0.xml").read_text().replace("cat", "horse")),
     UNKNOWN_CATEGORY, "0.xml", "name"),
    ("voc", make_voc, lambda r: (r / "ann" / "2.xml").write_text(
        "<annotation><filename>2.jpg</filename><size><width>32</width><height>24</height></size></annotation>"),
     EMPTY_ANNOTATIONS, "2.xml", "object"),
    ("fsdd", make_fsdd, lambda r: write_wav(r / "1_anna_7.wav", tone(rate=16000), 16000), WRONG_SAMPLE_RATE, "1_anna_7.wav", "sample_rate"),
    ("fsdd", make_fsdd, lambda r: corrupt(r / "2_bob_9.wav"), CORRUPT_FILE, "2_bob_9.wav", "audio"),
    ("fsdd", make_fsdd, lambda r: write_wav(r / "badname.wav", tone(), 8000), MALFORMED, "badname.wav", "file name"),
    ("ljspeech", make_ljspeech, lambda r: (r / "wavs" / "LJ-1.wav").unlink(), MISSING_FILE, "LJ-1.wav", "audio"),
    ("ljspeech", make_ljspeech, lambda r: write_wav(r / "wavs" / "LJ-2.wav", tone(), 8000), WRONG_SAMPLE_RATE, "LJ-2.wav", "sample_rate"),
    ("ljspeech", make_ljspeech, lambda r: corrupt(r / "wavs" / "LJ-0.wav"), CORRUPT_FILE, "LJ-0.wav", "audio"),
    ("mnist", make_mnist_csv, lambda r: (r / "digits.csv").write_text((r / "digits.csv").read_text().replace(",2\n", ",12\n")),
     UNKNOWN_CATEGORY, "digits.csv", "line 3"),
    ("mnist", make_mnist_csv, lambda r: (r / "digits.csv").write_text((r / "digits.csv").read_text().replace("0,0,0,", "0,0,", 1)),
     MALFORMED, "digits.csv", "line 1"),
    ("easyvqa", make_easyvqa, lambda r: corrupt(r / "train" / "images" / "1.png"), CORRUPT_FILE, "1.png", "image"),
    ("easyvqa", make_easyvqa, lambda r: write_image(r / "train" / "images" / "3.png", 64, 64), EMPTY_ANNOTATIONS, "3.png", "qa"),
    ("image_folder", make_image_folder, lambda r: corrupt(r / "dog" / "1.png"), CORRUPT_FILE, "1.png", "image"),
    ("image_folder", make_image_folder, lambda r: write_image(r / "horse" / "9.png"), UNKNOWN_CATEGORY, "9.png", "label"),
    ("hf", make_hf, lambda r: corrupt(r / "1.png"), CORRUPT_FILE, "1.png", "file"),
    ("hf", make_hf, lambda r: (r / "2.png").unlink(), MISSING_FILE, "2.png", "file"),
    ("hf", make_hf, lambda r: rewrite_jsonl(r / "data.jsonl", 0, boxes=[[2, 3, 60, 12]]), BOX_OUTSIDE_IMAGE, "data.jsonl", "boxes"),
]  # fmt: skip


def _load_all(kind: str, options: dict) -> tuple[list, BadSampleReport]:
    if kind in ("coco", "voc", "hf"):  # one bad annotation makes the record bad (drop_annotation: below)
        options = {"on_bad_annotation": "drop_record", **options}
    source = build_source(kind, options)
    return list(source), source.bad_samples


@pytest.mark.parametrize(
    ("kind", "make", "breakage", "reason", "names", "field"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES]
)
def test_bad_sample_policies(tmp_path: Path, kind, make, breakage, reason, names, field) -> None:
    options = make(tmp_path / kind)
    good, report = _load_all(kind, {**options, "on_bad_sample": "raise"})
    total = len(good)
    assert total >= 3 and not len(report)
    breakage(tmp_path / kind)

    with pytest.raises(BadSampleError) as raised:
        _load_all(kind, {**options, "on_bad_sample": "raise"})
    assert raised.value.reason == reason
    assert names in str(raised.value) and field in str(raised.value)

    records, report = _load_all(kind, {**options, "on_bad_sample": "skip"})
    assert report.counts() == {reason: 1}, report.summary()
    extra = (
        1
        if reason in (MALFORMED, UNKNOWN_CATEGORY, EMPTY_ANNOTATIONS)
        and kind in ("fsdd", "easyvqa", "image_folder")
        else 0
    )
    assert len(records) + len(report) == total + extra, "every record is either loaded or reported"
    for record in records:
        record.validate()
    assert names in report.summary() and reason in report.summary()


def test_report_lists_every_record_and_round_trips(tmp_path: Path) -> None:
    options = make_ljspeech(tmp_path / "lj")
    for i in (0, 2):
        (tmp_path / "lj" / "wavs" / f"LJ-{i}.wav").unlink()
    source = build_source("ljspeech", {**options, "on_bad_sample": "skip"})
    assert len(source) == 1 and len(source.bad_samples) == 2
    out = tmp_path / "reports" / "bad.json"
    source.bad_samples.write_json(out)
    saved = json.loads(out.read_text())
    assert saved["counts"] == {MISSING_FILE: 2}
    assert sorted(e["record_id"] for e in saved["skipped"]) == ["LJ-0", "LJ-2"]
    merged = BadSampleReport.from_dict(saved)
    merged.merge(BadSampleReport.from_dict(saved))
    assert len(merged) == 2, "the same skipped record is reported once"


def test_get_applies_the_policy_and_getitem_stays_strict(tmp_path: Path) -> None:
    options = make_fsdd(tmp_path / "fsdd")
    corrupt(tmp_path / "fsdd" / "1_anna_7.wav")
    source = build_source("fsdd", {**options, "on_bad_sample": "skip"})
    assert source.get(1) is None and source.bad_samples.counts() == {CORRUPT_FILE: 1}
    with pytest.raises(BadSampleError, match="1_anna_7.wav"):
        source[1]
    with pytest.raises(ValueError, match="on_bad_sample must be one of"):
        build_source("fsdd", {**options, "on_bad_sample": "ignore"})


def test_whole_file_problems_always_raise(tmp_path: Path) -> None:
    (tmp_path / "images.gz").write_bytes(b"\x00\x01\x02\x03garbage")
    with pytest.raises(ValueError, match="cannot read .*images.gz"):
        build_source("mnist", {"images": str(tmp_path / "images.gz"), "labels": str(tmp_path / "images.gz")})
    with pytest.raises(FileNotFoundError, match="'instances'"):
        build_source("coco", {"images": str(tmp_path), "instances": str(tmp_path / "missing.json")})
    with pytest.raises(ValueError, match="never the Hub"):
        build_source("hf", {"builder": "someone/dataset", "columns": {"image": "img"}})


# ---- issue #10 defect 5: one bad annotation does not drop the record's good labels ----


def _coco_with_one_bad_box(root: Path) -> dict:
    options = make_coco(root)
    bad = {"id": 13, "image_id": 0, "category_id": 2, "bbox": [20, 10, 30, 8], "iscrowd": 0}  # x2=50 > 32
    edit_json(root / "instances.json", lambda d: d["annotations"].append(bad))
    return options


def test_bad_annotation_drops_only_that_annotation_by_default(tmp_path: Path) -> None:
    options = _coco_with_one_bad_box(tmp_path / "coco")
    for policy in ("raise", "skip"):
        source = build_source("coco", {**options, "on_bad_sample": policy})
        records = list(source)
        assert len(records) == 3 and len(source.bad_samples) == 0
        first = records[0]
        assert [o.category for o in first.objects] == ["cat"] and first.captions == ["a cat"]
        assert source.bad_samples.annotation_counts() == {BOX_OUTSIDE_IMAGE: 1}
        dropped = source.bad_samples.dropped_annotations[0]
        assert dropped.record_id == "0" and "annotations[id=13].bbox" in dropped.field
        assert "dropped 1 bad annotations" in source.bad_samples.summary()


def test_bad_annotation_drop_record_and_raise(tmp_path: Path) -> None:
    options = _coco_with_one_bad_box(tmp_path / "coco")
    source = build_source("coco", {**options, "on_bad_sample": "skip", "on_bad_annotation": "drop_record"})
    assert len(list(source)) == 2 and source.bad_samples.counts() == {BOX_OUTSIDE_IMAGE: 1}
    with pytest.raises(BadSampleError, match=r"annotations\[id=13\]\.bbox'.*box outside image"):
        build_source("coco", {**options, "on_bad_sample": "skip", "on_bad_annotation": "raise"})
    with pytest.raises(ValueError, match="on_bad_annotation must be one of"):
        build_source("coco", {**options, "on_bad_annotation": "ignore"})


def test_voc_and_hf_drop_one_bad_object(tmp_path: Path) -> None:
    options = make_voc(tmp_path / "voc")
    xml = tmp_path / "voc" / "ann" / "0.xml"
    extra = "<object><name>horse</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
    xml.write_text(xml.read_text().replace("</annotation>", extra + "</annotation>"))
    source = build_source("voc", {**options, "on_bad_sample": "skip"})
    assert len(list(source)) == 3 and source.bad_samples.annotation_counts() == {UNKNOWN_CATEGORY: 1}

    options = make_hf(tmp_path / "hf")
    rewrite_jsonl(
        tmp_path / "hf" / "data.jsonl", 0, boxes=[[2, 3, 10, 12], [2, 3, 60, 12]], cats=["cat", "dog"]
    )
    source = build_source("hf", {**options, "on_bad_sample": "raise"})
    records = list(source)
    assert len(records) == 3 and len(records[0].objects) == 1
    assert source.bad_samples.annotation_counts() == {BOX_OUTSIDE_IMAGE: 1}


# ---- the "Bad inputs" table of docs/data.md: every row is a test ----

DOCS = Path(__file__).resolve().parents[1] / "docs" / "data.md"


def _table() -> dict[str, dict[str, str]]:
    """Rows of the "### Bad inputs" table: case -> {raise, skip, message} (cells without backticks)."""
    text = DOCS.read_text().split("### Bad inputs", 1)[1]
    rows = {}
    for line in text.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cells[0] in ("Case", "---|---|---|---") or set(cells[0]) <= {"-", "|"}:
            continue
        message = cells[3]
        message = message[2:-2].strip() if message.startswith("``") else message.strip("`")
        rows[cells[0]] = {"raise": cells[1], "skip": cells[2], "message": message}
    return rows


def _matches(documented: str, actual: str, folder: Path) -> bool:
    import re

    pattern = ".*".join(re.escape(part) for part in documented.replace("<dir>", str(folder)).split("*"))
    return re.fullmatch(pattern, actual) is not None


def _coco_case(change: Callable[[Path], None]) -> Callable[[Path], tuple[str, dict]]:
    def build(root: Path) -> tuple[str, dict]:
        options = make_coco(root)
        change(root)
        return "coco", options

    return build


def _coco_annotation_case(change: Callable[[Path], None]) -> Callable[[Path], tuple[str, dict]]:
    """COCO where images 1 and 2 also have a good box, so dropping their bad one keeps the image."""

    def add_good(root: Path) -> None:
        good = [{"id": 20 + i, "image_id": i, "category_id": 1, "bbox": [1, 1, 4, 4]} for i in (1, 2)]
        edit_json(root / "instances.json", lambda d: d["annotations"].extend(good))
        change(root)

    return _coco_case(add_good)


def _fsdd_case(change: Callable[[Path], None]) -> Callable[[Path], tuple[str, dict]]:
    def build(root: Path) -> tuple[str, dict]:
        options = make_fsdd(root)
        change(root)
        return "fsdd", options

    return build


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _text_as_jpg(root: Path) -> None:
    edit_json(root / "instances.json", lambda d: d["images"][1].update(file_name="1.jpg"))
    (root / "images" / "1.jpg").write_text("hello, I am a text file\n")


def _other_format(root: Path) -> tuple[str, dict]:
    options = make_coco(root)
    return "coco", {"images": options["images"], "instances": options["captions"]}


def _all_missing(root: Path) -> None:
    for i in range(3):
        (root / "images" / f"{i}.png").unlink()


# case -> (builder, kind of case: record | annotation | whole_file | fine | all_bad, reason)
BAD_INPUTS = {
    "corrupt image": (_coco_case(lambda r: corrupt(r / "images" / "1.png")), "record", CORRUPT_FILE),
    "truncated image": (_coco_case(lambda r: _truncate(r / "images" / "1.png")), "record", CORRUPT_FILE),
    "text renamed .jpg": (_coco_case(_text_as_jpg), "record", CORRUPT_FILE),
    "empty WAV": (_fsdd_case(lambda r: (r / "1_anna_7.wav").write_bytes(b"")), "record", CORRUPT_FILE),
    "silent WAV": (_fsdd_case(lambda r: write_wav(r / "1_anna_7.wav", tone() * 0, 8000)), "fine", None),
    "wrong sample rate": (
        _fsdd_case(lambda r: write_wav(r / "1_anna_7.wav", tone(rate=16000), 16000)),
        "record",
        WRONG_SAMPLE_RATE,
    ),
    "box outside the image": (
        _coco_annotation_case(lambda r: edit_json(r / "instances.json", lambda d: d["annotations"][2].update(bbox=[20, 10, 20, 8]))),
        "annotation",
        BOX_OUTSIDE_IMAGE,
    ),
    "negative size": (
        _coco_annotation_case(lambda r: edit_json(r / "instances.json", lambda d: d["annotations"][2].update(bbox=[20, 10, -8, 8]))),
        "annotation",
        DEGENERATE_BOX,
    ),
    "unknown category": (
        _coco_annotation_case(lambda r: edit_json(r / "instances.json", lambda d: d["annotations"][1].update(category_id=99))),
        "annotation",
        UNKNOWN_CATEGORY,
    ),
    "missing image": (_coco_case(lambda r: (r / "images" / "2.png").unlink()), "record", MISSING_FILE),
    "truncated JSON": (
        _coco_case(lambda r: (r / "instances.json").write_text((r / "instances.json").read_text()[:100])),
        "whole_file",
        None,
    ),
    "JSON of another COCO format": (_other_format, "whole_file", None),
    "all records bad": (_coco_case(_all_missing), "all_bad", MISSING_FILE),
}  # fmt: skip


def test_bad_inputs_table_lists_every_case() -> None:
    assert list(_table()) == list(BAD_INPUTS), "docs/data.md's table and this test name the same cases"


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_inputs_table(tmp_path: Path, case: str) -> None:
    row = _table()[case]
    build, what, reason = BAD_INPUTS[case]
    root = tmp_path / "data"
    kind, options = build(root)
    total = 3

    def load(**policy: str) -> tuple[list, BadSampleReport]:
        return _load_all(kind, {**options, **policy})

    if what == "fine":
        records, report = load(on_bad_sample="raise")
        assert len(records) == total and not len(report) and row["message"] == "none"
        assert float(np.abs(records[1].audio).max()) == 0.0
        return
    if what == "whole_file":
        for policy in ("raise", "skip"):
            with pytest.raises(ValueError) as raised:
                build_source(kind, {**options, "on_bad_sample": policy})
            assert _matches(row["message"], str(raised.value), root), str(raised.value)
            assert raised.value.__cause__ is None
        return
    if what == "all_bad":
        from unio.data.pretokenize import DatasetEntry, PretokenizeConfig, pretokenize

        with pytest.raises(BadSampleError, match="missing file"):
            load(on_bad_sample="raise")
        entry = DatasetEntry(source={"kind": kind, **options, "on_bad_sample": "skip"}, tasks={"caption": {}})
        cfg = PretokenizeConfig(cache_dir=str(tmp_path / "cache"), data={"coco": entry})
        with pytest.raises(ValueError) as raised:
            pretokenize(cfg, _text_only_tokenizers(), log=lambda _: None, progress=False)
        assert _matches(row["message"], str(raised.value), root), str(raised.value)
        return

    strict = {"on_bad_annotation": "drop_record"} if what == "annotation" else {}
    with pytest.raises(BadSampleError) as raised:
        load(on_bad_sample="raise", **strict)
    assert raised.value.reason == reason and raised.value.__cause__ is None
    assert _matches(row["message"], str(raised.value), root), str(raised.value)
    records, report = load(on_bad_sample="skip", **strict)
    assert report.counts() == {reason: 1} and len(records) == total - 1
    assert f"counted as `{reason}`" in row["skip"]
    if what == "annotation":
        for policy in ("raise", "skip"):
            records, report = load(on_bad_sample=policy, on_bad_annotation="drop_annotation")  # the default
            assert len(records) == total and not len(report) and report.annotation_counts() == {reason: 1}
            with pytest.raises(BadSampleError):
                load(on_bad_sample=policy, on_bad_annotation="raise")
        assert "drop_annotation" in row["raise"] and "drop_annotation" in row["skip"]


def _text_only_tokenizers():
    from unio.tasks import Tokenizers
    from unio.tasks.bundle import tiny_grid_tokenizer
    from unio.tokenizers.builtin_text import builtin_corpus
    from unio.tokenizers.coords import CoordTokenizer
    from unio.tokenizers.text import TextTokenizer, TextTokenizerConfig

    text = TextTokenizer.train(builtin_corpus(400), TextTokenizerConfig(vocab_size=400))
    return Tokenizers.create(text, CoordTokenizer(), image=tiny_grid_tokenizer("image", 0))


def test_bad_sample_error_survives_pickling() -> None:
    """Raised in a `num_proc` worker, the error reaches the parent with its fields (it did not unpickle)."""
    import pickle

    error = BadSampleError("a/1.png", "image", CORRUPT_FILE, "truncated", "1")
    error.fatal = True
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.reason == CORRUPT_FILE and again.fatal
