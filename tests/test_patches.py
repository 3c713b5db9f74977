"""Patch inputs: the stem, placeholder replacement in the encoder, the untouched no-image path,
generation with images, gradients into the stem and the config round trip."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.conftest import CONF_DIR
from unio.model.generate import GenerationConfig, generate
from unio.model.patches import (
    IMAGE_MODALITY,
    PatchStem,
    PatchStemConfig,
    placeholder_span,
    sine_position_table,
)
from unio.model.transformer import ModelConfig, UnifiedTransformer, build_model, model_config_from_dict
from unio.vocab import Vocabulary

VOCAB = Vocabulary.default(
    text_size=300, coord_bins=50, image_codes=64, mask_codes=16, audio_codes=32, num_sentinels=2
)
STEM = {"kind": "conv", "patch_size": 4, "image_size": 16, "position": "learned", "conv_width": 8}
BASE = dict(vocab_size=VOCAB.size, d_model=32, n_heads=2, n_encoder_layers=2, n_decoder_layers=2, d_ff=64)


def model(seed: int = 0, stem: dict | None = STEM) -> UnifiedTransformer:
    torch.manual_seed(seed)
    return UnifiedTransformer(ModelConfig(**BASE, patch_stem=dict(stem) if stem else None)).eval()


def text(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(VOCAB.offset("text"), VOCAB.offset("text") + 200, (n,), generator=g)


def encoder_row(stem: PatchStemConfig | None, n_text: int, seed: int) -> dict[str, torch.Tensor]:
    """One row: [placeholder span] + n_text text tokens (no span when ``stem`` is None)."""
    ids = text(n_text, seed)
    parts = {
        "ids": ids,
        "modality": torch.zeros_like(ids),
        "row": -torch.ones_like(ids),
        "col": -torch.ones_like(ids),
    }
    if stem is not None:
        span = placeholder_span(stem)
        parts = {k: torch.cat([span[k], v]) for k, v in parts.items()}
    return parts


def batch_of(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Right-padded encoder batch plus a 3-token decoder input."""
    length = max(len(r["ids"]) for r in rows)
    pad = {"ids": 0, "modality": 0, "row": -1, "col": -1}
    out = {
        f"input_{k}": torch.stack([torch.cat([r[k], torch.full((length - len(r[k]),), v)]) for r in rows])
        for k, v in pad.items()
    }
    out["input_position"] = torch.arange(length).expand(len(rows), length).clone()
    out["input_mask"] = torch.stack([torch.arange(length) < len(r["ids"]) for r in rows])
    dec = text(3, 99).expand(len(rows), 3)
    out |= {
        "decoder_input_ids": torch.cat([torch.full((len(rows), 1), VOCAB.bos_id), dec[:, :2]], 1),
        "decoder_modality": torch.zeros(len(rows), 3, dtype=torch.long),
        "decoder_position": torch.arange(3).expand(len(rows), 3).clone(),
        "decoder_row": torch.full((len(rows), 3), -1),
        "decoder_col": torch.full((len(rows), 3), -1),
    }
    return out


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 3, 16, 16), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


