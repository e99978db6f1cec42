"""Interaction Network edge classifier (Battaglia et al., arXiv:1612.00222), as the
Exa.TrkX / acorn track finders use it (Ju et al., arXiv:2103.06995), and the
:class:`EdgeFilterMLP` of their optional filter stage.

An :class:`InteractionNetwork` scores every edge of a graph:

1. a node encoder MLP maps node features ``x`` (N, F) to ``h`` (N, H), an edge encoder
   MLP maps ``[x_src, x_dst, edge_attr]`` (E, 2F + G) to ``e`` (E, H);
2. ``iterations`` rounds of :class:`InteractionConv`: the edge update
   ``e <- e + phi_e([h_src, h_dst, e])``, then the node update
   ``h <- h + phi_v([h, agg_in(e), agg_out(e)])`` where ``agg_in`` aggregates the edges
   arriving at a node and ``agg_out`` those leaving it;
3. an edge output MLP on ``[h_src, h_dst, e]`` gives one logit per edge.

Aggregation is ``"sum"``, ``"mean"``, ``"max"``, ``"min"`` or a list of them whose
results are concatenated.  A node without edges in a direction aggregates to zeros.

Speed: on a pile-up-200 event (~10^5 nodes, ~10^6 edges) every pass over an (E, H)
edge tensor costs tens of milliseconds on a CPU (memory bound), so

- the first Linear of every MLP that reads ``[h_src, h_dst, e]`` is evaluated as
  ``W_src h + b`` and ``W_dst h`` per *node*, picked per edge, plus ``W_e e``: the same
  weights (and state dicts) as the Linear on the concatenation, without the (E, 3H)
  tensor;
- at inference (no autograd, not tracing) the edges go through every edge MLP and
  aggregation in chunks (:func:`inference_chunk`) whose intermediates stay in the CPU
  cache and reuse freed memory instead of faulting in fresh pages: 2-3x faster on 10^6
  edges;
- ReLUs work in place (see :func:`edge_mlp`).

ONNX: the aggregations are ``scatter_add`` and ``scatter_reduce`` (``amax``/``amin``
with ``include_self=True`` on a +-inf fill, then empty rows set to 0), which the
TorchScript exporter writes as ``ScatterElements``; sum and mean export with opset 17,
max and min need opset 18 (:func:`onnx_opset`).  The numbers of nodes and edges are
dynamic axes.  PyG's own scatter is not used: its ONNX path for max differs from its
eager result when every message of a node is negative.

>>> import torch
>>> net = InteractionNetwork(node_features=3, edge_features=2, hidden=8, iterations=2)
>>> x = torch.randn(5, 3); edge_index = torch.tensor([[0, 1, 2], [1, 2, 4]])
>>> net(x, edge_index, torch.randn(3, 2)).shape
torch.Size([3])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from fivesigma.core import extras
from fivesigma.errors import DataError, ModelError
from fivesigma.nn.mlp import ACTIVATIONS

__all__ = [
    "AGGREGATIONS",
    "EdgeFilterMLP",
    "InteractionConv",
    "InteractionNetwork",
    "check_graph_inputs",
    "edge_mlp",
    "export_edge_model",
    "inference_chunk",
    "onnx_opset",
    "run_chunks",
    "run_edge_mlp",
    "scatter_aggregate",
]

# PyG is an optional extra: importing this module without it gives the install hint.
MessagePassing = extras.torch_geometric("nn").MessagePassing

#: the reductions an aggregation may combine
AGGREGATIONS: tuple[str, ...] = ("sum", "mean", "max", "min")


def _aggregations(aggr: str | Sequence[str], what: str) -> tuple[str, ...]:
    """``aggr`` as a non-empty tuple of known reductions, or a one-line ModelError."""
    names = (aggr,) if isinstance(aggr, str) else tuple(aggr)
    bad = [a for a in names if a not in AGGREGATIONS]
    if not names or bad or len(set(names)) != len(names):
        raise ModelError(
            f"{what} aggr must be one of {', '.join(AGGREGATIONS)} or a list of distinct ones, "
            f"got {aggr!r}"
        )
    return names


def onnx_opset(aggr: str | Sequence[str]) -> int:
    """The lowest ONNX opset that exports ``aggr``: 18 with max/min (``ScatterElements``
    with ``reduction="max"`` is new in 18), else 17."""
    names = _aggregations(aggr, "InteractionNetwork")
    return 18 if {"max", "min"} & set(names) else 17


def scatter_aggregate(
    src: torch.Tensor, index: torch.Tensor, dim_size: int, reduce: str
) -> torch.Tensor:
    """Reduce the rows of ``src`` (E, C) into ``dim_size`` rows by ``index`` (E,).

    Rows no edge points to are 0 for every reduction.  Written with ``scatter_add_`` and
    ``scatter_reduce_`` on an expanded (stride-0, not copied) index, which both run fast
    on a CPU and export to ONNX with dynamic sizes.
    """
    shape = (dim_size, src.shape[1])
    expanded = index.view(-1, 1).expand_as(src)
    if reduce in ("sum", "mean"):
        out = src.new_zeros(shape).scatter_add_(0, expanded, src)
        if reduce == "mean":
            ones = src.new_ones((src.shape[0], 1))
            count = src.new_zeros((dim_size, 1)).scatter_add_(0, index.view(-1, 1), ones)
            out = out / count.clamp(min=1.0)
        return out
    if reduce in ("max", "min"):
        # include_self=True on a +-inf fill is what ONNX can express; a row that stays at
        # the fill received no message and becomes 0, as in PyG's eager max
        fill = float("-inf") if reduce == "max" else float("inf")
        out = src.new_full(shape, fill).scatter_reduce_(
            0, expanded, src, reduce="a" + reduce, include_self=True
        )
        return torch.where(out == fill, torch.zeros_like(out), out)
    raise ModelError(f"unknown reduction {reduce!r}; accepted: {', '.join(AGGREGATIONS)}")


def edge_mlp(
    n_in: int,
    hidden: int,
    n_out: int,
    n_layers: int,
    layer_norm: bool = True,
    activation: str = "relu",
    output_activation: bool = True,
) -> nn.Sequential:
    """``n_layers`` Linear layers ``n_in -> hidden -> ... -> n_out``, each followed by
    (LayerNorm and) the activation; with ``output_activation`` False the last is bare.

    The first module is always the first Linear (:func:`run_edge_mlp` evaluates it per
    node).  ReLU works in place: it follows a Linear or a LayerNorm, whose backward
    passes do not need their outputs, so autograd allows it, and at inference it saves a
    pass over the (E, H) edge tensor.
    """
    layers: list[nn.Module] = []
    width = n_in
    for i in range(n_layers):
        last = i == n_layers - 1
        out = n_out if last else hidden
        layers.append(nn.Linear(width, out))
        if not last or output_activation:
            if layer_norm:
                layers.append(nn.LayerNorm(out))
            layers.append(
                nn.ReLU(inplace=True) if activation == "relu" else ACTIVATIONS[activation]()
            )
        width = out
    return nn.Sequential(*layers)


def _node_parts(
    linear: nn.Linear, x_src: torch.Tensor, x_dst: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-node terms of ``linear`` on ``[x_src, x_dst, e]``: ``W_src x_src + b``
    (N, out), ``W_dst x_dst`` (N, out), and the edge block ``W_e`` (out, C)."""
    a, b = x_src.shape[1], x_dst.shape[1]
    w = linear.weight  # (out, A + B + C)
    p_src = torch.addmm(linear.bias, x_src, w[:, :a].T)  # the bias once per node, not per edge
    p_dst = x_dst @ w[:, a : a + b].T
    return p_src, p_dst, w[:, a + b :]


