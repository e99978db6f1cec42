"""Object collections and four-vectors in expressions: results equal hand computations.

Merging muons and electrons into leptons, sorting, pairing (combinations / cartesian) and
four-vector arithmetic (scikit-hep ``vector`` records) are checked against plain numpy
loops over events; user feature modules, text comparisons and the whitelist (nothing
outside it is ever reached) are checked too.
"""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import vector

from fivesigma.core.config import parse_config
from fivesigma.data import load_dataset, process_chunk
from fivesigma.data.dataset import needed_columns, user_functions
from fivesigma.data.expressions import ATTRIBUTES, FUNCTIONS, Expression
from fivesigma.data.features_module import features_module_digest, load_features_module
from fivesigma.errors import ConfigError, ExpressionError
from fivesigma.io.events import Chunk
from fivesigma.physics.kinematics import MZ, z_pairing

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

M4L = (
    "sum(leading(sort(concatenate("
    "p4(Muon_pt, Muon_eta, Muon_phi, Muon_mass), "
    "p4(Electron_pt, Electron_eta, Electron_phi, Electron_mass)), "
    'by="pt"), 4)).mass'
)


def shared(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"real sample file {path} not present")
    return path


def _leptons(rng: np.random.Generator, n: int, prefix: str, mass: float) -> dict[str, ak.Array]:
    counts = rng.integers(0, 4, n)
    total = int(counts.sum())
    return {
        f"{prefix}_pt": ak.unflatten(rng.uniform(5.0, 120.0, total), counts),
        f"{prefix}_eta": ak.unflatten(rng.uniform(-2.5, 2.5, total), counts),
        f"{prefix}_phi": ak.unflatten(rng.uniform(-np.pi, np.pi, total), counts),
        f"{prefix}_mass": ak.unflatten(np.full(total, mass), counts),
        f"{prefix}_charge": ak.unflatten(rng.choice([-1, 1], total).astype(np.int32), counts),
    }


@pytest.fixture
def cols() -> dict[str, Any]:
    """Events with 0-3 muons and 0-3 electrons each (so 0-6 leptons, some below 4)."""
    rng = np.random.default_rng(42)
    n = 300
    return {
        **_leptons(rng, n, "Muon", 0.105658),
        **_leptons(rng, n, "Electron", 0.000511),
        "met": rng.exponential(30.0, n),
        "met_phi": rng.uniform(-np.pi, np.pi, n),
    }


def _cartesian(pt: float, eta: float, phi: float, m: float) -> np.ndarray:
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.array([px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + m**2)])


def _mass(p: np.ndarray) -> float:
    return float(np.sqrt(max(p[3] ** 2 - p[0] ** 2 - p[1] ** 2 - p[2] ** 2, 0.0)))


def _event_leptons(c: dict[str, Any], i: int) -> list[tuple[float, ...]]:
    """(pt, eta, phi, mass, charge, flavour) of every lepton of event i, by hand."""
    out = []
    for prefix, flavour in (("Muon", 13), ("Electron", 11)):
        fields = [ak.to_list(c[f"{prefix}_{k}"][i]) for k in ("pt", "eta", "phi", "mass", "charge")]
        out += [(*obj, flavour) for obj in zip(*fields, strict=True)]
    return out


# ------------------------------------------------------------------ the worked examples


def test_four_lepton_mass_in_one_line_equals_numpy(cols):
    got = Expression(M4L).evaluate(cols)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    want = np.full(len(got), np.nan)
    for i in range(len(got)):
        leptons = sorted(_event_leptons(cols, i), key=lambda lep: -lep[0])
        if len(leptons) >= 4:
            want[i] = _mass(sum(_cartesian(*lep[:4]) for lep in leptons[:4]))
    assert np.isnan(want).any() and (~np.isnan(want)).any()  # both kinds of event occur
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # < 4 leptons -> NaN
    np.testing.assert_allclose(got, want, rtol=1e-9, equal_nan=True)
    # the same via the older function (which needs the merged columns) agrees too
    leptons = (
        "sort(concatenate(p4(Muon_pt, Muon_eta, Muon_phi, Muon_mass), "
        "p4(Electron_pt, Electron_eta, Electron_phi, Electron_mass)))"
    )
    merged = {"leps": Expression(leptons).evaluate(cols)}
    ref = Expression("inv_mass(leps.pt, leps.eta, leps.phi, leps.mass, n=4)").evaluate(merged)
    np.testing.assert_allclose(got, ref, rtol=1e-9, equal_nan=True)


