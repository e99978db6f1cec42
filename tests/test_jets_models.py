"""Jet tagging networks: masking proven (permutation, padding, batch composition), the
pairwise Lorentz features against a hand/vector computation, kNN, parameter counts."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from fivesigma.errors import FivesigmaError, ModelError
from fivesigma.nn import (
    MaskedBatchNorm,
    gather_neighbours,
    masked_max,
    masked_mean,
    masked_sum,
)
from fivesigma.tasks.jets.models import MODELS, build_model, knn, make_config, pairwise_lv_fts

F = 5
TINY = {
    "cnn1d": {"channels": (8, 8), "hidden": (8,)},
    "pfn": {"phi": (8, 16), "f": (8,)},
    "particlenet": {"k": 3, "conv": ((8, 8), (16, 16)), "fc": (8,)},
    "part": {
        "embed_dims": (16,),
        "pair_embed_dims": (8,),
        "num_heads": 2,
        "num_layers": 2,
        "num_cls_layers": 1,
    },
}
INVARIANT = ["pfn", "particlenet", "part"]


def make_batch(ns: list[int], n_slots: int, seed: int = 0):
    """Random jets with ``ns`` real particles each, padded to ``n_slots`` (zeros), pT-sorted."""
    g = torch.Generator().manual_seed(seed)
    b = len(ns)
    pt = torch.rand(b, n_slots, generator=g) * 50 + 1
    pt = pt.sort(dim=1, descending=True).values
    eta = torch.randn(b, n_slots, generator=g) * 0.4
    phi = torch.randn(b, n_slots, generator=g) * 0.4
    mass = torch.rand(b, n_slots, generator=g) * 0.2
    pz = pt * torch.sinh(eta)
    e = torch.sqrt(pt**2 + pz**2 + mass**2)
    v = torch.stack([pt * torch.cos(phi), pt * torch.sin(phi), pz, e], dim=-1)
    x = torch.cat(
        [
            eta.unsqueeze(-1),
            phi.unsqueeze(-1),
            torch.log(pt).unsqueeze(-1),
            torch.randn(b, n_slots, F - 3, generator=g),
        ],
        dim=-1,
    )
    mask = torch.arange(n_slots).unsqueeze(0) < torch.tensor(ns).unsqueeze(1)
    keep = mask.unsqueeze(-1)
    return torch.where(keep, x, 0.0), torch.where(keep, v, 0.0), mask


def tiny(name: str, n_classes: int = 3, seed: int = 0):
    """A small network in evaluation mode whose batch-norm running statistics are no longer
    the identity (a few training-mode passes), so that they take part in every test."""
    torch.manual_seed(seed)
    net = build_model(name, F, n_classes, TINY[name])
    x, v, mask = make_batch([9, 4, 7, 2], 9, seed=100 + seed)
    with torch.no_grad():
        for _ in range(3):
            net(x * 2.0 + 0.5, v, mask)
    return net.eval()


@pytest.mark.parametrize("name", INVARIANT)
def test_permuting_constituents_leaves_output_unchanged(name):
    net = tiny(name)
    x, v, mask = make_batch([12, 5, 9], 12, seed=1)
    with torch.no_grad():
        ref = net(x, v, mask)
        g = torch.Generator().manual_seed(7)
        # permute every slot, padding included, so padded slots end up between real ones
        perm = torch.stack([torch.randperm(12, generator=g) for _ in range(3)])
        xp = torch.gather(x, 1, perm.unsqueeze(-1).expand(-1, -1, F))
        vp = torch.gather(v, 1, perm.unsqueeze(-1).expand(-1, -1, 4))
        mp = torch.gather(mask, 1, perm)
        out = net(xp, vp, mp)
    assert not torch.equal(mp, mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_cnn1d_is_order_dependent():
    """The sequence CNN is not permutation invariant by design (so the test above is not
    applied to it); the padding and batch tests below cover its masking."""
    net = tiny("cnn1d")
    x, v, mask = make_batch([10], 10, seed=2)
    with torch.no_grad():
        ref = net(x, v, mask)
        perm = torch.randperm(10, generator=torch.Generator().manual_seed(3))
        out = net(x[:, perm], v[:, perm], mask[:, perm])
    assert (out - ref).abs().max() > 1e-4


@pytest.mark.parametrize("name", list(MODELS))
def test_appending_padding_leaves_output_unchanged(name):
    net = tiny(name)
    x, v, mask = make_batch([10, 4, 1, 7], 10, seed=4)
    with torch.no_grad():
        ref = net(x, v, mask)
        pad = torch.nn.functional.pad
        out = net(pad(x, (0, 0, 0, 7)), pad(v, (0, 0, 0, 7)), pad(mask, (0, 7)))
    assert out.shape == ref.shape == (4, 3)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_mixed_multiplicity_batch_equals_each_jet_alone(name):
    ns = [1, 2, 30, 6]
    net = tiny(name)
    x, v, mask = make_batch(ns, 30, seed=5)
    with torch.no_grad():
        batch = net(x, v, mask)
        for i, n in enumerate(ns):
            alone = net(x[i : i + 1, :n], v[i : i + 1, :n], mask[i : i + 1, :n])
            torch.testing.assert_close(batch[i : i + 1], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_garbage_in_padded_slots_is_ignored_and_empty_jets_stay_finite(name):
    net = tiny(name)
    x, v, mask = make_batch([6, 3, 0], 6, seed=6)
    with torch.no_grad():
        ref = net(x, v, mask)
        junk = ~mask.unsqueeze(-1)
        out = net(torch.where(junk, 1e3, x), torch.where(junk, 7.0, v), mask)
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(out[:2], ref[:2], atol=1e-5, rtol=0)


def test_normalisation_statistics_were_warmed_up_in_the_test_networks():
    for name in ("particlenet", "part"):
        stats = [m.running_mean for m in tiny(name).modules() if isinstance(m, MaskedBatchNorm)]
        assert stats and all(s.abs().max() > 1e-3 for s in stats)


@pytest.mark.parametrize("name", ["particlenet", "part"])
def test_training_mode_batch_statistics_ignore_padding(name):
    """In training mode batch norms normalise with the batch's statistics: padding (and
    junk in padded slots) must not enter them."""
    torch.manual_seed(0)
    net = build_model(name, F, 3, {**TINY[name], "dropout": 0.0}).train()
    x, v, mask = make_batch([10, 4, 1, 7], 10, seed=4)
    with torch.no_grad():
        ref = net(x, v, mask)
        pad = torch.nn.functional.pad
        xp, vp, mp = pad(x, (0, 0, 0, 7)), pad(v, (0, 0, 0, 7)), pad(mask, (0, 7))
        junk = ~mp.unsqueeze(-1)
        out = net(torch.where(junk, 50.0, xp), torch.where(junk, 3.0, vp), mp)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_masked_batch_norm_equals_torch_batch_norm_on_the_real_entries():
    torch.manual_seed(0)
    h = torch.randn(4, 6, 3) * torch.tensor([1.0, 5.0, 0.2]) + torch.tensor([0.0, 3.0, -1.0])
    mask = torch.rand(4, 6) < 0.6
    h_junk = torch.where(mask.unsqueeze(-1), h, torch.full_like(h, 1e4))
    ours, ref = MaskedBatchNorm(3, momentum=0.3), torch.nn.BatchNorm1d(3, momentum=0.3)
    with torch.no_grad():
        ours.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        ref.weight.copy_(ours.weight)
        ours.bias.fill_(0.1)
        ref.bias.fill_(0.1)
    for _ in range(3):  # training: batch statistics of the real entries, running averages
        torch.testing.assert_close(ours(h_junk, mask)[mask], ref(h[mask]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(h, mask).reshape(-1, 3), ref(h.reshape(-1, 3)))


def test_batch_norm_statistics_from_a_subset_normalise_every_real_entry():
    # ParT's dense pair path: statistics from one of each mirror pair, applied to both
    torch.manual_seed(1)
    h = torch.randn(2, 5, 3) * torch.tensor([1.0, 4.0, 0.3]) + 2.0
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    stats = mask & (torch.rand(2, 5) < 0.7)
    stats[0, :2] = True
    ours, ref = MaskedBatchNorm(3, momentum=0.3), torch.nn.BatchNorm1d(3, momentum=0.3)
    for _ in range(2):
        out = ours(h, mask, stats)
        torch.testing.assert_close(out[stats], ref(h[stats]), atol=1e-5, rtol=1e-5)
    # the other real entries with the same statistics, padded entries 0
    ref.eval()
    var, mean = torch.var_mean(h[stats], dim=0, correction=0)
    expected = (h - mean) / torch.sqrt(var + ref.eps) * ref.weight + ref.bias
    torch.testing.assert_close(out[mask], expected[mask].detach(), atol=1e-5, rtol=1e-5)
    assert torch.all(out[~mask] == 0)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    # a packed tensor (mask None) is batch-normed as a whole
    flat = torch.randn(9, 3)
    bn, ref2 = MaskedBatchNorm(3), torch.nn.BatchNorm1d(3)
    torch.testing.assert_close(bn(flat), ref2(flat), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bn.running_var, ref2.running_var)


def test_edgeconv_on_packed_real_edges_equals_the_edge_tensor_layout():
    """Eager EdgeConv runs on the real edges only, its first layer per particle; the
    reference (and the ONNX export) builds the (h_i, h_j - h_i) edge tensor over every
    slot.  Same outputs, statistics and gradients in training; same outputs in eval."""
    from fivesigma.nn import EdgeConvBlock, run_masked

    torch.manual_seed(3)
    x, _, mask = make_batch([9, 4, 1, 0, 7], 10, seed=6)
    block = EdgeConvBlock(F, (8, 8), k=3).train()
    coords = x[..., :2]

    def reference(h):
        idx, valid = knn(coords, mask, block.k)
        nbr = gather_neighbours(h, idx)
        centre = h.unsqueeze(2).expand_as(nbr)
        edges = run_masked(block.edge_mlp, torch.cat([centre, nbr - centre], -1), valid)
        edges = torch.where(valid.unsqueeze(-1), edges, torch.zeros_like(edges))
        agg = edges.sum(2) / valid.sum(2, keepdim=True).clamp_min(1)
        out = torch.relu(run_masked(block.shortcut, h, mask) + agg)
        return torch.where(mask.unsqueeze(-1), out, torch.zeros_like(out))

    h1 = x.clone().requires_grad_(True)
    h2 = x.clone().requires_grad_(True)
    ours = block(coords, h1, mask)
    ref = reference(h2)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(ours)
    (ours * g).sum().backward()
    grads = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    (ref * g).sum().backward()
    for a, b in zip(grads, (p.grad for p in block.parameters()), strict=True):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h1.grad, h2.grad, atol=1e-5, rtol=1e-4)
    block.eval()
    with torch.no_grad():
        idx, valid = knn(coords, mask, block.k)
        packed = block._aggregate_packed(x, idx, valid)
        dense = block._aggregate_dense(x, idx, valid)
    torch.testing.assert_close(packed[mask], dense[mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pair_norm", ["batch", "layer"])
def test_part_packed_pair_embedding_equals_the_dense_one_in_training(pair_norm):
    """Training runs the pair MLP once per unordered real pair; the dense path (ONNX,
    and training with ``pack_pairs`` off) must give the same bias, statistics and grads."""
    from fivesigma.tasks.jets.models.part import ParT

    torch.manual_seed(2)
    net = build_model("part", F, 2, {**TINY["part"], "pair_norm": pair_norm}).train()
    _, v, mask = make_batch([9, 5, 1, 0, 7], 11, seed=5)
    dense_net = build_model("part", F, 2, {**TINY["part"], "pair_norm": pair_norm}).train()
    dense_net.load_state_dict(net.state_dict())
    packed = net.interaction_bias(v, mask)  # (B, H, P, P)
    try:
        ParT.pack_pairs = False
        dense = dense_net.interaction_bias(v, mask)
    finally:
        ParT.pack_pairs = True
    pair_mask = (mask.unsqueeze(2) & mask.unsqueeze(1)).unsqueeze(1)
    assert torch.all(packed[~pair_mask.expand_as(packed)] == 0)
    torch.testing.assert_close(packed, dense, atol=1e-5, rtol=1e-5)
    assert torch.equal(packed, packed.transpose(2, 3))  # ij and ji share one evaluation
    for a, b in zip(net.pair_embed.buffers(), dense_net.pair_embed.buffers(), strict=True):
        torch.testing.assert_close(a, b)  # the same running statistics
    if pair_norm == "batch":  # as the reference: each unordered pair, diagonal included, once
        fts, pairs = pairwise_lv_fts(v, mask)
        once = fts[pairs & torch.ones(11, 11, dtype=torch.bool).tril()]  # (N, 4)
        input_norm = net.pair_embed[0]
        torch.testing.assert_close(input_norm.running_mean, 0.1 * once.mean(0))
    g = torch.randn_like(dense)
    (packed * g).sum().backward()
    (dense * g).sum().backward()
    for (name, a), b in zip(
        net.pair_embed.named_parameters(), dense_net.pair_embed.parameters(), strict=True
    ):
        assert a.grad is not None and a.grad.abs().sum() > 0
        torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-4, msg=name)
    # inference (running estimates) takes the packed path too, unless traced for ONNX
    net.eval(), dense_net.eval()
    with torch.no_grad():
        packed = net.interaction_bias(v, mask)
        try:
            ParT.pack_pairs = False
            dense = dense_net.interaction_bias(v, mask)
        finally:
            ParT.pack_pairs = True
    torch.testing.assert_close(packed, dense, atol=1e-5, rtol=1e-5)


def test_cnn1d_max_and_mean_pool_respects_the_mask():
    net = build_model("cnn1d", F, 3, {**TINY["cnn1d"], "pool": "max+mean"}).eval()
    plain = build_model("cnn1d", F, 3, TINY["cnn1d"])
    assert net.n_parameters() == plain.n_parameters() + 8 * 8  # the head sees 2 x 8 inputs
    x, v, mask = make_batch([10, 4, 1, 0], 10, seed=4)
    pad = torch.nn.functional.pad
    with torch.no_grad():
        ref = net(x, v, mask)
        padded = net(pad(x, (0, 0, 0, 5)), pad(v, (0, 0, 0, 5)), pad(mask, (0, 5)))
        alone = net(x[1:2, :4], v[1:2, :4], mask[1:2, :4])
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(padded, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone, ref[1:2], atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------
# pairwise features


def test_pairwise_features_match_hand_computation_with_vector():
    vector = pytest.importorskip("vector")
    # phi on both sides of +-pi: the wrapped dphi is 2*pi - 6, not 6
    a = vector.obj(pt=40.0, eta=0.3, phi=3.0, mass=0.5)
    b = vector.obj(pt=15.0, eta=-0.2, phi=-3.0, mass=1.2)
    v = torch.tensor(
        [[[a.px, a.py, a.pz, a.E], [b.px, b.py, b.pz, b.E], [0, 0, 0, 0]]], dtype=torch.float64
    )
    mask = torch.tensor([[True, True, False]])
    fts, pair_mask = pairwise_lv_fts(v, mask)

    d_rap = a.rapidity - b.rapidity
    d_phi = (a.phi - b.phi + math.pi) % (2 * math.pi) - math.pi
    assert abs(abs(d_phi) - (2 * math.pi - 6.0)) < 1e-12
    dr = math.hypot(d_rap, d_phi)
    ptmin = min(a.pt, b.pt)
    expected = [
        math.log(ptmin * dr),
        math.log(ptmin / (a.pt + b.pt)),
        math.log(dr),
        math.log((a + b).mass2),
    ]
    for i, j in ((0, 1), (1, 0)):
        np.testing.assert_allclose(fts[0, i, j].numpy(), expected, rtol=1e-9, atol=1e-9)
    # pairs with the padded particle are zero and masked
    assert torch.all(fts[0, 2] == 0) and torch.all(fts[0, :, 2] == 0)
    assert pair_mask[0].tolist() == [
        [True, True, False],
        [True, True, False],
        [False, False, False],
    ]


def test_pairwise_features_are_finite_for_padding_and_collinear_pairs():
    v = torch.tensor([[[10.0, 0, 0, 10.0], [5.0, 0, 0, 5.0], [0, 0, 0, 0]]])  # collinear, massless
    fts, _ = pairwise_lv_fts(v, torch.tensor([[True, True, False]]))
    assert torch.isfinite(fts).all()
    # dR = 0 and m^2 = 0 are clamped at eps = 1e-8 as in ParT
    assert fts[0, 0, 1, 2].item() == pytest.approx(math.log(1e-8), rel=1e-5)
    assert fts[0, 0, 1, 3].item() == pytest.approx(math.log(1e-8), rel=1e-5)


# --------------------------------------------------------------------------------------
# kNN


def test_knn_picks_the_true_nearest_real_neighbours_and_never_padding():
    g = torch.Generator().manual_seed(0)
    coords = torch.randn(3, 10, 2, generator=g)
    mask = torch.arange(10).unsqueeze(0) < torch.tensor([[10], [6], [2]])
    coords = torch.where(mask.unsqueeze(-1), coords, 0.0)  # padded points sit at the origin
    k = 4
    idx, valid = knn(coords, mask, k)
    assert idx.shape == valid.shape == (3, 10, k)
    c = coords.numpy()
    for b, n in enumerate((10, 6, 2)):
        for i in range(n):
            d = np.linalg.norm(c[b, :n] - c[b, i], axis=1)
            d[i] = np.inf
            expected = set(np.argsort(d)[: min(k, n - 1)].tolist())
            got = set(idx[b, i][valid[b, i]].tolist())
            assert got == expected
            assert all(j < n and j != i for j in got)
        assert not valid[b, n:].any()  # padded particles have no neighbours


def test_knn_with_k_larger_than_the_jet_does_not_crash():
    coords = torch.randn(2, 3, 2)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    idx, valid = knn(coords, mask, 16)
    assert valid.sum(dim=2).tolist() == [[2, 2, 2], [0, 0, 0]]
    assert idx.max() < 3
    net = build_model("particlenet", F, 2, {"k": 16, "conv": ((8,), (8,)), "fc": ()}).eval()
    x, v, m = make_batch([3, 1], 3)
    assert torch.isfinite(net(x, v, m)).all()


def test_gather_neighbours_and_masked_pooling():
    h = torch.arange(12.0).reshape(1, 4, 3)
    idx = torch.tensor([[[1, 3], [0, 0], [2, 1], [3, 3]]])
    out = gather_neighbours(h, idx)
    assert out.shape == (1, 4, 2, 3)
    assert torch.equal(out[0, 2, 1], h[0, 1]) and torch.equal(out[0, 0, 1], h[0, 3])
    mask = torch.tensor([[True, False, True, False]])
    assert masked_sum(h, mask).tolist() == [[6.0, 8.0, 10.0]]
    assert masked_mean(h, mask).tolist() == [[3.0, 4.0, 5.0]]
    assert masked_max(-h, mask).tolist() == [[0.0, -1.0, -2.0]]


# --------------------------------------------------------------------------------------
# sizes, parameter counts, configs


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("size", ["default", "paper"])
def test_parameter_counts_match_sum_of_numel(name, size):
    net = build_model(name, 7, 2, size=size)
    n = net.n_parameters()
    assert n == sum(p.numel() for p in net.parameters()) > 0
    print(f"{name} {size}: {n} parameters")


def test_paper_pfn_has_the_published_layer_sizes():
    f, c = 7, 2
    phi, fn = (100, 100, 256), (100, 100, 100)
    widths = [f, *phi, *fn, c]
    expected = sum(a * b + b for a, b in itertools.pairwise(widths))
    assert build_model("pfn", f, c, size="paper").n_parameters() == expected


def test_paper_sizes_follow_the_references():
    pn = make_config("particlenet", 7, size="paper")
    assert pn.k == 16 and pn.conv == ((64, 64, 64), (128, 128, 128), (256, 256, 256))
    assert pn.fc == (256,) and pn.dropout == 0.1
    part = make_config("part", 7, size="paper")
    assert (part.embed_dims[-1], part.num_heads, part.num_layers, part.num_cls_layers) == (
        128,
        8,
        8,
        2,
    )
    assert part.pair_embed_dims == (64, 64, 64)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("part", {"num_heads": 3}),
        ("particlenet", {"coord_indices": (0, 9)}),
        ("particlenet", {"k": 0}),
        ("particlenet", {"norm": "instance"}),
        ("part", {"pair_norm": "group"}),
        ("cnn1d", {"kernel_size": 4}),
        ("cnn1d", {"pool": "sum"}),
        ("pfn", {"phi": ()}),
        ("pfn", {"dropout": 1.5}),
        ("pfn", {"latent": 3}),
    ],
)
def test_bad_model_configs_raise_one_line_model_error(name, params):
    with pytest.raises(ModelError) as err:
        build_model(name, F, 2, params)
    assert "\n" not in str(err.value)


def test_unknown_model_name_lists_the_accepted_ones():
    with pytest.raises(FivesigmaError, match="accepted: cnn1d, pfn, particlenet, part"):
        build_model("particle_net", F, 2)