def _edge_rows(
    mlp: nn.Sequential,
    p_src_j: torch.Tensor,
    p_dst_i: torch.Tensor,
    e: torch.Tensor | None,
    w_e: torch.Tensor,
) -> torch.Tensor:
    """The MLP on edge rows from the picked node terms: ``mlp[1:](p_src_j + p_dst_i + W_e e)``.

    In place on the fresh sum (index_select and add do not keep their outputs for
    backward, so autograd allows it).
    """
    pre = p_src_j + p_dst_i
    if e is not None and w_e.shape[1]:
        pre.addmm_(e, w_e.T)
    return mlp[1:](pre) if len(mlp) > 1 else pre


def _out_width(mlp: nn.Sequential) -> int:
    return [m for m in mlp if isinstance(m, nn.Linear)][-1].out_features


def run_chunks(n: int, chunk: int, body: Callable[[slice, int], None]) -> int:
    """Call ``body(rows, worker)`` on every slice of ``chunk`` rows of ``range(n)``; the
    number of workers used.

    With several torch threads, the chunks are shared out to that many Python threads
    (worker ``w`` takes chunks ``w, w + workers, ...`` in order, so the result is the
    same on every run), each running torch single-threaded, rather than splitting every
    operation of every chunk across the threads.  Why: an operation on a cache-sized chunk
    takes well under a millisecond, so intra-op threading pays a barrier per operation,
    thousands per graph, and when another process holds a core each barrier waits for a
    scheduler slice (measured: 10-20x slower on a loaded 2-core machine).  Workers only
    meet at the end.  Torch releases the GIL inside its kernels.
    """
    starts = list(range(0, n, chunk))
    workers = max(1, min(torch.get_num_threads(), len(starts)))
    if workers == 1:
        for start in starts:
            body(slice(start, start + chunk), 0)
        return 1

    # grad and inference mode are per thread: the workers take the caller's
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def run(worker: int) -> None:
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            for start in starts[worker::workers]:
                body(slice(start, start + chunk), worker)

    from concurrent.futures import ThreadPoolExecutor

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # torch's thread count is process-wide: restored below
    try:
        with ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(run, w) for w in range(workers)]:
                future.result()  # re-raises a worker's exception
    finally:
        torch.set_num_threads(threads)
    return workers