def test_slicing_takes_up_to_k_objects(cols):
    """``x[:, :4]`` keeps at most four (fewer where there are fewer), as in awkward."""
    text = (
        "(sum(sort(concatenate(p4(Muon_pt, Muon_eta, Muon_phi, Muon_mass), "
        'p4(Electron_pt, Electron_eta, Electron_phi, Electron_mass)), by="pt")[:, :4])).mass'
    )
    got = Expression(text).evaluate(cols)
    for i in range(len(got)):
        leptons = sorted(_event_leptons(cols, i), key=lambda lep: -lep[0])[:4]
        want = _mass(sum(_cartesian(*lep[:4]) for lep in leptons)) if leptons else 0.0
        assert got[i] == pytest.approx(want, rel=1e-9, abs=1e-4)


def _derive(cols: dict[str, Any], derived: dict[str, str]) -> dict[str, Any]:
    """Evaluate derived expressions in order, as the data layer does."""
    out = dict(cols)
    for name, text in derived.items():
        out[name] = Expression(text, f"derived '{name}'").evaluate(out)
    return out


Z_DERIVED = {
    "mu": "p4(Muon_pt, Muon_eta, Muon_phi, Muon_mass, charge=Muon_charge, pdgid=13)",
    "el": "p4(Electron_pt, Electron_eta, Electron_phi, Electron_mass, charge=Electron_charge, "
    "pdgid=11)",
    # same-flavour pairs, then opposite sign
    "sf": "concatenate(combinations(mu, 2), combinations(el, 2))",
    "sfos": "select(sf, sf.a.charge != sf.b.charge)",
    "z1": "firsts(sort(sfos, by=abs((sfos.a + sfos.b).mass - 91.1876), ascending=True))",
    "mz1": "(z1.a + z1.b).mass",
    "n_sfos": "num(sfos)",
}


