"""Safe expressions: results equal the numpy equivalent; everything else is refused."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from fivesigma.data.expressions import FUNCTIONS, Expression
from fivesigma.errors import ExpressionError


@pytest.fixture
def cols():
    rng = np.random.default_rng(7)
    n = 200
    counts = rng.integers(0, 6, n)
    return {
        "a": rng.normal(size=n),
        "b": rng.normal(size=n),
        "nlep": counts,
        "lep_pt": ak.unflatten(rng.uniform(5, 100, counts.sum()), counts),
        "lep_eta": ak.unflatten(rng.uniform(-2.5, 2.5, counts.sum()), counts),
    }


@pytest.mark.parametrize(
    ("text", "reference"),
    [
        ("a + b * 2 - a / b", lambda c: c["a"] + c["b"] * 2 - c["a"] / c["b"]),
        ("a ** 2 + b // 0.5 + a % 0.3", lambda c: c["a"] ** 2 + c["b"] // 0.5 + c["a"] % 0.3),
        ("-a + +b", lambda c: -c["a"] + c["b"]),
        (
            "sqrt(abs(a)) + log(abs(b) + 1)",
            lambda c: np.sqrt(np.abs(c["a"])) + np.log(np.abs(c["b"]) + 1),
        ),
        ("arctan2(a, b) + tanh(a)", lambda c: np.arctan2(c["a"], c["b"]) + np.tanh(c["a"])),
        (
            "arcsinh(a) + arctanh(clip(b, -0.5, 0.5)) + arccosh(abs(a) + 1)",
            lambda c: (
                np.arcsinh(c["a"])
                + np.arctanh(np.clip(c["b"], -0.5, 0.5))
                + np.arccosh(np.abs(c["a"]) + 1)
            ),
        ),
        (
            "minimum(a, b) - maximum(a, 0)",
            lambda c: np.minimum(c["a"], c["b"]) - np.maximum(c["a"], 0),
        ),
        ("where(a > 0, a, -1)", lambda c: np.where(c["a"] > 0, c["a"], -1.0)),
        ("clip(a, -0.5, 0.5)", lambda c: np.clip(c["a"], -0.5, 0.5)),
        ("a * pi", lambda c: c["a"] * np.pi),
        ("(a > 0) & (b <= 0.1)", lambda c: (c["a"] > 0) & (c["b"] <= 0.1)),
        (
            "(a > 0) | ~(b != 0.1) ^ (a < -1)",
            lambda c: (c["a"] > 0) | ~(c["b"] != 0.1) ^ (c["a"] < -1),
        ),
        ("-1 < a <= b < 2", lambda c: (c["a"] > -1) & (c["a"] <= c["b"]) & (c["b"] < 2)),
        ("a > 0 and b > 0 or not a > -1", lambda c: ((c["a"] > 0) & (c["b"] > 0)) | ~(c["a"] > -1)),
        ("nlep >= 2 and nlep == 3", lambda c: (c["nlep"] >= 2) & (c["nlep"] == 3)),
    ],
)
def test_flat_results_equal_numpy(cols, text, reference):
    got = Expression(text).evaluate(cols)
    want = np.asarray(reference(cols))
    assert isinstance(got, np.ndarray) and got.shape == want.shape
    if want.dtype == bool:
        assert got.dtype == bool
        np.testing.assert_array_equal(got, want)
    else:
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_integer_column_output_is_float64(cols):
    got = Expression("nlep * 2").evaluate(cols)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, cols["nlep"] * 2.0)


def test_division_by_zero_gives_inf_nan_not_exception():
    got = Expression("x / 0 + 0 * (1 / 0)").evaluate({"x": np.array([1.0, 0.0])})
    assert np.isnan(got).all()
    got = Expression("x / y").evaluate({"x": np.array([1.0, -1.0, 0.0]), "y": np.zeros(3)})
    np.testing.assert_array_equal(got[:2], [np.inf, -np.inf])
    assert np.isnan(got[2])


def test_jagged_subscripts_and_reductions(cols):
    pt = cols["lep_pt"]
    lists = ak.to_list(pt)
    lead = np.array([ev[0] if ev else np.nan for ev in lists])
    second = np.array([ev[1] if len(ev) > 1 else np.nan for ev in lists])
    np.testing.assert_array_equal(Expression("lep_pt[:, 0]").evaluate(cols), lead)
    np.testing.assert_array_equal(Expression("lep_pt[:, 1]").evaluate(cols), second)
    np.testing.assert_array_equal(
        Expression("nth(lep_pt, 1, fill=-1)").evaluate(cols), np.nan_to_num(second, nan=-1)
    )
    # brief's example: events with no leptons must not raise; nan > 20 is False
    sel = Expression("(nlep >= 4) & (lep_pt[:, 0] > 20)").evaluate(cols)
    np.testing.assert_array_equal(sel, (cols["nlep"] >= 4) & (np.nan_to_num(lead) > 20))
    first_two = Expression("lep_pt[:, :2]").evaluate(cols)
    assert ak.to_list(first_two) == [ev[:2] for ev in lists]
    np.testing.assert_allclose(Expression("sum(lep_pt)").evaluate(cols), [sum(ev) for ev in lists])
    np.testing.assert_array_equal(
        Expression("count(lep_pt)").evaluate(cols), [len(ev) for ev in lists]
    )
    np.testing.assert_array_equal(
        Expression("max(lep_pt)").evaluate(cols), [max(ev) if ev else np.nan for ev in lists]
    )
    np.testing.assert_array_equal(
        Expression("min(lep_pt)").evaluate(cols), [min(ev) if ev else np.nan for ev in lists]
    )
    np.testing.assert_allclose(
        Expression("mean(lep_pt)").evaluate(cols), [np.mean(ev) if ev else np.nan for ev in lists]
    )
    np.testing.assert_array_equal(
        Expression("any(lep_pt > 90)").evaluate(cols), [any(x > 90 for x in ev) for ev in lists]
    )
    np.testing.assert_array_equal(
        Expression("all(lep_pt > 20)").evaluate(cols), [all(x > 20 for x in ev) for ev in lists]
    )
    np.testing.assert_allclose(
        Expression("sum(select(lep_pt, lep_pt > 30))").evaluate(cols),
        [sum(x for x in ev if x > 30) for ev in lists],
    )
    # a per-object derived variable stays jagged
    doubled = Expression("2 * lep_pt * cosh(lep_eta)").evaluate(cols)
    assert isinstance(doubled, ak.Array) and ak.all(ak.num(doubled) == ak.num(pt))


def test_kinematic_functions_in_expressions():
    cols = {
        "pt": ak.Array([[45.0, 45.0], [10.0]]),
        "eta": ak.Array([[0.0, 0.0], [0.0]]),
        "phi": ak.Array([[0.0, np.pi], [1.0]]),
        "m": ak.Array([[0.0, 0.0], [0.0]]),
    }
    np.testing.assert_allclose(
        Expression("inv_mass(pt, eta, phi, m)").evaluate(cols), [90.0, 0.0], atol=1e-9
    )
    got = Expression("inv_mass(pt, eta, phi, m, n=2)").evaluate(cols)
    assert np.isnan(got[1])
    np.testing.assert_allclose(
        Expression("pt_sum(pt, eta, phi, m)").evaluate(cols), [0.0, 10.0], atol=1e-9
    )
    dr = Expression("delta_r(nth(eta,0), nth(phi,0), nth(eta,1), nth(phi,1))").evaluate(cols)
    np.testing.assert_allclose(dr[0], np.pi)
    assert np.isnan(dr[1])


def test_constant_expression_broadcasts_to_events(cols):
    np.testing.assert_array_equal(Expression("1").evaluate(cols), np.ones(200))
    np.testing.assert_array_equal(Expression("2.5").evaluate({}, n_events=3), [2.5] * 3)


@pytest.mark.parametrize(
    ("text", "construct"),
    [
        ("x.__class__", "attribute access '.__class__'"),
        ("__import__('os')", "'__import__'"),
        ("lambda: 1", "lambda"),
        ("[v for v in x]", "list comprehension"),
        ("'abc' + x", "string constant 'abc'"),
        ("'abc' < x", "text 'abc' can only be compared with == or !="),
        ("sqrt('abc')", "string constant 'abc'"),
        ("eval('1')", "'eval'"),
        ("sqrt(**kw)", "keyword splat '**'"),
        ("sqrt(*x)", "star-argument '*'"),
        ("x if y else 1", "conditional"),
        ("(y := 2)", "':='"),
        ("x in y", "'in'"),
        ("x @ y", "'x @ y'"),
        ("x.sum()", "method call '.sum(...)'"),
        ("x[y]", "subscript 'y'"),
        ("__x__ + 1", "'__x__'"),
        ("x > 1 & y < 2", "parentheses"),
        ("min(x, y)", "minimum(a, b)"),
        ("nth(x)", "missing a required argument: 'n'"),
        ("sqrt(x, fill=1)", "sqrt() takes 1"),
        ("x +", "invalid syntax"),
        ("", "empty expression"),
        ("1j * x", "1j"),
    ],
)
def test_disallowed_constructs_raise_one_line_error(text, construct):
    with pytest.raises(ExpressionError) as info:
        Expression(text, what="derived 'thing'")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("derived 'thing' ")
    assert construct in message


def test_walking_never_executes_user_code(tmp_path):
    marker = tmp_path / "pwned"
    text = f"__import__('os').system('touch {marker}')"
    with pytest.raises(ExpressionError):
        Expression(text).evaluate({})
    assert not marker.exists()


def test_unknown_column_suggests_close_match(cols):
    expr = Expression("(nlep >= 4) & (lep_ptt[:, 0] > 20)", what="selection")
    with pytest.raises(ExpressionError) as info:
        expr.evaluate(cols)
    message = str(info.value)
    assert message.startswith("selection '(nlep >= 4)")
    assert "unknown column 'lep_ptt'" in message and "did you mean 'lep_pt'" in message
    with pytest.raises(ExpressionError, match="did you mean 'lep_pt'"):
        expr.check_names(["nlep", "lep_pt", "lep_eta"])
    Expression("lep_pt[:, 0] > 1").check_names(["lep_pt"])  # no error


def test_unknown_function_suggests_close_match():
    with pytest.raises(ExpressionError, match="unknown function 'sqr'; did you mean 'sqrt'"):
        Expression("sqr(x)")


def test_unknown_function_lists_the_available_functions():
    with pytest.raises(ExpressionError) as info:
        Expression("frobnicate(x)")
    message = str(info.value)
    assert "\n" not in message and "fivesigma.data.expressions" not in message
    listed = message.split("functions: ", 1)[1].split(", ")
    assert listed == sorted(FUNCTIONS)
    assert {"p4", "concatenate", "combinations", "arcsinh"} <= set(listed)


def test_text_constants_compare_with_text_columns_only():
    cols = {
        "Label": ak.Array(["s", "b", "s"]),  # a CSV text column as the reader hands it over
        "kind": np.array(["b", "s", "s"], dtype=object),
        "x": np.array([1.0, 2.0, 3.0]),
    }
    np.testing.assert_array_equal(Expression('Label == "s"').evaluate(cols), [True, False, True])
    np.testing.assert_array_equal(Expression("'s' != kind").evaluate(cols), [True, False, False])
    got = Expression('(Label == "s") & (kind == "s") & (x > 2)').evaluate(cols)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, [False, False, True])
    with pytest.raises(ExpressionError, match="does not hold text"):
        Expression('x == "s"').evaluate(cols)


def test_names_are_columns_only():
    expr = Expression("sum(jet_pt) > 100 and inv_mass(pt, eta, phi, m, n=2) > pi * w")
    assert expr.names == frozenset({"jet_pt", "pt", "eta", "phi", "m", "w"})
    assert not expr.names & set(FUNCTIONS)


def test_runtime_type_errors_are_one_line_expression_errors(cols):
    with pytest.raises(ExpressionError, match="needs booleans") as info:
        Expression("~a").evaluate(cols)
    assert "\n" not in str(info.value)
    with pytest.raises(ExpressionError, match="integer constant"):
        Expression("nth(lep_pt, nlep)").evaluate(cols)
    # indexing events instead of objects gives the wrong length: caught with a hint
    with pytest.raises(ExpressionError, match=r"x\[:, i\]"):
        Expression("a[0:3]").evaluate(cols)


def test_parenthesised_bitmask_comparison_is_allowed():
    got = Expression("(flags & 4) > 0").evaluate({"flags": np.array([0, 4, 5, 3])})
    np.testing.assert_array_equal(got, [False, True, True, False])


def test_awkward_flat_columns_give_numpy_results():
    """uproot hands flat branches over as 1-D awkward arrays; results must still be numpy."""
    cols = {
        "nlep": ak.Array([4, 3, 5]),
        "met": ak.Array([10.0, None, 30.0]),
        "lep_pt": ak.Array([[30.0, 20.0, 10.0, 5.0], [25.0, 10.0, 4.0], []]),
    }
    sel = Expression("(nlep >= 4) & (lep_pt[:, 0] > 20)").evaluate(cols)
    assert isinstance(sel, np.ndarray) and sel.dtype == bool
    np.testing.assert_array_equal(sel, [True, False, False])
    got = Expression("met * 2 + sum(nlep)").evaluate(cols)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_array_equal(got, [24.0, np.nan, 65.0])  # missing value -> NaN
    np.testing.assert_array_equal(Expression("met > 15").evaluate(cols), [False, False, True])


def test_a_huge_unknown_column_name_is_not_echoed_whole():
    name = "a" * 1_000_000
    with pytest.raises(ExpressionError) as err:
        Expression(f"{name} > 0", "selection").evaluate({"x": np.zeros(3)})
    assert len(str(err.value)) < 1000 and "1000000 characters" in str(err.value)


def test_expressions_pickle_and_evaluate_the_same(cols):
    import pickle

    expr = Expression("sum(select(lep_pt, lep_pt > 30)) + a", what="derived 'x'")
    again = pickle.loads(pickle.dumps(expr))
    np.testing.assert_array_equal(again.evaluate(cols), expr.evaluate(cols))
    assert again.names == expr.names and again.what == expr.what


def test_the_cli_caps_an_error_line(capsys):
    from fivesigma.cli import _err

    _err("x" * 50_000)
    line = capsys.readouterr().err
    assert line.count("\n") == 1 and len(line) < 1100