def run_edge_mlp(
    mlp: nn.Sequential,
    x_src: torch.Tensor,
    x_dst: torch.Tensor,
    edge_index: torch.Tensor,
    e: torch.Tensor | None,
    chunk: int | None = None,
) -> torch.Tensor:
    """``mlp(cat([x_src[src], x_dst[dst], e]))`` without forming the concatenation.

    The first Linear is split (:func:`_node_parts`): N-row matmuls instead of E-row ones
    and no (E, A + B + C) tensor.  With ``chunk`` the edges are processed ``chunk`` at a
    time (:func:`run_chunks`) into one preallocated output, so every intermediate stays
    in the CPU cache (inference only: the caller decides, see
    :meth:`InteractionNetwork.forward`).
    """
    p_src, p_dst, w_e = _node_parts(mlp[0], x_src, x_dst)
    src, dst = edge_index[0], edge_index[1]
    n_edges = src.shape[0]
    if chunk is None or n_edges <= chunk:
        return _edge_rows(mlp, p_src.index_select(0, src), p_dst.index_select(0, dst), e, w_e)
    out = p_src.new_empty((n_edges, _out_width(mlp)))

    def body(sl: slice, worker: int) -> None:
        out[sl] = _edge_rows(
            mlp,
            p_src.index_select(0, src[sl]),
            p_dst.index_select(0, dst[sl]),
            e[sl] if e is not None else None,
            w_e,
        )

    run_chunks(n_edges, chunk, body)
    return out


