"""Quantisation-aware training (QAT) layers for FPGA trigger networks.

Each layer computes in the forward pass exactly what the hls4ml firmware computes
(:class:`fivesigma.export.fixed_point.FixedPointReference` is the integer reference):

- :class:`FakeQuant` converts its input to a :class:`FixedPoint` type (``ap_fixed``
  rounding and saturation or wrap around); the backward pass is the straight-through
  estimator (identity, zero outside the range for a saturating type when ``clip_grad``).
- :class:`QDense` / :class:`QConv2d` quantise their weights and biases in the forward
  pass, multiply and sum in float64 (exact while the accumulator is at most 53 bits wide,
  as the firmware's accumulator never rounds) and round once to the result type (or pass
  the exact sum on when it has none).
- :class:`QReLU` is a ReLU whose output is quantised to its result type.

The forward pass equals the integer reference bit for bit while every accumulator fits
53 bits: a dense layer without a result type hands its exact sum on in float64, a
rounded output (at most 24 bits wide, exact in float32) is handed on in the layer's
parameter dtype (float32 for a ReLU of at most 24 bits).

``quant_mlp`` builds the 16->64->32->32->5 jet tagger or the 57->28->15->8 VAE encoder,
``quant_cnn`` the CICADA-like calorimeter CNN, ``prune_to_sparsity`` prunes by magnitude
with masks kept through further training. Every module is an ordinary torch module, so a
QAT encoder trains end to end inside a larger float model.

Importing this module imports torch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fivesigma.errors import ConfigError
from fivesigma.export.fixed_point import FixedPoint, LayerSpec

__all__ = [
    "FakeQuant",
    "QConv2d",
    "QDense",
    "QReLU",
    "fake_quantize",
    "nonzero_weights",
    "prune_to_sparsity",
    "quant_cnn",
    "quant_mlp",
]


def _type(fp: FixedPoint | str | None, what: str) -> FixedPoint | None:
    if fp is None or isinstance(fp, FixedPoint):
        return fp
    if isinstance(fp, str):
        return FixedPoint.parse(fp)
    raise ConfigError(f"{what} must be a FixedPoint or an 'ap_fixed<W,I>' string, got {fp!r}")


def fake_quantize(x: torch.Tensor, fp: FixedPoint, clip_grad: bool = True) -> torch.Tensor:
    """``x`` quantised to ``fp`` (computed in float64, returned in ``x``'s dtype) with the
    straight-through gradient: 1, or 0 outside ``[fp.min, fp.max]`` when ``clip_grad``
    and the type saturates."""
    x64 = x.detach().to(torch.float64)
    scaled = torch.ldexp(x64, torch.tensor(fp.fractional, dtype=torch.int32, device=x.device))
    codes = torch.floor(scaled)
    if fp.rounding == "RND":
        codes = codes + (scaled - codes >= 0.5).to(codes.dtype)
    if fp.saturation == "SAT":
        codes = codes.clamp(fp.code_min, fp.code_max)
    else:
        codes = torch.remainder(codes - fp.code_min, float(1 << fp.width)) + fp.code_min
    q = (codes * fp.lsb).to(x.dtype)
    if clip_grad and fp.saturation == "SAT":
        inside = ((x >= fp.min) & (x <= fp.max)).to(x.dtype)
        through = x * inside
    else:
        through = x
    # q + (t - t): the value is q exactly (x + (q - x) can round), the gradient is t's
    return q + (through - through.detach())


class FakeQuant(nn.Module):
    """Quantise to a fixed-point type (the input quantiser of a network, or anywhere).

    Parameters
    ----------
    fp : the type, a :class:`FixedPoint` or its HLS text.
    clip_grad : zero gradient outside the range of a saturating type.
    """

    def __init__(self, fp: FixedPoint | str, clip_grad: bool = True):
        super().__init__()
        self.fp: FixedPoint = _type(fp, "FakeQuant type")  # type: ignore[assignment]
        self.clip_grad = clip_grad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize(x, self.fp, self.clip_grad)

    def extra_repr(self) -> str:
        return self.fp.hls()

    def fixed_point_layer(self, name: str) -> LayerSpec:
        """The firmware view of this layer: the network's input type."""
        return LayerSpec(name, "input", result=self.fp)


class _Weighted:
    """What QDense and QConv2d share: quantised weights and a fixed pruning mask."""

    weight: nn.Parameter
    bias: nn.Parameter | None
    weight_mask: torch.Tensor
    weight_type: FixedPoint
    bias_type: FixedPoint
    result_type: FixedPoint | None

    def _init_types(
        self,
        weight_type: FixedPoint | str,
        bias_type: FixedPoint | str | None,
        result_type: FixedPoint | str | None,
    ) -> None:
        self.weight_type = _type(weight_type, "weight_type")  # type: ignore[assignment]
        self.bias_type = _type(bias_type, "bias_type") or self.weight_type  # type: ignore[assignment]
        self.result_type = _type(result_type, "result_type")
        self.register_buffer("weight_mask", torch.ones_like(self.weight))  # type: ignore[attr-defined]

    def quantized_weight(self) -> torch.Tensor:
        """The weights the firmware uses: masked, quantised (straight-through gradient)."""
        return fake_quantize(self.weight * self.weight_mask, self.weight_type)

    def quantized_bias(self) -> torch.Tensor | None:
        """The quantised bias, or ``None``."""
        return None if self.bias is None else fake_quantize(self.bias, self.bias_type)

    def _finish(self, acc: torch.Tensor) -> torch.Tensor:
        if self.result_type is None:
            return acc  # the exact sum, float64, for the next layer to round once
        return fake_quantize(acc, self.result_type).to(self.weight.dtype)

    def _spec(self, name: str, kind: str, **extra: Any) -> LayerSpec:
        with torch.no_grad():
            w = self.quantized_weight().detach().cpu().to(torch.float64).numpy()
            b = self.quantized_bias()
            b = None if b is None else b.detach().cpu().to(torch.float64).numpy()
        return LayerSpec(
            name,
            kind,
            result=self.result_type,
            weight=np.array(w),
            bias=None if b is None else np.array(b),
            weight_type=self.weight_type,
            bias_type=self.bias_type if b is not None else None,
            **extra,
        )

    def _types_repr(self) -> str:
        result = self.result_type.hls() if self.result_type else "exact"
        return f"weight={self.weight_type.hls()}, bias={self.bias_type.hls()}, result={result}"


class QDense(_Weighted, nn.Linear):
    """``nn.Linear`` with quantised weights and bias, an exact accumulator and one
    rounding to ``result_type`` (``None``: the exact sum is passed on in float64, e.g. to
    a :class:`QReLU` that rounds it).

    The input must already be on a fixed-point grid (a :class:`FakeQuant` or the previous
    layer's output). Products and sums are computed in float64, so the result equals the
    firmware's exactly while the accumulator fits 53 bits.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        weight_type: FixedPoint | str,
        bias_type: FixedPoint | str | None = None,
        result_type: FixedPoint | str | None = None,
        bias: bool = True,
    ):
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._init_types(weight_type, bias_type, result_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.quantized_weight().to(torch.float64)
        b = self.quantized_bias()
        acc = nn.functional.linear(
            x.to(torch.float64), w, None if b is None else b.to(torch.float64)
        )
        return self._finish(acc)

    def fixed_point_layer(self, name: str) -> LayerSpec:
        """The firmware view of this layer."""
        return self._spec(name, "dense")

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self._types_repr()}"


class QConv2d(_Weighted, nn.Conv2d):
    """``nn.Conv2d`` (no padding, no dilation or groups) with quantised weights and bias
    and the firmware's exact accumulation; see :class:`QDense`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        weight_type: FixedPoint | str,
        bias_type: FixedPoint | str | None = None,
        result_type: FixedPoint | str | None = None,
        stride: int | tuple[int, int] = 1,
        bias: bool = True,
    ):
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, bias=bias)
        self._init_types(weight_type, bias_type, result_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.quantized_weight().to(torch.float64)
        b = self.quantized_bias()
        acc = nn.functional.conv2d(
            x.to(torch.float64), w, None if b is None else b.to(torch.float64), self.stride
        )
        return self._finish(acc)

    def fixed_point_layer(self, name: str) -> LayerSpec:
        """The firmware view of this layer."""
        return self._spec(name, "conv2d", stride=tuple(int(s) for s in self.stride))

    def extra_repr(self) -> str:
        return f"{nn.Conv2d.extra_repr(self)}, {self._types_repr()}"


class QReLU(nn.Module):
    """ReLU with its output quantised to ``result_type`` (typically an ``ap_ufixed``)."""

    def __init__(self, result_type: FixedPoint | str, clip_grad: bool = True):
        super().__init__()
        self.result_type: FixedPoint = _type(result_type, "result_type")  # type: ignore[assignment]
        self.clip_grad = clip_grad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = fake_quantize(torch.relu(x), self.result_type, self.clip_grad)
        # a value of at most 24 bits is exact in float32, the dtype the network trains in
        return out.to(torch.float32) if self.result_type.width <= 24 else out.to(torch.float64)

    def fixed_point_layer(self, name: str) -> LayerSpec:
        """The firmware view of this layer."""
        return LayerSpec(name, "relu", result=self.result_type)

    def extra_repr(self) -> str:
        return self.result_type.hls()


def _per_layer(value: Any, n: int, what: str) -> list[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise ConfigError(f"{what} has {len(value)} entries; accepted: one value or {n}")
        return list(value)
    return [value] * n


def _default_output(width: int, integer: int) -> FixedPoint:
    # logits need more range and resolution than the hidden activations
    return FixedPoint(max(16, width), max(6, integer))


def quant_mlp(
    sizes: Sequence[int],
    *,
    width: int | Sequence[int],
    integer: int | Sequence[int],
    input_type: FixedPoint | str | None,
    weight_integer: int | Sequence[int] = 1,
    output_type: FixedPoint | str | None = None,
    rounding: str = "RND",
    saturation: str = "SAT",
) -> nn.Sequential:
    """A quantised MLP ``sizes[0] -> ... -> sizes[-1]`` with ReLUs between and a linear
    last layer (logits, or the VAE's mu).

    Layers: ``input`` (FakeQuant), then ``fc1``, ``relu1``, ``fc2``, ..., ``fc<n>``.

    Parameters
    ----------
    sizes : layer widths, e.g. ``[16, 64, 32, 32, 5]`` (tagger), ``[57, 28, 15, 8]``.
    width, integer : per dense layer (one value or ``len(sizes) - 1``): the weight width,
        and the ``ap_ufixed<width, integer>`` of its ReLU output.
    input_type : the input type; ``None`` means ``ap_fixed<16,6,AP_RND,AP_SAT>``.
    weight_integer : integer bits of the ``ap_fixed`` weights (1: range [-1, 1)).
    output_type : the last layer's result type; default ``ap_fixed<max(16, w),
        max(6, i)>`` of the last layer's width and integer bits.
    rounding, saturation : modes of every type built here.

    The biases are ``ap_fixed<width, integer>``; the dense layers before a ReLU keep the
    exact sum (the ReLU rounds it once).
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ConfigError(f"quant_mlp sizes {sizes} need at least two positive entries")
    n = len(sizes) - 1
    widths = _per_layer(width, n, "width")
    integers = _per_layer(integer, n, "integer")
    w_integers = _per_layer(weight_integer, n, "weight_integer")
    mode = {"rounding": rounding, "saturation": saturation}
    in_type = _type(input_type, "input_type") or FixedPoint(16, 6, **mode)
    out_type = _type(output_type, "output_type") or _default_output(widths[-1], integers[-1])
    layers: OrderedDict[str, nn.Module] = OrderedDict(input=FakeQuant(in_type))
    for k in range(n):
        last = k == n - 1
        layers[f"fc{k + 1}"] = QDense(
            sizes[k],
            sizes[k + 1],
            weight_type=FixedPoint(widths[k], w_integers[k], **mode),
            bias_type=FixedPoint(widths[k], integers[k], **mode),
            result_type=out_type if last else None,
        )
        if not last:
            layers[f"relu{k + 1}"] = QReLU(FixedPoint(widths[k], integers[k], False, **mode))
    return nn.Sequential(layers)


def quant_cnn(
    input_shape: tuple[int, int, int] = (1, 18, 14),
    *,
    width: int = 8,
    integer: int = 3,
    input_type: FixedPoint | str | None = None,
    channels: int = 4,
    kernel: int = 2,
    stride: int = 2,
    hidden: int = 16,
    n_outputs: int = 1,
    weight_integer: int = 1,
    output_type: FixedPoint | str | None = None,
    rounding: str = "RND",
    saturation: str = "SAT",
) -> nn.Sequential:
    """The CICADA-like calorimeter CNN: ``(1, 18, 14)`` regions -> conv (``channels``
    filters of ``kernel`` x ``kernel``, ``stride``, no padding) -> ReLU -> flatten ->
    dense(``hidden``) -> ReLU -> dense(``n_outputs``), linear output (the anomaly score).

    Layers: ``input``, ``conv1``, ``relu1``, ``flatten``, ``fc1``, ``relu2``, ``fc2``.
    Types as in :func:`quant_mlp`; ``input_type`` ``None`` means ``ap_ufixed<10,10>``
    (calorimeter region ET in integer counts, as the trigger sees them).
    """
    c, h, w = (int(v) for v in input_shape)
    ho, wo = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    if ho < 1 or wo < 1:
        raise ConfigError(f"quant_cnn kernel {kernel} does not fit the input {input_shape}")
    mode = {"rounding": rounding, "saturation": saturation}
    in_type = _type(input_type, "input_type") or FixedPoint(10, 10, False, **mode)
    weight = FixedPoint(width, weight_integer, **mode)
    bias = FixedPoint(width, integer, **mode)
    act = FixedPoint(width, integer, False, **mode)
    out_type = _type(output_type, "output_type") or _default_output(width, integer)
    return nn.Sequential(
        OrderedDict(
            input=FakeQuant(in_type),
            conv1=QConv2d(c, channels, kernel, weight, bias, None, stride=stride),
            relu1=QReLU(act),
            flatten=nn.Flatten(),
            fc1=QDense(channels * ho * wo, hidden, weight, bias, None),
            relu2=QReLU(act),
            fc2=QDense(hidden, n_outputs, weight, bias, out_type),
        )
    )


def _weighted_layers(model: nn.Module) -> list[tuple[str, _Weighted]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _Weighted)]


def prune_to_sparsity(model: nn.Module, sparsity: float) -> dict[str, Any]:
    """Set the smallest-magnitude ``sparsity`` fraction of each QDense/QConv2d layer's
    weights to zero, for good: the mask is kept (a buffer, saved with the state dict) and
    applied in every later forward pass, so further training cannot revive them.

    Returns :func:`nonzero_weights` after pruning.
    """
    if not 0.0 <= float(sparsity) < 1.0:
        raise ConfigError(f"sparsity {sparsity} is out of range; accepted: 0 <= sparsity < 1")
    with torch.no_grad():
        for _, layer in _weighted_layers(model):
            magnitude = (layer.weight * layer.weight_mask).abs().flatten()
            n_prune = round(float(sparsity) * magnitude.numel())
            if n_prune == 0:
                continue
            order = torch.argsort(magnitude, stable=True)
            mask = layer.weight_mask.flatten().clone()
            mask[order[:n_prune]] = 0.0
            layer.weight_mask.copy_(mask.view_as(layer.weight_mask))
            layer.weight.mul_(layer.weight_mask)
    return nonzero_weights(model)


def nonzero_weights(model: nn.Module) -> dict[str, Any]:
    """Per QDense/QConv2d layer and in total: weights, and those that are non-zero after
    masking and quantisation (what the firmware multiplies by)."""
    layers = {}
    with torch.no_grad():
        for name, layer in _weighted_layers(model):
            w = layer.quantized_weight()
            layers[name] = {"weights": int(w.numel()), "nonzero": int((w != 0).sum())}
    total = sum(v["weights"] for v in layers.values())
    nonzero = sum(v["nonzero"] for v in layers.values())
    return {
        "layers": layers,
        "weights": total,
        "nonzero": nonzero,
        "sparsity": 1.0 - nonzero / total if total else 0.0,
    }
