"""Hydra configs compose; the training script trains, checkpoints, resumes and evaluates tiny tokenizers."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

import scripts.eval_tokenizer  # registers the config schemas
import scripts.train_tokenizer  # noqa: F401
from unio.data.tokenizer_datasets import TokenizerDataConfig
from unio.tokenizers.saved import build_tokenizer, from_pretrained
from unio.tokenizers.vq import config_from_dict
from unio.train.tokenizer_trainer import TokenizerTrainConfig, lr_factor

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
PRESETS = sorted(
    str(p.relative_to(CONF / "tokenizer").with_suffix("")) for p in (CONF / "tokenizer").glob("*/*.yaml")
)
DATA_FOR_KIND = {"image": "coco_images", "mask": "coco_masks", "audio": "fsdd"}


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in the script look their module up there
    spec.loader.exec_module(module)
    return module


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train_tokenizer", overrides=overrides)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_tokenizer_preset_composes_and_builds(preset: str) -> None:
    kind = preset.split("/")[0]
    cfg = compose_train([f"tokenizer={preset}", f"tokenizer_data={DATA_FOR_KIND[kind]}"])
    assert cfg.tokenizer.kind == kind
    train = config_from_dict(TokenizerTrainConfig, dict(cfg.train), "train")
    data = config_from_dict(TokenizerDataConfig, dict(cfg.tokenizer_data), "tokenizer_data")
    assert data.kind == kind and train.batch_size > 0
    tokenizer = build_tokenizer(kind, dict(cfg.tokenizer.config))
    assert tokenizer.codebook_size > 1 and tokenizer.num_tokens > 0


@pytest.mark.parametrize("data", sorted(p.stem for p in (CONF / "tokenizer_data").glob("*.yaml")))
def test_every_data_config_composes_for_eval(data: str) -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="eval_tokenizer", overrides=[f"tokenizer_data={data}", "tokenizer_path=x"])
    parsed = config_from_dict(TokenizerDataConfig, dict(cfg.tokenizer_data), "tokenizer_data")
    assert parsed.train and parsed.eval


def test_override_typos_fail_at_start() -> None:
    with pytest.raises(Exception, match="batchsize"):
        compose_train(["train.batchsize=3"])
    with pytest.raises(ValueError, match="codebok"):
        build_tokenizer("image", {"autoencoder": {"quantizer": {"codebok": 3}}})


def test_lr_schedule_warms_up_then_decays() -> None:
    cfg = TokenizerTrainConfig(warmup_steps=10, min_lr_ratio=0.1)
    assert lr_factor(0, 0.0, cfg) == pytest.approx(0.1)
    assert lr_factor(10, 0.0, cfg) == pytest.approx(1.0)
    assert lr_factor(500, 1.0, cfg) == pytest.approx(0.1)


def write_images(folder: Path, count: int = 10) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        gradient = np.linspace(0, 255, 24)[None, :, None] * rng.random(3)[None, None]
        Image.fromarray(gradient.repeat(20, 0).astype(np.uint8)).save(folder / f"{i}.png")


def write_coco(folder: Path, count: int = 4) -> Path:
    folder.mkdir(parents=True)
    anns = [
        {
            "id": i + 1,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 0,
            "area": 100.0,
            "bbox": [4 + i, 4, 10, 12],
            "segmentation": [[4 + i, 4, 14 + i, 4, 14 + i, 16, 4 + i, 16]],
        }
        for i in range(count)
    ]
    coco = {
        "images": [{"id": 1, "width": 40, "height": 30, "file_name": "a.jpg"}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "thing"}],
    }
    path = folder / "instances.json"
    path.write_text(json.dumps(coco))
    return path


def write_wavs(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        t = np.arange(1200) / 8000
        samples = (0.3 * np.sin(2 * math.pi * (300 + 100 * i) * t) * 32767).astype("<i2")
        with wave.open(str(folder / name), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(samples.tobytes())


def common_overrides(tmp_path: Path) -> list[str]:
    return [
        f"train.out_dir={tmp_path / 'run'}",
        "train.wandb.mode=disabled",
        "train.progress_bar=false",
        "train.num_threads=1",
        "eval.batch_size=4",
    ]


def test_train_resume_and_evaluate_tiny_image_tokenizer(tmp_path: Path) -> None:
    write_images(tmp_path / "train")
    write_images(tmp_path / "val", count=3)
    overrides = [
        "tokenizer=image/image_tiny_test",
        f"tokenizer_data.train=[{tmp_path / 'train'}]",
        f"tokenizer_data.eval=[{tmp_path / 'val'}]",
        *common_overrides(tmp_path),
    ]
    train_script = load_script("train_tokenizer")
    report = train_script.run(compose_train([*overrides, "train.steps=6"]))
    run = tmp_path / "run"
    assert (run / "checkpoint.pt").is_file() and (run / "tokenizer" / "model.safetensors").is_file()
    assert report["num_items"] == 3 and 0 < report["usage"] <= 1 and report["psnr"] > 0
    assert "jpeg_scan_psnr" in report and (run / "eval" / "reconstructions.png").is_file()
    assert list((run / "samples").glob("step_*.png"))
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 6

    report = train_script.run(compose_train([*overrides, "train.steps=9"]))
    steps = [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert steps[-1] == 9 and report["train_steps"] == 9  # resumed at 6, not restarted

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="eval_tokenizer",
            overrides=[
                f"tokenizer_path={run / 'tokenizer'}",
                f"tokenizer_data.eval=[{tmp_path / 'val'}]",
                "tokenizer_data.eval_resize=16",
                f"out_dir={tmp_path / 'eval'}",
                "jpeg=false",
            ],
        )
    again = load_script("eval_tokenizer").run(cfg)
    assert again["fingerprint"] == from_pretrained(run / "tokenizer").fingerprint
    assert (tmp_path / "eval" / "report.json").is_file()


@pytest.mark.slow
def test_train_tiny_mask_and_audio_tokenizers(tmp_path: Path) -> None:
    coco = write_coco(tmp_path / "coco")
    write_wavs(tmp_path / "wavs", [f"{d}_spk_{i}.wav" for d in range(2) for i in range(8)])
    train_script = load_script("train_tokenizer")
    mask_report = train_script.run(
        compose_train(
            [
                "tokenizer=mask/mask_tiny_test",
                "tokenizer_data=coco_masks",
                f"tokenizer_data.train=[{coco}]",
                f"tokenizer_data.eval=[{coco}]",
                "train.steps=4",
                *common_overrides(tmp_path / "mask"),
            ]
        )
    )
    assert mask_report["num_items"] == 4 and 0 <= mask_report["iou"] <= 1
    audio_report = train_script.run(
        compose_train(
            [
                "tokenizer=audio/audio_tiny_test",
                "tokenizer_data=fsdd",
                f"tokenizer_data.train=[{tmp_path / 'wavs'}]",
                f"tokenizer_data.eval=[{tmp_path / 'wavs'}]",
                "train.steps=4",
                "eval.num_audio_examples=2",
                *common_overrides(tmp_path / "audio"),
            ]
        )
    )
    assert audio_report["num_items"] == 10  # the fsdd split: indices 0-4 evaluate, 5-7 train
    assert audio_report["mel_l1_db"] >= 0 and audio_report["bits_per_second"] > 0
    assert len(list((tmp_path / "audio" / "run" / "eval" / "audio").glob("*.wav"))) == 6


@pytest.mark.data
@pytest.mark.slow
def test_real_tokenizer_datasets_load() -> None:
    from unio.data.tokenizer_datasets import AudioClipDataset, ImageCropDataset, MaskCropDataset
    from unio.tokenizers.audio import resample

    root = Path(os.environ.get("UNIO_DATA", REPO.parent / "shared" / "data"))
    if not (root / "coco_mini").is_dir() or not (root / "fsdd").is_dir():
        pytest.skip(f"real data not found under {root} (set UNIO_DATA)")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfgs = {
            name: config_from_dict(
                TokenizerDataConfig,
                dict(
                    compose(
                        config_name="train_tokenizer",
                        overrides=[f"tokenizer_data={name}", f"data_root={root}"],
                    ).tokenizer_data
                ),
            )
            for name in ("coco_images", "coco_masks", "fsdd")
        }
    images = ImageCropDataset(cfgs["coco_images"], 64, train=False)
    assert len(images) == 76 and images[0].shape == (3, 64, 64)  # the val2017 JPEGs of coco_mini
    masks = MaskCropDataset(cfgs["coco_masks"], 64, train=False)
    assert len(masks) > 400 and set(masks[0].unique().tolist()) <= {0.0, 1.0}
    clips = AudioClipDataset(cfgs["fsdd"], 16000, 16384, train=False, resample=resample)
    assert len(clips) == 250  # 5 speakers x 10 digits x indices 0-4
    wave_, length = clips[0]
    assert wave_.shape == (16384,) and 0 < length <= 16384


@pytest.mark.slow
def test_gan_training_path_runs(tmp_path: Path) -> None:
    write_images(tmp_path / "train")
    write_images(tmp_path / "val", count=2)
    report = load_script("train_tokenizer").run(
        compose_train(
            [
                "tokenizer=image/image_tiny_test",
                f"tokenizer_data.train=[{tmp_path / 'train'}]",
                f"tokenizer_data.eval=[{tmp_path / 'val'}]",
                "+tokenizer.config.loss={gan_weight: 0.1, gan_start_step: 2, disc_channels: 8, disc_layers: 2}",
                "train.steps=4",
                "train.log_every=1",
                *common_overrides(tmp_path),
            ]
        )
    )
    logged = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert "gan_d" not in logged[0] and "gan_d" in logged[-1] and "gan_weight" in logged[-1]
    assert report["num_items"] == 2
    assert "adversary" in torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)


# ---- issue #10 defects 6 and 8: bad tokenizer data, and failed runs leave nothing half-made ----


def _image_data(tmp_path: Path, policy: str = "raise", **kw) -> TokenizerDataConfig:
    return TokenizerDataConfig(kind="image", train=[str(tmp_path / "train")], eval=[str(tmp_path / "train")],
                               on_bad_sample=policy, **kw)  # fmt: skip


def test_corrupt_image_raises_one_error_or_is_skipped_and_counted(tmp_path: Path) -> None:
    from unio.data.bad_samples import CORRUPT_FILE, BadSampleError
    from unio.data.tokenizer_datasets import ImageCropDataset

    write_images(tmp_path / "train")
    (tmp_path / "train" / "3.png").write_bytes(b"not a png at all")
    with pytest.raises(BadSampleError, match=r"3\.png: field 'image': corrupt file") as raised:
        ImageCropDataset(_image_data(tmp_path), 16, train=True)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__, "one error, not a chain"
    data = ImageCropDataset(_image_data(tmp_path, "skip", max_bad_fraction=0.2), 16, train=True)
    assert len(data) == 9 and data.bad_samples.counts() == {CORRUPT_FILE: 1}
    assert data.counts == {"items": 9, "bad_files": 1}
    assert data[0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match=r"lost 1 of 10 image files \(10%\) > max_bad_fraction=0.05.*3\.png"):
        ImageCropDataset(_image_data(tmp_path, "skip", max_bad_fraction=0.05), 16, train=True)


def test_empty_wav_says_empty_file_and_all_bad_fails(tmp_path: Path) -> None:
    from unio.data.bad_samples import BadSampleError
    from unio.data.io import decode_wav
    from unio.data.tokenizer_datasets import AudioClipDataset

    with pytest.raises(ValueError, match="^empty file$"):
        decode_wav(b"")
    write_wavs(tmp_path / "wavs", ["0_a_5.wav", "1_a_6.wav"])
    (tmp_path / "wavs" / "2_a_7.wav").write_bytes(b"")
    cfg = TokenizerDataConfig(kind="audio", train=[str(tmp_path / "wavs")], eval=[str(tmp_path / "wavs")])
    with pytest.raises(BadSampleError, match=r"2_a_7\.wav: field 'audio': corrupt file: empty file"):
        AudioClipDataset(cfg, 8000, 1000, train=True)
    cfg.on_bad_sample, cfg.max_bad_fraction = "skip", 0.5
    assert len(AudioClipDataset(cfg, 8000, 1000, train=True)) == 2
    for name in ("0_a_5.wav", "1_a_6.wav"):
        (tmp_path / "wavs" / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"no usable audio files.*corrupt file 3"):
        AudioClipDataset(cfg, 8000, 1000, train=True)


def test_failed_tokenizer_training_leaves_no_output_folder(tmp_path: Path) -> None:
    from unio.data.bad_samples import BadSampleError

    write_images(tmp_path / "train")
    (tmp_path / "train" / "3.png").write_bytes(b"not a png at all")
    overrides = [
        "tokenizer=image/image_tiny_test",
        f"tokenizer_data.train=[{tmp_path / 'train'}]",
        f"tokenizer_data.eval=[{tmp_path / 'train'}]",
        *common_overrides(tmp_path),
        "train.steps=2",
        "train.batch_size=4",
    ]
    train_script = load_script("train_tokenizer")
    with pytest.raises(BadSampleError, match=r"3\.png"):
        train_script.run(compose_train(overrides))
    assert not (tmp_path / "run").exists(), "a failed run leaves no empty output folder"
    with pytest.raises(ValueError, match="fewer than batch_size"):
        train_script.run(compose_train([*overrides, "train.batch_size=64", "tokenizer_data.on_bad_sample=skip",
                                        "tokenizer_data.max_bad_fraction=0.5"]))  # fmt: skip
    assert not (tmp_path / "run").exists()

    train_script.run(compose_train([*overrides, "tokenizer_data.on_bad_sample=skip", "tokenizer_data.max_bad_fraction=0.5",
                                    "eval_after_training=false"]))  # fmt: skip
    saved = json.loads((tmp_path / "run" / "bad_samples.json").read_text())
    assert saved["counts"] == {"corrupt file": 1}
