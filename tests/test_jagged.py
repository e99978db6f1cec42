"""Jagged helpers: padding, masks, truncation, empty events, n-th object."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from fivesigma.data.jagged import counts, nth, pad, pad_many
from fivesigma.errors import DataError

EVENTS = ak.Array([[50.0, 40.0, 30.0, 20.0], [], [7.0], [9.0, 8.0]])


def test_pad_shapes_values_and_mask():
    values, mask = pad(EVENTS, 3, fill=-1.0)
    assert values.shape == (4, 3) and mask.shape == (4, 3)
    assert values.dtype == np.float32 and mask.dtype == bool
    expected = [[50, 40, 30], [-1, -1, -1], [7, -1, -1], [9, 8, -1]]
    np.testing.assert_array_equal(values, np.array(expected, dtype=np.float32))
    np.testing.assert_array_equal(mask, np.array(expected) != -1)
    # the mask counts real objects, capped at the length (truncation)
    np.testing.assert_array_equal(mask.sum(axis=1), np.minimum(counts(EVENTS), 3))


def test_pad_truncation_keeps_leading_objects():
    values, mask = pad(EVENTS, 1)
    np.testing.assert_array_equal(values[:, 0], [50.0, 0.0, 7.0, 9.0])
    np.testing.assert_array_equal(mask[:, 0], [True, False, True, True])


def test_pad_without_clip_extends_to_longest_event():
    values, mask = pad(EVENTS, 2, clip=False)
    assert values.shape == (4, 4)
    np.testing.assert_array_equal(values[0], [50.0, 40.0, 30.0, 20.0])
    np.testing.assert_array_equal(mask.sum(axis=1), counts(EVENTS))


def test_pad_all_empty_and_zero_events():
    values, mask = pad(ak.Array([[], []]), 2)
    assert values.shape == (2, 2) and not mask.any() and (values == 0).all()
    values, mask = pad(ak.Array([[1.0]])[:0], 3)
    assert values.shape == (0, 3) and mask.shape == (0, 3)


def test_pad_many_stacks_features_in_order():
    cols = {
        "pt": EVENTS,
        "eta": ak.Array([[0.1, 0.2, 0.3, 0.4], [], [0.5], [0.6, 0.7]]),
    }
    values, mask = pad_many(cols, 2)
    assert values.shape == (4, 2, 2) and mask.shape == (4, 2)
    np.testing.assert_array_equal(values[..., 0], pad(cols["pt"], 2)[0])
    np.testing.assert_array_equal(values[..., 1], pad(cols["eta"], 2)[0])
    np.testing.assert_array_equal(mask, pad(cols["pt"], 2)[1])


def test_pad_many_rejects_fields_of_different_collections():
    with pytest.raises(DataError, match="'eta'") as info:
        pad_many({"pt": EVENTS, "eta": ak.Array([[0.1], [], [0.5], [0.6]])}, 2)
    assert "\n" not in str(info.value)


def test_nth_fill_and_negative_index():
    np.testing.assert_array_equal(nth(EVENTS, 0), [50.0, np.nan, 7.0, 9.0])
    np.testing.assert_array_equal(nth(EVENTS, 1, fill=-5.0), [40.0, -5.0, -5.0, 8.0])
    np.testing.assert_array_equal(nth(EVENTS, 3), [20.0, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(nth(EVENTS, -1), [20.0, np.nan, 7.0, 8.0])
    np.testing.assert_array_equal(nth(EVENTS, -2), [30.0, np.nan, np.nan, 9.0])
    assert nth(EVENTS, 0).dtype == np.float64


def test_nth_rejects_non_integer_index():
    with pytest.raises(DataError, match="integer"):
        nth(EVENTS, 1.5)


def test_counts_jagged_2d_and_flat():
    np.testing.assert_array_equal(counts(EVENTS), [4, 0, 1, 2])
    np.testing.assert_array_equal(counts(np.zeros((3, 5))), [5, 5, 5])
    np.testing.assert_array_equal(counts(np.zeros(3)), [1, 1, 1])
