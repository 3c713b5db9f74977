import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unio.sequence import (
    Annotator,
    AudioCodes,
    Boxes,
    ImageCodes,
    MaskCodes,
    Points,
    SequenceCodec,
    Special,
    Text,
    canonicalize,
)
from unio.vocab import MODALITIES, Vocabulary

GRID_SHAPES = {"image": (3, 4), "mask": (2, 2), "audio": (2, 5)}


@pytest.fixture(scope="module")
def codec(text_tokenizer):
    vocab = Vocabulary.default(
        text_size=text_tokenizer.vocab_size, coord_bins=100, image_codes=64, mask_codes=16, audio_codes=32
    )
    return SequenceCodec(vocab, text_tokenizer, GRID_SHAPES)


texts = st.text(st.sampled_from(list("abc xyz<>/.日🙂\n")), min_size=0, max_size=12)
bins = st.integers(0, 99)


@st.composite
def segments(draw):
    kind = draw(st.sampled_from(["text", "boxes", "points", "image", "mask", "audio", "special"]))
    if kind == "text":
        return Text(draw(texts))
    if kind == "boxes":
        n = draw(st.integers(0, 3))
        coords = draw(st.lists(st.lists(bins, min_size=4, max_size=4), min_size=n, max_size=n))
        labels = draw(st.none() | st.lists(texts, min_size=n, max_size=n))
        return Boxes(torch.tensor(coords, dtype=torch.long).reshape(n, 4), labels)
    if kind == "points":
        n = draw(st.integers(0, 4))
        coords = draw(st.lists(st.lists(bins, min_size=2, max_size=2), min_size=n, max_size=n))
        vis = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
        return Points(
            torch.tensor(coords, dtype=torch.long).reshape(n, 2), torch.tensor(vis, dtype=torch.long)
        )
    if kind == "special":
        return Special(
            draw(
                st.sampled_from(["<bos>", "<sep>", "<to_image>", "<to_box>", "<extra_id_0>", "<extra_id_7>"])
            )
        )
    grid_type = {"image": ImageCodes, "mask": MaskCodes, "audio": AudioCodes}[kind]
    h, w = GRID_SHAPES[kind]
    size = {"image": 64, "mask": 16, "audio": 32}[kind]
    values = draw(st.lists(st.integers(0, size - 1), min_size=h * w, max_size=h * w))
    return grid_type(torch.tensor(values).reshape(h, w))


@settings(max_examples=300, deadline=None)
@given(segs=st.lists(segments(), max_size=6), eos=st.booleans())
def test_encode_decode_identity(codec, segs, eos):
    seq = codec.encode(segs, add_eos=eos)
    decoded = codec.decode(seq.ids)
    assert decoded.ok, decoded.problems
    assert decoded.ended_with_eos == eos
    assert decoded.segments == canonicalize(segs)
    # metadata: positions are 0..L-1, the streaming annotator reproduces encode's metadata
    assert torch.equal(seq.position, torch.arange(len(seq)))
    modality, row, col = Annotator(codec).annotate(seq.ids.tolist())
    assert modality == seq.modality.tolist() and row == seq.row.tolist() and col == seq.col.tolist()
    # trailing padding is ignored
    padded = torch.cat([seq.ids, torch.zeros(3, dtype=torch.long)])
    assert codec.decode(padded).segments == decoded.segments


def test_metadata_of_grid_tokens(codec):
    seq = codec.encode([Text("hi "), ImageCodes(torch.arange(12).reshape(3, 4))])
    grid = seq.row >= 0
    assert grid.sum() == 12
    assert seq.row[grid].tolist() == [r for r in range(3) for _ in range(4)]
    assert seq.col[grid].tolist() == list(range(4)) * 3
    assert set(seq.modality[grid].tolist()) == {MODALITIES.index("image")}


def _random_ids(codec, rng: random.Random, length: int) -> list[int]:
    """Random ids biased towards structure so malformed groups of every kind are exercised."""
    v = codec.vocab
    structural = [
        v.token_id(t)
        for t in (
            "<box>",
            "</box>",
            "<point>",
            "</point>",
            "<image>",
            "</image>",
            "<mask>",
            "</mask>",
            "<audio>",
            "</audio>",
            "<visible>",
            "<occluded>",
            "<absent>",
            "<eos>",
            "<pad>",
            "<extra_id_3>",
        )
    ]
    pools = [
        structural,
        list(v.segment_range("coord")),
        list(v.segment_range("text")),
        list(v.segment_range("image")),
        list(v.segment_range("mask")),
        list(v.segment_range("audio")),
        list(range(v.used_size, v.size)) or [v.size - 1],
        [-5, v.size + 10],
    ]
    weights = [30, 25, 20, 8, 5, 5, 4, 3]
    return [rng.choice(rng.choices(pools, weights)[0]) for _ in range(length)]


