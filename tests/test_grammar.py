"""Output grammars: each factory accepts exactly the token patterns of its sequence-format segments."""

from __future__ import annotations

import pytest
import torch

from tests.test_model import VOCAB
from unio import grammar as G
from unio.sequence import AudioCodes, Boxes, ImageCodes, Points, SequenceCodec, Special, Text

GRIDS = {"image": (2, 3), "mask": (2, 2), "audio": (1, 5)}


@pytest.fixture(scope="module")
def codec(text_tokenizer):
    return SequenceCodec(VOCAB, text_tokenizer, GRIDS)


def ids(codec, *segments):
    return codec.encode(list(segments), add_eos=True).ids.tolist()


def test_free_text(codec):
    g = G.free_text(codec).compiled
    assert g.accepts(ids(codec, Text("a cat on a mat")))
    assert g.accepts([VOCAB.eos_id])
    assert not g.accepts(ids(codec, Boxes(torch.tensor([[1, 2, 3, 4]]))))
    assert not g.accepts(ids(codec, Text("x"))[:-1])  # no <eos>
    with_sentinels = G.free_text(codec, specials=["<extra_id_0>"]).compiled
    assert with_sentinels.accepts(ids(codec, Special("<extra_id_0>"), Text("blue")))


def test_closed_answers(codec):
    g = G.closed_answers(codec, ["yes", "no", "a red dog", "a red"]).compiled
    for answer in ("yes", "no", "a red dog", "a red"):
        assert g.accepts(ids(codec, Text(answer)))
    assert not g.accepts(ids(codec, Text("maybe")))
    assert not g.accepts(ids(codec, Text("a red dog!")))
    assert g.min_length() == 1 + min(len(codec.text.encode(a)) for a in ("yes", "no", "a red dog", "a red"))
    with pytest.raises(ValueError, match="empty"):
        G.closed_answers(codec, [])


def test_detection(codec):
    boxes = Boxes(torch.tensor([[1, 2, 30, 40], [5, 6, 7, 8]]), ["dog", "cat"])
    free = G.detection(codec).compiled
    assert free.accepts(ids(codec, boxes))
    assert free.accepts(ids(codec, Boxes(torch.tensor([[1, 2, 3, 4]]))))  # label optional
    assert free.accepts([VOCAB.eos_id])  # no detections
    assert not free.accepts([*ids(codec, Boxes(torch.tensor([[1, 2, 3, 4]])))[:-2], VOCAB.eos_id])
    closed = G.detection(codec, labels=["dog", "cat"]).compiled
    assert closed.accepts(ids(codec, boxes))
    assert not closed.accepts(ids(codec, Boxes(torch.tensor([[1, 2, 3, 4]]), ["bird"])))


def test_single_box(codec):
    g = G.single_box(codec).compiled
    assert g.accepts(ids(codec, Boxes(torch.tensor([[1, 2, 3, 4]]))))
    assert not g.accepts(ids(codec, Boxes(torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4]]))))
    assert not g.accepts(ids(codec, Boxes(torch.tensor([[1, 2, 3, 4]]), ["dog"])))
    assert not g.accepts([VOCAB.eos_id])
    labelled = G.single_box(codec, labels=["dog"]).compiled
    assert labelled.accepts(ids(codec, Boxes(torch.tensor([[1, 2, 3, 4]]), ["dog"])))


def test_points_and_keypoints(codec):
    pts = Points(torch.tensor([[1, 2], [0, 0], [3, 4]]), torch.tensor([2, 0, 1]))
    assert G.points(codec).compiled.accepts(ids(codec, pts))
    assert G.points(codec).compiled.accepts(ids(codec, Points(torch.zeros(0, 2))))
    three = G.points(codec, num_points=3).compiled
    assert three.accepts(ids(codec, pts))
    assert not three.accepts(ids(codec, Points(torch.tensor([[1, 2]]))))
    assert three.min_length() == 1 + 3 + 1 + 1  # <point> 3x<absent> </point> <eos>


def test_grids(codec):
    image = G.grid(codec, "image").compiled
    assert image.accepts(ids(codec, ImageCodes(torch.arange(6).reshape(2, 3))))
    opener, closer = VOCAB.token_id("<image>"), VOCAB.token_id("</image>")
    four_codes = [opener, *range(VOCAB.offset("image"), VOCAB.offset("image") + 4), closer, VOCAB.eos_id]
    assert not image.accepts(four_codes)
    assert not image.accepts(ids(codec, AudioCodes(torch.arange(5).reshape(1, 5))))
    assert image.min_length() == 6 + 3
    assert image.next_state.shape[1] <= 8  # few token classes, whatever the vocabulary size
    with pytest.raises(ValueError, match="grid_shapes"):
        G.grid(SequenceCodec(VOCAB, codec.text), "image")
    with pytest.raises(ValueError, match="modality"):
        G.grid(codec, "box")


def test_token_classes_partition_the_vocabulary(codec):
    g = G.detection(codec, labels=["dog", "cat"]).compiled
    # Tokens of one class behave identically in every state.
    for c in range(g.next_state.shape[1]):
        members = (g.token_class == c).nonzero().flatten()
        assert len(members) > 0
    assert g.token_class.shape == (VOCAB.size,)
    coord = VOCAB.segment_range("coord")
    assert len(set(g.token_class[coord.start : coord.stop].tolist())) == 1


def test_builder_errors():
    b = G.GrammarBuilder("bad", VOCAB)
    s = b.state()
    b.edge(s, G.segment_set(VOCAB, "text"), s)
    b.edge(s, G.TokenSet(((VOCAB.offset("text"), VOCAB.offset("text") + 1),), "first"), b.state())
    b.end(s)
    with pytest.raises(ValueError, match="not deterministic"):
        _ = b.build(s).compiled
    b = G.GrammarBuilder("endless", VOCAB)
    s = b.state()
    b.edge(s, G.segment_set(VOCAB, "text"), s)
    with pytest.raises(ValueError, match="never finish"):
        _ = b.build(s).compiled
    with pytest.raises(ValueError, match="pad"):
        b = G.GrammarBuilder("p", VOCAB)
        b.edge(b.state(), G.token_set(VOCAB, "<pad>"), b.final)


def test_union_of_grammars(codec):
    grammars = [G.grid(codec, "image"), G.closed_answers(codec, ["yes", "no"])]
    union = G.compile_grammars(grammars)
    assert union.accepts(ids(codec, ImageCodes(torch.zeros(2, 3, dtype=torch.long))), index=0)
    assert union.accepts(ids(codec, Text("yes")), index=1)
    assert not union.accepts(ids(codec, Text("yes")), index=0)
