"""Coordinate tokenizer: quantisation rule, round trip within half a bin, clip/reject, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from unio.tokenizers.coords import BOX_FORMATS, CoordConfig, CoordTokenizer, OutOfImage

# 60 examples under the default `ci` profile (tests/conftest.py); the `slow` profile explores more.
FAST = settings(max_examples=60 if settings.default.max_examples <= 100 else settings.default.max_examples)

num_bins_st = st.integers(2, 2048)
image_size_st = st.one_of(
    st.tuples(st.integers(1, 4096), st.integers(1, 4096)),
    st.tuples(st.floats(0.5, 5000.0), st.floats(0.5, 5000.0)),
)
EPS = 1e-9  # relative slack for float64 rounding in the bounds below


def corners_to(xyxy: np.ndarray, fmt: str) -> np.ndarray:
    """Reference conversion, written independently of the module under test."""
    x1, y1, x2, y2 = xyxy.T
    if fmt == "xyxy":
        return xyxy.copy()
    if fmt == "xywh":
        return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
    return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1)


@st.composite
def normalised_corners(draw: st.DrawFn, thin: bool = False) -> np.ndarray:
    """[N, 4] normalised xyxy boxes with x2 > x1, y2 > y1; ``thin`` draws boxes narrower than 1/2048."""
    n = draw(st.integers(1, 6))
    rows = []
    for _ in range(n):
        row = []
        for _axis in range(2):
            if thin:
                lo = draw(st.floats(0.0, 0.999))
                hi = lo + draw(st.floats(1e-7, 1.0 / 2048))
            else:
                lo, hi = sorted(draw(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=2, unique=True)))
            row.append((lo, hi))
        (x1, x2), (y1, y2) = row
        rows.append([x1, y1, x2, y2])
    return np.array(rows, dtype=np.float64)


def check_round_trip(corners_u: np.ndarray, fmt: str, num_bins: int, image_size, normalized: bool) -> None:
    tok = CoordTokenizer(CoordConfig(num_bins=num_bins))
    scale = np.ones(2) if normalized else np.asarray(image_size, dtype=np.float64)
    corners = corners_u * np.concatenate([scale, scale])
    assume(np.all(corners[:, 2] > corners[:, 0]) and np.all(corners[:, 3] > corners[:, 1]))
    boxes = corners_to(corners, fmt)
    size_kw = {"normalized": True} if normalized else {"image_size": image_size}

    bins = tok.encode_boxes(boxes, fmt=fmt, **size_kw)
    assert bins.dtype == np.int64 and bins.shape == boxes.shape
    assert np.all((bins >= 0) & (bins < num_bins))
    assert np.all(bins[:, 2] >= bins[:, 0]) and np.all(bins[:, 3] >= bins[:, 1])
    decoded = tok.decode_boxes(bins, fmt=fmt, **size_kw)
    decoded_corners = tok.decode_boxes(bins, fmt="xyxy", **size_kw)
    # Decoding never yields an empty box, even when both corners share a bin.
    assert np.all(decoded_corners[:, 2] > decoded_corners[:, 0])
    assert np.all(decoded_corners[:, 3] > decoded_corners[:, 1])

    bin_size = scale / num_bins  # per axis (x, y), in the units of the boxes
    slack = EPS * scale
    same = np.stack([bins[:, 0] == bins[:, 2], bins[:, 1] == bins[:, 3]], axis=1)  # [N, 2] per axis
    corner_bound = np.where(same, 0.75, 0.5) * bin_size + slack  # documented equal-bin rule
    error = np.abs(decoded - boxes)
    if fmt == "xyxy":
        assert np.all(error[:, :2] <= corner_bound) and np.all(error[:, 2:] <= corner_bound)
    elif fmt == "xywh":
        assert np.all(error[:, :2] <= corner_bound)
        assert np.all(error[:, 2:] <= bin_size + slack)
    else:
        assert np.all(error[:, :2] <= 0.5 * bin_size + slack)  # centres always within half a bin
        assert np.all(error[:, 2:] <= bin_size + slack)


@FAST
@given(
    corners=normalised_corners(),
    fmt=st.sampled_from(BOX_FORMATS),
    num_bins=num_bins_st,
    image_size=image_size_st,
    normalized=st.booleans(),
)
def test_box_round_trip_within_half_a_bin(corners, fmt, num_bins, image_size, normalized):
    check_round_trip(corners, fmt, num_bins, image_size, normalized)


@FAST
@given(
    corners=normalised_corners(thin=True),
    fmt=st.sampled_from(BOX_FORMATS),
    num_bins=num_bins_st,
    image_size=image_size_st,
)
def test_boxes_thinner_than_a_bin_decode_non_empty(corners, fmt, num_bins, image_size):
    check_round_trip(corners, fmt, num_bins, image_size, normalized=False)


@FAST
@given(
    points_u=st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)), min_size=1, max_size=8),
    num_bins=num_bins_st,
    image_size=image_size_st,
    normalized=st.booleans(),
)
def test_point_round_trip_within_half_a_bin(points_u, num_bins, image_size, normalized):
    tok = CoordTokenizer(CoordConfig(num_bins=num_bins))
    scale = np.ones(2) if normalized else np.asarray(image_size, dtype=np.float64)
    points = np.array(points_u) * scale
    size_kw = {"normalized": True} if normalized else {"image_size": image_size}
    bins = tok.encode_points(points, **size_kw)
    assert bins.dtype == np.int64 and bins.shape == points.shape
    decoded = tok.decode_points(bins, **size_kw)
    assert np.all(np.abs(decoded - points) <= 0.5 * scale / num_bins + EPS * scale)


def test_quantisation_rule_floor_and_centre():
    tok = CoordTokenizer()
    u = np.array([0.0, 0.0004, 0.001, 0.5, 0.9995, 1.0])
    np.testing.assert_array_equal(tok.quantize(u), [0, 0, 1, 500, 999, 999])
    np.testing.assert_allclose(tok.dequantize(np.array([0, 500, 999])), [0.0005, 0.5005, 0.9995])
    # Pixels: bin b covers [b, b + 1) * width / num_bins; the image's right edge is the last bin.
    bins = tok.encode_boxes(np.array([[0.0, 0.0, 640.0, 480.0]]), image_size=(640, 480))
    np.testing.assert_array_equal(bins, [[0, 0, 999, 999]])
    np.testing.assert_allclose(
        tok.decode_boxes(bins, image_size=(640, 480)), [[0.32, 0.24, 639.68, 479.76]], rtol=1e-12
    )


def test_equal_bins_decode_to_middle_half_of_the_bin():
    tok = CoordTokenizer(CoordConfig(num_bins=10))
    decoded = tok.decode_boxes(np.array([[3, 7, 3, 8]]), normalized=True)
    np.testing.assert_allclose(decoded, [[0.325, 0.75, 0.375, 0.85]])


def test_formats_encode_to_the_same_corner_bins():
    tok = CoordTokenizer()
    xyxy = np.array([[10.0, 20.0, 110.0, 220.0]])
    expected = tok.encode_boxes(xyxy, image_size=(640, 480))
    assert np.array_equal(
        tok.encode_boxes(np.array([[10.0, 20.0, 100.0, 200.0]]), "xywh", (640, 480)), expected
    )
    assert np.array_equal(
        tok.encode_boxes(np.array([[60.0, 120.0, 100.0, 200.0]]), "cxcywh", (640, 480)), expected
    )


def test_integer_pixels_and_empty_input():
    tok = CoordTokenizer()
    bins = tok.encode_boxes(np.array([[0, 0, 32, 32]], dtype=np.int32), image_size=(64, 64))
    np.testing.assert_array_equal(bins, [[0, 0, 500, 500]])
    empty = tok.encode_boxes(np.zeros((0, 4)), image_size=(64, 64))
    assert empty.shape == (0, 4) and empty.dtype == np.int64
    assert tok.decode_points(np.zeros((0, 2), dtype=np.int64), normalized=True).shape == (0, 2)


# ---- numpy and torch ----


@FAST
@given(corners=normalised_corners(), fmt=st.sampled_from(BOX_FORMATS), image_size=image_size_st)
def test_torch_matches_numpy(corners, fmt, image_size):
    tok = CoordTokenizer()
    boxes32 = corners_to(corners * np.array([*image_size, *image_size]), fmt).astype(np.float32)
    assume(np.all(boxes32[:, 2:] > 0) if fmt != "xyxy" else np.all(boxes32[:, 2:] > boxes32[:, :2]))
    try:
        bins_np = tok.encode_boxes(boxes32, fmt, image_size)
    except ValueError as error:  # both paths must then refuse the box with the same message
        with pytest.raises(ValueError) as raised:
            tok.encode_boxes(torch.from_numpy(boxes32), fmt, image_size)
        assert str(raised.value) == str(error)
        return
    bins_t = tok.encode_boxes(torch.from_numpy(boxes32), fmt, image_size)
    assert isinstance(bins_t, torch.Tensor) and bins_t.dtype == torch.int64
    assert np.array_equal(bins_t.numpy(), bins_np)
    decoded_t = tok.decode_boxes(bins_t, fmt, image_size)
    assert isinstance(decoded_t, torch.Tensor) and decoded_t.dtype == torch.get_default_dtype()
    np.testing.assert_allclose(decoded_t.numpy(), tok.decode_boxes(bins_np, fmt, image_size), rtol=1e-6)


def test_hypothesis_runs_derandomized_by_default():
    """Issue #10 defect 10: the default profile (tests/conftest.py) cannot fail by chance."""
    from tests.conftest import HYPOTHESIS_PROFILE

    if HYPOTHESIS_PROFILE == "ci":
        assert settings.default.derandomize and settings.default.database is None
        assert settings.default.deadline is None and settings.default.print_blob


