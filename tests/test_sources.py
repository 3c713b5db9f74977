"""Every source loads its format: hermetic tiny files, then the real data in ../shared/data (marked `data`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_bad_data import make_coco, make_hf, make_voc, write_image
from unio.data.bad_samples import EMPTY_ANNOTATIONS
from unio.data.io import save_wav as write_wav
from unio.data.record import COCO_KEYPOINT_NAMES
from unio.data.sources import SOURCES, build_source
from unio.data.sources._readers import read_wav


def test_every_source_has_a_config_with_the_policy_field() -> None:
    for kind, (config_class, source_class) in SOURCES.items():
        assert source_class.kind == kind
        assert config_class().on_bad_sample == "raise"


def test_coco_masks_keypoints_captions(tmp_path: Path) -> None:
    options = make_coco(tmp_path)
    source = build_source("coco", options)
    first, second = source[0], source[1]
    person = first.objects[0]
    assert first.captions == ["a cat"] and person.category == "cat"
    assert person.box.tolist() == [2, 2, 12, 10]
    assert person.mask.shape == (24, 32) and person.mask[5, 5] and not person.mask[20, 20]
    assert person.keypoints.shape == (len(COCO_KEYPOINT_NAMES), 3) and person.keypoints[0].tolist() == [
        5,
        6,
        2,
    ]
    assert person.referring == ["the cat"]
    crowd = second.objects[0]  # uncompressed RLE, column-major: the top-left 3 rows x 4 columns
    assert crowd.crowd and crowd.mask.sum() == 12 and crowd.mask[:3, :4].all()
    assert crowd.referring == []  # crowd regions are never described


def test_voc_converts_one_based_boxes(tmp_path: Path) -> None:
    record = build_source("voc", make_voc(tmp_path))[0]
    assert record.objects[0].box.tolist() == [2, 3, 20, 18] and record.objects[0].category == "cat"


def test_wav_reader_handles_pcm_and_float(tmp_path: Path) -> None:
    signal = 0.5 * np.sin(np.linspace(0, 20, 800)).astype(np.float32)
    write_wav(tmp_path / "a.wav", signal, 8000)
    audio, rate = read_wav(tmp_path / "a.wav")
    assert rate == 8000 and np.abs(audio - signal).max() < 1e-4
    import struct

    data = np.stack([signal, signal], axis=1).astype("<f4").tobytes()  # stereo 32-bit float
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + len(data), b"WAVE", b"fmt ", 16, 3, 2, 16000,
                         16000 * 8, 8, 32, b"data", len(data))  # fmt: skip
    (tmp_path / "f.wav").write_bytes(header + data)
    audio, rate = read_wav(tmp_path / "f.wav")
    assert rate == 16000 and np.allclose(audio, signal)


def test_hf_json_with_boxes(tmp_path: Path) -> None:
    record = build_source("hf", make_hf(tmp_path / "json"))[1]
    assert (
        record.label == "cat"
        and record.objects[0].box.tolist() == [2, 3, 10, 12]
        and record.image.shape == (24, 32, 3)
    )


@pytest.mark.slow
def test_hf_parquet_imagefolder_and_disk(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    # Image feature stored as bytes in parquet, ClassLabel ids mapped to names.
    write_image(tmp_path / "p.png", seed=3)
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "y": datasets.ClassLabel(names=["cat", "dog"]),
            "text": datasets.Value("string"),
        }
    )
    table = datasets.Dataset.from_dict(
        {"img": [str(tmp_path / "p.png")] * 2, "y": [0, 1], "text": ["a", "b"]}, features=features
    )
    table.to_parquet(str(tmp_path / "d.parquet"))
    source = build_source("hf", {"builder": "parquet", "data_files": [str(tmp_path / "d.parquet")],
                                 "columns": {"image": "img", "label": "y", "caption": "text"}})  # fmt: skip
    assert [source[i].label for i in range(2)] == ["cat", "dog"] and source[1].captions == ["b"]
    table.save_to_disk(str(tmp_path / "saved"))
    from_disk = build_source(
        "hf", {"from_disk": str(tmp_path / "saved"), "columns": {"image": "img", "label": "y"}}
    )
    assert from_disk[0].image.shape == (24, 32, 3)

    for label in ("cat", "dog"):
        write_image(tmp_path / "folder" / label / f"{label}.png")
    folder = build_source(
        "hf",
        {
            "builder": "imagefolder",
            "data_dir": str(tmp_path / "folder"),
            "columns": {"image": "image", "label": "label"},
        },
    )
    assert sorted(folder[i].label for i in range(len(folder))) == ["cat", "dog"]
    with pytest.raises(ValueError, match="unknown record fields"):
        build_source(
            "hf",
            {
                "builder": "parquet",
                "data_files": [str(tmp_path / "d.parquet")],
                "columns": {"picture": "img"},
            },
        )


def test_hf_audio_column(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    write_wav(tmp_path / "a.wav", 0.1 * np.ones(1600), 16000)
    (tmp_path / "rows.jsonl").write_text(
        json.dumps({"path": str(tmp_path / "a.wav"), "text": "hello"}) + "\n"
    )
    source = build_source("hf", {"builder": "json", "data_files": [str(tmp_path / "rows.jsonl")],
                                 "columns": {"audio": "path", "transcript": "text"}, "sample_rate": 16000})  # fmt: skip
    record = source[0]
    assert record.transcript == "hello" and record.sample_rate == 16000 and len(record.audio) == 1600


# -- real data ------------------------------------------------------------------------------------


def _check(source, expect_len: int | None = None, sample: int = 5) -> list:
    if expect_len is not None:
        assert len(source) == expect_len
    assert len(source.bad_samples) == 0, source.bad_samples.summary()
    records = [source[i] for i in np.linspace(0, len(source) - 1, sample).astype(int)]
    for record in records:
        record.validate()
    return records


def _coco_mini_val(data_dir: Path):
    ann = data_dir / "coco_mini" / "annotations"
    return build_source("coco", {"images": str(data_dir / "coco_mini" / "val2017"), "instances": str(ann / "instances_val2017.json"),
                                 "captions": str(ann / "captions_val2017.json"), "keypoints": str(ann / "person_keypoints_val2017.json")})  # fmt: skip


@pytest.mark.data
def test_real_coco(data_dir: Path) -> None:
    source = _coco_mini_val(data_dir)
    records = _check(source, sample=3)
    assert all(len(r.captions) >= 5 for r in records)
    objects = [o for r in records for o in r.objects]
    assert objects and all(o.mask is not None and o.mask.any() for o in objects if not o.crowd)


@pytest.mark.data
@pytest.mark.slow
def test_real_coco_every_record(data_dir: Path) -> None:
    source = _coco_mini_val(data_dir)
    records = list(source)
    assert len(records) == len(source) == 76
    for record in records:
        record.validate()
    people = [o for r in records for o in r.objects if o.keypoints is not None]
    assert people and all(o.category == "person" for o in people)
    coco128 = build_source("coco", {"images": str(data_dir / "coco128" / "train2017"), "on_bad_sample": "skip",
                                    "instances": str(data_dir / "coco128" / "annotations" / "instances_train2017.json")})  # fmt: skip
    assert len(coco128) == 126 and coco128.bad_samples.counts() == {
        EMPTY_ANNOTATIONS: 2
    }  # 2 images without objects
    negatives = build_source("coco", {"images": str(data_dir / "coco128" / "train2017"), "allow_empty": True,
                                      "instances": str(data_dir / "coco128" / "annotations" / "instances_train2017.json")})  # fmt: skip
    assert len(negatives) == 128
    crowds = [o for i in range(len(coco128)) for o in coco128[i].objects if o.crowd]
    assert len(crowds) == 10 and all(o.mask.any() for o in crowds)  # the RLE masks decode


@pytest.mark.data
def test_real_raccoon_voc(data_dir: Path) -> None:
    root = data_dir / "raccoon"
    source = build_source(
        "voc",
        {"annotations": str(root / "annotations"), "images": str(root / "images"), "classes": ["raccoon"]},
    )
    records = _check(source, 200, sample=3)
    assert all(o.category == "raccoon" for r in records for o in r.objects)


@pytest.mark.data
@pytest.mark.slow
def test_real_raccoon_every_record(data_dir: Path) -> None:
    root = data_dir / "raccoon"
    source = build_source("voc", {"annotations": str(root / "annotations"), "images": str(root / "images")})
    assert sum(len(record.objects) for record in source) == 217 and not len(source.bad_samples)


@pytest.mark.data
def test_real_fsdd(data_dir: Path) -> None:
    recordings = str(data_dir / "fsdd" / "recordings")
    test = build_source("fsdd", {"root": recordings, "split": "test"})
    train = build_source("fsdd", {"root": recordings, "split": "train"})
    total = len(list((data_dir / "fsdd" / "recordings").glob("*.wav")))
    assert len(test) + len(train) == total and len(test) * 10 == total
    for record in _check(test):
        assert record.sample_rate == 8000 and record.label in "0123456789" and record.transcript


@pytest.mark.data
def test_real_ljspeech(data_dir: Path) -> None:
    source = build_source(
        "ljspeech", {"metadata": str(data_dir / "ljspeech" / "metadata.csv"), "on_bad_sample": "skip"}
    )
    wavs = len(list((data_dir / "ljspeech" / "wavs").glob("*.wav")))
    assert len(source) == wavs  # rows without a wav file (partial copies) are reported, not indexed
    records = [source[i] for i in range(3)]
    assert all(r.sample_rate == 22050 and r.transcript and r.duration > 0.5 for r in records)


@pytest.mark.data
def test_real_mnist(data_dir: Path) -> None:
    csv = build_source("mnist", {"path": str(data_dir / "mnist" / "mnist_5k.csv.gz")})
    records = _check(csv, 5000)
    assert all(r.image.shape == (28, 28, 3) and r.label in "0123456789" for r in records)
    idx = build_source("mnist", {"images": str(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz"),
                                 "labels": str(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz")})  # fmt: skip
    assert len(idx) == 10000 and idx[0].label == "7"  # the first official test digit is a 7


def test_easyvqa_package_data() -> None:
    pytest.importorskip("easy_vqa")
    source = build_source("easyvqa", {"split": "test"})
    record = source[0]
    record.validate()
    assert record.image.shape == (64, 64, 3) and record.qa and all(isinstance(a, str) for _, a in record.qa)


def test_rendered_text_records_are_reproducible_words_with_boxes() -> None:
    config = {"num_records": 12, "split": "val", "image_size": 64}
    source, again = build_source("rendered_text", config), build_source("rendered_text", config)
    other_split = build_source("rendered_text", {**config, "split": "train"})
    for i in range(len(source)):
        record = source[i]
        assert record.image.shape == (64, 64, 3) and record.image.dtype == np.uint8
        assert np.array_equal(record.image, again[i].image) and record.transcript == again[i].transcript
        words = [o.attributes["text"] for o in record.objects]
        assert record.transcript == " ".join(words) and all(words)
        for obj in record.objects:
            x1, y1, x2, y2 = obj.box
            assert obj.category == "text" and 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64
            # ink differs from the paper inside the word's box
            assert record.image[int(y1) : int(y2), int(x1) : int(x2)].std() > 10
    assert [source[i].transcript for i in range(12)] != [other_split[i].transcript for i in range(12)]
    cased = {w for i in range(12) for w in source[i].transcript.split()}
    assert any(w.isupper() for w in cased) and any(w.islower() for w in cased)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"cases": ["shouting"]}, "'cases': unknown or empty \\['shouting'\\]"),
        ({"image_size": 16}, "'image_size' must be >= 32, got 16"),
        ({"font_sizes": [3]}, "'font_sizes' must be sizes >= 6"),
        ({"max_lines": 0}, "'max_lines' and 'max_words_per_line' must be >= 1"),
    ],
)
def test_rendered_text_config_errors_name_the_field(options, match) -> None:
    with pytest.raises(ValueError, match=match):
        build_source("rendered_text", options)
