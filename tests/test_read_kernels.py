"""The flat numpy kernels of the read path give awkward's and vector's results bit for bit.

``jagged.nth``, the ``inv_mass``/``pt_sum`` expression functions and ``split_codes`` take
shortcuts over the flat buffers of plain jagged arrays; each is checked here against the
general path it replaces (awkward, ``vector`` through ``physics.kinematics``, the float
formula of the split), on data with the awkward corners: empty events, NaN, inf, zero and
negative zero, float32 and float64, list views with gaps and inputs with different
offsets.
"""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from fivesigma.data import expressions, jagged
from fivesigma.data import split as split_module
from fivesigma.physics import kinematics


def _bits(a: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    a = np.asarray(a)
    return a.dtype.str, a.shape, a.tobytes()


def _awkward_nth(x: ak.Array, n: int, fill: float) -> np.ndarray:
    window = x[:, n : n + 1] if n != -1 else x[:, -1:]
    return np.asarray(ak.to_numpy(ak.fill_none(ak.firsts(window, axis=1), fill)), np.float64)


def _objects(rng: np.random.Generator, dtype: type, max_objects: int = 9) -> list[ak.Array]:
    """pt, eta, phi, mass of a collection with 0..max_objects-1 objects per event."""
    counts = rng.integers(0, max_objects, 3000)
    counts[:20] = 0
    total = int(counts.sum())
    pt = rng.exponential(50.0, total) * rng.choice([1.0, 1e-3, 1e3], total)
    pt[rng.random(total) < 0.02] = 0.0
    pt[rng.random(total) < 0.02] = -0.0
    eta = rng.normal(0.0, 2.5, total)
    eta[rng.random(total) < 0.005] = np.inf
    phi = rng.uniform(-4.0, 4.0, total)
    mass = rng.normal(0.0, 5.0, total)
    mass[rng.random(total) < 0.01] = np.nan
    return [ak.unflatten(v.astype(dtype), counts) for v in (pt, eta, phi, mass)]


def _with_other_offsets(x: ak.Array) -> ak.Array:
    """The same lists over a longer buffer (other offsets, same counts)."""
    values = np.asarray(x.layout.content.data)
    padded = np.concatenate([np.full(5, 99.0, values.dtype), values])
    offsets = np.asarray(x.layout.offsets.data).astype(np.int64) + 5
    return ak.Array(
        ak.contents.ListOffsetArray(ak.index.Index64(offsets), ak.contents.NumpyArray(padded))
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["offsets", "list_views", "other_offsets"])
def test_inv_mass_and_pt_sum_equal_vector_bit_for_bit(dtype: type, layout: str) -> None:
    rng = np.random.default_rng(3)
    objects = _objects(rng, dtype)
    if layout == "list_views":  # ListArray with gaps between the lists
        objects = [x[::-1][7:] for x in objects]
    elif layout == "other_offsets":
        objects[2] = _with_other_offsets(objects[2])
    for n in (None, 1, 2, 3, 5, 10**9):
        assert (n == 10**9) == (expressions._summed_vectors(*objects, n) is None)
        with np.errstate(all="ignore"):
            assert _bits(expressions.FUNCTIONS["inv_mass"](*objects, n)) == _bits(
                kinematics.invariant_mass(*objects, n)
            )
            assert _bits(expressions.FUNCTIONS["pt_sum"](*objects, n)) == _bits(
                kinematics.pt_of_sum(*objects, n)
            )


def test_inv_mass_sparse_events_and_bad_input_take_the_general_path() -> None:
    rng = np.random.default_rng(4)
    counts = np.ones(2000, dtype=np.int64)
    counts[0] = 500  # one event with many objects: padding would cost too much
    objects = [ak.unflatten(rng.random(2499) + 1.0, counts) for _ in range(4)]
    assert expressions._summed_vectors(*objects, None) is None
    assert _bits(expressions._inv_mass(*objects)) == _bits(kinematics.invariant_mass(*objects))
    # mismatched collections and a bad n keep kinematics' one-line errors
    short = ak.unflatten(np.ones(2498), np.r_[499, np.ones(1999, dtype=np.int64)])
    with pytest.raises(Exception, match="different numbers of objects"):
        expressions._inv_mass(objects[0], objects[1], objects[2], short)
    with pytest.raises(Exception, match="positive integer"):
        expressions._inv_mass(*objects, n=0)


@pytest.mark.parametrize(
    "values",
    [
        np.array([1.5, -0.0, np.nan, np.inf, 3.25], np.float32),
        np.array([1.5, 2.5, np.nan, -np.inf, 1e300]),
        np.array([3, -7, 2**40, 0, 5], np.int64),
        np.array([3, 7, 2, 0, 5], np.uint8),
        np.array([True, False, True, True, False]),
    ],
)
def test_nth_equals_awkward_bit_for_bit(values: np.ndarray) -> None:
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 6, 400)
    x = ak.unflatten(rng.choice(values, int(counts.sum())), counts)
    for arr in (x, x[::-1][3:]):  # offsets and list views
        assert jagged.list_parts(arr, kinds="biuf") is not None
        for n in (0, 1, 4, 9, -1, -2, -9):
            for fill in (np.nan, -1, 0.1, True, np.float32(0.1), 2**62 + 1):
                assert _bits(jagged.nth(arr, n, fill=fill)) == _bits(_awkward_nth(arr, n, fill))


def test_list_parts_only_for_plain_jagged_numbers() -> None:
    assert jagged.list_parts(ak.Array([[1.0], []])) is not None
    assert jagged.list_parts(ak.Array([[1.0], [None]])) is None  # missing values
    assert jagged.list_parts(ak.Array([[[1.0]], []])) is None  # nested lists
    assert jagged.list_parts(ak.Array([["a"], []])) is None  # strings
    assert jagged.list_parts(ak.Array([[{"x": 1.0}], []])) is None  # records
    assert jagged.list_parts(ak.Array([1.0, 2.0])) is None  # flat
    assert jagged.list_parts(np.ones((3, 2))) is None  # numpy
    assert jagged.list_parts(ak.Array([[1], []])) is None  # integers, where floats are asked


@pytest.mark.parametrize(
    "fractions", [(0.6, 0.2, 0.2), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (1 / 3, 1 / 3, 1 / 3)]
)
def test_split_codes_equal_the_float_formula(fractions: tuple[float, float, float]) -> None:
    rng = np.random.default_rng(6)
    keys = rng.integers(-(2**62), 2**62, 150_001)  # more than one block of the kernel
    salt = split_module._mix(split_module._MODE_EVENT_ID, 9)
    h = split_module._splitmix64(split_module._splitmix64(keys.view(np.uint64) ^ np.uint64(salt)))
    u = split_module._uniform(h)
    train, val, _ = fractions
    expected = np.where(u < train, 0, np.where(u < train + val, 1, 2)).astype(np.int8)
    got = split_module.split_codes(keys, seed=9, fractions=fractions)
    assert _bits(got) == _bits(expected)


def test_split_bound_is_exact_at_the_edges() -> None:
    for fraction in (0.6, 0.8, 0.5, 1e-300, 1.0 - 2**-53):
        bound = int(split_module._top53_bound(fraction))
        top = np.array([b for b in (0, bound - 1, bound, bound + 1, 2**53 - 1) if 0 <= b < 2**53])
        u = split_module._uniform(top.astype(np.uint64) << np.uint64(11))
        np.testing.assert_array_equal(u < fraction, top < bound)
