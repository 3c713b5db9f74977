"""Audio patch inputs end to end: asr and audio_classify with `input_repr: patches` put an `AudioPatches`
placeholder span in the input and the log-mel spectrogram (fp16) beside it; the pretokenizer stores it
bit-exact, keyed by the spectrogram options (no audio VQ encoder); the collator stacks it as
`input_audio` in row-major order, also beside images and codes; condition dropout drops it with its
row; a model with an `audio_stem` trains on it and generates from it."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from unio.data.collate import Collator, CollatorConfig, collate_inputs
from unio.data.pretokenize import DatasetEntry, PretokenizeConfig, cache_key, load_pretokenized, pretokenize
from unio.data.record import Record
from unio.data.sources.shapes import ShapesConfig, ShapesSource
from unio.data.sources.shapes_audio import TonesConfig, TonesSource
from unio.model.generate import GenerationConfig, generate
from unio.model.guidance import drop_condition, images_per_row
from unio.model.patches import placeholder_span
from unio.model.transformer import AUDIO_KEY, ModelConfig, build_model
from unio.pipeline import GenerationOptions, TextResult, predict_examples
from unio.sequence import AudioCodes, AudioPatches
from unio.tasks import Tokenizers, encode_example, make_task
from unio.tasks.audio_tasks import log_mel_spectrogram
from unio.tasks.bundle import tiny_grid_tokenizer
from unio.tokenizers.coords import CoordTokenizer
from unio.train.trainer import _model_inputs

# 8 kHz tones of 1.0 s in a 64 x 128 / 8000 = 1.024 s window: a 16 x 64 spectrogram, a 2 x 8 grid
AUDIO = {
    "input_repr": "patches",
    "sample_rate": 8000,
    "n_fft": 256,
    "hop_length": 128,
    "n_mels": 16,
    "num_frames": 64,
    "patch_size": 8,
}
STEM = {"kind": "linear", "patch_size": 8, "image_size": [16, 64]}
IMAGE_PATCH = {"input_repr": "patches", "input_size": 32, "patch_size": 8}


@pytest.fixture(scope="module")
def tok(text_tokenizer) -> Tokenizers:
    return Tokenizers.create(text_tokenizer, CoordTokenizer(), audio=tiny_grid_tokenizer("audio", 0))


@pytest.fixture(scope="module")
def tok_no_audio(text_tokenizer) -> Tokenizers:
    """No audio tokenizer at all: audio patch inputs must not need it."""
    return Tokenizers.create(text_tokenizer, CoordTokenizer())


def tones(n: int = 6, split: str = "train") -> list[Record]:
    source = TonesSource(TonesConfig(num_records=n, split=split))
    return [source[i] for i in range(n)]


def tiny_model_config(**extra) -> ModelConfig:
    return ModelConfig(d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=64, **extra)


def cache_row(enc) -> dict:
    """An encoded example as the pretokenized cache stores it."""
    out = {
        f"{side}_{key}": getattr(getattr(enc, side), key).tolist()
        for side in ("input", "target")
        for key in ("ids", "modality", "row", "col")
    }
    if enc.input_audio is not None:
        out["input_audio"] = enc.input_audio.tobytes()
        out["input_audio_shape"] = list(enc.input_audio.shape)
    if enc.input_image is not None:
        out["input_image"] = enc.input_image.tobytes()
        out["input_image_shape"] = list(enc.input_image.shape)
    return out


def encoded(tok, name: str, record, **options):
    return encode_example(make_task(name, **options).build(record, random.Random(0), tok, train=False), tok)


# ----------------------------------------------------------------------------- spectrogram
def test_log_mel_spectrogram_shape_range_and_pitch():
    rate = 8000
    t = np.arange(int(0.5 * rate)) / rate
    options = {"target_rate": 8000, "n_fft": 256, "hop_length": 128, "n_mels": 16, "num_frames": 64}
    peaks = []
    for frequency in (300.0, 1200.0, 3000.0):
        spec = log_mel_spectrogram(np.sin(2 * np.pi * frequency * t).astype(np.float32), rate, **options)
        assert spec.shape == (16, 64) and spec.dtype == np.float16
        assert float(spec.min()) >= 0.0 and float(spec.max()) <= 1.0
        assert float(spec.max()) > 0.9  # a full-scale sine peaks near 0 dB
        assert float(spec[:, 40:].max()) == 0.0  # the zero-padded tail (0.5 s of 1.024 s) is the floor
        peaks.append(int(spec[:, 10].astype(np.float32).argmax()))
    assert peaks == sorted(peaks) and len(set(peaks)) == 3  # higher pitch, higher mel band
    # resampled to the task's rate: a 16 kHz copy of the same tone gives (nearly) the same spectrogram
    t16 = np.arange(int(0.5 * 16000)) / 16000
    same = log_mel_spectrogram(np.sin(2 * np.pi * 1200.0 * t16).astype(np.float32), 16000, **options)
    reference = log_mel_spectrogram(np.sin(2 * np.pi * 1200.0 * t).astype(np.float32), rate, **options)
    assert np.abs(same[:, 2:36].astype(np.float32) - reference[:, 2:36]).max() < 0.02
    # longer than the window: cut (the task, not this function, refuses over-long clips)
    long = log_mel_spectrogram(np.ones(3 * rate, dtype=np.float32) * 0.1, rate, **options)
    assert long.shape == (16, 64)


# ----------------------------------------------------------------------------- tasks
@pytest.mark.parametrize("name", ["asr", "audio_classify"])
def test_patch_task_builds_audio_span(name, tok, tok_no_audio):
    record = tones(1)[0]
    task = make_task(name, **AUDIO)
    assert task.vq_tokenizers() == () and make_task(name, input_repr="codes").vq_tokenizers() == ("audio",)
    example = task.build(record, random.Random(0), tok_no_audio, train=False)
    assert [s for s in example.input if isinstance(s, AudioPatches)] == [AudioPatches(2, 8)]
    assert not any(isinstance(s, AudioCodes) for s in example.input)
    expected = log_mel_spectrogram(
        record.audio, 8000, target_rate=8000, n_fft=256, hop_length=128, n_mels=16, num_frames=64
    )
    np.testing.assert_array_equal(example.audio, expected)
    enc = encode_example(example, tok_no_audio)
    assert enc.input_audio.dtype == np.float16 and enc.input_audio.shape == (16, 64)
    assert enc.input_image is None
    # the span is exactly the audio stem's contract (placeholder_span of its config)
    stem = build_model(tiny_model_config(audio_stem=dict(STEM)), tok.vocab).audio_stem.config
    span = placeholder_span(stem)
    audio_id = tok.vocab.token_id("<audio>")
    slots = (enc.input.ids == audio_id) & (enc.input.row >= 0)
    assert int(slots.sum()) == stem.num_patches == 16
    for key in ("ids", "modality", "row", "col"):
        assert torch.equal(getattr(enc.input, key)[slots], span[key]), key
    # the same record with codes: the same target and meta, codes in the input, no spectrogram
    coded = make_task(name, input_repr="codes").build(record, random.Random(0), tok, train=False)
    assert coded.target == example.target and coded.meta == example.meta and coded.audio is None
    assert encode_example(coded, tok).input_audio is None


def test_audio_patch_options_are_checked(tok_no_audio):
    with pytest.raises(ValueError, match="n_mels 20 must be a multiple of patch_size 8"):
        make_task("asr", **{**AUDIO, "n_mels": 20})
    with pytest.raises(ValueError, match="num_frames"):
        make_task("audio_classify", **{**AUDIO, "num_frames": 60})
    with pytest.raises(ValueError, match="hop_length <= n_fft"):
        make_task("asr", **{**AUDIO, "hop_length": 512})
    with pytest.raises(ValueError, match="not supported"):
        make_task("tts", input_repr="patches")
    make_task(
        "asr", input_repr="codes", n_mels=20
    )  # spectrogram options are not checked (nor used) for codes
    # a clip longer than the window is not an example; build_input says why
    task = make_task("asr", **AUDIO)
    long = tones(1)[0].replace(audio=np.full(9000, 0.1, dtype=np.float32))
    assert task.build(long, random.Random(0), tok_no_audio) is None
    with pytest.raises(ValueError, match="at most 1.02 s"):
        task.build_input(tok_no_audio, audio=long.audio, sample_rate=8000)
    example = task.build_input(tok_no_audio, audio=tones(1)[0].audio, sample_rate=8000)
    assert example.input[-1] == AudioPatches(2, 8) and example.audio.shape == (16, 64)


def test_cache_key_holds_audio_options_only_for_patches(tok):
    entry, cfg = DatasetEntry(source={"kind": "tones"}), PretokenizeConfig()
    key = lambda **options: cache_key(make_task("asr", **{"input_repr": "codes", **options}), tok, entry, cfg)  # noqa: E731
    assert key() == key(n_mels=32, num_frames=256, sample_rate=22050)  # codes: old caches stay valid
    patches = key(**AUDIO)
    assert patches != key() and "audio" not in patches["fingerprints"] and "audio" in key()["fingerprints"]
    for option, value in [("n_mels", 32), ("num_frames", 128), ("hop_length", 64), ("n_fft", 512)]:
        assert key(**{**AUDIO, option: value}) != patches, option
    assert key(**{**AUDIO, "sample_rate": 16000, "hop_length": 256}) != patches
    assert key(**{**AUDIO, "patch_size": 16}) != patches


# ----------------------------------------------------------------------------- pretokenize
def test_pretokenize_stores_spectrograms_bit_exact(tmp_path, tok_no_audio):
    tasks = {"asr": AUDIO, "audio_classify": AUDIO}
    entry = DatasetEntry(source={"kind": "tones"}, tasks=tasks, train=False)
    cfg = PretokenizeConfig(cache_dir=str(tmp_path), data={"tones": entry}, shard_size=4)
    source = lambda: {"tones": TonesSource(TonesConfig(num_records=6))}  # noqa: E731
    # no audio tokenizer in the bundle: the audio VQ encoder cannot run
    first = pretokenize(cfg, tok_no_audio, sources=source(), log=lambda _: None, progress=False)
    assert {r.status for r in first.values()} == {"built"}
    second = pretokenize(cfg, tok_no_audio, sources=source(), log=lambda _: None, progress=False)
    assert {r.status for r in second.values()} == {"hit"}
    loaded = load_pretokenized(tmp_path, cfg.data, tok_no_audio)
    recs = tones(6)
    for name in tasks:
        rows = loaded[f"tones/{name}"]
        assert len(rows) == 6
        task = make_task(name, **AUDIO)
        for record, row in zip(recs, rows, strict=True):
            expected = encode_example(
                task.build(record, random.Random(0), tok_no_audio, train=False), tok_no_audio
            )
            stored = np.frombuffer(row["input_audio"], dtype=np.float16).reshape(row["input_audio_shape"])
            assert stored.tobytes() == expected.input_audio.tobytes()  # bit-exact
            assert row["input_ids"] == expected.input.ids.tolist()
    # another spectrogram option: another key, so the cache is rebuilt, never reused
    cfg.data["tones"].tasks = {"asr": {**AUDIO, "n_mels": 8}}
    again = pretokenize(cfg, tok_no_audio, sources=source(), log=lambda _: None, progress=False)
    assert again["tones/asr"].status == "rebuilt"
    row = load_pretokenized(tmp_path, cfg.data, tok_no_audio)["tones/asr"][0]
    assert row["input_audio_shape"] == [8, 64]


def test_code_input_cache_has_no_audio_columns(tmp_path, tok):
    entry = DatasetEntry(source={"kind": "tones"}, tasks={"asr": {"input_repr": "codes"}})
    cfg = PretokenizeConfig(cache_dir=str(tmp_path), data={"tones": entry}, shard_size=4)
    pretokenize(
        cfg,
        tok,
        sources={"tones": TonesSource(TonesConfig(num_records=2))},
        log=lambda _: None,
        progress=False,
    )
    assert "input_audio" not in load_pretokenized(tmp_path, cfg.data, tok)["tones/asr"].column_names


# ----------------------------------------------------------------------------- collation
def test_collator_mixes_audio_images_and_codes(tok):
    recs = tones(3)
    scene = ShapesSource(ShapesConfig(num_records=1, image_size=32))[0]
    examples = [
        cache_row(encoded(tok, "asr", recs[0], **AUDIO)),
        cache_row(encoded(tok, "asr", recs[1], input_repr="codes")),  # audio codes: no spectrogram
        cache_row(encoded(tok, "classify", scene, **IMAGE_PATCH)),  # an image, no audio
        cache_row(encoded(tok, "audio_classify", recs[2], **AUDIO)),
    ]
    batch = Collator(tok.vocab.bos_id)(examples)
    audio = batch["input_audio"]
    assert audio.dtype == torch.float16 and audio.shape == (2, 1, 16, 64)
    for got, i in zip(audio, (0, 2), strict=True):
        assert got[0].numpy().tobytes() == encoded(tok, "asr", recs[i], **AUDIO).input_audio.tobytes()
    assert batch["input_images"].shape == (1, 3, 32, 32)
    assert images_per_row(batch, tok.vocab, "<audio>").tolist() == [1, 0, 0, 1]
    assert images_per_row(batch, tok.vocab).tolist() == [0, 0, 1, 0]
    image_stem = {"kind": "linear", "patch_size": 8, "image_size": 32}
    model = build_model(tiny_model_config(audio_stem=dict(STEM), patch_stem=image_stem), tok.vocab)
    assert torch.isfinite(model.forward_batch(batch)).all()
    assert set(_model_inputs(batch)) >= {"input_audio", "input_images"}  # the trainer passes both
    assert "input_audio" not in Collator(tok.vocab.bos_id)([examples[1], examples[2]])
    # one spectrogram size per batch
    other = cache_row(encoded(tok, "asr", recs[1], **{**AUDIO, "n_mels": 8}))
    with pytest.raises(ValueError, match="same n_mels and num_frames"):
        Collator(tok.vocab.bos_id)([examples[0], other])


def test_collator_packing_keeps_row_major_audio_order(tok):
    recs = tones(4)
    names = ("asr", "asr", "audio_classify", "asr")
    examples = [
        cache_row(encoded(tok, names[i], recs[i], **(AUDIO if i != 1 else {"input_repr": "codes"})))
        for i in range(4)
    ]
    config = CollatorConfig(pack=True, max_input_len=64, max_target_len=64)
    batch = Collator(tok.vocab.bos_id, config=config)(examples)
    assert batch["input_ids"].shape[0] < 4  # packed
    assert batch["input_audio"].shape[0] == 3
    # identify each packed example by its input and target ids (distinct here)
    key = lambda ex: (tuple(ex["input_ids"]), tuple(ex["target_ids"]))  # noqa: E731
    assert len({key(ex) for ex in examples}) == 4
    order, seg, dec = [], batch["input_segment_ids"], batch["decoder_segment_ids"]
    for r in range(seg.shape[0]):
        for s in range(1, int(seg[r].max()) + 1):
            found = (
                tuple(batch["input_ids"][r][seg[r] == s].tolist()),
                tuple(batch["targets"][r][dec[r] == s].tolist()),
            )
            order.append(next(i for i, ex in enumerate(examples) if key(ex) == found))
    expected = [i for i in order if i != 1]
    for got, i in zip(batch["input_audio"], expected, strict=True):
        assert got[0].numpy().tobytes() == examples[i]["input_audio"]
    model = build_model(tiny_model_config(audio_stem=dict(STEM)), tok.vocab)
    assert torch.isfinite(model.forward_batch(batch)).all()


def test_collate_inputs_with_audio(tok_no_audio):
    task = make_task("asr", **AUDIO)
    examples = [task.build_input(tok_no_audio, audio=r.audio, sample_rate=8000) for r in tones(2)]
    seqs = [tok_no_audio.codec.encode(e.input) for e in examples]
    batch = collate_inputs(seqs, audio=[None, examples[1].audio])
    assert batch["input_audio"].shape == (1, 1, 16, 64) and batch["input_audio"].dtype == torch.float16
    assert "input_audio" not in collate_inputs(seqs)
    with pytest.raises(ValueError, match="1 audio clips for 2 inputs"):
        collate_inputs(seqs, audio=[None])
    with pytest.raises(ValueError, match="must be float16"):
        collate_inputs(seqs, audio=[examples[0].audio.astype(np.float32), None])


def test_drop_condition_drops_audio_of_dropped_rows(tok):
    examples = [cache_row(encoded(tok, "asr", r, **AUDIO)) for r in tones(4)]
    batch = Collator(tok.vocab.bos_id)(examples)
    dropped = drop_condition(batch, 0.5, tok.vocab, generator=torch.Generator().manual_seed(1))
    kept = images_per_row(dropped, tok.vocab, "<audio>")
    assert kept.tolist() == [1, 0, 0, 1]  # rows 1 and 2 dropped
    assert torch.equal(dropped["input_audio"], batch["input_audio"][[0, 3]])
    model = build_model(tiny_model_config(audio_stem=dict(STEM)), tok.vocab)
    assert torch.isfinite(model.forward_batch(dropped)).all()
    assert "input_audio" not in drop_condition(
        batch, 0.5, tok.vocab, generator=torch.Generator().manual_seed(3)
    )


# ----------------------------------------------------------------------------- model, train, generate
def test_audio_stem_config(tok_no_audio):
    vocab = tok_no_audio.vocab
    cfg = tiny_model_config(audio_stem=dict(STEM))
    stem = cfg.audio_stem
    assert (stem.channels, stem.modality, stem.size, stem.grid_shape) == (1, "audio", (16, 64), (2, 8))
    model = build_model(cfg, vocab)
    assert model.audio_stem.config.placeholder_id == vocab.token_id("<audio>")
    assert model.num_parameters() == model.config.num_parameters()
    with pytest.raises(ValueError, match="modality 'audio'"):
        tiny_model_config(audio_stem={**STEM, "modality": "image"})
    # a stem does not change the other weights of a given seed
    torch.manual_seed(0)
    plain = build_model(tiny_model_config(), vocab)
    torch.manual_seed(0)
    with_stem = build_model(cfg, vocab)
    for (name, a), (_, b) in zip(plain.named_parameters(), with_stem.named_parameters()):
        assert torch.equal(a, b), name


def test_placeholder_count_mismatch_is_a_clear_error(tok_no_audio):
    vocab = tok_no_audio.vocab
    model = build_model(tiny_model_config(audio_stem=dict(STEM)), vocab).eval()
    wrong = make_task("asr", **{**AUDIO, "num_frames": 32})  # 2 x 4 = 8 placeholders; the stem has 16
    example = wrong.build_input(tok_no_audio, audio=tones(1)[0].audio[:4000], sample_rate=8000)
    batch = collate_inputs([tok_no_audio.codec.encode(example.input)])
    spectrogram = torch.zeros(1, 1, 16, 64, dtype=torch.float16)
    with pytest.raises(
        ValueError, match=r"1 audio clip\(s\) x 16 patches need 16 placeholder tokens .* has 8"
    ):
        model.encode(**batch, input_audio=spectrogram)
    with pytest.raises(ValueError, match=r"expected images \[B, 1, 16, 64\]"):
        model.encode(**batch, input_audio=torch.zeros(1, 1, 16, 32))
    plain = build_model(tiny_model_config(), vocab)
    with pytest.raises(ValueError, match="input_audio given, but ModelConfig.audio_stem is None"):
        plain.encode(**batch, input_audio=spectrogram)


def test_tiny_model_trains_on_asr_patches_and_generates(tmp_path, tok_no_audio):
    """Pretokenize asr on tones with patches, train a tiny audio-stem model a few steps through the
    trainer's input selection, then generate with `input_audio` (plain, guided, and via the pipeline)."""
    tok = tok_no_audio
    entry = DatasetEntry(source={"kind": "tones"}, tasks={"asr": AUDIO}, train=True)
    cfg = PretokenizeConfig(cache_dir=str(tmp_path), data={"tones": entry}, shard_size=8)
    pretokenize(
        cfg,
        tok,
        sources={"tones": TonesSource(TonesConfig(num_records=8))},
        log=lambda _: None,
        progress=False,
    )
    rows = load_pretokenized(tmp_path, cfg.data, tok)["tones/asr"]
    batch = Collator(tok.vocab.bos_id)([rows[i] for i in range(8)])
    assert batch["input_audio"].shape == (8, 1, 16, 64)
    torch.manual_seed(0)
    model = build_model(tiny_model_config(audio_stem=dict(STEM)), tok.vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        logits = model(**_model_inputs(batch))
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=-100
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert model.audio_stem.proj.weight.grad.abs().sum() > 0  # the stem is trained
    model.eval()
    inputs = {k: v for k, v in batch.items() if k.startswith("input_")}
    out = generate(model, inputs, tok.vocab, GenerationConfig(max_new_tokens=6))
    assert out.tokens.shape == (8, 6)
    # the audio matters: other spectrograms give other logits
    with torch.no_grad():
        swapped = dict(batch, input_audio=batch["input_audio"].flip(0))
        assert not torch.allclose(model.forward_batch(batch), model.forward_batch(swapped))
    task = make_task("asr", **AUDIO)
    examples = [task.build_input(tok, audio=r.audio, sample_rate=8000) for r in tones(3, "val")]
    raw = predict_examples(model, tok, task, examples, GenerationOptions(batch_size=2, max_new_tokens=6))
    assert len(raw) == 3 and all(isinstance(p.prediction, str) for p in raw)
    guided = predict_examples(model, tok, task, examples, GenerationOptions(batch_size=2, guidance_scale=2.0))
    assert len(guided) == 3
    assert AUDIO_KEY == "input_audio"


# ----------------------------------------------------------------------------- learning check
def pitch_records(n: int, seed: int) -> list[Record]:
    """A tone of one of 5 frequencies (the class) with jittered pitch, loudness, onset and length."""
    rng = np.random.default_rng(seed)
    frequencies = (300.0, 550.0, 900.0, 1500.0, 2400.0)
    out = []
    for i in range(n):
        label = int(rng.integers(5))
        length = int(8000 * rng.uniform(0.3, 0.6))
        t = np.arange(length) / 8000
        wave = rng.uniform(0.2, 0.6) * np.sin(2 * np.pi * frequencies[label] * rng.uniform(0.97, 1.03) * t)
        audio = rng.normal(0, 0.003, 8000).astype(np.float32)
        start = int(rng.integers(0, 8000 - length))
        audio[start : start + length] += wave.astype(np.float32)
        out.append(
            Record(id=f"pitch-{seed}-{i}", source="test", audio=audio, sample_rate=8000, label=str(label))
        )
    return out


@pytest.mark.slow
def test_audio_classify_with_patches_learns(tok_no_audio):
    """5 pitch classes (chance 0.2): a tiny audio-stem model beats chance clearly in a short run."""
    tok = tok_no_audio
    classes = tuple(str(c) for c in range(5))
    task = make_task("audio_classify", classes=classes, **AUDIO)
    rng = random.Random(0)
    train = [cache_row(encode_example(task.build(r, rng, tok), tok)) for r in pitch_records(400, 0)]
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(
            d_model=64, n_heads=4, n_encoder_layers=2, n_decoder_layers=1, d_ff=128, audio_stem=dict(STEM)
        ),
        tok.vocab,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    collate = Collator(tok.vocab.bos_id)
    order = np.random.default_rng(0)
    for _ in range(150):
        batch = collate([train[i] for i in order.integers(len(train), size=32)])
        logits = model(**_model_inputs(batch))
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), batch["targets"].flatten(), ignore_index=-100
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    held_out = pitch_records(100, 1)
    examples = [task.build_input(tok, audio=r.audio, sample_rate=8000) for r in held_out]
    raw = predict_examples(model, tok, task, examples, GenerationOptions(batch_size=50))
    accuracy = np.mean([p.prediction == r.label for p, r in zip(raw, held_out, strict=True)])
    assert accuracy >= 0.9, accuracy


