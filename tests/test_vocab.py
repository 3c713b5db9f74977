import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unio.vocab import CORE_SPECIAL_TOKENS, Segment, Vocabulary

# Golden layout of Vocabulary.default(): changing it invalidates every checkpoint and cache, so a
# change must be deliberate (update this table and docs/vocabulary.md together).
GOLDEN_DEFAULT = {
    "special": (0, 124),
    "text": (124, 32000),
    "coord": (32124, 1000),
    "image": (33124, 1024),
    "mask": (34148, 256),
    "audio": (34404, 1024),
}
GOLDEN_FINGERPRINT = "9eeacb439462c159"


def test_default_layout_is_pinned():
    v = Vocabulary.default()
    assert {n: (v.offset(n), v.segment_size(n)) for n in v.segment_names} == GOLDEN_DEFAULT
    assert v.used_size == 35428
    assert v.size == 35456 and v.size % 128 == 0
    assert v.special_tokens[: len(CORE_SPECIAL_TOKENS)] == CORE_SPECIAL_TOKENS
    assert (v.pad_id, v.eos_id, v.bos_id, v.unk_id) == (0, 1, 2, 3)
    assert v.sentinel_id(0) == len(CORE_SPECIAL_TOKENS) and v.num_sentinels == 100
    assert v.fingerprint == GOLDEN_FINGERPRINT


@pytest.mark.parametrize(
    "change",
    [
        {"text_size": 32001},
        {"coord_bins": 999},
        {"image_codes": 8192},
        {"mask_codes": 512},
        {"audio_codes": 1000},
        {"num_sentinels": 99},
    ],
)
def test_fingerprint_changes_with_every_segment(change):
    assert Vocabulary.default(**change).fingerprint != Vocabulary.default().fingerprint


def test_fingerprint_changes_with_special_token_names():
    v = Vocabulary.default()
    renamed = Vocabulary(v.segments, (*v.special_tokens[:-1], "<renamed>"))
    assert renamed.fingerprint != v.fingerprint


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5000), min_size=5, max_size=5),
    data=st.data(),
)
def test_id_conversion_roundtrip(sizes, data):
    v = Vocabulary.default(*sizes)
    for name in v.segment_names:
        n = v.segment_size(name)
        local = torch.tensor(data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=20)))
        glob = v.to_global(name, local)
        assert torch.equal(v.to_local(name, glob), local)
        index = v.segment_names.index(name)
        assert (v.segment_of(glob) == index).all()
        assert all(v.segment_of(int(g)) == name for g in glob[:3])
        # ints and tensors agree
        assert v.to_global(name, int(local[0])) == int(glob[0])
    padding_ids = torch.arange(v.used_size, v.size)
    assert (v.segment_of(padding_ids) == -1).all()
    assert v.segment_of(v.used_size) is None and v.segment_of(-1) is None


def test_conversion_errors_name_segment():
    v = Vocabulary.default()
    with pytest.raises(ValueError, match="coord"):
        v.to_global("coord", 1000)
    with pytest.raises(ValueError, match="coord"):
        v.to_local("coord", torch.tensor([5]))
    with pytest.raises(KeyError, match="unknown vocabulary segment 'colour'"):
        v.offset("colour")
    with pytest.raises(KeyError, match="<nope>"):
        v.token_id("<nope>")


def test_allow_mask():
    v = Vocabulary.default()
    mask = v.allow_mask(segments=["coord"], tokens=["</box>", v.eos_id])
    assert mask.shape == (v.size,) and mask.dtype == torch.bool
    assert mask.sum() == 1000 + 2
    assert mask[v.offset("coord")] and mask[v.offset("coord") + 999] and not mask[v.offset("coord") + 1000]
    assert mask[v.token_id("</box>")] and mask[v.eos_id] and not mask[v.pad_id]
    assert not mask[v.used_size :].any()


def test_json_roundtrip(tmp_path):
    v = Vocabulary.default(text_size=777)
    path = tmp_path / "vocab.json"
    v.to_json(path)
    w = Vocabulary.from_json(path)
    assert w == v and w.fingerprint == v.fingerprint
    assert not list(tmp_path.glob(".*tmp")), "atomic write left a temp file"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("format_version"), "missing field 'format_version'"),
        (lambda d: d.update(format_version=99), "field 'format_version' is 99"),
        (lambda d: d.pop("segments"), "missing field 'segments'"),
        (lambda d: d["segments"][2].update(size="1000"), r"segments\[2\].size"),
        (lambda d: d["segments"][1].pop("name"), r"segments\[1\].name"),
        (lambda d: d.update(special_tokens=d["special_tokens"][:-1]), "special segment size"),
        (lambda d: d.update(pad_multiple="128"), "field 'pad_multiple'"),
    ],
)
def test_malformed_json_names_file_and_field(tmp_path, mutate, message):
    data = Vocabulary.default().to_dict()
    mutate(data)
    path = tmp_path / "bad_vocab.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as err:
        Vocabulary.from_json(path)
    assert "bad_vocab.json" in str(err.value)


def test_unparseable_and_missing_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        Vocabulary.from_json(path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        Vocabulary.from_json(tmp_path / "missing.json")


def test_invalid_layouts_rejected():
    with pytest.raises(ValueError, match="first segment must be 'special'"):
        Vocabulary((Segment("text", 5),), ())
    v = Vocabulary.default()
    with pytest.raises(ValueError, match="duplicate segment"):
        Vocabulary((*v.segments, Segment("text", 3)), v.special_tokens)
    with pytest.raises(ValueError, match="positive integer size"):
        Vocabulary((v.segments[0], Segment("text", 0)), v.special_tokens)


def test_check_fingerprint_message():
    v = Vocabulary.default()
    v.check_fingerprint(v.fingerprint, "checkpoint x")
    with pytest.raises(ValueError, match="checkpoint x was built with vocabulary deadbeef"):
        v.check_fingerprint("deadbeef", "checkpoint x")