def test_subnormal_width_is_a_box_for_numpy_and_torch():
    """Issue #10 defect 10: a float32 width that is positive but subnormal vanished in float32 x + w, so
    the box was called degenerate ("width <= 0"). Arithmetic is float64 now, for both input kinds."""
    tok = CoordTokenizer()
    boxes = np.array([[4.6432026857480357e-36, 0.0, 4.2e-45, 1.0], [0.0, 0.0, 395.0, 1.0]], dtype=np.float32)
    assert boxes[0, 2] > 0
    bins_np = tok.encode_boxes(boxes, "xywh", (395, 1))
    bins_t = tok.encode_boxes(torch.from_numpy(boxes), "xywh", (395, 1))
    assert bins_np.tolist() == bins_t.tolist() == [[0, 0, 0, 999], [0, 0, 999, 999]]


def test_torch_points_and_validity_mask():
    tok = CoordTokenizer()
    points = torch.tensor([[0.0, 0.0], [0.25, 1.0]], dtype=torch.bfloat16, requires_grad=True)
    bins = tok.encode_points(points, normalized=True)
    assert bins.dtype == torch.int64 and bins.tolist() == [[0, 0], [250, 999]]
    assert tok.decode_points(bins, normalized=True).dtype == torch.float32
    valid = tok.box_bins_valid(torch.tensor([[1, 2, 3, 4], [5, 2, 3, 4], [1, 2, 1000, 4], [7, 7, 7, 7]]))
    assert valid.dtype == torch.bool and valid.tolist() == [True, False, False, True]
    assert tok.box_bins_valid(np.array([[1, 2, 3, 4], [1, 5, 3, 4]])).tolist() == [True, False]


