"""The trigger task's stages: data, training (float and QAT), firmware, rates.

Each ``build_*`` function trains one network family and returns a :class:`Built`: the
float model, the QAT model at the deployed width, the firmware (hls4ml compiled
emulation) when enabled, the per-variant scores on the evaluation events, and numbers.
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fivesigma.errors import DataError
from fivesigma.export.fixed_point import FixedPoint, FixedPointReference
from fivesigma.tasks.trigger import models as M
from fivesigma.tasks.trigger.config import TriggerSettings

__all__ = ["Built", "build_axol1tl", "build_cicada", "build_jet_tagger", "load_stream"]


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


@dataclass
class Built:
    """One trained network family."""

    name: str
    qat: Any  # the QAT torch model at the deployed width
    spec: M.QuantSpec
    preprocessing: dict[str, Any]
    input_shape: tuple[int, ...]
    firmware: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # variant -> sample
    history: dict[str, Any] = field(default_factory=dict)
    scan: list[dict[str, Any]] = field(default_factory=list)


def _split(n: int, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    edges = np.round(np.cumsum((0.0, *fractions)) * n).astype(int)
    edges[-1] = n
    return [order[a:b] for a, b in itertools.pairwise(edges)]


def _firmware(qat: Any, shape: tuple[int, ...], s: TriggerSettings) -> tuple[Any, float]:
    from fivesigma.export.hls import Firmware, HLSSettings

    hls = {k: v for k, v in s.hls.items() if k != "enabled"}
    t0 = time.perf_counter()
    firmware = Firmware.convert(qat, shape, HLSSettings(**hls))
    firmware.compile()
    return firmware, time.perf_counter() - t0


def _emulation_check(firmware: Any, reference: FixedPointReference, x: np.ndarray) -> dict:
    """hls4ml's C++ emulation against the numpy fixed-point reference, event by event."""
    got = firmware.predict(x)
    want = reference.predict(x)
    differ = np.any(got != want, axis=1)
    return {
        "events": len(x),
        "events_differing": int(differ.sum()),
        "bit_exact": bool(not differ.any()),
        "max_abs_difference": float(np.max(np.abs(got - want))) if len(x) else 0.0,
        "outputs": got,
    }


def _overflow(reference: FixedPointReference) -> dict[str, int]:
    return {str(k): int(v) for k, v in reference.overflows.items()}


# --------------------------------------------------------------------------------------
# The jet tagger


