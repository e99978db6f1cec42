"""Benchmark: training and inference throughput of every event classifier.

Usage::

    python bench/bench_models.py [--events N] [--features F] [--repeat R]

Trains the logistic baseline, the xgboost BDT and the torch MLP on N toy events
(Gaussian classes, F features), then times inference on the same events.  The MLP is
also exported to ONNX and timed under onnxruntime in the same run, so the two engines are
compared on this machine at the same moment (the ratio is the number to read; absolute
rates depend on the machine).  Prints one JSON object.  No assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from _timing import best_of
from fivesigma.estimators import make_estimator


def toy(n: int, f: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, f)) + 0.3 * y[:, None] * np.linspace(1.0, 0.1, f)
    return X, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    X, y = toy(args.events, args.features)
    n = len(X)
    models = {
        "logistic": {},
        "bdt": {"n_estimators": 200, "max_depth": 4, "early_stopping_rounds": None},
        "mlp": {
            "hidden": [64, 64],
            "epochs": 5,
            "early_stopping_patience": None,
            "progress": False,
            "valid_fraction": 0.0,
        },
    }
    out: dict = {
        "benchmark": "classifier training and inference throughput",
        "events": n,
        "features": args.features,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "models": {},
    }
    for name, params in models.items():
        est = make_estimator(name, **params)
        t0 = time.perf_counter()
        est.fit(X, y)
        train_s = time.perf_counter() - t0
        epochs = params.get("epochs", 1)
        infer_s = best_of(lambda est=est: est.decision_function(X), args.repeat)
        out["models"][name] = {
            "train_events_per_s": n * epochs / train_s if name == "mlp" else n / train_s,
            "train_seconds": train_s,
            "inference_events_per_s": n / infer_s,
        }
        if name == "mlp":
            import onnxruntime as ort

            with tempfile.TemporaryDirectory() as tmp:
                path = est.export_onnx(Path(tmp) / "mlp.onnx")
                opts = ort.SessionOptions()
                sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                Xf = X.astype(np.float32)
                onnx_s = best_of(
                    lambda sess=sess, Xf=Xf: sess.run(None, {"features": Xf}), args.repeat
                )
                p_onnx = sess.run(None, {"features": Xf[:1000]})[0][:, 1]
            torch_rate = out["models"]["mlp"]["inference_events_per_s"]
            out["models"]["mlp"]["onnxruntime_inference_events_per_s"] = n / onnx_s
            out["models"]["mlp"]["onnxruntime_over_torch"] = (n / onnx_s) / torch_rate
            out["models"]["mlp"]["onnx_max_abs_diff"] = float(
                np.abs(p_onnx - est.decision_function(X[:1000])).max()
            )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
