"""Data sources: config name -> (config dataclass, source class), and `build_source` to make one.

source = build_source("coco", {"images": "...", "instances": "...", "on_bad_sample": "skip"})
record = source[0]          # a unio.data.record.Record
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from unio.data.sources.base import Source
from unio.data.sources.coco import CocoConfig, CocoSource
from unio.data.sources.easyvqa import EasyVqaConfig, EasyVqaSource
from unio.data.sources.fsdd import AudioFolderConfig, AudioFolderSource
from unio.data.sources.hf import HFConfig, HFSource
from unio.data.sources.image_folder import ImageFolderConfig, ImageFolderSource
from unio.data.sources.ljspeech import LJSpeechConfig, LJSpeechSource
from unio.data.sources.mnist import MnistConfig, MnistSource
from unio.data.sources.rendered_text import RenderedTextConfig, RenderedTextSource
from unio.data.sources.shapes import ShapesConfig, ShapesSource
from unio.data.sources.shapes_audio import TonesConfig, TonesSource
from unio.data.sources.voc import VocConfig, VocSource

SOURCES: dict[str, tuple[type, type[Source]]] = {
    "shapes": (ShapesConfig, ShapesSource),
    "rendered_text": (RenderedTextConfig, RenderedTextSource),
    "tones": (TonesConfig, TonesSource),
    "coco": (CocoConfig, CocoSource),
    "voc": (VocConfig, VocSource),
    "fsdd": (AudioFolderConfig, AudioFolderSource),
    "ljspeech": (LJSpeechConfig, LJSpeechSource),
    "mnist": (MnistConfig, MnistSource),
    "easyvqa": (EasyVqaConfig, EasyVqaSource),
    "image_folder": (ImageFolderConfig, ImageFolderSource),
    "hf": (HFConfig, HFSource),
}


def make_config(kind: str, options: Mapping[str, object] | object = ()) -> object:
    """The config dataclass for `kind` from a mapping (or an existing config); unknown keys are errors."""
    if kind not in SOURCES:
        raise ValueError(f"unknown data source {kind!r}; known: {sorted(SOURCES)}")
    config_class = SOURCES[kind][0]
    if isinstance(options, config_class):
        return options
    options = dict(options)  # type: ignore[arg-type]
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"data source {kind!r}: unknown config fields {unknown}; known: {sorted(known)}")
    return config_class(**{k: _plain(v) for k, v in options.items()})


def _plain(value: object) -> object:
    """OmegaConf ListConfig/DictConfig and tuples -> list/dict, so configs hold plain values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def build_source(kind: str | Mapping[str, object], options: Mapping[str, object] | object = ()) -> Source:
    """Build a source by config name and options, or from one mapping with a `kind` key:

    build_source("voc", {"annotations": ..., "images": ...})
    build_source({"kind": "voc", "annotations": ..., "images": ...})
    """
    if isinstance(kind, Mapping):
        options = dict(kind)
        if "kind" not in options:
            raise ValueError(
                f"data source config needs a 'kind' (one of {sorted(SOURCES)}), got keys {sorted(options)}"
            )
        kind = str(options.pop("kind"))
    config = make_config(kind, options)
    return SOURCES[kind][1](config)


__all__ = ["SOURCES", "Source", "build_source", "make_config"]
