"""nn.flows: the shared spline flow is zuko's NSF, faster."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
zuko = pytest.importorskip("zuko")

from fivesigma.nn.flows import spline_flow  # noqa: E402


@pytest.mark.parametrize("passes", [None, 2])
def test_spline_flow_is_zukos_nsf(passes) -> None:
    """The same parameters give zuko's NSF density, and draws invert to their noise
    (coupling and fully autoregressive)."""
    ours = spline_flow(3, context=2, bins=6, transforms=2, hidden=(16, 16), passes=passes)
    ref = zuko.flows.NSF(
        3, context=2, bins=6, transforms=2, hidden_features=(16, 16), passes=passes
    )
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ours.parameters():  # away from the near-identity initialisation
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    ref.load_state_dict(ours.state_dict())
    c = torch.randn(500, 2, generator=gen)
    x = 2 * torch.randn(500, 3, generator=gen)
    with torch.no_grad():
        assert torch.allclose(ours(c).log_prob(x), ref(c).log_prob(x), atol=1e-4)
        dist = ours(c)
        z = torch.randn(500, 3, generator=gen)
        assert torch.allclose(dist.transform(dist.transform.inv(z)), z, atol=1e-3)


def test_spline_flow_learns_a_conditional_gaussian() -> None:
    """x | c ~ N(2c, 0.5^2): maximum likelihood recovers the mean and width."""
    gen = torch.Generator().manual_seed(1)
    c = torch.rand(4000, 1, generator=gen) * 2 - 1
    x = 2 * c + 0.5 * torch.randn(4000, 1, generator=gen)
    torch.manual_seed(1)
    flow = spline_flow(1, context=1, transforms=2, hidden=(32, 32), passes=2)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    for _ in range(300):
        idx = torch.randint(0, 4000, (512,), generator=gen)
        loss = -flow(c[idx]).log_prob(x[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        draws = flow(torch.full((4000, 1), 0.5)).sample()
    assert float(draws.mean()) == pytest.approx(1.0, abs=0.08)
    assert float(draws.std()) == pytest.approx(0.5, abs=0.08)
