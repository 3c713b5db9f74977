"""Generation: KV cache == full recomputation, batching, beams, sampling, guidance, per-row EOS."""

from __future__ import annotations

import pytest
import torch

from tests.test_model import VOCAB, make_inputs, text_ids, tiny_model
from unio.grammar import grid
from unio.model.cpu_weights import decoding_weights, mkl_packing_available
from unio.model.generate import GenerationConfig, generate
from unio.model.guidance import null_condition
from unio.sequence import Annotator, SequenceCodec

GRIDS = {"image": (2, 3), "mask": (2, 2), "audio": (1, 5)}


@pytest.fixture(scope="module")
def codec(text_tokenizer):
    return SequenceCodec(VOCAB, text_tokenizer, GRIDS)


def ragged_inputs(lengths: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    L = max(lengths)
    enc = make_inputs(text_ids(len(lengths), L, seed=seed))
    enc["input_mask"] = torch.arange(L)[None] < torch.tensor(lengths)[:, None]
    enc["input_ids"] = enc["input_ids"] * enc["input_mask"]
    return enc


def teacher_forced_logits(model, enc, tokens, codec) -> torch.Tensor:
    """Full decoder recomputation over <bos> + tokens[:-1] with Annotator metadata."""
    B = tokens.shape[0]
    dec_ids = torch.cat([torch.full((B, 1), VOCAB.bos_id), tokens[:, :-1]], 1)
    dec = make_inputs(dec_ids, "decoder")
    for b in range(B):
        mod, row, col = Annotator(codec).annotate(tokens[b, :-1].tolist())
        dec["decoder_modality"][b, 1:] = torch.tensor(mod, dtype=torch.long)
        dec["decoder_row"][b, 1:] = torch.tensor(row, dtype=torch.long)
        dec["decoder_col"][b, 1:] = torch.tensor(col, dtype=torch.long)
    with torch.no_grad():
        return model(**enc, **dec)


@pytest.mark.parametrize("mode", ["greedy", "sampled", "grid"])
def test_cached_decoding_matches_full_recomputation(codec, mode):
    model = tiny_model(init_std=0.1)
    enc = ragged_inputs([5, 8, 3])
    cfg = GenerationConfig(max_new_tokens=12, do_sample=mode == "sampled", stop_at_eos=False)
    kwargs = {"grammar": grid(codec, "image")} if mode == "grid" else {}
    if mode == "grid":
        cfg = GenerationConfig(max_new_tokens=12, do_sample=True)
    out = generate(
        model,
        enc,
        VOCAB,
        cfg,
        annotator_factory=lambda: Annotator(codec),
        return_logits=True,
        generator=torch.Generator().manual_seed(0),
        **kwargs,
    )
    full = teacher_forced_logits(model, enc, out.tokens, codec)
    for t, step in enumerate(out.step_logits):
        live = out.lengths > t  # after <eos>, rows are padding
        torch.testing.assert_close(step[live], full[live, t], atol=1e-4, rtol=1e-4)
    if mode == "grid":
        assert (out.tokens[:, 1:7] >= VOCAB.offset("image")).all()


def test_batch_equals_rows_one_by_one(codec):
    model = tiny_model(init_std=0.1)
    lengths = [7, 2, 5, 4]
    enc = ragged_inputs(lengths, seed=3)
    cfg = GenerationConfig(max_new_tokens=10, output_scores=True)
    factory = lambda: Annotator(codec)  # noqa: E731
    batched = generate(model, enc, VOCAB, cfg, annotator_factory=factory)
    for b, n in enumerate(lengths):
        row = {k: v[b : b + 1, :n] for k, v in enc.items()}
        single = generate(model, row, VOCAB, cfg, annotator_factory=factory)
        length = int(single.lengths[0])
        assert torch.equal(batched.tokens[b, :length], single.tokens[0, :length])
        torch.testing.assert_close(batched.scores[b], single.scores[0], atol=1e-4, rtol=1e-4)


def test_rows_stop_at_their_own_eos():
    model = tiny_model()
    # Make <eos> the argmax for row 0 only, through a large bias on its first input token.
    enc = make_inputs(text_ids(2, 4))
    enc["input_ids"][0, 0] = VOCAB.sentinel_id(0)
    with torch.no_grad():
        model.embed.weight[VOCAB.eos_id] = 0
        model.embed.weight[VOCAB.sentinel_id(0)] = 0
    out = generate(model, enc, VOCAB, GenerationConfig(max_new_tokens=6))
    assert out.tokens.shape[0] == 2
    for b in range(2):
        n = int(out.lengths[b])
        assert (out.tokens[b, n:] == VOCAB.pad_id).all()
        assert out.finished[b] == (out.tokens[b, n - 1] == VOCAB.eos_id)
    assert not (out.tokens[:, : int(out.lengths.min()) - 1] == VOCAB.pad_id).any()


def test_beam_width_one_equals_greedy(codec):
    model = tiny_model(init_std=0.1)
    enc = ragged_inputs([6, 3, 5], seed=1)
    factory = lambda: Annotator(codec)  # noqa: E731
    greedy = generate(model, enc, VOCAB, GenerationConfig(max_new_tokens=9), annotator_factory=factory)
    beam = generate(
        model, enc, VOCAB, GenerationConfig(max_new_tokens=9, num_beams=1), annotator_factory=factory
    )
    assert torch.equal(greedy.tokens, beam.tokens)


def test_beam_search_finds_higher_scoring_outputs(codec):
    model = tiny_model(init_std=0.3)
    enc = ragged_inputs([6, 3, 5, 4], seed=2)
    g = GenerationConfig(max_new_tokens=6, stop_at_eos=True, output_scores=True)
    greedy = generate(model, enc, VOCAB, g)
    beam = generate(
        model,
        enc,
        VOCAB,
        GenerationConfig(max_new_tokens=6, num_beams=4, length_penalty=0.0, output_scores=True),
    )
    # With no length penalty beam scores are log-probabilities: on these inputs beam search finds
    # outputs at least as likely as greedy's, and strictly more likely for some rows.
    assert (beam.scores >= greedy.scores - 1e-4).all()
    assert (beam.scores > greedy.scores + 1e-4).any()


def test_sampling_options_and_reproducibility():
    model = tiny_model(init_std=0.1)
    enc = ragged_inputs([4, 6])

    def sample(seed: int, **kw) -> torch.Tensor:
        cfg = GenerationConfig(max_new_tokens=8, do_sample=True, **kw)
        return generate(model, enc, VOCAB, cfg, generator=torch.Generator().manual_seed(seed)).tokens

    assert torch.equal(sample(0, temperature=1.5), sample(0, temperature=1.5))
    assert not torch.equal(sample(0, temperature=5.0), sample(1, temperature=5.0))
    greedy = generate(model, enc, VOCAB, GenerationConfig(max_new_tokens=8)).tokens
    assert torch.equal(sample(3, top_k=1), greedy)
    assert torch.equal(sample(4, top_p=1e-6), greedy)


def test_classifier_free_guidance_mixes_conditional_and_unconditional_logits():
    model = tiny_model(init_std=0.1)
    enc = ragged_inputs([5, 3])
    null = null_condition(2, VOCAB)
    scale = 3.0
    cfg = GenerationConfig(max_new_tokens=1, guidance_scale=scale)
    out = generate(model, enc, VOCAB, cfg, unconditional_inputs=null, return_logits=True)
    bos = make_inputs(torch.full((2, 1), VOCAB.bos_id), "decoder")
    with torch.no_grad():
        cond, uncond = model(**enc, **bos)[:, 0], model(**null, **bos)[:, 0]
    torch.testing.assert_close(out.step_logits[0], uncond + scale * (cond - uncond), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="unconditional_inputs"):
        generate(model, enc, VOCAB, cfg)


def test_generation_config_errors():
    with pytest.raises(ValueError, match="beam search"):
        GenerationConfig(num_beams=2, do_sample=True)
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
    model = tiny_model()
    with pytest.raises(KeyError, match="input_mask"):
        generate(model, {"input_ids": text_ids(1, 3)}, VOCAB)


def test_generate_restores_weight_layout_and_values():
    from unio.model.generate import _argmax

    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    identity = {n: p for n, p in model.named_parameters()}
    generate(model, make_inputs(text_ids(2, 6)), VOCAB, GenerationConfig(max_new_tokens=4))
    for name, param in model.named_parameters():
        assert param is identity[name] and param.is_contiguous(), name
        assert torch.equal(param, before[name]), name
    logits = torch.randn(5, VOCAB.size)
    logits[1, 7] = logits[1, 300] = logits[1].max() + 1  # a tie resolves to the first index
    assert torch.equal(_argmax(logits), logits.argmax(dim=-1))


@pytest.mark.skipif(not mkl_packing_available(), reason="this torch build has no MKL packed GEMM")
def test_decoding_steps_use_packed_weights_then_drop_them():
    model = tiny_model()
    x = torch.randn(3, 1, model.config.d_model)
    layer = model.decoder_layers[0].mlp.gate_up
    with torch.no_grad():
        expected = torch.nn.functional.linear(x, layer.weight)
    with decoding_weights(model, rows=3):
        assert layer.packed is not None and model.output_packed is not None
        assert model.decoder_layers[0].cross_attn.kv.packed is None  # computed once, not per step
        assert model.encoder_layers[0].mlp.gate_up.packed is None
        with torch.no_grad():
            torch.testing.assert_close(layer(x), expected)
            torch.testing.assert_close(layer(x[:2]), expected[:2])  # other row counts: plain path
    assert layer.packed is None and model.output_packed is None
    with decoding_weights(model, rows=1):  # one row: column-major instead of packing
        assert layer.packed is None and not layer.weight.is_contiguous()
    assert layer.weight.is_contiguous()