@pytest.mark.parametrize(("kind", "depth"), [("linear", 1), ("conv", 1), ("conv", 3)])
@pytest.mark.parametrize("position", ["none", "learned", "sine"])
def test_stem_shapes_parameters_and_input_types(kind, depth, position):
    cfg = PatchStemConfig(**{**STEM, "kind": kind, "position": position, "conv_depth": depth})
    stem = PatchStem(cfg, d_model=32)
    x = images(2)
    out = stem(x)
    assert out.shape == (2, 16, 32)
    assert sum(p.numel() for p in stem.parameters()) == cfg.num_parameters(32)
    # uint8 and the same image as float in [0, 1] embed identically
    torch.testing.assert_close(stem(x.float() / 255), out)
    rows, cols = stem.grid_indices()
    assert rows.tolist() == [i // 4 for i in range(16)] and cols.tolist() == [i % 4 for i in range(16)]
    with pytest.raises(ValueError, match="expected images"):
        stem(torch.zeros(2, 3, 8, 8))


def test_spectrogram_stem_on_a_non_square_grid():
    cfg = PatchStemConfig(
        kind="conv", patch_size=4, image_size=[16, 32], channels=1, position="sine", conv_width=8
    )
    assert cfg.grid_shape == (4, 8)
    out = PatchStem(cfg, d_model=32)(torch.rand(3, 1, 16, 32))
    assert out.shape == (3, 32, 32)


def test_sine_table_is_2d_and_distinct_per_patch():
    table = sine_position_table(3, 4, 16)
    assert table.shape == (12, 16)
    assert len({tuple(row.tolist()) for row in table}) == 12
    # first half depends only on the row, second half only on the column
    assert torch.equal(table[0, :8], table[3, :8]) and torch.equal(table[0, 8:], table[4, 8:])


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="kind"):
        PatchStemConfig(kind="vit")
    with pytest.raises(ValueError, match="position"):
        PatchStemConfig(position="rope")
    with pytest.raises(ValueError, match="power of two"):
        PatchStemConfig(kind="conv", patch_size=6, image_size=12)
    with pytest.raises(ValueError, match="multiples of patch_size"):
        PatchStemConfig(kind="linear", patch_size=5, image_size=16)
    with pytest.raises(ValueError, match="unknown field"):
        ModelConfig(**BASE, patch_stem={"kind": "conv", "patchsize": 4})


def test_config_round_trip_through_dicts_and_yaml():
    cfg = ModelConfig(**BASE, patch_stem=dict(STEM))
    assert isinstance(cfg.patch_stem, PatchStemConfig)
    assert model_config_from_dict(cfg.to_dict()) == cfg
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR / "model"), version_base="1.3"):
        preset = compose(config_name="tiny", overrides=[f"patch_stem={STEM}".replace("'", "")])
    from_yaml = model_config_from_dict(OmegaConf.to_container(preset))
    assert from_yaml.patch_stem == PatchStemConfig(**STEM)
    assert ModelConfig(**BASE).patch_stem is None  # default: no stem, today's model
    assert cfg.num_parameters() == UnifiedTransformer(cfg).num_parameters()


def test_build_model_takes_the_placeholder_id_from_the_vocabulary():
    built = build_model(ModelConfig(**BASE, patch_stem=dict(STEM)), VOCAB)
    assert built.patch_stem.config.placeholder_id == VOCAB.token_id("<image>")
    assert PatchStemConfig().placeholder_id == VOCAB.token_id("<image>")


def test_no_image_path_is_bit_identical_and_never_touches_the_stem():
    plain, stemmed = model(stem=None), model()
    for name, param in plain.named_parameters():  # a stem does not change the other weights
        assert torch.equal(param, stemmed.get_parameter(name)), name
    batch = batch_of([encoder_row(None, 7, 1), encoder_row(None, 5, 2)])

    def boom(*args):
        raise AssertionError("the stem ran without images")

    stemmed.patch_stem.forward = boom
    with torch.no_grad():
        assert torch.equal(plain.forward_batch(batch), stemmed.forward_batch(batch))


def test_placeholders_are_replaced_in_row_major_order():
    m = model()
    stem_cfg = m.config.patch_stem
    # Row 0 has an image, row 1 none, row 2 an image: images are consumed in row order.
    rows = [encoder_row(stem_cfg, 4, 1), encoder_row(None, 6, 2), encoder_row(stem_cfg, 3, 3)]
    batch = batch_of(rows)
    pics = images(2)
    with torch.no_grad():
        memory = m.encode(**{k: v for k, v in batch.items() if k.startswith("input")}, input_images=pics)
        # Each row alone gives the same states (row 1 without images, row 2 with the second image).
        for r, (row, pic) in enumerate(zip(rows, (pics[:1], None, pics[1:]))):
            alone = batch_of([row])
            enc = {k: v for k, v in alone.items() if k.startswith("input")}
            states = m.encode(**enc, input_images=pic).states[0]
            torch.testing.assert_close(memory.states[r, : len(row["ids"])], states[: len(row["ids"])])
        # Swapping the images changes the outputs of the image rows only.
        swapped = m.encode(
            **{k: v for k, v in batch.items() if k.startswith("input")}, input_images=pics.flip(0)
        )
        assert not torch.allclose(swapped.states[0], memory.states[0])
        torch.testing.assert_close(swapped.states[1], memory.states[1])
        # The embedding of a placeholder is the stem's patch embedding plus the image modality embedding.
        m.modality_embed.weight.data.normal_()
        x = m.embed_with_patches(batch["input_ids"], batch["input_modality"], batch["input_row"], pics)
        patches = m.patch_stem(pics)
        torch.testing.assert_close(x[0, :16], patches[0] + m.modality_embed.weight[IMAGE_MODALITY])
        torch.testing.assert_close(x[2, :16], patches[1] + m.modality_embed.weight[IMAGE_MODALITY])