def test_z_candidate_pairing_equals_brute_force(cols):
    out = _derive(cols, Z_DERIVED)
    got = out["mz1"]
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    want = np.full(len(got), np.nan)
    n_pairs = np.zeros(len(got), dtype=np.int64)
    for i in range(len(got)):
        best = np.inf
        for a, b in itertools.combinations(_event_leptons(cols, i), 2):
            if a[5] != b[5] or a[4] == b[4]:
                continue
            n_pairs[i] += 1
            m = _mass(_cartesian(*a[:4]) + _cartesian(*b[:4]))
            if abs(m - MZ) < best:
                best, want[i] = abs(m - MZ), m
    assert np.isnan(want).any() and (~np.isnan(want)).any()
    np.testing.assert_allclose(got, want, rtol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(out["n_sfos"], n_pairs)
    # and the dedicated function of fivesigma.physics agrees
    leps = Expression("concatenate(mu, el)").evaluate(out)
    ref, _ = z_pairing(leps.pt, leps.eta, leps.phi, leps.mass, leps.pdgid, leps.charge)
    np.testing.assert_allclose(got, ref, rtol=1e-9, equal_nan=True)


def test_cartesian_pairs_and_delta_r(cols):
    out = _derive(
        cols,
        {
            "mu": "p4(Muon_pt, Muon_eta, Muon_phi, Muon_mass)",
            "el": "p4(Electron_pt, Electron_eta, Electron_phi, Electron_mass)",
            "pairs": "cartesian(mu, el)",
            "min_dr": "min(pairs.a.deltaR(pairs.b))",
            "dphi01": "mu[:, 0].deltaphi(mu[:, 1])",
        },
    )
    for i in range(len(out["min_dr"])):
        mus = list(zip(*(ak.to_list(cols[f"Muon_{k}"][i]) for k in ("eta", "phi")), strict=True))
        els = list(
            zip(*(ak.to_list(cols[f"Electron_{k}"][i]) for k in ("eta", "phi")), strict=True)
        )
        drs = [
            np.hypot(m[0] - e[0], (m[1] - e[1] + np.pi) % (2 * np.pi) - np.pi)
            for m in mus
            for e in els
        ]
        assert out["min_dr"][i] == pytest.approx(min(drs) if drs else np.nan, nan_ok=True)
        if len(mus) >= 2:
            dphi = (mus[0][1] - mus[1][1] + np.pi) % (2 * np.pi) - np.pi
            assert abs(out["dphi01"][i]) == pytest.approx(abs(dphi))
        else:
            assert np.isnan(out["dphi01"][i])


def test_real_hzz_file_with_p4_cartesian():
    uproot = pytest.importorskip("uproot")
    path = shared("skhep_testdata/uproot-HZZ.root")
    names = [f"Muon_{k}" for k in ("Px", "Py", "Pz", "E", "Charge")]
    names += [f"Electron_{k}" for k in ("Px", "Py", "Pz", "E", "Charge")]
    arrays = uproot.open(path)["events"].arrays(names)
    cols = {name: arrays[name] for name in names}
    mu = "p4_cartesian(Muon_Px, Muon_Py, Muon_Pz, Muon_E, charge=Muon_Charge)"
    el = "p4_cartesian(Electron_Px, Electron_Py, Electron_Pz, Electron_E, charge=Electron_Charge)"
    m2mu = Expression(f"sum(leading(sort({mu}), 2)).mass").evaluate(cols)
    pt_lead = Expression(f"firsts(sort({mu}, by='pt')).pt").evaluate(cols)
    n_lep = Expression(f"num(concatenate({mu}, {el}))").evaluate(cols)

    # reference 1: vector itself on the same branches
    vec = vector.zip(
        {"px": arrays["Muon_Px"], "py": arrays["Muon_Py"], "pz": arrays["Muon_Pz"]}
        | {"E": arrays["Muon_E"]}
    )
    ordered = vec[ak.argsort(vec.pt, axis=1, ascending=False)]
    two = ak.to_numpy(ak.num(vec, axis=1)) >= 2
    ref = np.full(len(vec), np.nan)
    pair = ordered[two]
    ref[two] = ak.to_numpy((pair[:, 0] + pair[:, 1]).mass)
    np.testing.assert_allclose(m2mu, ref, rtol=1e-6, equal_nan=True)

    # reference 2: numpy in float64, event by event
    p4s = {k: ak.to_list(arrays[f"Muon_{k}"]) for k in ("Px", "Py", "Pz", "E")}
    hand = np.full(len(vec), np.nan)
    lead = np.full(len(vec), np.nan)
    for i in range(len(vec)):
        p = np.array([p4s[k][i] for k in ("Px", "Py", "Pz", "E")], dtype=np.float64)
        if p.shape[1] == 0:
            continue
        order = np.argsort(-np.hypot(p[0], p[1]), kind="stable")
        lead[i] = np.hypot(p[0], p[1])[order[0]]
        if p.shape[1] >= 2:
            s = p[:, order[:2]].sum(axis=1)
            hand[i] = np.sqrt(s[3] ** 2 - s[0] ** 2 - s[1] ** 2 - s[2] ** 2)
    np.testing.assert_allclose(m2mu, hand, rtol=2e-3, equal_nan=True)  # float32 branches
    np.testing.assert_allclose(pt_lead, lead, rtol=1e-6, equal_nan=True)
    assert 80 < np.nanmedian(m2mu) < 100  # a Z peak in ZZ events
    np.testing.assert_array_equal(
        n_lep, ak.to_numpy(ak.num(arrays["Muon_Px"]) + ak.num(arrays["Electron_Px"]))
    )


# ------------------------------------------------------------- four-vectors and records


def test_attributes_of_both_coordinate_systems(cols):
    vec = {"v": Expression("p4(Muon_pt, Muon_eta, Muon_phi, Muon_mass)").evaluate(cols)}
    v = vec["v"]
    cart = {
        "c": Expression("p4_cartesian(v.px, v.py, v.pz, v.E)").evaluate(vec),
        "v": v,
    }
    for attr in ("pt", "eta", "phi", "mass", "px", "py", "pz", "E", "energy", "rapidity", "p"):
        a = Expression(f"v.{attr}").evaluate(cart)
        b = Expression(f"c.{attr}").evaluate(cart)
        assert isinstance(a, ak.Array) and ak.all(ak.num(a) == ak.num(cols["Muon_pt"]))
        np.testing.assert_allclose(
            ak.to_numpy(ak.flatten(a)), ak.to_numpy(ak.flatten(b)), rtol=1e-6, atol=1e-6
        )
    flat_pt = ak.to_numpy(ak.flatten(cols["Muon_pt"]))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(Expression("v.pt").evaluate(cart))), flat_pt)
    np.testing.assert_allclose(
        ak.to_numpy(ak.flatten(Expression("v.m").evaluate(cart))), 0.105658, rtol=1e-9
    )