def check_graph_inputs(
    x: torch.Tensor,
    edge_index: torch.Tensor,
    edge_attr: torch.Tensor | None,
    node_features: int,
    edge_features: int,
    what: str,
) -> None:
    """One-line :class:`DataError` when a graph does not fit a network's input sizes.

    ``x`` must be (N, node_features) floating point with N >= 1, ``edge_index`` an
    integer (2, E) tensor of node indices in ``[0, N)``, ``edge_attr`` (E, edge_features)
    (or None when ``edge_features`` is 0).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(f"{what}: x must be a float tensor (nodes, {node_features}), got {shape}")
    if x.shape[0] == 0:
        raise DataError(f"{what}: the graph has no nodes; a graph needs at least one node")
    if x.shape[1] != node_features:
        raise DataError(
            f"{what}: x has {x.shape[1]} features per node but the network takes {node_features}"
        )
    if (
        not isinstance(edge_index, torch.Tensor)
        or edge_index.dim() != 2
        or edge_index.shape[0] != 2
        or edge_index.dtype not in (torch.int64, torch.int32)
    ):
        shape = (
            f"{tuple(edge_index.shape)} {edge_index.dtype}"
            if isinstance(edge_index, torch.Tensor)
            else type(edge_index).__name__
        )
        raise DataError(f"{what}: edge_index must be an int64 tensor (2, edges), got {shape}")
    n_edges = edge_index.shape[1]
    if n_edges and (int(edge_index.min()) < 0 or int(edge_index.max()) >= x.shape[0]):
        raise DataError(
            f"{what}: edge_index holds node indices outside [0, {x.shape[0]}) "
            f"(min {int(edge_index.min())}, max {int(edge_index.max())})"
        )
    if edge_features == 0 and edge_attr is None:
        return
    if (
        not isinstance(edge_attr, torch.Tensor)
        or edge_attr.dim() != 2
        or not edge_attr.is_floating_point()
    ):
        shape = tuple(edge_attr.shape) if isinstance(edge_attr, torch.Tensor) else None
        raise DataError(
            f"{what}: edge_attr must be a float tensor (edges, {edge_features}), got {shape}"
        )
    if edge_attr.shape[1] != edge_features:
        raise DataError(
            f"{what}: edge_attr has {edge_attr.shape[1]} features per edge but the network "
            f"takes {edge_features}"
        )
    if edge_attr.shape[0] != n_edges:
        raise DataError(
            f"{what}: edge_attr has {edge_attr.shape[0]} rows for {n_edges} edges; one row "
            "per edge (column of edge_index) is needed"
        )


class InteractionConv(MessagePassing):
    """One interaction round: edge update, aggregation in both directions, node update.

    ``forward(h, edge_index, e, chunk=None) -> (h', e')`` with (N, H) nodes and (E, H)
    edges:

    - edge update (:meth:`edge_update`, through PyG's ``edge_updater``):
      ``e' = e + phi_e([h_src, h_dst, e])``;
    - aggregation (:meth:`propagate`, messages ``e'``): incoming at ``dst`` and, on the
      flipped edges, outgoing at ``src``, each with every reduction of ``aggr``;
    - node update: ``h' = h + phi_v([h, agg_in, agg_out])``.

    With ``chunk``, and only without autograd and outside tracing (it works in place),
    the edges go through the edge update and the aggregations ``chunk`` at a time
    (:func:`run_chunks`: shared out to the torch threads), accumulating the aggregations,
    so that the (chunk, H) intermediates stay in the CPU cache: the same numbers up to
    float rounding, 2-3x faster on graphs of 10^5 to 10^6 edges.

    Parameters
    ----------
    hidden : width H of nodes, edges and the MLPs' hidden layers.
    aggr : a reduction of :data:`AGGREGATIONS` or a list of them (concatenated).
    mlp_layers : Linear layers per MLP.
    layer_norm : LayerNorm after every hidden Linear.
    activation : a key of :data:`fivesigma.nn.mlp.ACTIVATIONS`.
    """

    def __init__(
        self,
        hidden: int,
        aggr: str | Sequence[str] = "sum",
        mlp_layers: int = 2,
        layer_norm: bool = True,
        activation: str = "relu",
    ) -> None:
        # aggregation is ours (see scatter_aggregate), so PyG gets none
        super().__init__(aggr=None, flow="source_to_target", node_dim=0)
        self.reductions = _aggregations(aggr, "InteractionConv")
        self.hidden = hidden
        k = len(self.reductions)
        self.edge_net = edge_mlp(3 * hidden, hidden, hidden, mlp_layers, layer_norm, activation)
        self.node_net = edge_mlp(
            (1 + 2 * k) * hidden, hidden, hidden, mlp_layers, layer_norm, activation
        )

    def forward(
        self,
        h: torch.Tensor,
        edge_index: torch.Tensor,
        e: torch.Tensor,
        chunk: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = h.shape[0]
        p_src, p_dst, _ = _node_parts(self.edge_net[0], h, h)
        chunked = chunk is not None and edge_index.shape[1] > chunk
        if chunked and not torch.is_grad_enabled() and not torch.jit.is_tracing():
            e, agg_in, agg_out = self._edges_chunked(p_src, p_dst, edge_index, e, n, chunk)
        else:
            # PyG infers the size from p_src here (given explicitly, it compares it under
            # tracing, which warns); the propagations carry edge tensors only, so they
            # need it
            e = e + self.edge_updater(edge_index, p_src=p_src, p_dst=p_dst, e=e)
            agg_in = self.propagate(edge_index, m=e, size=(n, n))  # (N, kH), at dst
            agg_out = self.propagate(edge_index.flip(0), m=e, size=(n, n))  # (N, kH), at src
        h = h + self.node_net(torch.cat([h, agg_in, agg_out], dim=1))
        return h, e

    def edge_update(
        self, p_src_j: torch.Tensor, p_dst_i: torch.Tensor, e: torch.Tensor
    ) -> torch.Tensor:
        # with flow source_to_target, _j is edge_index[0] (the source), _i the target
        w_e = self.edge_net[0].weight[:, 2 * self.hidden :]
        return _edge_rows(self.edge_net, p_src_j, p_dst_i, e, w_e)

    def message(self, m: torch.Tensor) -> torch.Tensor:
        return m

    def aggregate(
        self,
        inputs: torch.Tensor,
        index: torch.Tensor,
        ptr: torch.Tensor | None = None,
        dim_size: int | None = None,
    ) -> torch.Tensor:
        outs = [scatter_aggregate(inputs, index, dim_size, r) for r in self.reductions]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)

    def _edges_chunked(
        self,
        p_src: torch.Tensor,
        p_dst: torch.Tensor,
        edge_index: torch.Tensor,
        e: torch.Tensor,
        n: int,
        chunk: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The edge update and both aggregations, ``chunk`` edges at a time
        (:func:`run_chunks`), each worker accumulating its own aggregations."""
        hidden = self.hidden
        e_out = torch.empty_like(e)
        accs: dict[int, tuple[list[_Accumulator], list[_Accumulator]]] = {}

        def body(sl: slice, worker: int) -> None:
            if worker not in accs:
                accs[worker] = (
                    [_Accumulator(r, n, hidden, e) for r in self.reductions],
                    [_Accumulator(r, n, hidden, e) for r in self.reductions],
                )
            acc_in, acc_out = accs[worker]
            src, dst = edge_index[0, sl], edge_index[1, sl]
            e_sl = e[sl]
            # edge_update itself, not PyG's edge_updater around it: the workers call it
            # concurrently, and it only needs the node terms picked per edge
            new = self.edge_update(p_src.index_select(0, src), p_dst.index_select(0, dst), e_sl)
            new += e_sl  # the residual, in place: nothing is recorded at inference
            e_out[sl] = new
            for acc in acc_in:
                acc.add(new, dst)
            for acc in acc_out:
                acc.add(new, src)

        run_chunks(edge_index.shape[1], chunk, body)
        acc_in, acc_out = accs[0]
        for worker in sorted(accs)[1:]:  # in worker order: the same sums on every run
            for mine, theirs in zip(
                acc_in + acc_out, accs[worker][0] + accs[worker][1], strict=True
            ):
                mine.merge(theirs)
        agg_in = torch.cat([acc.result() for acc in acc_in], dim=1)
        agg_out = torch.cat([acc.result() for acc in acc_out], dim=1)
        return e_out, agg_in, agg_out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hidden}, aggr={list(self.reductions)})"


