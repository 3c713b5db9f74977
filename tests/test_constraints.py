"""Grammar-constrained decoding on a randomly initialised model: every output parses, always."""

from __future__ import annotations

import pytest
import torch

from tests.test_generate import GRIDS, ragged_inputs
from tests.test_model import VOCAB, tiny_model
from unio import grammar as G
from unio.model.constraints import GrammarConstraint
from unio.model.generate import GenerationConfig, generate
from unio.sequence import Annotator, AudioCodes, Boxes, ImageCodes, MaskCodes, Points, SequenceCodec, Text

PROMPTS = 200
GRAMMARS = {
    "free_text": (lambda c: G.free_text(c), (Text,)),
    "closed_answers": (lambda c: G.closed_answers(c, ["yes", "no", "two dogs", "a red bus"]), (Text,)),
    "detection": (lambda c: G.detection(c), (Boxes,)),
    "detection_labels": (lambda c: G.detection(c, labels=["dog", "cat", "traffic light"]), (Boxes,)),
    "single_box": (lambda c: G.single_box(c), (Boxes,)),
    "points": (lambda c: G.points(c), (Points,)),
    "keypoints": (lambda c: G.points(c, num_points=5), (Points,)),
    "image": (lambda c: G.grid(c, "image"), (ImageCodes,)),
    "mask": (lambda c: G.grid(c, "mask"), (MaskCodes,)),
    "audio": (lambda c: G.grid(c, "audio"), (AudioCodes,)),
}


@pytest.fixture(scope="module")
def codec(text_tokenizer):
    return SequenceCodec(VOCAB, text_tokenizer, GRIDS)


@pytest.fixture(scope="module")
def model():
    # Large weights: peaky, varied random outputs. One layer each: the grammar, not depth, is under test.
    return tiny_model(seed=1, init_std=0.5, n_encoder_layers=1, n_decoder_layers=1)


@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(0)
    return ragged_inputs(torch.randint(1, 12, (PROMPTS,), generator=g).tolist(), seed=5)


def check_parses(codec, tokens, kinds, name=""):
    for row in tokens:
        decoded = codec.decode(row)
        assert decoded.ok and decoded.ended_with_eos, (name, codec.render(row), decoded.problems)
        assert all(isinstance(seg, kinds) for seg in decoded.segments), (name, decoded.segments)


def annotator(codec):
    return lambda: Annotator(codec)


