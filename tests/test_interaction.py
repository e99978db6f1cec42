"""The Interaction Network edge classifier layer (fivesigma.nn.interaction)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_geometric")

from fivesigma.errors import DataError, ModelError  # noqa: E402
from fivesigma.nn.interaction import (  # noqa: E402
    EdgeFilterMLP,
    InteractionNetwork,
    export_edge_model,
    onnx_opset,
    scatter_aggregate,
)

AGGRS = ["sum", "mean", "max", "min", ["mean", "max"]]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def graph(n: int = 30, e: int = 120, seed: int = 0, f: int = 4, g: int = 6):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, f, generator=gen)
    edge_index = torch.randint(0, n, (2, e), generator=gen)
    edge_attr = torch.randn(e, g, generator=gen)
    return x, edge_index, edge_attr


def network(aggr="sum", seed=0, **kw) -> InteractionNetwork:
    torch.manual_seed(seed)
    return InteractionNetwork(4, 6, hidden=8, iterations=2, aggr=aggr, **kw).eval()


def reference(net: InteractionNetwork, x, edge_index, edge_attr) -> torch.Tensor:
    """The network written out on concatenated tensors, with PyG's own scatter."""
    from torch_geometric.utils import scatter

    s, d = edge_index
    n = x.shape[0]
    h = net.node_encoder(x)
    e = net.edge_encoder(torch.cat([x[s], x[d], edge_attr], dim=1))
    for i in range(net.iterations):
        conv = net.convs[i % len(net.convs)]
        e = e + conv.edge_net(torch.cat([h[s], h[d], e], dim=1))
        agg_in = torch.cat([scatter(e, d, 0, n, r) for r in conv.reductions], dim=1)
        agg_out = torch.cat([scatter(e, s, 0, n, r) for r in conv.reductions], dim=1)
        h = h + conv.node_net(torch.cat([h, agg_in, agg_out], dim=1))
    return net.output(torch.cat([h[s], h[d], e], dim=1)).squeeze(1)


@pytest.mark.parametrize("aggr", AGGRS)
def test_output_shape_and_reference(aggr):
    net = network(aggr)
    x, ei, ea = graph()
    out = net(x, ei, ea)
    assert out.shape == (120,) and out.dtype == torch.float32
    # the split first layers and our scatter are the textbook network
    torch.testing.assert_close(out, reference(net, x, ei, ea), atol=1e-5, rtol=1e-5)


def test_no_edges_gives_empty_output():
    x, _, _ = graph()
    out = network()(x, torch.zeros((2, 0), dtype=torch.long), torch.zeros((0, 6)))
    assert out.shape == (0,)