class _Accumulator:
    """One reduction of :func:`scatter_aggregate` accumulated over chunks of edges."""

    def __init__(self, reduce: str, n: int, width: int, like: torch.Tensor) -> None:
        self.reduce = reduce
        self.fill = {"max": float("-inf"), "min": float("inf")}.get(reduce, 0.0)
        self.out = like.new_full((n, width), self.fill)
        self.count = like.new_zeros((n, 1)) if reduce == "mean" else None

    def add(self, src: torch.Tensor, index: torch.Tensor) -> None:
        expanded = index.view(-1, 1).expand_as(src)
        if self.reduce in ("sum", "mean"):
            self.out.scatter_add_(0, expanded, src)
            if self.count is not None:
                ones = src.new_ones((src.shape[0], 1))
                self.count.scatter_add_(0, index.view(-1, 1), ones)
        else:
            self.out.scatter_reduce_(0, expanded, src, reduce="a" + self.reduce, include_self=True)

    def merge(self, other: _Accumulator) -> None:
        """Fold in another worker's accumulator of the same reduction."""
        if self.reduce == "max":
            torch.maximum(self.out, other.out, out=self.out)
        elif self.reduce == "min":
            torch.minimum(self.out, other.out, out=self.out)
        else:
            self.out += other.out
        if self.count is not None:
            self.count += other.count

    def result(self) -> torch.Tensor:
        if self.count is not None:
            return self.out / self.count.clamp(min=1.0)
        if self.reduce in ("max", "min"):
            # rows that received no edge are 0, as in scatter_aggregate
            return self.out.masked_fill_(self.out == self.fill, 0.0)
        return self.out


