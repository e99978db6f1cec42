"""fivesigma.export: deploy a fitted estimator outside fivesigma.

- :mod:`fivesigma.export.onnx`: any estimator that can describe itself as a torch module
  (the networks, the logistic regression) to an ONNX graph with its preprocessing.

Exporters work on the estimator contract only (``_onnx_graph``, ``feature_names_in_``,
``kind``), so every current and future estimator gets them; firmware (hls4ml) is next.
"""

__all__ = ["fixed_point", "hls", "onnx"]
