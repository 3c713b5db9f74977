"""The unified transformer: parameter counts, presets, positions, padding, loss, guidance inputs."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR
from unio.model.guidance import drop_condition, null_condition
from unio.model.loss import LossConfig, SequenceLoss, per_example_weights
from unio.model.transformer import ModelConfig, UnifiedTransformer, build_model, model_config_from_dict
from unio.vocab import MODALITIES, Vocabulary

VOCAB = Vocabulary.default(
    text_size=1000, coord_bins=50, image_codes=64, mask_codes=16, audio_codes=32, num_sentinels=4
)
IMAGE = MODALITIES.index("image")
PRESETS = {"tiny": 6e6, "small": 60e6, "base": 250e6, "large": 800e6, "xl": 3e9}


def tiny_model(seed: int = 0, **overrides) -> UnifiedTransformer:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=VOCAB.size, d_model=32, n_heads=2, n_encoder_layers=2, n_decoder_layers=2, d_ff=64)
    return UnifiedTransformer(ModelConfig(**{**cfg, **overrides})).eval()


def make_inputs(ids: torch.Tensor, prefix: str = "input") -> dict[str, torch.Tensor]:
    B, L = ids.shape
    name = "input_ids" if prefix == "input" else "decoder_input_ids"
    out = {
        name: ids,
        f"{prefix}_modality": torch.zeros(B, L, dtype=torch.long),
        f"{prefix}_position": torch.arange(L).expand(B, L).clone(),
        f"{prefix}_row": torch.full((B, L), -1),
        f"{prefix}_col": torch.full((B, L), -1),
    }
    if prefix == "input":
        out["input_mask"] = torch.ones(B, L, dtype=torch.bool)
    return out


def text_ids(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(VOCAB.offset("text"), VOCAB.offset("text") + 200, shape, generator=g)


def image_inputs(h: int = 3, w: int = 4) -> dict[str, torch.Tensor]:
    """Encoder input: 3 text tokens then an h x w grid of image codes with (row, col) metadata."""
    n = h * w
    codes = torch.randperm(n, generator=torch.Generator().manual_seed(1)) + VOCAB.offset("image")
    ids = torch.cat([text_ids(3), codes])[None]
    x = make_inputs(ids)
    x["input_modality"][0, 3:] = IMAGE
    x["input_row"][0, 3:] = torch.arange(n) // w
    x["input_col"][0, 3:] = torch.arange(n) % w
    return x


def logits_of(model: UnifiedTransformer, enc: dict, dec_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(**enc, **make_inputs(dec_ids, "decoder"))


def test_parameter_count_is_exact():
    for overrides in ({}, {"qk_norm": True}, {"head_dim": 8, "n_heads": 3}):
        model = tiny_model(**overrides)
        assert model.num_parameters() == model.config.num_parameters()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_compose_and_have_their_nominal_size(name):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR / "model"), version_base="1.3"):
        cfg = compose(config_name=name)
    config = model_config_from_dict(OmegaConf.to_container(cfg), f"conf/model/{name}.yaml")
    config.vocab_size = Vocabulary.default().size
    # Analytic only: the big presets are never allocated.
    assert 0.8 * PRESETS[name] <= config.num_parameters() <= 1.2 * PRESETS[name]
    assert (
        config.train_flops_per_token(512, 128)
        > 6 * (config.num_parameters() - config.vocab_size * config.d_model) * 0.5
    )


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="unknown field.*d_modle"):
        model_config_from_dict({"d_modle": 3})
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=100, n_heads=3)
    with pytest.raises(ValueError, match="multiple of 4"):
        ModelConfig(d_model=24, n_heads=4)


def test_build_model_takes_vocab_size_from_vocabulary():
    model = build_model(
        ModelConfig(d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=64), VOCAB
    )
    assert model.embed.weight.shape[0] == VOCAB.size
    assert model.logits(torch.zeros(1, 32)).shape[-1] == VOCAB.size


def test_forward_flops_match_a_manual_count():
    cfg = ModelConfig(
        vocab_size=1024, d_model=64, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=128
    )
    L, T, d = 10, 4, 64
    encoder = L * (4 * d * d + 3 * d * 128) + 2 * L * L * d
    decoder_self = T * 4 * d * d + T * (T + 1) * d  # causal: half the score matrix
    cross = T * 2 * d * d + L * 2 * d * d + 2 * T * L * d  # q + out on T, k + v on L, scores
    manual = encoder + decoder_self + cross + T * 3 * d * 128 + T * d * 1024
    assert cfg.forward_flops(L, T) == 2 * manual


def test_shifting_all_positions_leaves_outputs_unchanged():
    # Rotary attention depends only on position differences: 1-D for text, (row, col) for grids.
    model = tiny_model()
    enc = image_inputs()
    dec = text_ids(1, 5, seed=3)
    base = logits_of(model, enc, dec)
    shifted = {**enc, "input_position": enc["input_position"] + 7}
    grid = enc["input_row"] >= 0
    shifted["input_row"] = torch.where(grid, enc["input_row"] + 2, -1)
    shifted["input_col"] = torch.where(grid, enc["input_col"] + 5, -1)
    torch.testing.assert_close(logits_of(model, shifted, dec), base, atol=2e-4, rtol=1e-4)


def test_grid_tokens_use_2d_positions():
    model = tiny_model(init_std=0.3)  # large weights: position effects well above float noise
    enc = image_inputs()
    dec = text_ids(1, 5, seed=3)
    base = logits_of(model, enc, dec)
    grid = enc["input_row"][0] >= 0
    # Permuting which grid cell each code sits in (rows/cols permuted, 1-D positions kept) changes the output.
    perm = torch.randperm(int(grid.sum()), generator=torch.Generator().manual_seed(0))
    permuted = {k: v.clone() for k, v in enc.items()}
    permuted["input_row"][0, grid] = enc["input_row"][0, grid][perm]
    permuted["input_col"][0, grid] = enc["input_col"][0, grid][perm]
    assert (logits_of(model, permuted, dec) - base).abs().max() > 1e-2
    # ... while the 1-D position of a grid code is not used at all.
    scrambled = {k: v.clone() for k, v in enc.items()}
    scrambled["input_position"][0, grid] = enc["input_position"][0, grid][perm]
    torch.testing.assert_close(logits_of(model, scrambled, dec), base)


def test_modality_embedding_is_used():
    model = tiny_model()
    torch.nn.init.normal_(model.modality_embed.weight)
    enc = make_inputs(text_ids(1, 6))
    dec = text_ids(1, 3, seed=2)
    other = {**enc, "input_modality": torch.full_like(enc["input_modality"], MODALITIES.index("box"))}
    assert not torch.allclose(logits_of(model, enc, dec), logits_of(model, other, dec))


def test_padding_does_not_change_real_tokens():
    model = tiny_model(qk_norm=True)
    short, long = text_ids(1, 5, seed=1), text_ids(1, 9, seed=2)
    dec = text_ids(2, 4, seed=3)
    padded = torch.cat([torch.cat([short, torch.zeros(1, 4, dtype=torch.long)], 1), long])
    enc = make_inputs(padded)
    enc["input_mask"][0, 5:] = False
    both = logits_of(model, enc, dec)
    torch.testing.assert_close(
        both[0], logits_of(model, make_inputs(short), dec[:1])[0], atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(both[1], logits_of(model, make_inputs(long), dec[1:])[0], atol=1e-5, rtol=1e-4)


def test_decoder_is_causal():
    model = tiny_model()
    enc = make_inputs(text_ids(1, 6))
    dec = text_ids(1, 6, seed=4)
    changed = dec.clone()
    changed[0, 4:] = VOCAB.offset("coord")
    a, b = logits_of(model, enc, dec), logits_of(model, enc, changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_forward_batch_and_training_step():
    model = tiny_model().train()
    batch = {**make_inputs(text_ids(2, 6)), **make_inputs(text_ids(2, 4, seed=1), "decoder")}
    batch["targets"] = text_ids(2, 4, seed=5)
    batch["targets"][1, 3] = -100
    out = SequenceLoss(VOCAB)(model.forward_batch(batch), batch["targets"])
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p is not model.modality_embed.weight)
    with pytest.raises(KeyError, match="decoder_row"):
        model.forward_batch({k: v for k, v in batch.items() if k != "decoder_row"})


def test_targets_only_logits_are_the_full_logits_at_real_targets():
    model = tiny_model().eval()
    batch = {**make_inputs(text_ids(2, 6)), **make_inputs(text_ids(2, 4, seed=1), "decoder")}
    batch["targets"] = text_ids(2, 4, seed=5)
    batch["targets"][1, 2:] = -100
    full = model.forward_batch(batch)
    real = batch["targets"] != -100
    few = model.forward_batch(batch, targets_only=True)
    assert few.shape == (6, full.shape[-1])
    torch.testing.assert_close(few, full[real], rtol=1e-5, atol=1e-5)
    loss = SequenceLoss(VOCAB)
    torch.testing.assert_close(loss(few, batch["targets"][real]).loss, loss(full, batch["targets"]).loss)


def test_loss_breakdown_weights_and_options():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, VOCAB.size)
    targets = torch.tensor(
        [
            [VOCAB.offset("text"), VOCAB.offset("coord") + 3, VOCAB.offset("image") + 1, VOCAB.eos_id, -100],
            [VOCAB.offset("text") + 7, VOCAB.offset("mask"), VOCAB.offset("audio") + 2, VOCAB.eos_id, -100],
        ]
    )
    ce = torch.nn.functional.cross_entropy(logits.view(-1, VOCAB.size), targets.view(-1), reduction="none")
    out = SequenceLoss(VOCAB)(logits, targets)
    assert out.num_tokens == 8
    torch.testing.assert_close(out.loss, ce[targets.view(-1) != -100].mean())
    assert set(out.per_segment) == {"special", "text", "coord", "image", "mask", "audio"}
    torch.testing.assert_close(out.per_segment["text"], (ce[0] + ce[5]) / 2)
    assert out.tokens_per_segment == {"special": 2, "text": 2, "coord": 1, "image": 1, "mask": 1, "audio": 1}
    weighted = SequenceLoss(VOCAB, LossConfig(segment_weights={"image": 3.0}))(logits, targets)
    torch.testing.assert_close(weighted.loss, (ce[targets.view(-1) != -100].sum() + 2 * ce[2]) / 8)
    z = SequenceLoss(VOCAB, LossConfig(z_loss=1e-3))(logits, targets)
    lse = torch.logsumexp(logits.view(-1, VOCAB.size)[targets.view(-1) != -100], -1)
    torch.testing.assert_close(z.loss, out.loss + 1e-3 * lse.pow(2).mean())
    smooth = SequenceLoss(VOCAB, LossConfig(label_smoothing=0.1))(logits, targets)
    expected = torch.nn.functional.cross_entropy(
        logits.view(-1, VOCAB.size), targets.view(-1), label_smoothing=0.1
    )
    torch.testing.assert_close(smooth.loss, expected)
    assert "loss/image" in out.metrics()
    with pytest.raises(ValueError, match="unknown segments"):
        SequenceLoss(VOCAB, LossConfig(segment_weights={"imgae": 2.0}))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        SequenceLoss(VOCAB)(logits, torch.full((2, 5), VOCAB.size - 1))


def test_per_example_loss_weights_each_row_once():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, VOCAB.size)
    text = VOCAB.offset("text")
    targets = torch.tensor([[text, text + 1, text + 2, VOCAB.eos_id], [text + 3, VOCAB.eos_id, -100, -100]])
    ce = torch.nn.functional.cross_entropy(logits.view(-1, VOCAB.size), targets.view(-1), reduction="none")
    weights = per_example_weights(targets)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    out = SequenceLoss(VOCAB)(logits, targets, token_weights=weights)
    torch.testing.assert_close(out.loss, (ce[:4].mean() + ce[4:6].mean()) / 2)  # mean of row means
    torch.testing.assert_close(out.ce, ce[targets.view(-1) != -100].mean())  # the report stays per token
    real = targets != -100  # the targets_only layout: flat logits and weights at the real targets
    flat = SequenceLoss(VOCAB)(logits[real], targets[real], token_weights=weights[real])
    torch.testing.assert_close(flat.loss, out.loss)
    uniform = SequenceLoss(VOCAB)(logits, targets, token_weights=torch.ones(2, 4))
    torch.testing.assert_close(uniform.loss, SequenceLoss(VOCAB)(logits, targets).loss)
    with pytest.raises(ValueError, match="token_weights has shape"):
        SequenceLoss(VOCAB)(logits, targets, token_weights=torch.ones(2, 3))


def test_coordinate_soft_targets():
    torch.manual_seed(0)
    coord, bins = VOCAB.offset("coord"), VOCAB.segment_size("coord")
    logits = torch.randn(1, 3, VOCAB.size)
    targets = torch.tensor([[VOCAB.offset("text") + 4, coord + 10, VOCAB.eos_id]])
    hard = SequenceLoss(VOCAB)(logits, targets)
    soft = SequenceLoss(VOCAB, LossConfig(coord_sigma=2.0))(logits, targets)
    ce = torch.nn.functional.cross_entropy(logits[0], targets[0], reduction="none")
    gauss = torch.exp(-0.5 * ((torch.arange(bins) - 10.0) / 2.0) ** 2)
    expected = -(gauss / gauss.sum() * torch.log_softmax(logits[0, 1], -1)[coord : coord + bins]).sum()
    torch.testing.assert_close(soft.loss, (ce[0] + expected + ce[2]) / 3)  # other tokens unchanged
    torch.testing.assert_close(soft.per_segment["text"], hard.per_segment["text"])

    def loss_when_predicting(bin_: int) -> float:  # a confident prediction of one bin
        peaked = torch.full((1, 3, VOCAB.size), -20.0)
        peaked[0, 1, coord + bin_] = 20.0
        return float(SequenceLoss(VOCAB, LossConfig(coord_sigma=2.0))(peaked, targets).per_segment["coord"])

    assert loss_when_predicting(10) < loss_when_predicting(11) < loss_when_predicting(15)  # ordinal
    with pytest.raises(ValueError, match="coord_sigma"):
        LossConfig(coord_sigma=-1.0)


def test_condition_dropout_and_null_condition():
    batch = make_inputs(text_ids(4, 6))
    none = drop_condition(batch, 0.0, VOCAB)
    assert torch.equal(none["input_ids"], batch["input_ids"])
    dropped = drop_condition(batch, 0.999, VOCAB, generator=torch.Generator().manual_seed(0))
    assert (dropped["input_ids"][:, 0] == VOCAB.unk_id).all()
    assert dropped["input_mask"].sum(1).tolist() == [1, 1, 1, 1]
    assert batch["input_mask"].all()  # the input batch is not modified
    null = null_condition(3, VOCAB)
    assert null["input_ids"].shape == (3, 1) and null["input_mask"].all()
    with pytest.raises(ValueError, match="prob"):
        drop_condition(batch, 1.0, VOCAB)


def _example(n_in: int, n_tgt: int, seed: int, grid_rows: int = 0) -> dict[str, torch.Tensor]:
    """A pretokenized example; the target's last `grid_rows` * 2 tokens are image codes."""
    ids, tgt = text_ids(n_in, seed=seed), text_ids(n_tgt, seed=seed + 100)
    row, col = torch.full((n_tgt,), -1), torch.full((n_tgt,), -1)
    modality = torch.zeros(n_tgt, dtype=torch.long)
    n_grid = 2 * grid_rows
    if n_grid:
        tgt[-n_grid:] = VOCAB.offset("image") + torch.arange(n_grid)
        modality[-n_grid:] = IMAGE
        row[-n_grid:], col[-n_grid:] = torch.arange(n_grid) // 2, torch.arange(n_grid) % 2
    minus_one = torch.full((n_in,), -1)
    return {
        "input_ids": ids,
        "input_modality": torch.zeros(n_in, dtype=torch.long),
        "input_row": minus_one,
        "input_col": minus_one,
        "target_ids": tgt,
        "target_modality": modality,
        "target_row": row,
        "target_col": col,
    }


