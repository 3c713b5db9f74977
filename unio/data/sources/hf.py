"""Any local Hugging Face `datasets` dataset, with a column mapping from record fields to columns.

Loaded with `datasets.load_dataset(builder, data_files=..., split=...)` for a packaged local builder
(parquet, json, csv, arrow, imagefolder, audiofolder) or `datasets.load_from_disk(path)`; never from
the Hub. `columns` maps record fields to column names, e.g. {"image": "img", "label": "label"}:

  id, image, label, caption (str or list of str), question + answer, audio, transcript,
  boxes (list of 4-number boxes, `box_format` xyxy or xywh) + categories (names or class ids)

Image and audio columns may hold `datasets` Image/Audio features, {"bytes", "path"} dicts or file
paths; they are decoded here, so broken files follow the bad-sample policy like every other source.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field

import numpy as np

from unio.data.bad_samples import (
    EMPTY_ANNOTATIONS,
    MALFORMED,
    UNKNOWN_CATEGORY,
    WRONG_SAMPLE_RATE,
    BadSampleError,
)
from unio.data.record import Object, Record
from unio.data.sources._readers import read_image, read_wav
from unio.data.sources.base import Source, checked_box
from unio.data.sources.referring import add_referring_expressions

LOCAL_BUILDERS = ("parquet", "json", "csv", "arrow", "imagefolder", "audiofolder")
FIELDS = (
    "id",
    "image",
    "label",
    "caption",
    "question",
    "answer",
    "audio",
    "transcript",
    "boxes",
    "categories",
)


@dataclass
class HFConfig:
    builder: str | None = None  # one of LOCAL_BUILDERS, with data_files or data_dir
    data_files: list[str] = field(default_factory=list)
    data_dir: str | None = None
    from_disk: str | None = None  # alternatively a directory written by Dataset.save_to_disk
    split: str = "train"
    columns: dict[str, str] = field(default_factory=dict)
    box_format: str = "xyxy"  # xyxy | xywh
    sample_rate: int | None = None  # required audio rate; None accepts any
    box_tolerance: float = 2.0
    on_bad_sample: str = "raise"
    on_bad_annotation: str = "drop_annotation"  # drop_annotation | drop_record | raise (docs/data.md)


def _load(config: HFConfig):
    import datasets

    if config.from_disk:
        loaded = datasets.load_from_disk(config.from_disk)
        if isinstance(loaded, datasets.DatasetDict):
            if config.split not in loaded:
                raise ValueError(
                    f"hf source: split {config.split!r} not in {config.from_disk} (has {list(loaded)})"
                )
            loaded = loaded[config.split]
        return loaded
    if config.builder not in LOCAL_BUILDERS:
        raise ValueError(
            f"hf source: config field 'builder' must be one of {LOCAL_BUILDERS} (local files only, never the Hub), "
            f"got {config.builder!r}"
        )
    if not config.data_files and not config.data_dir:
        raise ValueError("hf source: set config field 'data_files' or 'data_dir' (or 'from_disk')")
    for pattern in config.data_files:
        if not glob.glob(pattern, recursive=True):
            raise FileNotFoundError(f"hf source: config field 'data_files': nothing matches {pattern!r}")
    kwargs = {"data_files": list(config.data_files)} if config.data_files else {"data_dir": config.data_dir}
    return datasets.load_dataset(config.builder, split=config.split, **kwargs)


class HFSource(Source):
    kind = "hf"

    def __init__(self, config: HFConfig) -> None:
        super().__init__(
            config.on_bad_sample,
            config.from_disk or ", ".join(config.data_files) or str(config.data_dir),
            config.on_bad_annotation,
        )
        import datasets

        unknown = sorted(set(config.columns) - set(FIELDS))
        if unknown:
            raise ValueError(
                f"hf source: config field 'columns' has unknown record fields {unknown}; known: {FIELDS}"
            )
        if config.box_format not in ("xyxy", "xywh"):
            raise ValueError(
                f"hf source: config field 'box_format' must be xyxy or xywh, got {config.box_format!r}"
            )
        self.config = config
        dataset = _load(config)
        missing = sorted(set(config.columns.values()) - set(dataset.column_names))
        if missing:
            raise ValueError(f"hf source: columns {missing} not in the dataset (has {dataset.column_names})")
        if not config.columns:
            raise ValueError(
                f"hf source: config field 'columns' is empty; dataset columns: {dataset.column_names}"
            )
        # Decode media ourselves so corrupt files follow the bad-sample policy.
        for key, feature_type in (("image", datasets.Image), ("audio", datasets.Audio)):
            column = config.columns.get(key)
            if column and isinstance(dataset.features[column], feature_type):
                dataset = dataset.cast_column(column, feature_type(decode=False))
        self.dataset = dataset
        self.class_names: dict[str, list[str]] = {}
        for key in ("label", "categories"):
            column = config.columns.get(key)
            feature = dataset.features[column] if column else None
            feature = getattr(feature, "feature", feature)  # Sequence(ClassLabel) -> ClassLabel
            if isinstance(feature, datasets.ClassLabel):
                self.class_names[key] = feature.names
        self._index = range(len(dataset))

    def _name(self, key: str, value: object, where: str, record_id: str) -> str:
        names = self.class_names.get(key)
        if names is None or isinstance(value, str):
            return str(value)
        if not 0 <= int(value) < len(names):
            raise BadSampleError(
                where,
                self.config.columns[key],
                UNKNOWN_CATEGORY,
                f"class id {value} of {len(names)}",
                record_id,
            )
        return names[int(value)]

    @staticmethod
    def _media(value: object) -> tuple[str, bytes | None]:
        if isinstance(value, dict):
            return str(value.get("path") or "<bytes>"), value.get("bytes")
        return str(value), None

    def load(self, index: int) -> Record:
        cfg, columns = self.config, self.config.columns
        row = self.dataset[index]
        record_id = str(row[columns["id"]]) if "id" in columns else str(index)
        where = f"{self.description}[{index}]"
        record = Record(id=record_id, source=where)
        if "image" in columns:
            path, data = self._media(row[columns["image"]])
            record.image = read_image(path, columns["image"], record_id, data)
            record.source = path if data is None else where
        if "audio" in columns:
            path, data = self._media(row[columns["audio"]])
            record.audio, record.sample_rate = read_wav(path, columns["audio"], record_id, data)
            record.source = path if data is None else where
            if cfg.sample_rate is not None and record.sample_rate != cfg.sample_rate:
                raise BadSampleError(path, columns["audio"], WRONG_SAMPLE_RATE,
                                     f"{record.sample_rate} Hz, expected {cfg.sample_rate} Hz", record_id)  # fmt: skip
        if "label" in columns:
            record.label = self._name("label", row[columns["label"]], where, record_id)
        if "caption" in columns:
            captions = row[columns["caption"]]
            record.captions = [captions] if isinstance(captions, str) else [str(c) for c in captions]
        if "question" in columns and "answer" in columns:
            record.qa = [(str(row[columns["question"]]), str(row[columns["answer"]]))]
        if "transcript" in columns:
            record.transcript = str(row[columns["transcript"]])
        if "boxes" in columns:
            record.objects = self._objects(row, record, where)
        if record.image is None and record.audio is None and not record.captions and record.label is None:
            raise BadSampleError(where, "row", EMPTY_ANNOTATIONS, "no usable column values", record_id)
        return record

    def _objects(self, row: dict, record: Record, where: str) -> list[Object]:
        columns = self.config.columns
        boxes = row[columns["boxes"]] or []
        categories = row[columns["categories"]] if "categories" in columns else ["object"] * len(boxes)
        if record.image_size is None or len(categories) != len(boxes):
            raise BadSampleError(
                where,
                columns["boxes"],
                MALFORMED,
                f"{len(boxes)} boxes, {len(categories)} categories, image required",
                record.id,
            )
        objects = []
        for i, (box, category) in enumerate(zip(boxes, categories)):
            try:
                objects.append(self._object(i, box, category, record, where))
            except BadSampleError as error:
                self.bad_annotation(error)  # returns when only this box is dropped
        if boxes and not objects:
            raise BadSampleError(where, columns["boxes"], EMPTY_ANNOTATIONS, "every box was bad", record.id)
        add_referring_expressions(objects, record.image_size)
        record.meta["referring_derived"] = True
        return objects

    def _object(self, i: int, box: object, category: object, record: Record, where: str) -> Object:
        columns = self.config.columns
        if not isinstance(box, (list, tuple)) or len(box) != 4:
            raise BadSampleError(where, f"{columns['boxes']}[{i}]", MALFORMED, f"{box!r}", record.id)
        x1, y1, a, b = (float(v) for v in box)
        xyxy = (x1, y1, x1 + a, y1 + b) if self.config.box_format == "xywh" else (x1, y1, a, b)
        xyxy = checked_box(
            xyxy, record.image_size, self.config.box_tolerance, where, f"{columns['boxes']}[{i}]", record.id
        )
        return Object(box=np.array(xyxy), category=self._name("categories", category, where, record.id))
