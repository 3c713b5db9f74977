"""Pretrained vision features (unio/model/vision_encoder.py): a tiny random ViT saved with safetensors is
loaded strictly, gives the features a hand-written ViT computes, stays frozen while the projection
trains, and plugs into the encoder through ``patch_stem={kind: pretrained}``."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from tests.conftest import CONF_DIR
from tests.test_patches import BASE, VOCAB, batch_of, encoder_row, text
from unio.model.patches import PatchStem, PatchStemConfig
from unio.model.transformer import ModelConfig, build_model, model_config_from_dict
from unio.model.vision_encoder import PretrainedStem, VisionEncoderConfig, VisionTransformer
from unio.train.optim import OptimConfig, build_optimizer

VIT = {"patch_size": 8, "image_size": 32, "width": 32, "depth": 2, "heads": 2, "mlp_ratio": 2.0}


def save_random_vit(path, seed: int = 0, **overrides) -> dict[str, torch.Tensor]:
    """A random ViT of ``VIT | overrides`` written to ``path``; returns its tensors."""
    cfg = VisionEncoderConfig(weights=str(path), **{**VIT, **overrides})
    torch.manual_seed(seed)
    vit = VisionTransformer(cfg)
    tensors = {k: torch.randn_like(v) * (0.2 if v.dim() > 1 else 1.0) for k, v in vit.state_dict().items()}
    save_file(tensors, str(path))
    return tensors


def stem_config(weights, **vit_overrides) -> dict:
    return {
        "kind": "pretrained",
        "patch_size": 8,
        "image_size": 32,
        "pretrained": {"weights": str(weights), **VIT, **vit_overrides},
    }


def pictures(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def reference_features(t: dict[str, torch.Tensor], cfg: VisionEncoderConfig, images: torch.Tensor):
    """The ViT written out op by op from the raw tensors (timm's forward_features semantics)."""
    mean, std = torch.tensor(cfg.mean).view(1, 3, 1, 1), torch.tensor(cfg.std).view(1, 3, 1, 1)
    x = (images.float() / 255 - mean) / std
    x = F.conv2d(x, t["patch_embed.proj.weight"], t["patch_embed.proj.bias"], stride=cfg.patch_size)
    x = x.flatten(2).transpose(1, 2)
    if cfg.class_token:
        x = torch.cat([t["cls_token"].expand(len(x), 1, -1), x], 1)
    x = x + t["pos_embed"]

    def norm(x, name):
        return F.layer_norm(x, (cfg.width,), t[f"{name}.weight"], t[f"{name}.bias"], cfg.norm_eps)

    if cfg.pre_norm:
        x = norm(x, "norm_pre")
    B, L, W = x.shape
    hd = W // cfg.heads
    last = cfg.layer % cfg.depth
    for i in range(last + 1):
        p = f"blocks.{i}."
        qkv = norm(x, p + "norm1") @ t[p + "attn.qkv.weight"].T + t[p + "attn.qkv.bias"]
        q, k, v = (part.reshape(B, L, cfg.heads, hd).transpose(1, 2) for part in qkv.split(W, -1))
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), -1)
        y = (attn @ v).transpose(1, 2).reshape(B, L, W)
        x = x + y @ t[p + "attn.proj.weight"].T + t[p + "attn.proj.bias"]
        h = norm(x, p + "norm2") @ t[p + "mlp.fc1.weight"].T + t[p + "mlp.fc1.bias"]
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2))) if cfg.act == "gelu" else h * torch.sigmoid(1.702 * h)
        x = x + h @ t[p + "mlp.fc2.weight"].T + t[p + "mlp.fc2.bias"]
    if last == cfg.depth - 1:
        x = norm(x, "norm")
    return x[:, 1:] if cfg.class_token else x