def test_packed_rows_match_examples_run_separately():
    from unio.data.collate import Collator, CollatorConfig

    model = tiny_model()
    examples = [_example(5, 4, seed=1), _example(7, 6, seed=2, grid_rows=2), _example(3, 3, seed=3)]
    packed = Collator(VOCAB.bos_id, config=CollatorConfig(max_input_len=24, max_target_len=16, pack=True))
    batch = packed(examples)
    assert batch["input_ids"].shape[0] == 1 and int(batch["input_segment_ids"].max()) == 3
    with torch.no_grad():
        logits = model.forward_batch(batch)[0]
        start = 0
        for example in examples:
            alone = Collator(VOCAB.bos_id, config=CollatorConfig(pad_to_multiple=1))([example])
            expected = model.forward_batch(alone)[0]
            n = expected.shape[0]
            torch.testing.assert_close(logits[start : start + n], expected, atol=1e-5, rtol=1e-4)
            start += n
        assert torch.isfinite(logits).all()  # padding rows too (no fully masked attention row)
        # Without segment ids the packed examples see each other: the logits differ.
        unpacked = {k: v for k, v in batch.items() if not k.endswith("segment_ids")}
        assert not torch.allclose(model.forward_batch(unpacked)[0][4:10], logits[4:10], atol=1e-4)


def test_segment_ids_are_needed_on_both_sides():
    model = tiny_model()
    enc, dec = make_inputs(text_ids(1, 8)), make_inputs(text_ids(1, 4, seed=1), "decoder")
    with pytest.raises(ValueError, match="both input_segment_ids and decoder_segment_ids"):
        model(**enc, **dec, input_segment_ids=torch.ones(1, 8, dtype=torch.long))


@pytest.mark.slow
def test_compiled_model_matches_eager_logits_and_gradients():
    from unio.model.compile import compile_model

    model = tiny_model().train()
    enc, dec = make_inputs(text_ids(2, 8)), make_inputs(text_ids(2, 8, seed=1), "decoder")
    enc["input_mask"][1, 6:] = False
    eager = model(**enc, **dec)
    eager.square().mean().backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    compiled = compile_model(model)(**enc, **dec)
    compiled.square().mean().backward()
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-4)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.grad, expected[name], atol=1e-5, rtol=1e-4, msg=name)
    with pytest.raises(TypeError, match="UnifiedTransformer"):
        compile_model(torch.nn.Linear(2, 2))