# ---- out-of-image: clip vs reject ----


@FAST
@given(
    points=st.lists(st.tuples(st.floats(-500.0, 1500.0), st.floats(-500.0, 1500.0)), min_size=1, max_size=8),
    image_size=image_size_st,
)
def test_clip_equals_encoding_the_clipped_points(points, image_size):
    tok = CoordTokenizer()
    points = np.array(points)
    clipped = np.clip(points, 0.0, np.asarray(image_size, dtype=np.float64))
    np.testing.assert_array_equal(
        tok.encode_points(points, image_size=image_size), tok.encode_points(clipped, image_size=image_size)
    )


def test_clip_and_reject_boxes():
    box = np.array([[-10.0, -5.0, 700.0, 400.0]])
    clip = CoordTokenizer(CoordConfig(out_of_image="clip"))
    np.testing.assert_array_equal(clip.encode_boxes(box, image_size=(640, 480)), [[0, 0, 999, 833]])
    reject = CoordTokenizer(CoordConfig(out_of_image="reject"))
    with pytest.raises(ValueError) as info:
        reject.encode_boxes(np.array([[1.0, 1.0, 2.0, 2.0], *box]), image_size=(640, 480))
    message = str(info.value)
    assert "box 1 [-10.0, -5.0, 700.0, 400.0] (xyxy, pixels) lies outside the image" in message
    assert "x1=-10.0 < 0" in message and "y1=-5.0 < 0" in message and "x2=700.0 > 640.0" in message
    assert "y2" not in message and "out_of_image='clip'" in message
    # The image edges themselves are inside, and float overshoot (0.7 + 0.3 in xywh) is tolerated.
    np.testing.assert_array_equal(
        reject.encode_boxes(np.array([[0, 0, 640, 480]]), image_size=(640, 480)), [[0, 0, 999, 999]]
    )
    assert reject.encode_boxes(np.array([[0.7, 0.1, 0.3000001, 0.2]]), "xywh", normalized=True)[0, 2] == 999