class InteractionNetwork(nn.Module):
    """Edge classifier: encoders, ``iterations`` :class:`InteractionConv` rounds with
    residual connections, and an edge output MLP giving one logit per edge.

    ``forward(x, edge_index, edge_attr) -> logits (E,)``; ``x`` (N, node_features) float,
    ``edge_index`` (2, E) int64 (messages flow from row 0 to row 1; the outgoing
    aggregation covers the other direction), ``edge_attr`` (E, edge_features) float.
    Outside tracing the inputs are checked: a wrong feature width, an empty node set or
    out-of-range indices give a one-line :class:`DataError`.  A graph without edges gives
    an empty output.

    Without autograd (``torch.no_grad`` / ``torch.inference_mode``) and outside tracing,
    graphs of more than ``chunk_size`` edges are processed in chunks of edges (see
    :class:`InteractionConv`); ``chunk_size = None`` turns that off.

    Parameters
    ----------
    node_features, edge_features : input widths F and G (G may be 0: no edge_attr).
    hidden : width H of every hidden representation.
    iterations : message-passing rounds.
    aggr : a reduction of :data:`AGGREGATIONS` or a list of them.
    mlp_layers : Linear layers per MLP (encoders, edge/node updates, output).
    layer_norm : LayerNorm after every hidden Linear.
    activation : a key of :data:`fivesigma.nn.mlp.ACTIVATIONS`.
    share_weights : one InteractionConv applied ``iterations`` times (the "recurrent"
        acorn variant: fewer parameters, same cost) instead of one per round.
    """

    #: edges per chunk at inference: an int, None (all at once) or "auto" (see
    #: :func:`inference_chunk`)
    chunk_size: int | str | None = "auto"

    def __init__(
        self,
        node_features: int,
        edge_features: int,
        hidden: int = 32,
        iterations: int = 4,
        aggr: str | Sequence[str] = "sum",
        mlp_layers: int = 2,
        layer_norm: bool = True,
        activation: str = "relu",
        share_weights: bool = False,
    ) -> None:
        super().__init__()
        what = "InteractionNetwork"
        _check_ints(
            what,
            node_features=(node_features, 1),
            edge_features=(edge_features, 0),
            hidden=(hidden, 1),
            iterations=(iterations, 1),
            mlp_layers=(mlp_layers, 1),
        )
        _check_activation(what, activation)
        self.config: dict[str, Any] = {
            "node_features": node_features,
            "edge_features": edge_features,
            "hidden": hidden,
            "iterations": iterations,
            "aggr": list(_aggregations(aggr, what)),
            "mlp_layers": mlp_layers,
            "layer_norm": bool(layer_norm),
            "activation": activation,
            "share_weights": bool(share_weights),
        }
        self.node_features, self.edge_features = node_features, edge_features
        self.iterations = iterations
        self.node_encoder = edge_mlp(
            node_features, hidden, hidden, mlp_layers, layer_norm, activation
        )
        self.edge_encoder = edge_mlp(
            2 * node_features + edge_features, hidden, hidden, mlp_layers, layer_norm, activation
        )
        n_convs = 1 if share_weights else iterations
        self.convs = nn.ModuleList(
            InteractionConv(hidden, aggr, mlp_layers, layer_norm, activation)
            for _ in range(n_convs)
        )
        self.output = edge_mlp(
            3 * hidden, hidden, 1, mlp_layers, layer_norm, activation, output_activation=False
        )

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None
    ) -> torch.Tensor:
        tracing = torch.jit.is_tracing()
        if not tracing:
            check_graph_inputs(
                x,
                edge_index,
                edge_attr,
                self.node_features,
                self.edge_features,
                "InteractionNetwork",
            )
        chunk = None if tracing or torch.is_grad_enabled() else inference_chunk(self.chunk_size)
        edge_index = edge_index.long()
        h = self.node_encoder(x)  # (N, H)
        attr = edge_attr if self.edge_features else None
        e = run_edge_mlp(self.edge_encoder, x, x, edge_index, attr, chunk)  # (E, H)
        for i in range(self.iterations):
            h, e = self.convs[i % len(self.convs)](h, edge_index, e, chunk)
        # (E,): reshape, not squeeze, which the exporter writes as an If on the size
        return run_edge_mlp(self.output, h, h, edge_index, e, chunk).reshape(-1)