def test_flat_four_vectors_give_numpy(cols):
    got = Expression("p4(met, 0, met_phi, 0).px").evaluate(cols)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, cols["met"] * np.cos(cols["met_phi"]))
    # transverse mass of the leading muon and MET, with a flat and a per-event vector
    mt = Expression(
        "sqrt(2 * firsts(Muon_pt) * met * (1 - cos(firsts(p4(Muon_pt, Muon_eta, Muon_phi, "
        "Muon_mass)).deltaphi(p4(met, 0, met_phi, 0)))))"
    ).evaluate(cols)
    lead_pt = np.array([r[0] if r else np.nan for r in ak.to_list(cols["Muon_pt"])])
    lead_phi = np.array([r[0] if r else np.nan for r in ak.to_list(cols["Muon_phi"])])
    want = np.sqrt(2 * lead_pt * cols["met"] * (1 - np.cos(lead_phi - cols["met_phi"])))
    np.testing.assert_allclose(mt, want, rtol=1e-9, equal_nan=True)


def test_vector_records_survive_awkward_operations(cols):
    out = _derive(cols, Z_DERIVED)
    for text in (
        "concatenate(mu, el)",
        "sort(concatenate(mu, el), by='eta', ascending=True)",
        "take(mu, argsort(mu.eta))",
        "leading(mu, 2)",
        "mask(mu, mu.pt > 30)",
        "where(mu.pt > 30, mu, mu)",
        "select(mu, mu.charge > 0)",
        "combinations(mu, 3).c",
        "cartesian(mu, el, mu).c",
        "mu[:, 1:]",
    ):
        got = Expression(text).evaluate(out)
        assert isinstance(got, vector.backends.awkward.VectorAwkward), text
        assert ak.all(ak.fill_none(ak.flatten(got.mass, axis=None), 0.0) >= 0), text
    first = Expression("firsts(mu)").evaluate(out)  # one vector (or None) per event
    assert first.ndim == 1 and isinstance(first, vector.backends.awkward.VectorAwkward)
    np.testing.assert_array_equal(
        Expression("firsts(mu).pt").evaluate(out), Expression("mu.pt[:, 0]").evaluate(out)
    )
    np.testing.assert_array_equal(
        Expression("mu[:, -1].pt").evaluate(out), Expression("nth(mu.pt, -1)").evaluate(out)
    )
    # sort without by= orders four-vectors by pT, leading first; numbers by value
    pts = ak.to_list(Expression("sort(concatenate(mu, el)).pt").evaluate(out))
    assert all(r == sorted(r, reverse=True) for r in pts)
    assert ak.to_list(Expression("sort(Muon_pt, ascending=True)").evaluate(out)) == [
        sorted(r) for r in ak.to_list(cols["Muon_pt"])
    ]
    counts = [len(r) for r in ak.to_list(cols["Muon_pt"])]
    np.testing.assert_array_equal(
        Expression("num(combinations(mu, 2))").evaluate(out), [k * (k - 1) // 2 for k in counts]
    )
    np.testing.assert_array_equal(
        Expression("num(leading(mu, 2))").evaluate(out),
        [min(k, 2) if k >= 2 else 0 for k in counts],
    )


def test_sum_of_vectors_per_event(cols):
    out = _derive(cols, {"mu": "p4(Muon_pt, Muon_eta, Muon_phi, Muon_mass)"})
    got = Expression("sum(mu).pt").evaluate(out)
    for i, row in enumerate(ak.to_list(cols["Muon_pt"])):
        phis = ak.to_list(cols["Muon_phi"][i])
        want = np.hypot(
            sum(p * np.cos(f) for p, f in zip(row, phis, strict=True)),
            sum(p * np.sin(f) for p, f in zip(row, phis, strict=True)),
        )
        assert got[i] == pytest.approx(want, abs=1e-9)  # no muon: the zero vector


def test_collection_errors_are_one_line(cols):
    cases = {
        "concatenate(p4(Muon_pt, Muon_eta, Muon_phi, Muon_mass), Muon_pt)": "cannot merge",
        "concatenate(p4(Muon_pt, Muon_eta, Muon_phi, Muon_mass, charge=Muon_charge), "
        "p4(Electron_pt, Electron_eta, Electron_phi, Electron_mass))": "cannot merge",
        "combinations(Muon_pt, 5)": "n must be 2..4",
        "leading(Muon_pt, 0)": "n must be >= 1",
        "take(Muon_pt, 0)": "list of object indices",
        "sort(combinations(Muon_pt, 2))": "say what to sort by",
        "Muon_pt.pt": "needs four-vectors",
        "p4(Muon_pt, Muon_eta, Muon_phi, Electron_mass)": "different numbers of objects",
        "p4(Muon_pt, Muon_eta, Muon_phi, Muon_mass).deltaR(Muon_eta)": "on both sides",
        "sort(Muon_pt, by=Electron_pt)": "different number of objects",
    }
    for text, needle in cases.items():
        with pytest.raises(ExpressionError) as info:
            Expression(text, "derived 'x'").evaluate(cols)
        message = str(info.value)
        assert "\n" not in message and needle in message, (text, message)
        assert message.startswith("derived 'x' ")


def test_names_of_collection_expressions_are_columns_only():
    expr = Expression(M4L)
    assert expr.names == frozenset(
        f"{p}_{k}" for p in ("Muon", "Electron") for k in ("pt", "eta", "phi", "mass")
    )
    expr = Expression("sort(p4(a, b, c, d, charge=q), by=abs(e), ascending=True).pt")
    assert expr.names == frozenset("abcdqe")


# ----------------------------------------------------------------------------- security


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("x.__class__", "attribute access '.__class__'"),
        ("p4(x, x, x, x).__class__", "attribute access '.__class__'"),
        ("p4(x, x, x, x).__dict__", "attribute access '.__dict__'"),
        ("p4(x, x, x, x)._something", "attribute access '._something'"),
        ("p4(x, x, x, x).to_numpy", "attribute access '.to_numpy'"),
        ("p4(x, x, x, x).to_numpy()", "method call '.to_numpy(...)'"),
        ("p4(x, x, x, x).layout", "attribute access '.layout'"),
        ("p4(x, x, x, x).behavior", "attribute access '.behavior'"),
        ("p4(x, x, x, x).pt.__class__.__bases__", "attribute access '.__bases__'"),
        ("combinations(x, 2).a.__init__", "attribute access '.__init__'"),
        ("p4(x, x, x, x).deltaR", "is a method"),
        ("p4(x, x, x, x).deltaR(x, x)", "exactly one argument"),
        ("p4(x, x, x, x).deltaR(other=x)", "exactly one argument"),
        ("p4(x, x, x, x).pt()", "'.pt' is an attribute"),
        ("(lambda: x).__call__()", "method call '.__call__(...)'"),
        ("__import__('os')", "'__import__'"),
        ("getattr(x, 'pt')", "unknown function 'getattr'"),
        ("vars(x)", "unknown function 'vars'"),
        ("lambda: 1", "lambda"),
        ("[v for v in x]", "list comprehension"),
        ("{v for v in x}", "set comprehension"),
        ("{v: v for v in x}", "dict comprehension"),
        ("sum(v for v in x)", "generator expression"),
        ("sort(x, by='__class__')", "by='__class__'): not an attribute"),
        ("sort(x, by='to_numpy')", "not an attribute"),
        ("p4(x, x, x, x)['pt']", "subscript"),
        ("'pt' + x", "string constant 'pt'"),
        ("sqrt('x')", "string constant 'x'"),
        ("nth(x, 0, fill='s')", "must be a constant number"),
        ("p4(x, x, x, x, charge='q')", "string constant 'q'"),
        ("combinations(x, '2')", "string constant '2'"),
        ("where(x > 0, 's', 'b')", "string constant 's'"),
        ("x < 's'", "can only be compared with == or !="),
        ("f'{x}' == 's'", "f-string"),
        ("x.pt(...)", "'.pt' is an attribute"),
    ],
)
def test_new_constructs_stay_inside_the_whitelist(text, needle):
    with pytest.raises(ExpressionError) as info:
        Expression(text, "selection")
    message = str(info.value)
    assert "\n" not in message and message.startswith("selection ")
    assert needle in message, message


