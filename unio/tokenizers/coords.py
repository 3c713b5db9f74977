"""Coordinate tokenizer: bounding boxes and points <-> discrete coordinate bins.

Every coordinate becomes one token of the vocabulary's ``coord`` segment (``num_bins`` tokens, default
1000). Coordinates are first normalised to ``u`` in [0, 1] (x by the image width, y by the height; origin
at the top-left corner, x to the right, y down), then quantised with ONE rule:

    encode:  bin = min(floor(u * num_bins), num_bins - 1)      (u == 1 falls into the last bin)
    decode:  u   = (bin + 0.5) / num_bins                       (the centre of the bin)

Why floor + centre: the bins are ``num_bins`` equal cells tiling [0, 1]; floor picks the cell holding the
coordinate and the centre is the point nearest to every value of that cell, so decoding is the best
inverse of encoding and the error is symmetric (no drift towards the top-left). Unified-IO 2's two
codebases disagree on this (one decodes ``bin / 999``, treating bins as grid points that include both
image edges, the other ``bin / 1000``), so a checkpoint trained with one and evaluated with the other is
biased by up to one bin; unio has a single rule and this module is its only implementation.

Round-trip error: every decoded coordinate is within half a bin of the encoded one, i.e. at most
``0.5 / num_bins`` in normalised units, ``0.5 * width / num_bins`` pixels in x and
``0.5 * height / num_bins`` pixels in y. Derived quantities follow: box centres are within half a bin,
widths and heights (differences of two coordinates) within one bin.

Token order: a box is always the four tokens ``x1 y1 x2 y2`` (top-left corner, then bottom-right corner),
whatever format it was given in; a point is ``x y``. ``encode_boxes`` returns bins in this order and
``decode_boxes`` reads them in this order.

Boxes thinner than a bin: a valid box (x2 > x1) can have both corners in the same bin. Encoding never
reverses a box (floor is monotone, so ``x2_bin >= x1_bin`` always), but decoding both corners of an equal
pair to the bin centre would give an empty box. For an axis whose two bins are equal, decoding therefore
returns the middle half of the bin, ``(bin + 0.25) / num_bins`` and ``(bin + 0.75) / num_bins``: the box
keeps ``x2 > x1``, its centre is still the bin centre (within half a bin of the true centre) and its width
is half a bin (the true width is below one bin); each of those two corners is then within 0.75 of a bin
of the original instead of 0.5. Bins with ``x2_bin < x1_bin`` cannot come from ``encode_boxes``;
``decode_boxes`` rejects them (``box_bins_valid`` filters such boxes, e.g. model output, beforehand).

Pixels are continuous coordinates in [0, width] x [0, height] (COCO convention: 0 is the left edge of the
first pixel, ``width`` the right edge of the last). Out-of-image coordinates are clipped to the image or
rejected with a ValueError according to ``CoordConfig.out_of_image``; overshoots below 1e-6 of the image
size (float rounding, e.g. ``x + w`` in xywh) are always clipped silently. A box that clipping would leave
empty (entirely outside the image) is an error in both modes. Degenerate boxes and NaN/inf values raise a
ValueError naming the box index and its values as given.

Arrays: numpy arrays and torch tensors are accepted and the same kind is returned (torch results on the
input's device); nested Python sequences are treated as numpy. Bins are int64; decoded coordinates are
float64 for numpy and torch's default float dtype for torch. Computation is float64 numpy internally, so
numpy and torch inputs give identical bins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import torch

BOX_FORMATS: tuple[str, ...] = ("xyxy", "xywh", "cxcywh")

# Overshoot beyond the image that is treated as float rounding, in normalised units (1e-3 of a bin at 1000).
EDGE_TOLERANCE = 1e-6


class OutOfImage(StrEnum):
    """What to do with coordinates outside the image. A StrEnum, not a Literal, so Hydra/OmegaConf
    structured configs accept it; members compare equal to the strings "clip" and "reject"."""

    clip = "clip"
    reject = "reject"


@dataclass(frozen=True)
class CoordConfig:
    num_bins: int = 1000
    out_of_image: OutOfImage = OutOfImage.clip

    def __post_init__(self) -> None:
        if isinstance(self.num_bins, bool) or not isinstance(self.num_bins, int) or self.num_bins < 2:
            raise ValueError(f"CoordConfig.num_bins must be an integer >= 2, got {self.num_bins!r}")
        try:
            object.__setattr__(self, "out_of_image", OutOfImage(self.out_of_image))
        except ValueError:
            choices = ", ".join(repr(m.value) for m in OutOfImage)
            raise ValueError(
                f"CoordConfig.out_of_image must be one of {choices}, got {self.out_of_image!r}"
            ) from None


class CoordTokenizer:
    """Boxes and points (pixels or normalised, xyxy/xywh/cxcywh) <-> coordinate bins; see module doc."""

    def __init__(self, config: CoordConfig | None = None) -> None:
        self.config = config if config is not None else CoordConfig()

    @property
    def num_bins(self) -> int:
        return self.config.num_bins

    @property
    def out_of_image(self) -> OutOfImage:
        return self.config.out_of_image

    def __repr__(self) -> str:
        return f"CoordTokenizer(num_bins={self.num_bins}, out_of_image={self.out_of_image.value!r})"

    # ---- the one quantisation rule (normalised values of any shape) ----

    def quantize(self, u: np.ndarray) -> np.ndarray:
        """Normalised coordinates in [0, 1] -> int64 bins (floor; 1.0 maps to the last bin)."""
        u = np.asarray(u, dtype=np.float64)
        if not np.all((u >= 0.0) & (u <= 1.0)):
            raise ValueError(f"quantize expects normalised values in [0, 1], got min {u.min()} max {u.max()}")
        return np.minimum(np.floor(u * self.num_bins), self.num_bins - 1).astype(np.int64)

    def dequantize(self, bins: np.ndarray) -> np.ndarray:
        """Int bins -> normalised bin centres (float64)."""
        bins = np.asarray(bins)
        self._check_bin_range(bins, "bins")
        return (bins.astype(np.float64) + 0.5) / self.num_bins

    # ---- boxes ----

    def encode_boxes(
        self,
        boxes: Any,
        fmt: str = "xyxy",
        image_size: tuple[float, float] | None = None,
        normalized: bool = False,
    ) -> Any:
        """Boxes [N, 4] in ``fmt`` (pixels given ``image_size=(width, height)``, or ``normalized``) ->
        int64 bins [N, 4] in token order x1 y1 x2 y2."""
        values, like = _to_numpy(boxes, "boxes", width=4)
        _check_real(values, "boxes")
        self._check_format(fmt)
        scale = self._scale(image_size, normalized, "encode_boxes")
        what = f"({fmt}, {'normalised' if normalized else 'pixels'})"

        def error(failing: np.ndarray, reason: Callable[[int], str]) -> ValueError:
            i = int(np.flatnonzero(failing)[0])
            return ValueError(f"box {i} {_fmt_values(values[i])} {what} {reason(i)}{_more(failing)}")

        failing = ~np.isfinite(values).all(axis=1)
        if failing.any():
            raise error(failing, lambda i: "has a non-finite value (NaN or inf)")

        # float64 before any arithmetic: a float32 width that is tiny (even subnormal) but positive
        # must not vanish in x + w, whatever type (numpy or torch, float32 or float64) the caller used.
        values = values.astype(np.float64)
        xyxy = _to_xyxy(values, fmt)
        failing, reasons = _degenerate(values, xyxy, fmt)
        if failing.any():
            raise error(failing, lambda i: f"is degenerate: {reasons[i]}")

        u = xyxy / np.concatenate([scale, scale])
        outside = (u < -EDGE_TOLERANCE) | (u > 1.0 + EDGE_TOLERANCE)
        if self.out_of_image == OutOfImage.reject and outside.any():
            raise error(
                outside.any(axis=1),
                lambda i: f"lies outside the image: {_outside_reason(xyxy[i], outside[i], scale)}",
            )
        u = np.clip(u, 0.0, 1.0)

        # Only boxes that were outside can become empty here (inside ones keep u2 >= u1 by monotonicity).
        failing = ((u[:, 2] <= u[:, 0]) | (u[:, 3] <= u[:, 1])) & outside.any(axis=1)
        if failing.any():
            raise error(
                failing,
                lambda i: f"lies entirely outside the image {_image_desc(scale)}: clipping leaves nothing",
            )

        return _like(self.quantize(u), like)

    def decode_boxes(
        self,
        bins: Any,
        fmt: str = "xyxy",
        image_size: tuple[float, float] | None = None,
        normalized: bool = False,
    ) -> Any:
        """Int bins [N, 4] (x1 y1 x2 y2) -> float boxes [N, 4] in ``fmt`` (pixels given
        ``image_size=(width, height)``, or ``normalized``). Equal corner bins decode to the middle half of
        the bin so the box stays non-empty (see module docstring)."""
        values, like = _to_numpy(bins, "bins", width=4)
        self._check_format(fmt)
        scale = self._scale(image_size, normalized, "decode_boxes")
        self._check_bin_values(values, "box")
        valid = _ordered(values)
        if not valid.all():
            i = int(np.flatnonzero(~valid)[0])
            axis = "x2_bin < x1_bin" if values[i, 2] < values[i, 0] else "y2_bin < y1_bin"
            raise ValueError(
                f"box {i} bins {values[i].tolist()} are reversed ({axis}){_more(~valid)}; encode_boxes never produces "
                "this (token order is x1 y1 x2 y2); filter with box_bins_valid first"
            )

        u = self.dequantize(values)
        for lo, hi in ((0, 2), (1, 3)):
            same = values[:, lo] == values[:, hi]
            u[same, lo] -= 0.25 / self.num_bins
            u[same, hi] += 0.25 / self.num_bins
        xyxy = u * np.concatenate([scale, scale])
        return _like(_from_xyxy(xyxy, fmt), like, floating=True)

    def box_bins_valid(self, bins: Any) -> Any:
        """Bool [N]: True where a row of bins is a decodable box (in range, x2_bin >= x1_bin, y2_bin >=
        y1_bin). Use it to drop malformed boxes (e.g. from a model) before ``decode_boxes``."""
        values, like = _to_numpy(bins, "bins", width=4)
        _check_integer(values, "bins")
        in_range = ((values >= 0) & (values < self.num_bins)).all(axis=1)
        return _like(in_range & _ordered(values), like, keep_dtype=True)

    # ---- points ----

    def encode_points(
        self,
        points: Any,
        image_size: tuple[float, float] | None = None,
        normalized: bool = False,
    ) -> Any:
        """Points [N, 2] (x, y; pixels given ``image_size=(width, height)``, or ``normalized``) ->
        int64 bins [N, 2] in token order x y."""
        values, like = _to_numpy(points, "points", width=2)
        _check_real(values, "points")
        scale = self._scale(image_size, normalized, "encode_points")
        what = f"({'normalised' if normalized else 'pixels'})"

        failing = ~np.isfinite(values).all(axis=1)
        if failing.any():
            i = int(np.flatnonzero(failing)[0])
            raise ValueError(
                f"point {i} {_fmt_values(values[i])} {what} has a non-finite value (NaN or inf){_more(failing)}"
            )
        u = values / scale
        outside = (u < -EDGE_TOLERANCE) | (u > 1.0 + EDGE_TOLERANCE)
        if self.out_of_image == OutOfImage.reject and outside.any():
            failing = outside.any(axis=1)
            i = int(np.flatnonzero(failing)[0])
            raise ValueError(
                f"point {i} {_fmt_values(values[i])} {what} lies outside the image: "
                f"{_outside_reason(values[i], outside[i], scale)}{_more(failing)}"
            )
        return _like(self.quantize(np.clip(u, 0.0, 1.0)), like)

    def decode_points(
        self,
        bins: Any,
        image_size: tuple[float, float] | None = None,
        normalized: bool = False,
    ) -> Any:
        """Int bins [N, 2] (x y) -> float points [N, 2] at bin centres (pixels or normalised)."""
        values, like = _to_numpy(bins, "bins", width=2)
        scale = self._scale(image_size, normalized, "decode_points")
        self._check_bin_values(values, "point")
        return _like(self.dequantize(values) * scale, like, floating=True)

    # ---- checks and messages ----

    @staticmethod
    def _check_format(fmt: str) -> None:
        if fmt not in BOX_FORMATS:
            raise ValueError(f"unknown box format {fmt!r}; expected one of {', '.join(BOX_FORMATS)}")

    @staticmethod
    def _scale(image_size: Any, normalized: bool, caller: str) -> np.ndarray:
        """(width, height) as a float64 [2] array; ones for normalised coordinates."""
        if normalized:
            if image_size is not None:
                raise ValueError(
                    f"{caller}: got both normalized=True and image_size={image_size!r}; normalised "
                    "coordinates do not use the image size, pass one or the other"
                )
            return np.ones(2)
        if image_size is None:
            raise ValueError(
                f"{caller}: pixel coordinates need image_size=(width, height); "
                "pass it, or normalized=True for coordinates already in [0, 1]"
            )
        try:
            size = np.asarray(image_size, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            size = np.zeros(0)
        if size.shape != (2,) or not np.all(np.isfinite(size) & (size > 0)):
            raise ValueError(
                f"{caller}: image_size must be (width, height) with two positive finite numbers, "
                f"got {image_size!r}"
            )
        return size

    def _check_bin_range(self, bins: np.ndarray, name: str) -> None:
        _check_integer(bins, name)
        if bins.size and (bins.min() < 0 or bins.max() >= self.num_bins):
            raise ValueError(
                f"{name} must lie in [0, {self.num_bins - 1}] (num_bins={self.num_bins}), "
                f"got min {bins.min()} max {bins.max()}"
            )

    def _check_bin_values(self, bins: np.ndarray, item: str) -> None:
        _check_integer(bins, "bins")
        failing = ((bins < 0) | (bins >= self.num_bins)).any(axis=1)
        if failing.any():
            i = int(np.flatnonzero(failing)[0])
            raise ValueError(
                f"{item} {i} bins {bins[i].tolist()} out of range [0, {self.num_bins - 1}] "
                f"(num_bins={self.num_bins}){_more(failing)}"
            )


# ---- format conversion (same units in and out) ----


def _to_xyxy(values: np.ndarray, fmt: str) -> np.ndarray:
    a, b, c, d = values.T
    if fmt == "xyxy":
        return values.copy()
    if fmt == "xywh":
        return np.stack([a, b, a + c, b + d], axis=1)
    return np.stack([a - c / 2, b - d / 2, a + c / 2, b + d / 2], axis=1)


def _from_xyxy(xyxy: np.ndarray, fmt: str) -> np.ndarray:
    x1, y1, x2, y2 = xyxy.T
    if fmt == "xyxy":
        return xyxy
    if fmt == "xywh":
        return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1)


def _degenerate(values: np.ndarray, xyxy: np.ndarray, fmt: str) -> tuple[np.ndarray, list[str]]:
    """Rows that are not a box of positive area, with the reason phrased in the input's own format."""
    if fmt == "xyxy":
        x_bad, y_bad = xyxy[:, 2] <= xyxy[:, 0], xyxy[:, 3] <= xyxy[:, 1]
        x_msg, y_msg = "x2 <= x1", "y2 <= y1"
    else:
        # Also catch a tiny positive width that vanishes in x + w (float absorption).
        x_bad = (values[:, 2] <= 0) | (xyxy[:, 2] <= xyxy[:, 0])
        y_bad = (values[:, 3] <= 0) | (xyxy[:, 3] <= xyxy[:, 1])
        x_msg, y_msg = "width <= 0", "height <= 0"
    reasons = [
        " and ".join(m for bad, m in ((xb, x_msg), (yb, y_msg)) if bad) for xb, yb in zip(x_bad, y_bad)
    ]
    return x_bad | y_bad, reasons


