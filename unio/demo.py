"""The end-to-end demo on built-in data: no downloads, a few seconds on a laptop CPU.

Today it exercises the foundation: build the unified vocabulary, train a small SentencePiece model on
the built-in corpus, write one detection-style sample (text, labelled boxes, person keypoints) as ONE id
sequence, show it as readable tokens with its per-token metadata, and decode it back to pixels.
Later layers (VQ tokenizers, model, training, evaluation) extend this same entry point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unio.sequence import Boxes, Points, SequenceCodec, Special, Text
from unio.tokenizers.builtin_text import builtin_corpus
from unio.tokenizers.coords import CoordConfig, CoordTokenizer, OutOfImage
from unio.tokenizers.text import TextTokenizer, TextTokenizerConfig
from unio.vocab import MODALITIES, Vocabulary


@dataclass
class DemoCoordsConfig:
    """The fields of `CoordConfig`, which is frozen: OmegaConf makes a frozen dataclass read-only, so
    `unio-demo coords.num_bins=500` needs this mutable twin (tests/test_demo.py keeps the two in sync)."""

    num_bins: int = 1000
    out_of_image: OutOfImage = OutOfImage.clip

    def build(self) -> CoordConfig:
        return CoordConfig(num_bins=self.num_bins, out_of_image=self.out_of_image)


@dataclass
class DemoConfig:
    output_dir: str = "."  # vocabulary.json and text.model are written here
    text: TextTokenizerConfig = field(default_factory=lambda: TextTokenizerConfig(vocab_size=1000))
    coords: DemoCoordsConfig = field(default_factory=DemoCoordsConfig)
    corpus_sentences: int = 4000
    seed: int = 0


# One hand-written COCO-like sample: a 640x480 photo with a person and a frisbee.
SAMPLE = {
    "image_size": (640, 480),
    "prompt": "Detect all objects and the keypoints of the person.",
    "boxes": np.array([[100.0, 50.0, 300.0, 460.0], [350.5, 120.25, 420.0, 160.0]]),
    "labels": ["person", "frisbee"],
    # (x, y, visibility) for nose, left eye, right eye; the right eye is not labelled
    "keypoints": np.array([[205.0, 90.0, 2], [215.0, 82.0, 1], [0.0, 0.0, 0]]),
}


def run_demo(cfg: DemoConfig, log=print) -> dict:
    out = Path(cfg.output_dir)
    text = TextTokenizer.train(builtin_corpus(cfg.corpus_sentences, seed=cfg.seed), cfg.text)
    coords = CoordTokenizer(cfg.coords.build() if isinstance(cfg.coords, DemoCoordsConfig) else cfg.coords)
    vocab = Vocabulary.default(text_size=text.vocab_size, coord_bins=coords.num_bins)
    vocab.to_json(out / "vocabulary.json")
    text.save(out / "text.model")
    log(f"== vocabulary ({out / 'vocabulary.json'})\n{vocab.describe()}\n")

    size = SAMPLE["image_size"]
    box_bins = coords.encode_boxes(SAMPLE["boxes"], image_size=size)
    kp = SAMPLE["keypoints"]
    point_bins = coords.encode_points(kp[:, :2], image_size=size)
    segments = [
        Special("<to_box>"),
        Text(SAMPLE["prompt"]),
        Boxes(box_bins, SAMPLE["labels"]),
        Points(point_bins, kp[:, 2].astype(np.int64)),
    ]
    codec = SequenceCodec(vocab, text)
    seq = codec.encode(segments, add_eos=True)
    log(f"== one sequence, {len(seq)} tokens\nids: {seq.ids.tolist()}\n")
    log(f"tokens: {codec.render(seq.ids)}\n")
    log("modality: " + " ".join(MODALITIES[m][0] for m in seq.modality.tolist()) + "\n")

    decoded = codec.decode(seq.ids)
    if not decoded.ok:
        raise RuntimeError(f"demo sequence failed to decode: {decoded.problems}")
    boxes_seg = next(s for s in decoded.segments if isinstance(s, Boxes))
    points_seg = next(s for s in decoded.segments if isinstance(s, Points))
    boxes_px = coords.decode_boxes(boxes_seg.coords.numpy(), image_size=size)
    points_px = coords.decode_points(points_seg.coords.numpy(), image_size=size)
    box_error = float(np.abs(boxes_px - SAMPLE["boxes"]).max())
    visible = kp[:, 2] > 0
    point_error = float(np.abs(points_px[visible] - kp[visible, :2]).max())
    log("== decoded back")
    for label, box in zip(boxes_seg.labels, boxes_px, strict=True):
        log(f"  {label:<8} box {np.round(box, 2).tolist()}")
    for i, (xy, v) in enumerate(zip(points_px, points_seg.visibility.tolist(), strict=True)):
        log(f"  keypoint {i}: {'absent' if v == 0 else np.round(xy, 2).tolist()} (visibility {v})")
    half_bin = 0.5 * max(size) / coords.num_bins
    log(f"  max error: boxes {box_error:.3f} px, points {point_error:.3f} px (half a bin: {half_bin:.3f} px)")
    if box_error > half_bin + 1e-9 or point_error > half_bin + 1e-9:
        raise RuntimeError("round trip exceeded half a bin")
    return {
        "num_tokens": len(seq),
        "vocab_fingerprint": vocab.fingerprint,
        "box_error_px": box_error,
        "point_error_px": point_error,
        "prompt_roundtrip": decoded.segments[1] == Text(SAMPLE["prompt"]),
    }