@pytest.mark.parametrize("aggr", AGGRS)
def test_permutation_equivariance(aggr):
    net = network(aggr)
    x, ei, ea = graph()
    out = net(x, ei, ea)
    # relabelling the nodes changes nothing in the edge scores
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(1))
    new_label = torch.empty_like(perm)
    new_label[perm] = torch.arange(len(perm))
    torch.testing.assert_close(net(x[perm], new_label[ei], ea), out, atol=1e-5, rtol=1e-5)
    # reordering the edges reorders the scores
    eperm = torch.randperm(ei.shape[1], generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(net(x, ei[:, eperm], ea[eperm]), out[eperm], atol=1e-5, rtol=1e-5)


def test_aggregations_differ():
    x, ei, ea = graph()
    outs = {a: network(a, seed=3)(x, ei, ea) for a in ("sum", "mean", "max", "min")}
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.allclose(outs[a], outs[b], atol=1e-4), (a, b)


def test_scatter_aggregate_matches_pyg_and_zero_for_empty_rows():
    from torch_geometric.utils import scatter

    src = -torch.rand(10, 3) - 0.5  # all negative: an empty row must still be 0 for max
    index = torch.tensor([0, 0, 1, 3, 3, 3, 1, 0, 3, 1])
    for reduce in ("sum", "mean", "max", "min"):
        out = scatter_aggregate(src, index, 5, reduce)
        torch.testing.assert_close(out, scatter(src, index, 0, 5, reduce))
        assert torch.all(out[[2, 4]] == 0)
    with pytest.raises(ModelError, match="unknown reduction"):
        scatter_aggregate(src, index, 5, "median")


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("aggr", AGGRS)
def test_chunked_inference_equals_full(aggr, threads):
    net = network(aggr)
    x, ei, ea = graph(e=300)
    full = net(x, ei, ea).detach()  # autograd on: one pass over all edges
    net.chunk_size = 37
    torch.set_num_threads(threads)  # 3: chunks shared out to 3 workers, then merged
    with torch.inference_mode():
        chunked = net(x, ei, ea)
    assert torch.get_num_threads() == threads  # restored after the workers
    torch.testing.assert_close(chunked, full, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the workers take the caller's grad mode: nothing recorded
        assert not net(x, ei, ea).requires_grad


def test_run_chunks_covers_every_row_once():
    from fivesigma.nn.interaction import run_chunks

    seen = torch.zeros(100, dtype=torch.long)
    workers = set()

    def body(sl, worker):
        seen[sl] += 1
        workers.add(worker)

    torch.set_num_threads(2)
    assert run_chunks(100, 7, body) == 2
    assert torch.all(seen == 1) and workers == {0, 1}

    def fail(sl, worker):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_chunks(100, 7, fail)
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize(
    "kw",
    [
        {"aggr": "sum"},
        {"aggr": ["mean", "max"], "layer_norm": False},
        {"aggr": "min", "activation": "silu", "share_weights": True},
        {"aggr": "sum", "mlp_layers": 1},
    ],
)
def test_backward_through_every_variant(kw):
    # in-place ops (ReLU, the split first layer) must leave autograd intact
    net = network(**kw).train()
    x, ei, ea = graph()
    x.requires_grad_(True)
    net(x, ei, ea).square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_share_weights_has_one_conv():
    assert len(network(share_weights=True).convs) == 1
    assert len(network().convs) == 2


def test_filter_mlp_is_an_mlp_on_the_concatenation():
    torch.manual_seed(0)
    f = EdgeFilterMLP(4, 6, hidden=16, layers=3).eval()
    x, ei, ea = graph()
    out = f(x, ei, ea)
    assert out.shape == (120,)
    ref = f.net(torch.cat([x[ei[0]], x[ei[1]], ea], dim=1)).squeeze(1)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    f.chunk_size = 50
    with torch.inference_mode():
        torch.testing.assert_close(f(x, ei, ea), ref, atol=1e-5, rtol=1e-5)


def test_bad_inputs_are_one_line_errors():
    net = network()
    x, ei, ea = graph()
    cases = [
        ((torch.randn(30, 5), ei, ea), "x has 5 features per node but the network takes 4"),
        ((x, ei, torch.randn(120, 2)), "edge_attr has 2 features per edge"),
        ((x, ei, torch.randn(7, 6)), "edge_attr has 7 rows for 120 edges"),
        ((x, ei + 30, ea), r"outside \[0, 30\)"),
        ((x, ei.float(), ea), "edge_index must be an int64 tensor"),
        ((torch.zeros(0, 4), ei[:, :0], ea[:0]), "the graph has no nodes"),
    ]
    for args, match in cases:
        with pytest.raises(DataError, match=match) as err:
            net(*args)
        assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="aggr must be one of"):
        InteractionNetwork(4, 6, aggr="median")
    with pytest.raises(ModelError, match="aggr must be one of"):
        InteractionNetwork(4, 6, aggr=["sum", "sum"])
    with pytest.raises(ModelError, match="hidden must be an integer >= 1"):
        InteractionNetwork(4, 6, hidden=0)
    with pytest.raises(ModelError, match="activation 'swish' is not known"):
        EdgeFilterMLP(4, 6, activation="swish")


def test_onnx_opset():
    assert onnx_opset("sum") == 17 and onnx_opset(["mean"]) == 17
    assert onnx_opset("max") == 18 and onnx_opset(["sum", "min"]) == 18


@pytest.mark.parametrize("aggr", ["sum", ["mean", "max"]])
def test_onnx_agrees_with_torch(tmp_path, aggr):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    net = network(aggr)
    path = export_edge_model(
        net, tmp_path / "in.onnx", 4, 6, opset=onnx_opset(aggr), metadata={"k": "v"}
    )
    model = onnx.load(str(path))
    assert not [n for n in model.graph.node if n.op_type == "If"]  # rank-0 branches dropped
    assert {p.key: p.value for p in model.metadata_props}["k"] == "v"
    options = ort.SessionOptions()
    options.log_severity_level = 2  # warnings (the dropped If branches gave some) count
    session = ort.InferenceSession(str(path), options)
    # other numbers of nodes and edges than the export's example: dynamic axes
    for n, e in ((41, 203), (5, 1), (12, 0)):
        x, ei, ea = graph(n, e, seed=n)
        ei[:, :1] = n - 1  # some nodes have no edges at all
        got = session.run(
            None, {"x": x.numpy(), "edge_index": ei.numpy(), "edge_attr": ea.numpy()}
        )[0]
        np.testing.assert_allclose(got, net(x, ei, ea).detach().numpy(), atol=1e-5, rtol=1e-5)