@pytest.mark.parametrize("sampled", [True, False], ids=["sampled", "greedy"])
def test_every_grammar_output_parses(codec, model, prompts, sampled):
    # All grammars in one batch (one grammar per row): 200 prompts each when sampling at a high
    # temperature, which explores far more of each grammar than greedy decoding (20 each). The tight
    # budget forces open-ended grammars to close their groups and end in time.
    rows = PROMPTS if sampled else 20
    names = sorted(GRAMMARS)
    grammars = {name: GRAMMARS[name][0](codec) for name in names}
    row_names = [name for name in names for _ in range(rows)]
    inputs = {k: v[:rows].repeat(len(names), *[1] * (v.dim() - 1)) for k, v in prompts.items()}
    cfg = GenerationConfig(max_new_tokens=14, do_sample=sampled, temperature=2.0)
    out = generate(
        model,
        inputs,
        VOCAB,
        cfg,
        grammar=[grammars[n] for n in row_names],
        annotator_factory=annotator(codec),
        generator=torch.Generator().manual_seed(0),
    )
    assert out.finished.all()
    for name in names:
        picked = torch.tensor([n == name for n in row_names])
        check_parses(codec, out.tokens[picked], GRAMMARS[name][1], name)
    if sampled:  # random prompts and sampling really produce varied outputs
        assert len({tuple(r.tolist()) for r in out.tokens[: len(out.tokens) // len(names)]}) > 10


def test_beam_search_under_a_grammar(codec, model, prompts):
    few = {k: v[:16] for k, v in prompts.items()}
    for grammar, kinds in (
        (G.detection(codec, labels=["dog", "cat"]), (Boxes,)),
        (G.grid(codec, "image"), (ImageCodes,)),
    ):
        out = generate(
            model,
            few,
            VOCAB,
            GenerationConfig(max_new_tokens=15, num_beams=3),
            grammar=grammar,
            annotator_factory=annotator(codec),
        )
        check_parses(codec, out.tokens, kinds)


def test_rows_with_different_grammars(codec, model, prompts):
    few = {k: v[:6] for k, v in prompts.items()}
    image, answers = G.grid(codec, "image"), G.closed_answers(codec, ["yes", "no"])
    grammars = [image, answers, image, answers, answers, image]
    out = generate(
        model,
        few,
        VOCAB,
        GenerationConfig(max_new_tokens=12, do_sample=True),
        grammar=grammars,
        annotator_factory=annotator(codec),
        generator=torch.Generator().manual_seed(1),
    )
    for row, g in zip(out.tokens, grammars):
        decoded = codec.decode(row)
        assert decoded.ok
        expected = ImageCodes if g is image else Text
        assert [type(s) for s in decoded.segments] == [expected]


def test_budget_and_metadata_errors(codec, model, prompts):
    few = {k: v[:2] for k, v in prompts.items()}
    with pytest.raises(ValueError, match="needs at least 9 tokens"):
        generate(
            model,
            few,
            VOCAB,
            GenerationConfig(max_new_tokens=8),
            grammar=G.grid(codec, "image"),
            annotator_factory=annotator(codec),
        )
    with pytest.raises(ValueError, match="annotator_factory"):
        generate(model, few, VOCAB, GenerationConfig(max_new_tokens=9), grammar=G.grid(codec, "image"))
    with pytest.raises(ValueError, match="stop_at_eos"):
        generate(
            model,
            few,
            VOCAB,
            GenerationConfig(max_new_tokens=9, stop_at_eos=False),
            grammar=G.free_text(codec),
        )


def test_mask_always_leaves_a_choice(codec):
    constraint = GrammarConstraint(G.detection(codec), batch_size=1, max_new_tokens=7, device="cpu")
    for remaining in range(7, 0, -1):
        allowed = constraint.allowed(remaining)
        assert allowed.any()
        token = int(allowed[0].nonzero()[0, 0])
        constraint.advance(torch.tensor([token]))
    assert constraint.finished.all()


@pytest.mark.parametrize("cache_bytes", [64 << 20, 0])
def test_bias_table_masks_equal_the_budgeted_mask(codec, cache_bytes):
    """mask_ (one add of per-pattern bias rows while the budget cannot bind, gathers near the end or
    without a table) sets -inf exactly where `allowed` refuses, for rows in shared and in different
    states of different grammars."""
    grammars = [G.detection(codec), G.grid(codec, "mask"), G.closed_answers(codec, ["yes", "two dogs"])]
    budget = 40
    constraint = GrammarConstraint(
        [grammars[i % 3] for i in range(6)], batch_size=6, max_new_tokens=budget, cache_bytes=cache_bytes
    )
    assert (constraint._bias_table is not None) == (cache_bytes > 0)
    gen = torch.Generator().manual_seed(0)
    budget_bound = set()
    for t in range(budget):
        remaining = budget - t
        logits = torch.randn(6, VOCAB.size, generator=gen)
        expected = logits.masked_fill(~constraint.allowed(remaining), float("-inf"))
        budget_bound.add(
            any(constraint._budget_binds_up_to[s] >= remaining for s in constraint.state.tolist())
        )
        assert torch.equal(constraint.mask_(logits, remaining), expected)
        assert not logits[:, VOCAB.used_size :].isfinite().any()  # padding ids refused too
        choice = torch.multinomial(expected.softmax(dim=-1), 1, generator=gen).squeeze(1)
        constraint.advance(choice)
    assert budget_bound == {True, False}  # both paths ran
    assert constraint.finished.all()


def test_grid_states_share_one_bias_row(codec):
    compiled = G.grid(codec, "image").compiled
    patterns, pattern_of_state = compiled.state_patterns
    assert len(pattern_of_state) > GRIDS["image"][0] * GRIDS["image"][1]  # one state per code
    assert len(patterns) <= 5  # <image>, codes, </image>, <eos>, final <pad>
    assert compiled.bias_table("cpu") is compiled.bias_table("cpu")  # built once


def test_grammar_cannot_allow_vocabulary_padding(codec):
    builder = G.GrammarBuilder("bad", VOCAB)
    with pytest.raises(ValueError, match="past the used vocabulary"):
        builder.edge(builder.state(), G.TokenSet(((VOCAB.used_size - 1, VOCAB.used_size + 1),), "tail"), 0)


def test_refused_token_raises_and_beams_follow_their_rows(codec):
    grid = G.grid(codec, "image")
    constraint = GrammarConstraint(grid, batch_size=2, max_new_tokens=10)
    with pytest.raises(RuntimeError, match="row 1 emitted token"):
        constraint.advance(torch.tensor([VOCAB.token_id("<image>"), VOCAB.eos_id]))
    constraint.repeat_interleave(2)  # rows 0, 0, 1, 1
    constraint.advance(torch.full((4,), VOCAB.token_id("<image>")))
    opened = constraint.state.tolist()
    constraint.reorder(torch.tensor([1, 0, 3, 2]))
    assert constraint.state.tolist() == [opened[i] for i in (1, 0, 3, 2)]
    assert grid.compiled.walk([VOCAB.token_id("<image>")]) == opened[0]