def test_decoder_is_total_on_10k_random_sequences(codec):
    rng = random.Random(0)
    kinds = set()
    for _ in range(10_000):
        ids = _random_ids(codec, rng, rng.randint(0, 40))
        decoded = codec.decode(ids)  # must never raise
        kinds.update(p.kind for p in decoded.problems)
        assert len(decoded.problems) <= 1
        for p in decoded.problems:
            assert 0 <= p.position <= len(ids) and p.message
        # the valid prefix is itself a valid sequence that decodes to the same segments
        again = codec.decode(codec.encode(decoded.segments).ids)
        assert again.ok and again.segments == decoded.segments
    assert {
        "truncated",
        "unexpected_token",
        "unbalanced",
        "grid_size",
        "bad_box",
        "bad_point",
        "padding",
    } <= kinds


@pytest.mark.parametrize(
    ("build", "kind", "n_segments"),
    [
        (
            lambda c, v: [*c.encode([Text("ab")]).ids.tolist(), v.token_id("<box>"), v.offset("coord")],
            "truncated",
            1,
        ),
        (lambda c, v: [v.token_id("</box>")], "unbalanced", 0),
        (lambda c, v: [v.token_id("<image>"), v.offset("image"), v.token_id("</image>")], "grid_size", 0),
        (lambda c, v: [v.token_id("<box>"), *[v.offset("coord")] * 3, v.token_id("</box>")], "bad_box", 0),
        (lambda c, v: [v.token_id("<mask>"), v.sentinel_id(2)], "unexpected_token", 0),
        (lambda c, v: [v.token_id("<point>"), v.offset("coord"), v.token_id("<visible>")], "bad_point", 0),
        (lambda c, v: [v.token_id("<box>"), v.eos_id], "truncated", 0),
        (lambda c, v: [v.token_id("<visible>")], "unexpected_token", 0),
    ],
)
def test_malformed_sequences_give_prefix_and_problem(codec, build, kind, n_segments):
    decoded = codec.decode(build(codec, codec.vocab))
    assert [p.kind for p in decoded.problems] == [kind]
    assert len(decoded.segments) == n_segments


def test_decode_stops_at_eos(codec):
    v = codec.vocab
    ids = [*codec.encode([Text("ab")], add_eos=True).ids.tolist(), v.token_id("</box>")]
    decoded = codec.decode(ids)
    assert decoded.ok and decoded.ended_with_eos and decoded.segments == [Text("ab")]


def test_encode_errors(codec):
    with pytest.raises(ValueError, match="grid shape"):
        codec.encode([ImageCodes(torch.zeros(2, 2, dtype=torch.long))])
    with pytest.raises(ValueError, match="coordinate bins must be in"):
        codec.encode([Boxes(torch.tensor([[0, 0, 100, 5]]))])
    with pytest.raises(ValueError, match="structural"):
        codec.encode([Special("<box>")])
    with pytest.raises(ValueError, match="labels"):
        Boxes(torch.zeros(2, 4), ["one"])
    with pytest.raises(ValueError, match="visibility"):
        Points(torch.zeros(1, 2), torch.tensor([3]))
    with pytest.raises(TypeError, match="not a sequence segment"):
        codec.encode(["raw string"])
    with pytest.raises(ValueError, match="out of range"):
        codec.encode([MaskCodes(torch.full((2, 2), 16))])


def test_render_is_readable(codec):
    v = codec.vocab
    seq = codec.encode([Boxes(torch.tensor([[1, 2, 3, 4]]), ["cat"])], add_eos=True)
    text = codec.render(seq.ids)
    assert text.startswith("<box>") and "<coord_1> <coord_2> <coord_3> <coord_4> </box> <eos>" in text
    assert codec.describe_token(v.size - 1) == f"<invalid_{v.size - 1}>"


def test_codec_rejects_too_large_text_model(text_tokenizer):
    with pytest.raises(ValueError, match="text segment"):
        SequenceCodec(Vocabulary.default(text_size=10), text_tokenizer)
