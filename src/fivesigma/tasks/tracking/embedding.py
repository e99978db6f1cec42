"""Metric-learning graph construction: embed every hit with an MLP so that consecutive
hits of a particle land close together, then link the neighbours in the embedding.

The Exa.TrkX recipe (Ju et al., arXiv:2103.06995), on CPU:

- **embedding**: an MLP maps the hit features of :func:`embedding_features` (r, cos phi,
  sin phi, z, eta, scaled to O(1); cos/sin so that phi has no seam at ±pi; and the
  incidence the hit's cluster of cells measures along the module's u and v, which tells
  which way the particle went) to ``embedding_dim`` coordinates;
- **training**: a hinge loss, ``d^2`` on the truth edges (attract) and
  ``max(0, margin - d)^2`` on *random* pairs and *hard negatives*: the ``knn_train``
  nearest neighbours of every hit in the current embedding that are not truth edges
  (repel).  Pairs of hits of one particle that are not consecutive are negatives too
  (``same_particle_negatives=True``): the graph should hold the truth edges, and on toy
  events this gave the same efficiency with a purer graph than leaving them out of the
  loss.  Every truth edge weighs ``n_negatives / n_truth``, so both sides count alike.
  Each step sees one event, rotated by a random angle in phi (the detector is symmetric
  in phi, and a few training events then cover every direction);
- **building**: a kNN query of at most ``knn`` neighbours within ``radius`` in the
  embedding with :class:`scipy.spatial.cKDTree`; the pairs are directed inner to outer
  and de-duplicated by :func:`~fivesigma.tasks.tracking.hits.orient_edges`.

Measured (trained on 16 simulated mu = 20 events of ``fivesigma generate tracks``,
defaults but ``epochs=30``; 3 min on one loaded CPU core): on the TrackML test event
``event000000001`` (5527 hits) 7.6 edges per hit, edge efficiency 0.953 (0.991 for
particles with pT > 1 GeV), purity 0.096, built in 0.2 s; on a held-out simulated event
(15k hits) 9.1 edges per hit, efficiency 0.92 (0.94 above 1 GeV).  ``knn=32`` raises
the efficiency to 0.96 (sim) / 0.962 (TrackML) at 15.5 / 9.9 edges per hit.

Limitation: at pile-up-200 density (7 simulated mu = 20 events overlaid, 118k hits) the
same model finds only 63% of the truth edges (74% above 1 GeV) at 9.3 edges per hit
(built in 1.5 s on two cores); ``knn=64`` reaches 86% at 35 edges per hit.  Training on
such overlays did not help: one hit's position does not tell which way its track goes,
so in a dense event many other hits are as close in the embedding.  With the cluster
shapes as inputs, trained on four simulated mu = 200 events (3.6 minutes), it still finds
only 56% at 9.6 edges per hit on a fresh mu = 200 event (82% at ``knn=64``, 95% at
``knn=256`` and 145 edges per hit).  At the density of a 5% TrackML subset the cluster
shapes raised the real event's efficiency from 0.956 to 0.973 (docs/tracking.md).

:meth:`MetricLearningGraph.evaluate` reports the graph's edge efficiency (truth edges
found), purity (edges that are truth edges) and size.

>>> mlg = MetricLearningGraph(epochs=2).fit(train_hits)       # doctest: +SKIP
>>> edge_index = mlg.build(hits)                              # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fivesigma.errors import ConfigError, DataError, ModelError
from fivesigma.tasks.tracking.hits import Hits, orient_edges

if TYPE_CHECKING:
    import torch

__all__ = [
    "BUNDLE_KIND",
    "EMBEDDING_FEATURES",
    "MetricLearningGraph",
    "MetricLearningSettings",
    "embedding_features",
    "graph_metrics",
]

#: the ``kind`` of a MetricLearningGraph's model bundle
BUNDLE_KIND = "tracking-metric-learning"
#: the embedding MLP's input columns
EMBEDDING_FEATURES: tuple[str, ...] = ("r", "cos_phi", "sin_phi", "z", "eta", "cu", "cv")


def embedding_features(hits: Hits) -> np.ndarray:
    """float32 ``(n_hits, 7)``: r/1000, cos phi, sin phi, z/1000, eta/3 and the cluster's
    asinh(tan_u)/3, asinh(tan_v)/3 (0 where the cluster tells nothing, as
    :func:`~fivesigma.tasks.tracking.features.cluster_features`)."""
    from fivesigma.tasks.tracking.features import cluster_features

    r, phi = hits.r, hits.phi
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(hits.z / r)
    eta = np.where(np.isfinite(eta), eta, np.sign(hits.z) * 10.0)
    cluster = cluster_features(hits)
    out = np.stack(
        [r / 1000.0, np.cos(phi), np.sin(phi), hits.z / 1000.0, eta / 3.0, *cluster.T], axis=1
    )
    return out.astype(np.float32)


def graph_metrics(hits: Hits, edge_index: np.ndarray) -> dict[str, float]:
    """:func:`fivesigma.tasks.tracking.graph.graph_metrics` of a candidate graph, plus
    ``same_particle`` (graph edges joining hits of one particle / graph edges) and
    ``efficiency_pt1`` (the efficiency for truth edges of particles with pT > 1 GeV)."""
    from fivesigma.tasks.tracking.graph import graph_metrics as shared_metrics

    edges = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
    out = shared_metrics(hits, edges)
    out["same_particle"] = (
        float(hits.same_particle(edges).mean()) if edges.shape[1] else float("nan")
    )
    if hits.particle_pt is not None:
        out["efficiency_pt1"] = shared_metrics(hits, edges, pt_min=1.0)["efficiency"]
    return out


@dataclass
class MetricLearningSettings:
    """Everything that defines a :class:`MetricLearningGraph` (JSON-serialisable).

    Network: ``embedding_dim``, ``hidden``, ``layers`` (Linear layers of the MLP),
    ``layer_norm``.  Loss: ``margin`` (negatives closer than this are repelled),
    ``random_pairs`` (random negative pairs per truth edge), ``knn_train`` (hard
    negatives per hit), ``same_particle_negatives``, ``rotate`` (random phi rotation per
    step).  Training: ``epochs``, ``lr``, ``weight_decay``, ``scheduler``,
    ``early_stopping_patience``, ``seed``, ``num_threads``.  Building: ``radius`` and
    ``knn`` (at most this many neighbours per hit within radius).
    """

    embedding_dim: int = 8
    hidden: int = 128
    layers: int = 4
    layer_norm: bool = True
    margin: float = 0.1
    random_pairs: int = 4
    knn_train: int = 8
    same_particle_negatives: bool = True
    rotate: bool = True
    epochs: int = 50
    lr: float = 3e-3
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    early_stopping_patience: int | None = 10
    seed: int = 0
    num_threads: int | None = None
    radius: float = 0.1
    knn: int = 16

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MetricLearningSettings:
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(
                f"MetricLearningGraph has no setting {unknown[0]!r}; accepted: {', '.join(names)}"
            )
        settings = cls(**values)
        settings.validate()
        return settings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Raise a one-line :class:`ConfigError` for an impossible setting."""
        from fivesigma.training.params import SCHEDULERS

        what = "MetricLearningGraph"
        for name, least in (
            ("embedding_dim", 1),
            ("hidden", 1),
            ("layers", 1),
            ("random_pairs", 0),
            ("knn_train", 0),
            ("epochs", 1),
            ("seed", 0),
            ("knn", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{what} {name} must be an integer >= {least}, got {value!r}")
        for name in ("early_stopping_patience", "num_threads"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(f"{what} {name} must be an integer >= 1 or null, got {value!r}")
        for name, low in (("margin", 0.0), ("radius", 0.0), ("lr", 0.0)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (low < value < math.inf)
            ):
                raise ConfigError(f"{what} {name} must be a number > {low}, got {value!r}")
        wd = self.weight_decay
        if isinstance(wd, bool) or not isinstance(wd, int | float) or not 0 <= wd < math.inf:
            raise ConfigError(f"{what} weight_decay must be a number >= 0, got {wd!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(
                f"{what} scheduler {self.scheduler!r} is not known; accepted: {', '.join(SCHEDULERS)}"
            )
        for name in ("layer_norm", "same_particle_negatives", "rotate"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"{what} {name} must be true or false, got {getattr(self, name)!r}"
                )


class _Events:
    """The training events as the trainer's loader: one dict of tensors per event, in a
    seeded random order every epoch."""

    def __init__(self, items: list[dict[str, Any]], seed: int, shuffle: bool) -> None:
        self.items = items
        self.rng = np.random.default_rng(seed)
        self.shuffle = shuffle

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        order = self.rng.permutation(len(self.items)) if self.shuffle else range(len(self.items))
        for i in order:
            yield self.items[i]


def _pair_keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(a, b) * n + np.maximum(a, b)


class MetricLearningGraph:
    """Graph construction by metric learning (see the module docstring).

    ``MetricLearningGraph(**settings)`` takes the :class:`MetricLearningSettings` by
    name.  ``fit(events)`` trains on events with truth, ``build(hits)`` gives the
    candidate edges ``(2, E)`` int64, inner to outer, ``evaluate(hits)`` their
    :func:`graph_metrics`.

    Fitted attributes: ``net_`` (the embedding MLP, eval mode), ``history_``,
    ``fit_seconds_``.
    """

    def __init__(self, **settings: Any) -> None:
        self.settings = MetricLearningSettings.from_dict(settings)

    def _new_net(self) -> torch.nn.Module:
        import torch

        from fivesigma.nn.interaction import edge_mlp

        s = self.settings
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s.seed)
            return edge_mlp(
                len(EMBEDDING_FEATURES),
                s.hidden,
                s.embedding_dim,
                s.layers,
                s.layer_norm,
                "relu",
                output_activation=False,
            )

    @staticmethod
    def _check_events(events: Any, role: str) -> list[Hits]:
        if isinstance(events, Hits) or not isinstance(events, Sequence):
            raise DataError(f"{role} events must be a list of Hits, got {type(events).__name__}")
        out = list(events)
        if not out:
            raise DataError(f"{role} events: the list is empty; give at least one event")
        for i, h in enumerate(out):
            if not isinstance(h, Hits):
                raise DataError(f"{role} event {i} is a {type(h).__name__}, not Hits")
            if not h.has_truth:
                raise DataError(
                    f"{role} event {i} (event {h.event_id}) has no truth; training needs it"
                )
            if h.truth_edges().shape[1] == 0:
                raise DataError(
                    f"{role} event {i} (event {h.event_id}) has no truth edges (no particle "
                    "with two hits); there is nothing to attract"
                )
        return out

    @staticmethod
    def _event_item(hits: Hits) -> dict[str, Any]:
        import torch

        return {
            "x": torch.from_numpy(embedding_features(hits)),
            "truth": torch.from_numpy(hits.truth_edges()),
            "pid": torch.from_numpy(hits.particle_id.astype(np.int64)),
        }

    def _objective(self) -> Any:
        import torch

        from fivesigma.core import extras

        cKDTree = extras.scipy("spatial").cKDTree
        s = self.settings

        def objective(model: torch.nn.Module, batch: dict[str, Any]) -> tuple:
            x, truth, pid = batch["x"], batch["truth"], batch["pid"]
            n = x.shape[0]
            if s.rotate and model.training:
                # the detector is symmetric in phi: a random rotation per step
                angle = torch.rand(()) * (2 * math.pi)
                c, sn = torch.cos(angle), torch.sin(angle)
                cos_phi = x[:, 1] * c - x[:, 2] * sn
                sin_phi = x[:, 1] * sn + x[:, 2] * c
                x = torch.cat([x[:, :1], cos_phi[:, None], sin_phi[:, None], x[:, 3:]], dim=1)
            emb = model(x)  # (N, d)
            pairs = [truth]
            if s.random_pairs:
                k = s.random_pairs * truth.shape[1]
                pairs.append(torch.randint(0, n, (2, k)))
            if s.knn_train:
                k = min(s.knn_train + 1, n)
                tree = cKDTree(emb.detach().cpu().numpy())
                _, nbr = tree.query(emb.detach().cpu().numpy(), k=k)
                nbr = np.asarray(nbr).reshape(n, k)[:, 1:]
                rows = np.repeat(np.arange(n), nbr.shape[1])
                pairs.append(torch.from_numpy(np.stack([rows, nbr.reshape(-1)])))
            pairs_t = torch.cat(pairs, dim=1)
            a, b = pairs_t[0], pairs_t[1]
            keys = _pair_keys(a.numpy(), b.numpy(), n)
            t_keys = np.unique(_pair_keys(truth[0].numpy(), truth[1].numpy(), n))
            is_true = torch.from_numpy(np.isin(keys, t_keys))
            valid = a != b
            if not s.same_particle_negatives:
                # non-consecutive hits of one particle: neither attracted nor repelled
                same = (pid[a] == pid[b]) & (pid[a] != 0)
                valid &= is_true | ~same
            d2 = (emb[a] - emb[b]).pow(2).sum(dim=1)
            d = torch.sqrt(d2 + 1e-12)
            loss = torch.where(is_true, d2, torch.relu(s.margin - d).pow(2))
            # balance: the truth edges weigh as much in total as the negatives
            n_pos = (is_true & valid).sum().clamp(min=1)
            n_neg = (~is_true & valid).sum().clamp(min=1)
            weight = torch.where(is_true, n_neg / n_pos, torch.ones_like(d2)) * valid
            return loss, weight

        return objective

    def fit(
        self,
        events: Sequence[Hits],
        valid: Sequence[Hits] | None = None,
        progress: bool = False,
    ) -> MetricLearningGraph:
        """Train the embedding on ``events`` (Hits with truth); ``valid`` events (if
        given) for early stopping.  Returns ``self``."""
        from fivesigma.training.trainer import Trainer, TrainerConfig

        s = self.settings
        s.validate()
        train_events = self._check_events(events, "training")
        valid_events = self._check_events(valid, "validation") if valid else None
        t0 = time.perf_counter()
        train = _Events([self._event_item(h) for h in train_events], s.seed, shuffle=True)
        valid_items = (
            _Events([self._event_item(h) for h in valid_events], s.seed, shuffle=False)
            if valid_events
            else None
        )
        net = self._new_net()
        trainer = Trainer(
            TrainerConfig(
                epochs=s.epochs,
                batch_size=1,
                lr=s.lr,
                weight_decay=s.weight_decay,
                scheduler=s.scheduler,
                early_stopping_patience=s.early_stopping_patience,
                seed=s.seed,
                num_threads=s.num_threads,
                progress=progress,
            )
        )
        self.history_ = trainer.fit(net, train, valid_items, objective=self._objective())
        self.net_ = net.eval()
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise ModelError(
                "MetricLearningGraph is not fitted yet; call fit(events) or "
                "MetricLearningGraph.load(directory) first"
            )

    def embed(self, hits: Hits) -> np.ndarray:
        """float32 ``(n_hits, embedding_dim)``: the embedding of every hit."""
        import torch

        from fivesigma.training.inputs import torch_threads

        self._check_fitted()
        if not isinstance(hits, Hits):
            raise DataError(f"embed needs Hits, got {type(hits).__name__}")
        if len(hits) == 0:
            raise DataError(f"event {hits.event_id}: no hits; a graph needs at least one hit")
        x = torch.from_numpy(embedding_features(hits))
        with torch.inference_mode(), torch_threads(self.settings.num_threads):
            return self.net_(x).numpy().astype(np.float32)

    def build(self, hits: Hits) -> np.ndarray:
        """The candidate edges of ``hits``: int64 ``(2, E)``, inner to outer, unique.

        Every hit is linked to its at most ``knn`` nearest neighbours within ``radius`` in
        the embedding (a kNN query of :class:`scipy.spatial.cKDTree`).
        """
        from fivesigma.core import extras

        cKDTree = extras.scipy("spatial").cKDTree
        emb = self.embed(hits)
        n = len(hits)
        k = min(self.settings.knn + 1, n)  # +1: the query returns the hit itself first
        workers = self.settings.num_threads or -1
        dist, nbr = cKDTree(emb).query(
            emb, k=k, distance_upper_bound=self.settings.radius, workers=workers
        )
        nbr = np.asarray(nbr).reshape(n, k)
        dist = np.asarray(dist).reshape(n, k)
        rows = np.repeat(np.arange(n), k).reshape(n, k)
        ok = np.isfinite(dist) & (nbr != rows)  # missing neighbours come back as inf / n
        return orient_edges(hits, np.stack([rows[ok], nbr[ok]]))

    def evaluate(self, hits: Hits) -> dict[str, float]:
        """:func:`graph_metrics` of :meth:`build` on ``hits`` (with truth), plus the time
        the build took (``build_seconds``)."""
        t0 = time.perf_counter()
        edges = self.build(hits)
        seconds = time.perf_counter() - t0
        return {**graph_metrics(hits, edges), "build_seconds": seconds}

    # -- persistence -----------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the model as a bundle directory (safetensors + JSON; nothing pickled)."""
        from fivesigma.core.bundle import Bundle, save_bundle

        self._check_fitted()
        history = getattr(self, "history_", None)
        bundle = Bundle(
            kind=BUNDLE_KIND,
            features=list(EMBEDDING_FEATURES),
            params=self.settings.to_dict(),
            training={"history": history.to_dict() if history is not None else None},
            arrays={
                f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()
            },
        )
        return save_bundle(bundle, directory)

    @classmethod
    def load(cls, directory: str | Path) -> MetricLearningGraph:
        """Read a bundle written by :meth:`save`."""
        import torch

        from fivesigma.core.bundle import load_bundle
        from fivesigma.training.estimator import weights_mismatch
        from fivesigma.training.trainer import TrainHistory

        bundle = load_bundle(directory)
        if bundle.kind != BUNDLE_KIND:
            raise ModelError(
                f"model bundle '{directory}' holds a {bundle.kind!r} model, not {BUNDLE_KIND!r}"
            )
        if bundle.features != list(EMBEDDING_FEATURES):
            raise ModelError(
                f"model bundle '{directory}' was trained on other hit features "
                f"({bundle.features}); retrain it"
            )
        try:
            est = cls(**bundle.params)
        except ConfigError as err:
            raise ModelError(f"model bundle '{directory}': {err}") from None
        net = est._new_net()
        state = {
            k[len("net.") :]: torch.from_numpy(np.array(a))
            for k, a in bundle.arrays.items()
            if k.startswith("net.")
        }
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise ModelError(
                f"model bundle '{directory}': the weights do not match the network "
                f"({weights_mismatch(err)})"
            ) from None
        est.net_ = net.eval()
        history = bundle.training.get("history")
        est.history_ = TrainHistory.from_dict(history) if history else None
        return est
