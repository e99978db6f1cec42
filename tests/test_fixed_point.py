"""ap_fixed semantics of fivesigma.export.fixed_point, checked by hand and by brute force."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from fivesigma.errors import ConfigError, DataError, ModelError
from fivesigma.export.fixed_point import (
    FixedPoint,
    FixedPointReference,
    LayerSpec,
    _requantize,
    accumulator_type,
    count_overflow,
    quantize,
)

MODES = list(itertools.product(["TRN", "RND"], ["WRAP", "SAT"]))


@pytest.mark.parametrize(
    ("rounding", "saturation", "x", "expected"),
    [
        # ap_fixed<4,2>: lsb 0.25, range [-2, 1.75]
        ("TRN", "WRAP", [0.3, -0.3, 1.9, 2.0, 2.3, -2.1], [0.25, -0.5, 1.75, -2.0, -1.75, 1.75]),
        ("TRN", "SAT", [0.3, -0.3, 1.9, 2.3, -2.1, -9.0], [0.25, -0.5, 1.75, 1.75, -2.0, -2.0]),
        (
            "RND",
            "SAT",
            [0.3, 0.375, -0.375, 1.9, -2.2, -2.125],
            [0.25, 0.5, -0.25, 1.75, -2.0, -2.0],
        ),
        (
            "RND",
            "WRAP",
            [0.375, 1.8, 1.9, -2.2, -2.125, 0.125],
            [0.5, 1.75, -2.0, 1.75, -2.0, 0.25],
        ),
    ],
)
def test_quantize_hand_values(rounding, saturation, x, expected):
    fp = FixedPoint(4, 2, rounding=rounding, saturation=saturation)
    assert quantize(x, fp).tolist() == expected


def test_quantize_unsigned_and_odd_integer_bits():
    u = FixedPoint(3, 1, signed=False, rounding="TRN", saturation="WRAP")  # [0, 1.75]
    assert quantize([-0.1, 0.6, 2.0], u).tolist() == [1.75, 0.5, 0.0]
    assert quantize([-0.1, 9.0], FixedPoint(3, 1, False, "RND", "SAT")).tolist() == [0.0, 1.75]
    # more integer than total bits: a grid of 4 ([-16, 12]); negative integer bits: fine
    assert quantize([5.0, 6.0, 100.0], FixedPoint(3, 5)).tolist() == [4.0, 8.0, 12.0]
    assert FixedPoint(4, -1).lsb == 2.0**-5 and FixedPoint(4, -1).max == 7 / 32


def _brute_force(x: Fraction, fp: FixedPoint) -> Fraction:
    """Pick the grid point by enumeration, then apply the overflow mode by hand."""
    lsb = Fraction(2) ** -fp.fractional
    span = 1 << fp.width
    # every grid point over three periods of the type
    grid = [k * lsb for k in range(fp.code_min - 2 * span, fp.code_max + 2 * span + 1)]
    below = max(g for g in grid if g <= x)
    if fp.rounding == "TRN":
        value = below
    else:  # nearest; a tie goes up
        above = below + lsb
        value = above if x - below >= above - x else below
    lo, hi = fp.code_min * lsb, fp.code_max * lsb
    if fp.saturation == "SAT":
        return min(max(value, lo), hi)
    while value > hi:
        value -= span * lsb
    while value < lo:
        value += span * lsb
    return value


@pytest.mark.parametrize(("rounding", "saturation"), MODES)
@pytest.mark.parametrize(
    ("width", "integer", "signed"), [(4, 2, True), (3, 0, False), (5, 3, True)]
)
def test_quantize_matches_enumeration(width, integer, signed, rounding, saturation):
    fp = FixedPoint(width, integer, signed, rounding, saturation)
    rng = np.random.default_rng(width * 10 + integer)
    lo, hi = fp.min - 2 * (fp.max - fp.min), fp.max + 2 * (fp.max - fp.min)
    # random reals, every half-grid point (the ties) and every grid point in range
    half = np.arange(math.floor(lo / fp.lsb) * 2, math.ceil(hi / fp.lsb) * 2) * fp.lsb / 2
    x = np.concatenate([rng.uniform(lo, hi, 300), half])
    got = quantize(x, fp)
    want = [float(_brute_force(Fraction(v), fp)) for v in x]
    np.testing.assert_array_equal(got, want)
    # overflow: the value rounded on the unbounded grid (exact fractions) is out of range
    half = Fraction(1, 2) if rounding == "RND" else 0
    rounded = [math.floor(Fraction(v) / Fraction(fp.lsb) + half) * Fraction(fp.lsb) for v in x]
    assert count_overflow(x, fp) == sum(not fp.min <= r <= fp.max for r in rounded)


@pytest.mark.parametrize(("rounding", "saturation"), MODES)
@pytest.mark.parametrize("signed", [True, False])
def test_parse_inverts_hls(rounding, saturation, signed):
    fp = FixedPoint(9, 4, signed, rounding, saturation)
    assert FixedPoint.parse(fp.hls()) == fp
    assert FixedPoint.parse(fp) is fp


def test_parse_short_and_hls4ml_spellings():
    assert FixedPoint(8, 3).hls() == "ap_fixed<8,3,AP_RND,AP_SAT>"
    assert FixedPoint.parse("ap_fixed<8,3>") == FixedPoint(8, 3, True, "TRN", "WRAP")
    assert FixedPoint.parse("fixed<8,3,RND,SAT,0>") == FixedPoint(8, 3)
    assert FixedPoint.parse(" ap_ufixed< 6 , 2 , AP_RND > ") == FixedPoint(
        6, 2, False, "RND", "WRAP"
    )


@pytest.mark.parametrize(
    "text",
    ["ap_fixed<8>", "float", "ap_fixed<8,3,AP_RND_CONV>", "ap_fixed<0,0>", "ap_int<8>", 8,
     "ap_fixed<8,3,AP_RND,AP_SAT,2>", "ap_fixed<8,3,AP_RND,AP_SAT_SYM>", "ap_fixed<1,1>"],
)  # fmt: skip
def test_parse_rejects_junk(text):
    with pytest.raises(ConfigError) as err:
        FixedPoint.parse(text)
    assert "\n" not in str(err.value) and "accepted" in str(err.value)


def test_bad_types_and_values():
    with pytest.raises(ConfigError, match="rounding mode"):
        FixedPoint(8, 3, rounding="CONV")
    with pytest.raises(ConfigError, match="out of range"):
        FixedPoint(65, 3)
    with pytest.raises(DataError, match="non-finite"):
        quantize([np.nan], FixedPoint(8, 3))
    with pytest.raises(ConfigError, match="wider than 53"):
        quantize([1.0], FixedPoint(60, 10))


def test_count_overflow_counts_after_rounding():
    fp = FixedPoint(4, 2)  # RND SAT, [-2, 1.75]
    x = [1.75, 1.8, 1.875, 2.0, -2.0, -2.125, -2.13, 0.0]
    # 1.8 rounds to 1.75; 1.875 to 2 (over); -2.125 to -2 (ties up); -2.13 to -2.25 (over)
    assert count_overflow(x, fp) == 3
    assert count_overflow(x, FixedPoint(4, 2, rounding="TRN")) == 3  # 1.8, 1.875, 2.0, ... floor
    assert count_overflow([1.8, 1.875, 2.0, -2.13], FixedPoint(4, 2, rounding="TRN")) == 2


@pytest.mark.parametrize(("rounding", "saturation"), MODES)
def test_integer_requantize_matches_float_quantize(rounding, saturation):
    fp = FixedPoint(6, 2, True, rounding, saturation)
    codes = np.random.default_rng(1).integers(-(1 << 12), 1 << 12, 2000)
    frac = 9
    got, n_over = _requantize(codes, frac, fp)
    values = np.ldexp(codes.astype(float), -frac)
    np.testing.assert_array_equal(np.ldexp(got.astype(float), -fp.fractional), quantize(values, fp))
    assert n_over == count_overflow(values, fp)


def test_accumulator_type_holds_extremes():
    a, w, b = FixedPoint(6, 3), FixedPoint(5, 1), FixedPoint(4, 2)
    acc = accumulator_type(a, w, b, n_terms=7)
    worst = 7 * a.min * w.min + b.max  # the largest possible sum
    assert acc.fractional == a.fractional + w.fractional
    assert acc.min <= -worst and worst <= acc.max
    assert acc.rounding == "TRN" and acc.saturation == "WRAP"


def _tiny_network(result: FixedPoint) -> list[LayerSpec]:
    w = np.array([[0.5, -0.25, 0.75], [-1.0, 0.125, 0.25]])  # on ap_fixed<5,1> (lsb 1/16)
    b = np.array([0.5, -0.75])
    return [
        LayerSpec("input", "input", result=FixedPoint(6, 3)),
        LayerSpec("fc1", "dense", None, w, b, FixedPoint(5, 1), FixedPoint(4, 2)),
        LayerSpec("relu1", "relu", result=FixedPoint(5, 2, False, "TRN", "SAT")),
        LayerSpec("fc2", "dense", result, np.array([[1.5, -0.5]]), np.array([0.25]),
                  FixedPoint(5, 2), FixedPoint(4, 2)),
    ]  # fmt: skip


@pytest.mark.parametrize(("rounding", "saturation"), MODES)
def test_reference_matches_float_computation(rounding, saturation):
    result = FixedPoint(5, 1, True, rounding, saturation)
    layers = _tiny_network(result)
    ref = FixedPointReference.from_model(layers)
    x = np.random.default_rng(2).uniform(-6, 6, size=(500, 3))
    xq = quantize(x, FixedPoint(6, 3))
    # float64 is exact here (a few bits): the same network in plain numpy
    h = quantize(np.maximum(xq @ layers[1].weight.T + layers[1].bias, 0), layers[2].result)
    want = quantize(h @ layers[3].weight.T + layers[3].bias, result)
    np.testing.assert_array_equal(ref.predict(x), want)
    trace = ref.trace(x)
    assert list(trace) == ["input", "fc1", "relu1", "fc2"]
    np.testing.assert_array_equal(trace["relu1"], h)
    assert ref.overflows["input"] == count_overflow(x, FixedPoint(6, 3)) > 0
    assert ref.overflows["fc2"] == count_overflow(h @ layers[3].weight.T + layers[3].bias, result)


def test_reference_rejects_off_grid_weights():
    layers = _tiny_network(FixedPoint(8, 3))
    layers[1].weight = layers[1].weight + 0.01
    with pytest.raises(ModelError, match="not on the grid"):
        FixedPointReference(layers)
