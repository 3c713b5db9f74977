"""Check a data-source config file: build the source, load records, report bad samples.

    python -m unio.data.sources my_data.yaml [--records 3] [--all] [--report bad.json]

The YAML holds one source: `kind` plus that source's config fields (the same mapping as `source:`
in a conf/data/*.yaml entry). OmegaConf interpolations such as ${oc.env:UNIO_DATA} work. Exits
non-zero, naming file and field, if the config or (under on_bad_sample=raise) a record is bad.
"""

from __future__ import annotations

import argparse
import sys

from omegaconf import OmegaConf

from unio.data.bad_samples import BadSampleError
from unio.data.record import Record
from unio.data.sources import build_source


def describe(record: Record) -> str:
    parts = [f"id={record.id}"]
    if record.image is not None:
        parts.append(f"image={record.image_size[0]}x{record.image_size[1]}")
    if record.objects:
        categories = sorted({o.category for o in record.objects})
        masks = sum(o.mask is not None for o in record.objects)
        keypoints = sum(o.keypoints is not None for o in record.objects)
        parts.append(f"objects={len(record.objects)} {categories[:5]} masks={masks} keypoints={keypoints}")
    if record.captions:
        parts.append(f"captions={len(record.captions)} e.g. {record.captions[0]!r}")
    if record.qa:
        parts.append(f"qa={len(record.qa)} e.g. {record.qa[0]}")
    if record.label is not None:
        parts.append(f"label={record.label!r}")
    if record.audio is not None:
        parts.append(f"audio={record.duration:.2f}s@{record.sample_rate}Hz")
    if record.transcript:
        parts.append(f"transcript={record.transcript[:60]!r}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unio.data.sources", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="YAML file with `kind` and the source's fields")
    parser.add_argument("--records", type=int, default=3, help="how many records to print")
    parser.add_argument("--all", action="store_true", help="load every record (finds every bad file)")
    parser.add_argument("--report", help="write the skipped records to this JSON file")
    args = parser.parse_args(argv)
    options = OmegaConf.to_container(OmegaConf.load(args.config), resolve=True)
    try:
        source = build_source(options)
        print(source)
        indices = range(len(source)) if args.all else range(min(args.records, len(source)))
        loaded = 0
        for i in indices:
            record = source.get(i)
            if record is None:
                continue
            record.validate()
            loaded += 1
            if loaded <= args.records:
                print("  " + describe(record))
    except (BadSampleError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"loaded {loaded} of {len(indices)} records checked")
    print(source.bad_samples.summary())
    if args.report:
        source.bad_samples.write_json(args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