def inference_chunk(chunk_size: int | str | None) -> int | None:
    """Edges per chunk at inference: ``chunk_size`` itself, or 16384 for ``"auto"``.

    16384 edges x 32 floats is 2 MB, which stays in a core's cache through the chain of
    operations of an edge MLP (measured on 800k edges, H = 32, one thread: 2.6 s with
    16k-edge chunks, 4.3 s unchunked, 3.1 s with 4k, 4.4 s with 64k).
    """
    if chunk_size == "auto":
        return 16384
    return chunk_size  # type: ignore[return-value]


def _check_ints(what: str, **values: tuple[Any, int]) -> None:
    """One-line ModelError unless every ``name=(value, least)`` is an int >= least."""
    for name, (value, least) in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ModelError(f"{what} {name} must be an integer >= {least}, got {value!r}")


def _check_activation(what: str, activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ModelError(
            f"{what} activation {activation!r} is not known; accepted: {', '.join(ACTIVATIONS)}"
        )


class EdgeFilterMLP(nn.Module):
    """An MLP on ``[x_src, x_dst, edge_attr]`` giving one logit per edge: the cheap filter
    stage that removes most fake edges before the :class:`InteractionNetwork`.

    ``forward(x, edge_index, edge_attr) -> logits (E,)``, inputs as for
    :class:`InteractionNetwork` (checked the same way outside tracing).

    Parameters
    ----------
    node_features, edge_features : input widths F and G (G may be 0).
    hidden : width of the hidden layers.
    layers : number of Linear layers (the last gives the logit).
    layer_norm, activation : as for :class:`InteractionNetwork`.
    """

    #: edges per chunk at inference: an int, None (all at once) or "auto" (see
    #: :func:`inference_chunk`)
    chunk_size: int | str | None = "auto"

    def __init__(
        self,
        node_features: int,
        edge_features: int,
        hidden: int = 64,
        layers: int = 3,
        layer_norm: bool = True,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        what = "EdgeFilterMLP"
        _check_ints(
            what,
            node_features=(node_features, 1),
            edge_features=(edge_features, 0),
            hidden=(hidden, 1),
            layers=(layers, 1),
        )
        _check_activation(what, activation)
        self.config: dict[str, Any] = {
            "node_features": node_features,
            "edge_features": edge_features,
            "hidden": hidden,
            "layers": layers,
            "layer_norm": bool(layer_norm),
            "activation": activation,
        }
        self.node_features, self.edge_features = node_features, edge_features
        self.net = edge_mlp(
            2 * node_features + edge_features,
            hidden,
            1,
            layers,
            layer_norm,
            activation,
            output_activation=False,
        )

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None
    ) -> torch.Tensor:
        tracing = torch.jit.is_tracing()
        if not tracing:
            check_graph_inputs(
                x, edge_index, edge_attr, self.node_features, self.edge_features, "EdgeFilterMLP"
            )
        chunk = None if tracing or torch.is_grad_enabled() else inference_chunk(self.chunk_size)
        attr = edge_attr if self.edge_features else None
        return run_edge_mlp(self.net, x, x, edge_index.long(), attr, chunk).reshape(-1)


def export_edge_model(
    module: nn.Module,
    path: Any,
    node_features: int,
    edge_features: int,
    opset: int = 17,
    output_name: str = "logits",
    metadata: dict[str, str] | None = None,
) -> Any:
    """Write ``module(x, edge_index, edge_attr) -> (E,)`` as an ONNX model at ``path``.

    Inputs ``x`` float32 (nodes, node_features), ``edge_index`` int64 (2, edges),
    ``edge_attr`` float32 (edges, edge_features); nodes and edges are dynamic axes.
    Exported with the TorchScript exporter (no onnxscript needed), written atomically;
    ``metadata`` goes to the model's ``metadata_props``.  Returns the path.

    ``scatter_reduce`` (the max and min aggregations) is exported inside ``If`` nodes
    that handle rank-0 tensors; the aggregations here are always 2-D, so those nodes are
    replaced by their else branch, a pass-through (otherwise onnxruntime warns on every
    run about the then branch's shapes).
    """
    import warnings
    from pathlib import Path

    from fivesigma.core.files import atomic_file

    onnx = extras.onnx()
    path = Path(path)
    n, e = 7, 11  # example sizes; the axes are dynamic
    g = torch.Generator().manual_seed(0)
    example = (
        torch.randn(n, node_features, generator=g),
        torch.randint(0, n, (2, e), generator=g),
        torch.randn(e, edge_features, generator=g),
    )
    with atomic_file(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            module.eval(),
            example,
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=["x", "edge_index", "edge_attr"],
            output_names=[output_name],
            dynamic_axes={
                "x": {0: "nodes"},
                "edge_index": {1: "edges"},
                "edge_attr": {0: "edges"},
                output_name: {0: "edges"},
            },
        )
        model = onnx.load(str(tmp))
        _drop_rank0_branches(model)
        for key, value in (metadata or {}).items():
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value
        onnx.save(model, str(tmp))
    return path


def _drop_rank0_branches(model: Any) -> None:
    """Replace the exporter's ``If (rank == 0)`` nodes around ScatterElements by their
    else branch (Identity pass-throughs of outer values), see :func:`export_edge_model`."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}

    def is_rank0_test(name: str) -> bool:
        # Equal(Size(Shape(t)), 0): the exporter's test for a rank-0 tensor
        eq = producer.get(name)
        if eq is None or eq.op_type != "Equal":
            return False
        size = producer.get(eq.input[0])
        return size is not None and size.op_type == "Size"

    rename: dict[str, str] = {}
    keep = []
    for node in graph.node:
        if node.op_type == "If" and is_rank0_test(node.input[0]):
            branch = next(a.g for a in node.attribute if a.name == "else_branch")
            inner = {out: n for n in branch.node for out in n.output}
            sources = []
            for out in branch.output:
                ident = inner.get(out.name)
                if ident is None or ident.op_type != "Identity":
                    break
                sources.append(ident.input[0])
            if len(sources) == len(node.output):
                rename.update(zip(node.output, sources, strict=True))
                continue
        keep.append(node)
    if not rename:
        return

    def resolve(name: str) -> str:
        while name in rename:
            name = rename[name]
        return name

    del graph.node[:]
    graph.node.extend(keep)
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = resolve(name)
    for out in graph.output:
        if out.name in rename:  # never the case for these models, but keep the graph valid
            raise ModelError(f"ONNX export: graph output {out.name!r} is an If pass-through")
