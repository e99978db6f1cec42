"""ONNX export of any estimator that describes itself as a torch module.

An estimator provides ``_onnx_graph() -> OnnxGraph``: a torch module from the raw inputs
to class probabilities (standardisation inside), example inputs and their dynamic axes.
:func:`export_onnx` traces it with the TorchScript exporter (which, unlike the dynamo one,
needs no onnxscript), keeps every declared input even when a network ignores one, and
records the feature names and the estimator kind in the model's metadata.

>>> import numpy as np, tempfile, onnxruntime as ort
>>> from fivesigma.estimators import make_estimator
>>> X = np.random.default_rng(0).normal(size=(200, 2)); y = (X[:, 0] > 0).astype(int)
>>> est = make_estimator("logistic").fit(X, y, feature_names=["a", "b"])
>>> path = export_onnx(est, tempfile.mkdtemp() + "/model.onnx")
>>> session = ort.InferenceSession(str(path))
>>> p = session.run(None, {"features": X[:3].astype(np.float32)})[0]
>>> bool(np.allclose(p, est.predict_proba(X[:3]), atol=1e-5))
True
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OnnxGraph", "export_onnx"]


@dataclass
class OnnxGraph:
    """What :func:`export_onnx` exports.

    Attributes
    ----------
    module : a torch module mapping the raw inputs to class probabilities.
    inputs : input name -> (example tensor, dimensions); a string dimension is a dynamic
        axis (``"batch"``, ``"particles"``), an integer a fixed size.
    metadata : extra ``metadata_props`` entries of the ONNX model.
    """

    module: Any
    inputs: dict[str, tuple[Any, list[int | str]]]
    metadata: dict[str, str] = field(default_factory=dict)


def export_onnx(estimator: Any, path: str | Path, opset: int = 17) -> Path:
    """Write ``estimator`` (fitted) as an ONNX model at ``path`` (atomically); the path.

    Raises the estimator's one-line :class:`~fivesigma.errors.ModelError` when it cannot
    be exported, and :class:`~fivesigma.errors.MissingDependencyError` without onnx.
    """
    from fivesigma.core import extras
    from fivesigma.core.files import atomic_file

    estimator._check_fitted()
    graph: OnnxGraph = estimator._onnx_graph()
    onnx = extras.onnx()
    torch = extras.torch()
    names = list(graph.inputs)
    examples = tuple(example for example, _ in graph.inputs.values())
    dynamic = {
        name: {i: d for i, d in enumerate(dims) if isinstance(d, str)}
        for name, (_, dims) in graph.inputs.items()
    }
    dynamic["probabilities"] = {0: "batch"}
    path = Path(path)
    with atomic_file(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            graph.module.eval(),
            examples,
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=["probabilities"],
            dynamic_axes=dynamic,
        )
        model = onnx.load(str(tmp))
        # the exporter drops inputs a network ignores (the CNN and PFN never read v);
        # keep every declared input so that all models of a kind are called the same way
        present = {i.name for i in model.graph.input}
        for pos, name in enumerate(names):
            if name not in present:
                model.graph.input.insert(
                    pos,
                    onnx.helper.make_tensor_value_info(
                        name, onnx.TensorProto.FLOAT, graph.inputs[name][1]
                    ),
                )
        meta = {
            "fivesigma.features": json.dumps(estimator.feature_names_in_),
            "fivesigma.kind": estimator.kind,
            **graph.metadata,
        }
        for key, value in meta.items():
            prop = model.metadata_props.add()
            prop.key, prop.value = key, value
        onnx.save(model, str(tmp))
    return path