@pytest.mark.parametrize(
    "variant",
    [{}, {"layer": -2, "pre_norm": True, "act": "quick_gelu", "class_token": False, "norm_eps": 1e-5}],
    ids=["vit-last-layer", "clip-style-penultimate"],
)
def test_features_match_a_hand_written_vit(tmp_path, variant):
    tensors = save_random_vit(tmp_path / "vit.safetensors", **variant)
    cfg = PatchStemConfig.from_dict(stem_config(tmp_path / "vit.safetensors", **variant))
    stem = PretrainedStem(cfg, d_model=24)
    with torch.no_grad():
        stem.norm.weight.normal_()  # a non-trivial trainable norm, to check it is applied
        out = stem(pictures(3))
        features = reference_features(tensors, cfg.pretrained, pictures(3))
        expected = F.layer_norm(features, (32,), stem.norm.weight, stem.norm.bias) @ stem.proj.weight.T
    assert out.shape == (3, 16, 24)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stem(pictures(3).float() / 255), out)  # uint8 == float in [0, 1]
    rows, cols = stem.grid_indices()
    assert rows.tolist() == [i // 4 for i in range(16)] and cols.tolist() == [i % 4 for i in range(16)]
    with pytest.raises(ValueError, match="expected images"):
        stem(torch.zeros(1, 3, 16, 16))


def test_model_loads_the_file_and_trains_only_the_projection(tmp_path):
    tensors = save_random_vit(tmp_path / "vit.safetensors")
    cfg = ModelConfig(**BASE, patch_stem=stem_config(tmp_path / "vit.safetensors"))
    torch.manual_seed(0)
    model = build_model(cfg, VOCAB).train()
    stem = model.patch_stem
    assert isinstance(stem, PretrainedStem) and stem.config.position == "none"
    # The loaded weights are the file's, frozen, and counted by the config.
    loaded = stem.encoder.state_dict()
    assert loaded.keys() == tensors.keys()
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert not any(p.requires_grad for p in stem.encoder.parameters())
    assert cfg.num_parameters() == model.num_parameters()
    assert not stem.encoder.training and stem.training  # frozen encoder stays in eval mode
    # encode: one image per placeholder span -> [B, S, d_model]
    rows = [encoder_row(stem.config, 4, 1), encoder_row(stem.config, 2, 2)]
    batch = batch_of(rows)
    batch["input_images"] = pictures(2)
    memory = model.encode(**{k: v for k, v in batch.items() if k.startswith("input")})
    assert memory.states.shape == (2, 16 + 4, BASE["d_model"])
    # One optimizer step: the frozen encoder gets no gradient and does not move; the projection does.
    optimizer = build_optimizer(model, OptimConfig(lr=1e-2, warmup_steps=0))
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in stem.encoder.parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logits = model.forward_batch(batch)
    F.cross_entropy(logits.flatten(0, 1), text(6, 5)).backward()
    assert all(p.grad is None for p in stem.encoder.parameters())
    assert stem.proj.weight.grad is not None and stem.proj.weight.grad.abs().sum() > 0
    optimizer.step()
    after = model.state_dict()
    encoder_keys = [k for k in after if k.startswith("patch_stem.encoder.")]
    assert len(encoder_keys) == len(tensors)
    assert all(torch.equal(after[k], before[k]) for k in encoder_keys)
    assert not torch.equal(after["patch_stem.proj.weight"], before["patch_stem.proj.weight"])
    # The unified model's state dict (a checkpoint) holds the frozen weights: it loads strictly.
    fresh = build_model(cfg, VOCAB)
    fresh.load_state_dict(after, strict=True)
    torch.testing.assert_close(fresh.patch_stem(pictures(2)), model.patch_stem(pictures(2)))


def test_weights_that_do_not_fit_are_errors_naming_file_and_keys(tmp_path):
    good = tmp_path / "vit.safetensors"
    tensors = save_random_vit(good)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded") as err:
        PretrainedStem(PatchStemConfig.from_dict(stem_config(tmp_path / "absent.safetensors")), 16)
    assert "absent.safetensors" in str(err.value)
    extra = tmp_path / "extra.safetensors"
    save_file({**tensors, "head.weight": torch.zeros(10, 32)}, str(extra))
    with pytest.raises(ValueError, match=r"extra\.safetensors.*unexpected keys \['head\.weight'\]"):
        PretrainedStem(PatchStemConfig.from_dict(stem_config(extra)), 16)
    missing = tmp_path / "missing.safetensors"
    save_file({k: v for k, v in tensors.items() if k != "norm.bias"}, str(missing))
    with pytest.raises(ValueError, match=r"missing\.safetensors.*missing keys \['norm\.bias'\]"):
        PretrainedStem(PatchStemConfig.from_dict(stem_config(missing)), 16)
    # A ViT for 16 px images does not fit a 32 px config: the position table's shape is named.
    small = tmp_path / "small.safetensors"
    save_random_vit(small, image_size=16)
    with pytest.raises(ValueError, match=r"small\.safetensors.*pos_embed \(1, 5, 32\) != \(1, 17, 32\)"):
        PretrainedStem(PatchStemConfig.from_dict(stem_config(small)), 16)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="garbage.safetensors: not a readable safetensors file"):
        PretrainedStem(PatchStemConfig.from_dict(stem_config(garbage)), 16)