def test_an_image_bracket_is_not_a_placeholder_and_counts_are_checked():
    m = model()
    row = encoder_row(m.config.patch_stem, 4, 1)
    batch = {k: v for k, v in batch_of([row]).items() if k.startswith("input")}
    with pytest.raises(ValueError, match="placeholder tokens"):
        m.encode(**batch, input_images=images(2))
    # A real <image> bracket (row -1) in front of the span is an ordinary token.
    bracket = {"ids": torch.tensor([VOCAB.token_id("<image>")]), "modality": torch.tensor([IMAGE_MODALITY])}
    bracket |= {"row": torch.tensor([-1]), "col": torch.tensor([-1])}
    framed = {k: torch.cat([bracket[k], row[k]]) for k in row}
    enc = {k: v for k, v in batch_of([framed]).items() if k.startswith("input")}
    assert m.encode(**enc, input_images=images(1)).states.shape[1] == len(framed["ids"])
    with pytest.raises(ValueError, match="patch_stem is None"):
        model(stem=None).encode(**batch, input_images=images(1))


def test_gradient_flows_to_the_stem_through_forward_batch():
    m = model().train()
    batch = batch_of([encoder_row(m.config.patch_stem, 4, 1), encoder_row(m.config.patch_stem, 2, 2)])
    batch["input_images"] = images(2)
    logits = m.forward_batch(batch)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), text(6, 5)).backward()
    for name, param in m.patch_stem.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_generate_with_images_matches_teacher_forcing_and_guidance_pads():
    m = model()
    rows = [encoder_row(m.config.patch_stem, 4, 1), encoder_row(m.config.patch_stem, 6, 2)]
    batch = {k: v for k, v in batch_of(rows).items() if k.startswith("input")}
    batch["input_images"] = images(2)
    out = generate(m, batch, VOCAB, GenerationConfig(max_new_tokens=4, stop_at_eos=False))
    dec = torch.cat([torch.full((2, 1), VOCAB.bos_id), out.tokens[:, :3]], 1)
    meta = {"modality": torch.zeros(2, 4, dtype=torch.long), "position": torch.arange(4).expand(2, 4)}
    meta |= {"row": torch.full((2, 4), -1), "col": torch.full((2, 4), -1)}
    with torch.no_grad():
        logits = m(**batch, decoder_input_ids=dec, **{f"decoder_{k}": v for k, v in meta.items()})
    assert torch.equal(logits.argmax(-1), out.tokens)
    # Other images -> other outputs would be likely but not guaranteed on a random model; the
    # encoder must at least see them: the swapped images change the first-step logits.
    swapped = dict(batch, input_images=batch["input_images"].flip(0))
    with torch.no_grad():
        other = m(**swapped, decoder_input_ids=dec, **{f"decoder_{k}": v for k, v in meta.items()})
    assert not torch.allclose(other[:, 0], logits[:, 0])
    # Classifier-free guidance: null rows without images are stacked after the image rows.
    null = batch_of([encoder_row(None, 1, 7), encoder_row(None, 1, 8)])
    null = {k: v for k, v in null.items() if k.startswith("input")}
    guided = generate(
        m, batch, VOCAB, GenerationConfig(max_new_tokens=3, guidance_scale=2.0), unconditional_inputs=null
    )
    assert guided.tokens.shape[0] == 2
    beams = generate(m, batch, VOCAB, GenerationConfig(max_new_tokens=3, num_beams=2))
    assert beams.tokens.shape[0] == 2