def test_clip_and_reject_points():
    points = np.array([[5.0, 5.0], [10.0, 12.0]])
    np.testing.assert_array_equal(
        CoordTokenizer().encode_points(points, image_size=(10, 10)), [[500, 500], [999, 999]]
    )
    with pytest.raises(
        ValueError, match=r"point 1 \[10.0, 12.0\] \(pixels\) lies outside the image: y=12.0 > 10.0"
    ):
        CoordTokenizer(CoordConfig(out_of_image=OutOfImage.reject)).encode_points(points, image_size=(10, 10))


def test_box_entirely_outside_is_an_error_even_when_clipping():
    with pytest.raises(
        ValueError, match=r"box 0 \[700.0, 10.0, 800.0, 20.0\] .* lies entirely outside the image"
    ):
        CoordTokenizer().encode_boxes(np.array([[700.0, 10.0, 800.0, 20.0]]), image_size=(640, 480))


# ---- errors name the box and say what is wrong ----


def test_degenerate_box_message_names_index_values_and_reason():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0]] * 3 + [[10.0, 5.0, 4.0, 9.0]])
    with pytest.raises(ValueError) as info:
        CoordTokenizer().encode_boxes(boxes, image_size=(64, 64))
    assert str(info.value) == "box 3 [10.0, 5.0, 4.0, 9.0] (xyxy, pixels) is degenerate: x2 <= x1"


@pytest.mark.parametrize(
    ("box", "fmt", "reason"),
    [
        ([1.0, 1.0, 1.0, 3.0], "xyxy", "x2 <= x1"),
        ([1.0, 4.0, 2.0, 3.0], "xyxy", "y2 <= y1"),
        ([1.0, 4.0, 1.0, 3.0], "xyxy", "x2 <= x1 and y2 <= y1"),
        ([1.0, 1.0, 0.0, 3.0], "xywh", "width <= 0"),
        ([5.0, 5.0, 2.0, -1.0], "cxcywh", "height <= 0"),
    ],
)
def test_degenerate_reasons(box, fmt, reason):
    with pytest.raises(ValueError, match=rf"box 0 .* \({fmt}, normalised\) is degenerate: {reason}$"):
        CoordTokenizer().encode_boxes(np.array([box]) / 10, fmt, normalized=True)


def test_non_finite_values_are_named():
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.1, np.nan, 0.5, 0.5], [np.inf, 0, 1, 1]])
    with pytest.raises(
        ValueError,
        match=r"box 1 \[0.1, nan, 0.5, 0.5\] \(xywh, normalised\) has a non-finite .* \(and 1 more\)",
    ):
        CoordTokenizer().encode_boxes(boxes, "xywh", normalized=True)
    with pytest.raises(ValueError, match=r"point 0 \[inf, 3.0\] \(pixels\) has a non-finite"):
        CoordTokenizer().encode_points(torch.tensor([[float("inf"), 3.0]]), image_size=(8, 8))