def test_tiny_unio_train_with_audio_patches(tmp_path):
    """`unio-train` with the tones' asr as patches beside the shapes world, and `Pipeline.transcribe`
    on the checkpoint (the stem comes back from the run's config)."""
    from tests.train_helpers import compose_train, tiny_overrides
    from unio.pipeline import Pipeline
    from unio.train.trainer import train

    overrides = tiny_overrides(
        tmp_path,
        tmp_path / "cache",
        "trainer.max_steps=4",
        "trainer.checkpoint_every=4",
        "trainer.val_every=4",
        "model.audio_stem={kind: linear, patch_size: 8, image_size: [16, 64]}",
    )
    cfg = compose_train(overrides)
    assert cfg.model.audio_stem.modality == "audio" and cfg.model.audio_stem.size == (16, 64)
    # (Hydra cannot add a typed `data` entry from the command line; a data config file would hold it)
    cfg.data["tones"] = DatasetEntry(source={"kind": "tones", "num_records": 16}, tasks={"asr": AUDIO})
    result = train(cfg)
    assert result.status == "completed" and result.steps == 4 and math.isfinite(result.last_loss)
    pipe = Pipeline.from_pretrained(result.run_dir)
    assert pipe.model.audio_stem is not None and pipe.task("asr").input_repr == "patches"
    out = pipe.transcribe(tones(1)[0].audio, sample_rate=8000)
    assert isinstance(out, TextResult) and isinstance(out.text, str)
