"""Benchmark: jet-tagger training and inference throughput, PyTorch vs onnxruntime.

Usage::

    python bench/bench_taggers.py [--jets N] [--particles P] [--features F] [--repeat R]
                                  [--device cpu|cuda] [--batch-size B]

For each constituent tagger (1D CNN, PFN, ParticleNet, ParT at their default sizes) on N
random jets of P constituents (a third of them padded): training jets/s over one epoch,
inference jets/s under PyTorch (``predict_proba``, batched, no autograd) and under
onnxruntime on the exported model, in the same run, with their ratio; and the built-in
generator's rate (jets/s for top and QCD, one process) so that the whole jet-tagging chain
is measured in one run (``bench_generate_jets.py`` compares generation with a bare Pythia
loop).  Prints one JSON object.  No assertions.

With ``--device cuda`` training and PyTorch inference run on the GPU (after a warm-up fit
on a few jets, so CUDA start-up is not timed) and onnxruntime uses its CUDA provider when
it has one; the JSON names the providers used.  Training time per epoch on a dataset of
M jets is then M / ``train_jets_per_s``.

``--layernorm-reference`` also runs ParticleNet and ParT with LayerNorm in place of their
masked batch norms (``norm="layer"``, ``pair_norm="layer"``) and reports each batch-norm
model's training and inference throughput relative to that reference, in the same run.

``--dense-pair-reference`` also trains and runs ParT with its pair embedding evaluated
on every padded (i, j) slot (the path an ONNX export traces) instead of once per real
unordered pair, and reports ParT's training and eager inference throughput relative to
that.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _timing import best_of
from fivesigma.tasks.jets.models.part import ParT
from fivesigma.tasks.jets.tagger import JetTagger

TAGGERS = ("cnn1d", "pfn", "particlenet", "part")
#: label -> (tagger, model_params) of the LayerNorm references
LAYERNORM_REFERENCES = {
    "particlenet_layernorm": ("particlenet", {"norm": "layer"}),
    "part_layernorm": ("part", {"pair_norm": "layer"}),
}
#: ParT trained and run (eagerly) with its pair embedding on every padded (i, j) slot
DENSE_PAIR_REFERENCE = "part_dense_pairs"
#: reference label -> (the model it is compared with, ratio name suffix, ratio keys)
RATIOS = {
    **{
        label: (name, "layernorm", ("train_jets_per_s", "torch_inference_jets_per_s"))
        for label, (name, _) in LAYERNORM_REFERENCES.items()
    },
    DENSE_PAIR_REFERENCE: (
        "part",
        "dense_pairs",
        ("train_jets_per_s", "torch_inference_jets_per_s"),
    ),
}


def toy_inputs(n: int, p: int, f: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = rng.integers(p // 3, p + 1, n)
    mask = np.arange(p)[None, :] < counts[:, None]
    x = rng.normal(size=(n, p, f)).astype(np.float32) * mask[..., None]
    p3 = rng.normal(size=(n, p, 3)) * 20
    v = np.concatenate([p3, np.linalg.norm(p3, axis=-1, keepdims=True) + 0.1], axis=-1)
    v = (v * mask[..., None]).astype(np.float32)
    y = rng.integers(0, 2, n)
    return {"x": x, "v": v, "mask": mask}, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jets", type=int, default=4000)
    ap.add_argument("--particles", type=int, default=64)
    ap.add_argument("--features", type=int, default=13)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--batch-size", type=int, default=128, help="training batch size")
    ap.add_argument(
        "--generate", type=int, default=100, help="jets to generate per process (0: skip)"
    )
    ap.add_argument(
        "--layernorm-reference",
        action="store_true",
        help="also time ParticleNet and ParT with LayerNorm instead of masked batch norm",
    )
    ap.add_argument(
        "--dense-pair-reference",
        action="store_true",
        help="also train and run ParT with the pair embedding on every padded pair slot",
    )
    args = ap.parse_args()
    import onnxruntime as ort

    from fivesigma.training.trainer import device_name

    inputs, y = toy_inputs(args.jets, args.particles, args.features)
    n = args.jets
    on_gpu = args.device != "cpu"
    providers = ["CPUExecutionProvider"]
    if on_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    out: dict = {
        "benchmark": "jet tagger throughput (default sizes)",
        "jets": n,
        "particles": args.particles,
        "features": args.features,
        "batch_size": args.batch_size,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "device": device_name(args.device),
            "onnxruntime_providers": providers,
        },
        "taggers": {},
    }
    runs = {name: (name, None) for name in TAGGERS}
    if args.layernorm_reference:
        runs.update(LAYERNORM_REFERENCES)
    if args.dense_pair_reference:
        runs[DENSE_PAIR_REFERENCE] = ("part", None)
    for label, (name, model_params) in runs.items():

        def make(name=name, model_params=model_params):
            return JetTagger(
                model=name,
                model_params=model_params,
                epochs=1,
                batch_size=args.batch_size,
                valid_fraction=0.0,
                progress=False,
                early_stopping_patience=None,
                device=args.device,
            )

        if on_gpu:  # CUDA context, kernels and allocator warm-up are not training time
            make().fit({k: v[:512] for k, v in inputs.items()}, y[:512])
        est = make()
        ParT.pack_pairs = label != DENSE_PAIR_REFERENCE
        try:
            t0 = time.perf_counter()
            est.fit(inputs, y)
            train_s = time.perf_counter() - t0
            torch_s = best_of(lambda est=est: est.predict_proba(inputs), args.repeat)
        finally:
            ParT.pack_pairs = True
        feeds = {"x": inputs["x"], "v": inputs["v"], "mask": inputs["mask"].astype(np.float32)}
        with tempfile.TemporaryDirectory() as tmp:
            path = est.export_onnx(Path(tmp) / f"{name}.onnx")
            sess = ort.InferenceSession(str(path), providers=providers)

            def run_onnx(sess=sess, feeds=feeds) -> None:
                for start in range(0, n, 1024):
                    sess.run(None, {k: v[start : start + 1024] for k, v in feeds.items()})

            onnx_s = best_of(run_onnx, args.repeat)
            diff = float(
                np.abs(
                    sess.run(None, {k: v[:256] for k, v in feeds.items()})[0]
                    - est.predict_proba({k: v[:256] for k, v in inputs.items()})
                ).max()
            )
        print(
            f"{label}: train {train_s:.1f} s, torch {torch_s:.2f} s, onnxruntime {onnx_s:.2f} s",
            file=sys.stderr,
        )
        out["taggers"][label] = {
            "parameters": est.n_parameters(),
            "train_jets_per_s": n / train_s,
            "torch_inference_jets_per_s": n / torch_s,
            "onnxruntime_inference_jets_per_s": n / onnx_s,
            "onnxruntime_over_torch": torch_s / onnx_s,
            "onnx_max_abs_diff": diff,
        }
    for label, (name, suffix, keys) in RATIOS.items():
        if label in out["taggers"]:
            ours, ref = out["taggers"][name], out["taggers"][label]
            for key in keys:
                ours[f"{key}_over_{suffix}"] = ours[key] / ref[key]
    if args.generate > 0:
        from fivesigma.generate import generate

        out["generation"] = {}
        for process in ("top", "qcd"):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                generate(
                    "jets",
                    events=args.generate,
                    out=tmp,
                    seed=1,
                    jobs=1,
                    progress=False,
                    options={"process": process},
                )
                dt = time.perf_counter() - t0
            out["generation"][process] = {
                "jets": args.generate,
                "jets_per_s_one_core": args.generate / dt,
            }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
