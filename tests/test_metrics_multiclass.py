"""Multi-class metrics against scikit-learn and by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fivesigma import metrics as M


def _toy(seed=0, n=3000, k=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    w = rng.uniform(0.1, 3.0, n)
    return y, p, w


@pytest.mark.parametrize("normalize", [None, "true", "pred", "all"])
def test_confusion_matrix_matches_sklearn_with_sample_weight(normalize):
    from sklearn.metrics import confusion_matrix

    y, p, w = _toy()
    pred = p.argmax(axis=1)
    ours = M.confusion_matrix(y, pred, w, n_classes=4, normalize=normalize)
    ref = confusion_matrix(y, pred, labels=range(4), sample_weight=w, normalize=normalize)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
    if normalize == "true":
        np.testing.assert_allclose(ours.sum(axis=1), 1.0)


def test_confusion_matrix_empty_class_row_is_zero_and_bad_input_is_one_line():
    cm = M.confusion_matrix([0, 0, 2], [0, 2, 2], n_classes=3, normalize="true")
    assert cm[1].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(M.MetricError, match="outside 0..2"):
        M.confusion_matrix([0, 3], [0, 1], n_classes=3)
    with pytest.raises(M.MetricError, match="normalize"):
        M.confusion_matrix([0, 1], [0, 1], normalize="rows")


def test_accuracy_matches_sklearn():
    from sklearn.metrics import accuracy_score

    y, p, w = _toy(1)
    pred = p.argmax(axis=1)
    assert M.accuracy(y, pred, w) == pytest.approx(accuracy_score(y, pred, sample_weight=w))
    assert M.accuracy(y, pred) == pytest.approx(accuracy_score(y, pred))


def test_pairwise_rejections_equal_binary_rejection_on_the_pair():
    y, p, w = _toy(2, k=3)
    rej = M.multiclass_rejections(y, p, [0.3, 0.5], w)
    assert set(rej) == {0, 1, 2} and set(rej[1]) == {0, 2}
    sel = (y == 1) | (y == 2)
    ref = M.rejection_at_eff_s((y[sel] == 1).astype(int), p[sel, 1], [0.3, 0.5], w[sel])
    assert rej[1][2] == pytest.approx(ref)


def test_discriminants():
    _, p, _ = _toy(3, k=4)
    d_prob = M.discriminant(p, [1, 2])
    np.testing.assert_allclose(d_prob, p[:, 1] + p[:, 2])
    # every class signal or background: the likelihood ratio is the probability
    np.testing.assert_allclose(M.discriminant(p, [1, 2], kind="likelihood_ratio"), d_prob)
    # background restricted to class 0: b-tagging style D = p_s / (p_s + p_0)
    d = M.discriminant(p, [1], background=[0], kind="likelihood_ratio")
    np.testing.assert_allclose(d, p[:, 1] / (p[:, 1] + p[:, 0]))
    with pytest.raises(M.MetricError, match="kind must be one of"):
        M.discriminant(p, [1], kind="foo")
    with pytest.raises(M.MetricError, match="signal classes"):
        M.discriminant(p, [7])