def test_config_errors_name_the_field(tmp_path):
    weights = tmp_path / "vit.safetensors"
    with pytest.raises(ValueError, match="required for kind=pretrained"):
        PatchStemConfig(kind="pretrained")
    with pytest.raises(ValueError, match="required for kind=pretrained"):
        PatchStemConfig(kind="conv", pretrained=stem_config(weights)["pretrained"])
    with pytest.raises(ValueError, match=r"must be \(8, \(32, 32\), 3, 'none'\).*got \(16,"):
        PatchStemConfig.from_dict({**stem_config(weights), "patch_size": 16})
    with pytest.raises(ValueError, match="position comes from its pos_embed"):
        PatchStemConfig.from_dict({**stem_config(weights), "position": "sine"})
    with pytest.raises(ValueError, match="weights: the path of a .safetensors file is required"):
        VisionEncoderConfig()
    with pytest.raises(ValueError, match=r"PatchStemConfig.pretrained: unknown field\(s\) \['widht'\]"):
        ModelConfig(**BASE, patch_stem={**stem_config(weights), "pretrained": {"weights": "x", "widht": 8}})
    with pytest.raises(ValueError, match="layer must be in"):
        VisionEncoderConfig(weights="x", depth=2, layer=2)
    with pytest.raises(ValueError, match="act must be one of"):
        VisionEncoderConfig(weights="x", act="relu")
    with pytest.raises(ValueError, match="kind=pretrained is a PretrainedStem"):
        PatchStem(PatchStemConfig.from_dict(stem_config(weights)), d_model=16)


def test_config_round_trips_through_json_and_a_hydra_override(tmp_path):
    weights = tmp_path / "vit.safetensors"
    cfg = ModelConfig(**BASE, patch_stem=stem_config(weights))
    assert isinstance(cfg.patch_stem.pretrained, VisionEncoderConfig)
    assert model_config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # as in a checkpoint
    vit = ", ".join(f"{k}: {v}" for k, v in VIT.items())
    override = (
        f"patch_stem={{kind: pretrained, patch_size: 8, image_size: 32, position: none, "
        f"pretrained: {{weights: '{weights}', {vit}}}}}"
    )
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR / "model"), version_base="1.3"):
        preset = compose(config_name="tiny", overrides=[override])
    from_yaml = model_config_from_dict(OmegaConf.to_container(preset))
    assert from_yaml.patch_stem == cfg.patch_stem
    # the file is only read when the model is built
    save_random_vit(weights)
    assert (
        load_file(str(weights)).keys() == build_model(from_yaml, VOCAB).patch_stem.encoder.state_dict().keys()
    )


def test_checkpoint_is_self_contained_without_the_original_weights_file(tmp_path, text_tokenizer):
    """load_model reads the frozen ViT from the checkpoint's own weights file: the configured file
    may be gone; the loaded model keeps the run's config (so a re-save records the same thing)."""
    from unio.model.checkpoint import load_model, save_model_files, save_tokenizers
    from unio.tasks.bundle import Tokenizers

    weights = tmp_path / "vit.safetensors"
    save_random_vit(weights, seed=3)
    tok = Tokenizers.create(text_tokenizer)
    cfg = ModelConfig(**BASE, patch_stem=stem_config(weights))
    torch.manual_seed(0)
    model = build_model(cfg, tok.vocab).eval()
    tokenizers = save_tokenizers(tok, tmp_path / "tokenizers")
    save_model_files(tmp_path / "ckpt", model.state_dict(), model.config, tok.vocab, tokenizers)
    weights.unlink()
    loaded, _ = load_model(tmp_path / "ckpt")
    assert loaded.config == model.config and loaded.config.patch_stem.pretrained.weights == str(weights)
    with torch.no_grad():
        torch.testing.assert_close(loaded.patch_stem(pictures(2)), model.patch_stem(pictures(2)))


@pytest.mark.parametrize("variant", [{}, {"class_token": False, "layer": 0}])
def test_forward_flops_match_torch_flop_counter(tmp_path, variant):
    """`VisionEncoderConfig.forward_flops` and `patch_stem_flops` (kind=pretrained) against
    torch.utils.flop_counter on the tiny ViT (attention through SDPA's math backend, whose matmuls the
    counter sees; it does not count the fused CPU kernel)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from unio.model.benchmark import patch_stem_flops

    save_random_vit(tmp_path / "vit.safetensors", **variant)
    stem = build_model(
        ModelConfig(**BASE, patch_stem=stem_config(tmp_path / "vit.safetensors", **variant)), VOCAB
    )
    stem = stem.patch_stem
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        stem(pictures(1))
    assert patch_stem_flops(stem.config, BASE["d_model"]) == counter.get_total_flops()
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        stem.encoder(pictures(1).float() / 255)
    assert stem.config.pretrained.forward_flops() == counter.get_total_flops()