def load_jets(s: TriggerSettings, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, 16), class index (N,)) of generated jets, classes g, q, W, Z, t."""
    from fivesigma.generate import cached_sample
    from fivesigma.io.jets import read_jets
    from fivesigma.tasks.trigger.jet_features import jet_features

    if s.jet_files:
        jets = read_jets(s.jet_files)
        label = np.asarray(jets.label)
        mapping = {1: 0, 0: 1, 5: 2, 6: 3, 4: 4}
        keep = np.isin(label, list(mapping))
        if not keep.any():
            raise DataError(
                f"jet_files hold no jets with labels 0, 1, 4, 5 or 6 (light quark, gluon, "
                f"top, W, Z); found {sorted(set(label.tolist()))[:10]}"
            )
        y = np.vectorize(mapping.get)(label[keep]).astype(np.int64)
        return jet_features(jets.constituents[keep]), y
    xs, ys = [], []
    for process, mapping in (
        ("qcd", {1: 0, 0: 1}),  # jets-generator labels: 0 light quark, 1 gluon
        ("w", {5: 2}),
        ("z", {6: 3}),
        ("top", {4: 4}),
    ):
        _say(progress, f"jet tagger: {s.jets_per_class} {process} jets (cached) ...")
        sample = cached_sample(
            "jets",
            events=s.jets_per_class,
            seed=s.seed,
            jobs=s.jobs,
            progress=progress,
            options={"process": process},
        )
        jets = read_jets(list(map(str, sample.files.values())))
        label = np.asarray(jets.label)
        keep = np.isin(label, list(mapping))
        xs.append(jet_features(jets.constituents[keep]))
        ys.append(np.vectorize(mapping.get)(label[keep]))
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def _standardise(train: np.ndarray) -> dict[str, list[float]]:
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    return {"mean": mean.tolist(), "scale": np.where(std > 0, std, 1.0).tolist()}


def _apply_standard(x: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    return ((x - np.asarray(p["mean"])) / np.asarray(p["scale"])).astype(np.float32)


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == y))


def build_jet_tagger(s: TriggerSettings, progress: bool) -> Built:
    """Float tagger, QAT taggers over the width scan, firmware at the deployed width."""
    from fivesigma.export.hls import HLSSettings, resources
    from fivesigma.nn.quant import nonzero_weights

    x, y = load_jets(s, progress)
    tr, va, te = _split(len(y), (0.6, 0.2, 0.2), s.seed)
    pre = _standardise(x[tr])
    xs = _apply_standard(x, pre)
    in_type = FixedPoint(s.input_width, s.input_integer or 5)
    t0 = time.perf_counter()
    torch_float = M.float_mlp(M.TAGGER_SIZES)
    hist = M.train_classifier(
        torch_float, (xs[tr], y[tr]), (xs[va], y[va]), epochs=s.epochs, patience=s.patience,
        seed=s.seed,
    )  # fmt: skip
    acc_float = _accuracy(M.predict(torch_float, xs[te]), y[te])
    _say(progress, f"jet tagger float: accuracy {acc_float:.4f} ({time.perf_counter() - t0:.0f} s)")
    hls = HLSSettings(**{k: v for k, v in s.hls.items() if k != "enabled"})
    scan, nominal = [], None
    for width in s.widths:
        spec = M.QuantSpec(width, s.integer, in_type, s.sparsity)
        qat = M.quant_tagger(spec)
        qat.load_state_dict(torch_float.state_dict(), strict=False)  # start from float
        t0 = time.perf_counter()
        qhist = M.train_classifier(
            qat, (xs[tr], y[tr]), (xs[va], y[va]), epochs=max(5, s.epochs // 2),
            patience=s.patience, seed=s.seed + width, sparsity=s.sparsity,
        )  # fmt: skip
        ref = FixedPointReference.from_model(qat)
        logits = ref.predict(xs[te])
        res = resources(qat, hls)
        row = {
            "width": width,
            "accuracy": _accuracy(logits, y[te]),
            "accuracy_ratio": _accuracy(logits, y[te]) / acc_float,
            "overflows": _overflow(ref),
            "nonzero_weights": nonzero_weights(qat)["nonzero"],
            "resources": _resource_summary(res),
            "train_seconds": time.perf_counter() - t0,
        }
        scan.append(row)
        _say(progress, f"jet tagger QAT {width:>2} bits: accuracy {row['accuracy']:.4f} "
                       f"({row['accuracy_ratio']:.4f} of float)")  # fmt: skip
        if width == s.nominal_width:
            nominal = (qat, spec, logits, qhist, ref)
    assert nominal is not None
    qat, spec, logits, qhist, ref = nominal
    built = Built(
        name="jet_tagger",
        qat=qat,
        spec=spec,
        preprocessing={"standardise": pre, "features": _jet_feature_names()},
        input_shape=(16,),
        history={"float": hist, "qat": qhist},
        scan=scan,
    )
    built.metrics = {
        "classes": list(M.JET_CLASSES),
        "jets": {"train": len(tr), "valid": len(va), "test": len(te)},
        "accuracy_float": acc_float,
        "accuracy_qat": _accuracy(logits, y[te]),
        "width": s.nominal_width,
        "types": spec.to_dict(),
        "layers": ref.describe(),
    }
    if s.hls.get("enabled", True):
        firmware, seconds = _firmware(qat, (16,), s)
        check = _emulation_check(firmware, ref, xs[te])
        built.firmware = firmware
        built.metrics["accuracy_emulated"] = _accuracy(check.pop("outputs"), y[te])
        built.metrics["emulation"] = check
        built.metrics["compile_seconds"] = seconds
        built.metrics["compile_cache_hit"] = bool(getattr(firmware, "cache_hit", False))
    built.metrics["resources"] = resources(qat, hls)
    return built


def _jet_feature_names() -> list[str]:
    from fivesigma.tasks.trigger.jet_features import JET_FEATURES

    return list(JET_FEATURES)


def _resource_summary(res: dict[str, Any]) -> dict[str, Any]:
    total = res.get("total", res)
    keys = ("multiplications", "nonzero_weights", "weight_bits", "dsp", "lut", "latency_cycles",
            "latency_ns", "interval_cycles")  # fmt: skip
    return {k: total[k] for k in keys if k in total}


# --------------------------------------------------------------------------------------
# The L1 stream and the anomaly triggers


@dataclass
class Stream:
    """Zero-bias and signal tables of the L1 stream, and the zero-bias split."""

    zerobias: dict[str, np.ndarray]
    signals: dict[str, dict[str, np.ndarray]]
    train: np.ndarray
    valid: np.ndarray
    rate: np.ndarray  # zero-bias events that measure rates (never trained on)
    source: dict[str, Any]


def load_stream(s: TriggerSettings, progress: bool) -> Stream:
    from fivesigma.generate import cached_sample
    from fivesigma.generate.l1 import read

    def sample(process: str, events: int, seed: int) -> dict[str, np.ndarray]:
        _say(progress, f"L1 stream: {events} {process} events at pile-up {s.mu} (cached) ...")
        gen = cached_sample(
            "l1",
            events=events,
            seed=seed,
            jobs=s.jobs,
            progress=progress,
            options={"process": process, "mu": s.mu, **s.generator_options},
        )
        return read(next(iter(gen.files.values())))

    zb = sample("zerobias", s.zerobias_events, s.seed)
    signals = {name: sample(name, s.signal_events, s.seed + 1) for name in s.signals}
    n = len(zb["met"])
    # most zero-bias events measure rates: a 1 kHz budget is ~3.5e-5 of the stream
    train, valid, rate = _split(n, (0.2, 0.05, 0.75), s.seed)
    if len(rate) < 1000:
        raise DataError(
            f"{len(rate)} zero-bias events for rates is too few; generate at least "
            f"{int(np.ceil(1000 / 0.75))} (stream.zerobias_events)"
        )
    return Stream(
        zb, signals, train, valid, rate,
        {"zerobias": n, "signals": {k: len(v["met"]) for k, v in signals.items()},
         "mu": s.mu},
    )  # fmt: skip


def _take(table: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in table.items()}


def _variants(
    name: str, float_model: Any, qat: Any, ref: FixedPointReference, firmware: Any,
    inputs: dict[str, np.ndarray], score: Any,
) -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """Scores of every sample (zero-bias rate events and each signal) for the float, QAT
    (the fixed-point reference, equal to the torch QAT forward) and emulated models."""
    out: dict[str, dict[str, np.ndarray]] = {"float": {}, "qat": {}}
    if firmware is not None:
        out["emulated"] = {}
    for sample, x in inputs.items():
        out["float"][sample] = score(M.predict(float_model, x))
        out["qat"][sample] = score(ref.predict(x))
        if firmware is not None:
            out["emulated"][sample] = score(firmware.predict(x))
    return out


def build_axol1tl(s: TriggerSettings, stream: Stream, progress: bool) -> Built:
    """The AXOL1TL-like VAE: float and QAT encoders, |mu|^2 on every sample."""
    from fivesigma.export.hls import HLSSettings, resources
    from fivesigma.physics.l1 import axol1tl_inputs

    zb = axol1tl_inputs(stream.zerobias)
    pre = _standardise(zb[stream.train])
    x = _apply_standard(zb, pre)
    in_type = FixedPoint(s.input_width, s.input_integer or 5)
    spec = M.QuantSpec(s.nominal_width, s.integer, in_type, s.sparsity)
    t0 = time.perf_counter()
    enc_float = M.float_mlp(M.ENCODER_SIZES)
    hist_f = M.train_vae(enc_float, x[stream.train], x[stream.valid], epochs=s.epochs,
                         patience=s.patience, seed=s.seed)  # fmt: skip
    qat = M.quant_encoder(spec)
    qat.load_state_dict(enc_float.state_dict(), strict=False)
    hist_q = M.train_vae(qat, x[stream.train], x[stream.valid], epochs=max(5, s.epochs // 2),
                         patience=s.patience, seed=s.seed + 1)  # fmt: skip
    _say(progress, f"axol1tl: VAE float and QAT trained ({time.perf_counter() - t0:.0f} s)")
    ref = FixedPointReference.from_model(qat)
    firmware, seconds = (None, 0.0)
    if s.hls.get("enabled", True):
        firmware, seconds = _firmware(qat, (57,), s)
    inputs = {"zerobias": x[stream.rate]}
    for name, table in stream.signals.items():
        inputs[name] = _apply_standard(axol1tl_inputs(table), pre)
    built = Built(
        name="axol1tl", qat=qat, spec=spec,
        preprocessing={"standardise": pre, "inputs": "physics.l1.axol1tl_inputs (hardware)"},
        input_shape=(57,), firmware=firmware, history={"float": hist_f, "qat": hist_q},
    )  # fmt: skip
    built.scores = _variants("axol1tl", enc_float, qat, ref, firmware, inputs, M.anomaly_score)
    built.metrics = {"types": spec.to_dict(), "layers": ref.describe(),
                     "resources": resources(qat, HLSSettings(**_hls(s)))}  # fmt: skip
    if firmware is not None:
        check = _emulation_check(firmware, ref, inputs["zerobias"][:5000])
        check.pop("outputs")
        built.metrics.update(emulation=check, compile_seconds=seconds)
    ref.predict(inputs["zerobias"])
    built.metrics["overflows_zerobias"] = _overflow(ref)
    return built


def _hls(s: TriggerSettings) -> dict[str, Any]:
    return {k: v for k, v in s.hls.items() if k != "enabled"}


def build_cicada(s: TriggerSettings, stream: Stream, progress: bool) -> Built:
    """The CICADA-like trigger: a float teacher AE, float and QAT CNN students."""
    import torch

    from fivesigma.export.hls import HLSSettings, resources
    from fivesigma.physics.l1 import cicada_inputs

    regions = cicada_inputs(stream.zerobias).astype(np.float32)  # (n, 18, 14) counts
    scale = float(2**M.REGION_SHIFT)
    xr = (regions / scale)[:, None, :, :]
    # the teacher: a dense autoencoder of log(1 + ET), float, not deployed
    logx = np.log1p(regions.reshape(len(regions), -1)).astype(np.float32)
    teacher = M.float_mlp((252, 64, 16, 64, 252))
    t0 = time.perf_counter()

    def recon(model: Any, batch: Any) -> torch.Tensor:
        (xb,) = batch if isinstance(batch, list | tuple) else (batch,)
        return ((model(xb) - xb) ** 2).mean(dim=1)

    from fivesigma.tasks.trigger.models import _trainer

    _trainer(s.epochs, s.patience, s.seed, batch_size=512, lr=1e-3).fit(
        teacher,
        torch.utils.data.TensorDataset(torch.as_tensor(logx[stream.train])),
        torch.utils.data.TensorDataset(torch.as_tensor(logx[stream.valid])),
        objective=recon,
    )
    teacher.eval()

    def teacher_score(lx: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.as_tensor(lx)
            return np.log(((teacher(t) - t) ** 2).mean(dim=1).double().numpy() + 1e-6)

    target = teacher_score(logx)
    mean, std = float(target[stream.train].mean()), float(target[stream.train].std() or 1.0)
    y = ((target - mean) / std).astype(np.float32)
    in_type = FixedPoint(10, 10 - M.REGION_SHIFT, signed=False)
    spec = M.QuantSpec(s.nominal_width, max(s.integer, 4), in_type, s.sparsity)
    stud_f = M.float_student()
    hist_f = M.train_regressor(stud_f, (xr[stream.train], y[stream.train]),
                               (xr[stream.valid], y[stream.valid]), epochs=s.epochs,
                               patience=s.patience, seed=s.seed)  # fmt: skip
    qat = M.quant_student(spec)
    qat.load_state_dict(stud_f.state_dict(), strict=False)
    hist_q = M.train_regressor(qat, (xr[stream.train], y[stream.train]),
                               (xr[stream.valid], y[stream.valid]),
                               epochs=max(5, s.epochs // 2), patience=s.patience,
                               seed=s.seed + 1)  # fmt: skip
    _say(progress, f"cicada: teacher and students trained ({time.perf_counter() - t0:.0f} s)")
    ref = FixedPointReference.from_model(qat)
    firmware, seconds = (None, 0.0)
    if s.hls.get("enabled", True):
        firmware, seconds = _firmware(qat, (1, 18, 14), s)
    inputs = {"zerobias": xr[stream.rate]}
    teacher_scores = {"zerobias": target[stream.rate]}
    for name, table in stream.signals.items():
        reg = cicada_inputs(table).astype(np.float32)
        inputs[name] = (reg / scale)[:, None, :, :]
        teacher_scores[name] = teacher_score(np.log1p(reg.reshape(len(reg), -1)))
    built = Built(
        name="cicada", qat=qat, spec=spec,
        preprocessing={"region_shift": M.REGION_SHIFT, "target_mean": mean, "target_std": std,
                       "inputs": "physics.l1.cicada_inputs / 2^region_shift"},
        input_shape=(1, 18, 14), firmware=firmware, history={"float": hist_f, "qat": hist_q},
    )  # fmt: skip
    built.scores = _variants("cicada", stud_f, qat, ref, firmware, inputs, lambda o: o[:, 0])
    built.scores["teacher"] = teacher_scores
    built.metrics = {
        "types": spec.to_dict(),
        "layers": ref.describe(),
        "resources": resources(qat, HLSSettings(**_hls(s)), input_shape=(1, 18, 14)),
    }
    if firmware is not None:
        check = _emulation_check(firmware, ref, inputs["zerobias"][:5000])
        check.pop("outputs")
        built.metrics.update(emulation=check, compile_seconds=seconds)
    ref.predict(inputs["zerobias"])
    built.metrics["overflows_zerobias"] = _overflow(ref)
    return built


# --------------------------------------------------------------------------------------
# Rates


def trigger_view(built: Built, s: TriggerSettings) -> dict[str, Any]:
    """Per variant and budget: the threshold on the zero-bias events and each signal's
    efficiency there; plus rate-efficiency curves."""
    from fivesigma.metrics.trigger import efficiency_at, rate_curve, threshold_for_rate

    out: dict[str, Any] = {"budgets": {}, "curves": {}}
    for variant, samples in built.scores.items():
        zb = samples["zerobias"]
        for budget in s.budgets_khz:
            thr = threshold_for_rate(zb, budget, s.input_rate_khz)
            row = {k: thr[k] for k in ("threshold", "n_pass", "rate_khz", "resolved")}
            row["efficiency"] = {
                name: efficiency_at(v, thr["threshold"])["efficiency"]
                for name, v in samples.items() if name != "zerobias"
            }  # fmt: skip
            out["budgets"].setdefault(f"{budget:g}", {})[variant] = row
        out["curves"][variant] = {
            name: rate_curve(zb, v, s.input_rate_khz)
            for name, v in samples.items() if name != "zerobias"
        }  # fmt: skip
    return out


def reference_view(stream: Stream, s: TriggerSettings) -> dict[str, Any]:
    """Simple L1 seeds (single jet, HT, MET, e/gamma, muon) at the same budgets."""
    from fivesigma.metrics.trigger import efficiency_at, threshold_for_rate
    from fivesigma.physics.l1 import reference_seeds

    zb = reference_seeds(_take(stream.zerobias, stream.rate))
    sig = {name: reference_seeds(t) for name, t in stream.signals.items()}
    out: dict[str, Any] = {}
    for seed_name, values in zb.items():
        for budget in s.budgets_khz:
            thr = threshold_for_rate(values, budget, s.input_rate_khz)
            out.setdefault(f"{budget:g}", {})[seed_name] = {
                "threshold": thr["threshold"],
                "efficiency": {n: efficiency_at(v[seed_name], thr["threshold"])["efficiency"]
                               for n, v in sig.items()},
            }  # fmt: skip
    return out