def test_attribute_whitelist_has_no_private_names():
    assert all(not a.startswith("_") for a in ATTRIBUTES)
    assert {"pt", "eta", "phi", "mass", "px", "py", "pz", "E", "energy", "rapidity", "m"} <= (
        ATTRIBUTES
    )


def test_whitelisted_attribute_only_reads_fields_or_vector_properties():
    """A record column with a field that looks like a method is still just data."""
    cols = {"obj": ak.zip({"a": ak.Array([[1.0], []]), "b": ak.Array([[2.0], []])})}
    assert ak.to_list(Expression("obj.a + obj.b").evaluate(cols)) == [[3.0], []]
    with pytest.raises(ExpressionError, match="no '.charge'"):
        Expression("obj.charge").evaluate(cols)
    with pytest.raises(ExpressionError, match="needs four-vectors"):
        Expression("obj.mass").evaluate(cols)


# -------------------------------------------------------------- user feature modules


def _module(tmp_path: Path, body: str, name: str = "myfeatures.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_features_module_functions_become_expression_functions(tmp_path):
    path = _module(
        tmp_path,
        """
        import awkward as ak
        from numpy import sqrt  # imported: not exported

        def n_central(eta, cut=2.5):
            return ak.sum(abs(eta) < cut, axis=1)

        def scaled(x, k=2.0):
            return x * k

        def _helper(x):
            return x
        """,
    )
    functions = load_features_module(path)
    assert set(functions) == {"n_central", "scaled"}
    cols = {"eta": ak.Array([[0.1, 3.0, -1.0], []]), "x": np.array([1.0, 2.0])}
    expr = Expression("n_central(eta, cut=2.4) + scaled(x, k=3)", functions=functions)
    np.testing.assert_array_equal(expr.evaluate(cols), [5.0, 6.0])
    assert expr.names == frozenset({"eta", "x"})
    # arity is checked before any data is read, as for built-in functions
    with pytest.raises(ExpressionError, match="scaled\\(\\): .*signature: scaled\\(x, k=2.0\\)"):
        Expression("scaled()", functions=functions)
    # without the module the function is unknown
    with pytest.raises(ExpressionError, match="unknown function 'scaled'"):
        Expression("scaled(x)")
    # loading the same content again runs nothing new and gives the same functions
    assert load_features_module(path)["scaled"] is functions["scaled"]


def test_features_module_all_and_digest(tmp_path):
    path = _module(
        tmp_path,
        """
        __all__ = ["double"]

        def double(x):
            return 2 * x

        def not_exported(x):
            return x
        """,
    )
    assert set(load_features_module(path)) == {"double"}
    digest = features_module_digest(path)
    assert len(digest) == 64 and digest == features_module_digest(path)
    path.write_text(path.read_text().replace("2 * x", "3 * x"))
    assert features_module_digest(path) != digest
    # the edited content is what runs (no stale bytecode cache)
    got = Expression("double(x)", functions=load_features_module(path)).evaluate(
        {"x": np.array([1.0])}
    )
    np.testing.assert_array_equal(got, [3.0])
    assert not (tmp_path / "__pycache__").exists()


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("def f(x:\n    return x\n", "syntax error at line 1"),
        ("def sqrt(x):\n    return x\n", "'sqrt' has the name of a built-in expression function"),
        ("def pi(x):\n    return x\n", "'pi' has the name of a built-in expression constant"),
        ("import no_such_module_here\n", "failed while importing: ModuleNotFoundError"),
        ("raise SystemExit(3)\n", "failed while importing: SystemExit"),
        ("__all__ = ['missing']\n", "__all__ names 'missing'"),
        ("x = 1\n", "defines no public function"),
    ],
)
def test_features_module_errors_name_the_file(tmp_path, body, needle):
    path = _module(tmp_path, body, name=f"bad_{abs(hash(body))}.py")
    with pytest.raises(ConfigError) as info:
        load_features_module(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and needle in message, message


def test_missing_features_module(tmp_path):
    with pytest.raises(ConfigError, match=r"features module '.*nope\.py' not found"):
        load_features_module(tmp_path / "nope.py")
    with pytest.raises(ConfigError, match="not found"):
        features_module_digest(tmp_path / "nope.py")


def test_user_function_failure_is_one_line(tmp_path):
    path = _module(tmp_path, "def boom(x):\n    raise KeyError('inner detail')\n")
    expr = Expression("boom(x)", "derived 'b'", functions=load_features_module(path))
    with pytest.raises(ExpressionError, match="boom\\(\\) raised KeyError") as info:
        expr.evaluate({"x": np.ones(2)})
    assert "\n" not in str(info.value)
    with pytest.raises(ExpressionError, match="clashes with a built-in"):
        Expression("x", functions={"sum": len})


def test_features_module_from_config_runs_in_the_data_layer(tmp_path):
    pd = pytest.importorskip("pandas")
    (tmp_path / "data").mkdir()
    pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.5, 0.5, 2.0, 2.0]}).to_csv(
        tmp_path / "data" / "s.csv", index=False
    )
    _module(tmp_path, "def ratio(a, b):\n    return a / b\n", name="feat.py")
    raw = {
        "version": 1,
        "seed": 1,
        "data": {
            "samples": [{"name": "s", "files": ["data/s.csv"], "label": 1}],
            "features_module": "feat.py",
            "derived": {"r": "ratio(a, b)"},
            "selection": "r > 1.7",
            "features": ["r"],
        },
    }
    cfg = parse_config(raw, base_dir=tmp_path)
    assert set(user_functions(cfg)) == {"ratio"}
    assert needed_columns(cfg.data, cfg.data.samples[0], functions=user_functions(cfg)) == {
        "a",
        "b",
    }
    ds = load_dataset(cfg, progress=False)
    np.testing.assert_array_equal(np.sort(ds.columns["r"]), [2.0, 2.0, 4.0])
    raw["data"]["features_module"] = "missing.py"
    with pytest.raises(ConfigError, match="missing.py' not found"):
        load_dataset(parse_config(raw, base_dir=tmp_path), progress=False)