def _ordered(bins: np.ndarray) -> np.ndarray:
    return (bins[:, 2] >= bins[:, 0]) & (bins[:, 3] >= bins[:, 1])


# ---- array plumbing: numpy inside, caller's kind outside ----


def _to_numpy(data: Any, name: str, width: int) -> tuple[np.ndarray, torch.Tensor | None]:
    """Array of shape [N, width] as numpy plus the torch tensor it came from (None for numpy input)."""
    like = data if isinstance(data, torch.Tensor) else None
    if like is not None:
        tensor = like.detach().cpu()
        # numpy has no bfloat16; float32 holds it exactly.
        array = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    else:
        try:
            array = np.asarray(data)
        except ValueError as error:  # ragged nested lists
            raise ValueError(f"{name} must be an array of shape [N, {width}]: {error}") from None
    if array.ndim != 2 or array.shape[1] != width:
        hint = f" (a single one: reshape to [1, {width}])" if array.shape == (width,) else ""
        raise ValueError(f"{name} must have shape [N, {width}], got {list(array.shape)}{hint}")
    return array, like


def _check_real(array: np.ndarray, name: str) -> None:
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")


def _check_integer(array: np.ndarray, name: str) -> None:
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array of bin indices, got dtype {array.dtype}")


def _like(
    result: np.ndarray, like: torch.Tensor | None, floating: bool = False, keep_dtype: bool = False
) -> Any:
    if like is None:
        return result
    tensor = torch.from_numpy(np.ascontiguousarray(result))
    if floating:
        tensor = tensor.to(torch.get_default_dtype())
    elif not keep_dtype:
        tensor = tensor.to(torch.int64)
    return tensor.to(like.device)


def _image_desc(scale: np.ndarray) -> str:
    if np.all(scale == 1.0):
        return "[0, 1] x [0, 1]"
    return f"(width={_num(scale[0])}, height={_num(scale[1])})"


def _outside_reason(coords: np.ndarray, outside: np.ndarray, scale: np.ndarray) -> str:
    names = ("x1", "y1", "x2", "y2") if len(coords) == 4 else ("x", "y")
    parts = []
    for name, value, out, limit in zip(names, coords, outside, np.concatenate([scale, scale])):
        if out:
            parts.append(
                f"{name}={_num(value)} < 0" if value < 0 else f"{name}={_num(value)} > {_num(limit)}"
            )
    return ", ".join(parts) + f" for image {_image_desc(scale)}; use out_of_image='clip' to clip instead"


def _num(value: float) -> str:
    return repr(float(value))


def _fmt_values(row: np.ndarray) -> str:
    return "[" + ", ".join(_num(v) for v in row) + "]"


def _more(failing: np.ndarray) -> str:
    count = int(failing.sum())
    return f" (and {count - 1} more)" if count > 1 else ""