def test_image_size_errors():
    tok = CoordTokenizer()
    box = np.array([[1.0, 1.0, 2.0, 2.0]])
    with pytest.raises(
        ValueError, match=r"encode_boxes: pixel coordinates need image_size=\(width, height\)"
    ):
        tok.encode_boxes(box)
    with pytest.raises(ValueError, match=r"decode_points: pixel coordinates need image_size"):
        tok.decode_points(np.array([[1, 2]]))
    with pytest.raises(ValueError, match=r"both normalized=True and image_size=\(4, 4\)"):
        tok.encode_boxes(box, image_size=(4, 4), normalized=True)
    for bad in [(0, 10), (10,), (10, float("nan")), "640x480", (1, 2, 3)]:
        with pytest.raises(
            ValueError, match=r"image_size must be \(width, height\) with two positive finite"
        ):
            tok.encode_boxes(box, image_size=bad)


def test_shape_dtype_and_format_errors():
    tok = CoordTokenizer()
    with pytest.raises(
        ValueError, match=r"boxes must have shape \[N, 4\], got \[4\] \(a single one: reshape to \[1, 4\]\)"
    ):
        tok.encode_boxes(np.array([1.0, 1.0, 2.0, 2.0]), normalized=True)
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\], got \[2, 3\]"):
        tok.encode_boxes(torch.zeros(2, 3), normalized=True)
    with pytest.raises(ValueError, match=r"points must have shape \[N, 2\], got \[1, 2, 2\]"):
        tok.encode_points(np.zeros((1, 2, 2)), normalized=True)
    with pytest.raises(ValueError, match=r"bins must have shape \[N, 4\], got \[3, 2\]"):
        tok.decode_boxes(np.zeros((3, 2), dtype=np.int64), normalized=True)
    with pytest.raises(ValueError, match=r"boxes must hold real numbers, got dtype bool"):
        tok.encode_boxes(np.ones((1, 4), dtype=bool), normalized=True)
    with pytest.raises(ValueError, match=r"unknown box format 'yxyx'; expected one of xyxy, xywh, cxcywh"):
        tok.encode_boxes(np.array([[0.1, 0.1, 0.2, 0.2]]), "yxyx", normalized=True)


def test_decode_errors_name_the_box():
    tok = CoordTokenizer()
    with pytest.raises(ValueError, match=r"bins must be an integer array of bin indices, got dtype float"):
        tok.decode_boxes(np.array([[1.0, 2.0, 3.0, 4.0]]), normalized=True)
    with pytest.raises(
        ValueError, match=r"box 1 bins \[1, 2, 1000, 4\] out of range \[0, 999\] \(num_bins=1000\)"
    ):
        tok.decode_boxes(np.array([[1, 2, 3, 4], [1, 2, 1000, 4]]), normalized=True)
    with pytest.raises(ValueError, match=r"point 0 bins \[-1, 2\] out of range"):
        tok.decode_points(torch.tensor([[-1, 2]]), normalized=True)
    with pytest.raises(
        ValueError, match=r"box 0 bins \[1, 9, 3, 4\] are reversed \(y2_bin < y1_bin\).*box_bins_valid"
    ):
        tok.decode_boxes(np.array([[1, 9, 3, 4]]), normalized=True)


# ---- config ----


def test_config_validation_and_hydra_compatibility():
    config = CoordConfig(num_bins=64, out_of_image="reject")
    assert config.out_of_image is OutOfImage.reject and config.out_of_image == "reject"
    assert repr(CoordTokenizer(config)) == "CoordTokenizer(num_bins=64, out_of_image='reject')"
    with pytest.raises(ValueError, match=r"CoordConfig.num_bins must be an integer >= 2, got 1"):
        CoordConfig(num_bins=1)
    with pytest.raises(
        ValueError, match=r"CoordConfig.out_of_image must be one of 'clip', 'reject', got 'crop'"
    ):
        CoordConfig(out_of_image="crop")
    # OmegaConf structured configs (Hydra ConfigStore) accept the field and validate overrides.
    structured = OmegaConf.merge(
        OmegaConf.structured(CoordConfig), OmegaConf.from_dotlist(["out_of_image=reject"])
    )
    assert OmegaConf.to_object(structured) == CoordConfig(out_of_image="reject")
    with pytest.raises(Exception, match="clp"):
        OmegaConf.merge(OmegaConf.structured(CoordConfig), OmegaConf.from_dotlist(["out_of_image=clp"]))