def test_vector_derived_columns_pass_through_process_chunk(cols):
    raw = {
        "version": 1,
        "data": {
            "samples": [{"name": "s", "files": ["x.root"], "label": 1}],
            "derived": {
                "leptons": "sort(concatenate(p4(Muon_pt, Muon_eta, Muon_phi, Muon_mass), "
                "p4(Electron_pt, Electron_eta, Electron_phi, Electron_mass)))",
                "lead": "firsts(leptons)",  # one (possibly missing) vector per event
                "m4l": "sum(leading(leptons, 4)).mass",
                "lead_pt": "lead.pt",
            },
            "selection": "num(leptons) >= 4",
            "features": ["m4l", "lead_pt"],
        },
    }
    cfg = parse_config(raw)
    n = len(cols["met"])
    chunk = Chunk(file="x.root", entry_start=0, entry_stop=n, arrays=cols)
    ds = process_chunk(chunk, 0, cfg.data.samples[0], cfg.data, seed=1)
    want = Expression(M4L).evaluate(cols)
    keep = ~np.isnan(want)
    np.testing.assert_allclose(ds.columns["m4l"], want[keep], rtol=1e-12)
    assert np.all(np.isfinite(ds.columns["lead_pt"]))


def test_real_atlas_csv_text_label():
    data = shared("atlas_higgs_ml_challenge_subset")
    raw = {
        "version": 1,
        "data": {
            "samples": [
                {"name": "all", "files": ["train_sml_sig.csv", "train_sml_bg.csv"], "label": 0}
            ],
            "selection": 'Label == "s"',
            "features": ["PRI_tau_pt"],
            "split": {"key": "EventId"},
            "chunk_size": 2000,
        },
    }
    ds = load_dataset(parse_config(raw, base_dir=data), progress=False)
    assert len(ds) == 4999  # README: 4999 signal rows, the background file has none with "s"


def test_function_table_is_documented():
    """Every built-in function appears in the module docstring's table and docs/classify.md."""
    import fivesigma.data.expressions as module

    docs = (Path(__file__).resolve().parents[1] / "docs" / "classify.md").read_text()
    for name in FUNCTIONS:
        assert name in module.__doc__, name
        assert f"{name}" in docs, name
