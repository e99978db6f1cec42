"""Fixed-point numbers as the FPGA firmware sees them, and a bit-exact reference network.

:class:`FixedPoint` is one Vivado/Vitis HLS ``ap_fixed<W,I,Q,O>`` (signed) or
``ap_ufixed<W,I,Q,O>`` type: ``W`` bits in all, ``I`` of them above the binary point
(the sign bit included for a signed type), quantisation mode ``Q`` and overflow mode
``O``. Two quantisation modes are supported, ``TRN`` (floor, the HLS default) and
``RND`` (round half towards plus infinity, ``AP_RND``), and two overflow modes, ``WRAP``
(two's complement wrap around, the HLS default) and ``SAT`` (clip to the range).
A value is first quantised to the grid of step ``lsb = 2**(I - W)``, then the overflow
mode acts on what falls outside ``[min, max]``, as in ``ap_fixed``.

:class:`FixedPointReference` runs a quantised network (:mod:`fivesigma.nn.quant`) in
integer arithmetic, layer by layer, the way the hls4ml firmware does: exact products
of the input and weight codes summed in an accumulator wide enough to lose nothing, the
bias added, and one rounding to the layer's result type. hls4ml's C++ emulation of
the converted network (:mod:`fivesigma.export.hls`) gives the same numbers bit for bit.

This module imports numpy only (torch is imported inside :meth:`FixedPointReference.
from_model`, through the modules' own ``fixed_point_layer`` descriptions).

>>> fp = FixedPoint(8, 3)
>>> fp.hls(), fp.lsb, fp.min, fp.max
('ap_fixed<8,3,AP_RND,AP_SAT>', 0.03125, -4.0, 3.96875)
>>> quantize([0.015625, 5.0, -5.0], fp).tolist()
[0.03125, 3.96875, -4.0]
>>> FixedPoint.parse("ap_ufixed<6,2>")
FixedPoint(width=6, integer=2, signed=False, rounding='TRN', saturation='WRAP')
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fivesigma.errors import ConfigError, DataError, ModelError, shorten

__all__ = [
    "ROUNDING_MODES",
    "SATURATION_MODES",
    "FixedPoint",
    "FixedPointReference",
    "LayerSpec",
    "accumulator_type",
    "count_overflow",
    "quantize",
]

#: Supported quantisation modes (``ap_fixed`` ``AP_TRN`` and ``AP_RND``).
ROUNDING_MODES = ("TRN", "RND")
#: Supported overflow modes (``ap_fixed`` ``AP_WRAP`` and ``AP_SAT``).
SATURATION_MODES = ("WRAP", "SAT")

#: Widest type :func:`quantize` handles exactly in float64 (a 53-bit significand).
MAX_FLOAT_WIDTH = 53
#: Widest accumulator the integer reference holds in int64 without overflow.
MAX_INT_WIDTH = 62

_HLS_RE = re.compile(
    r"^\s*(?:ap_)?(?P<kind>fixed|ufixed)\s*<\s*(?P<w>-?\d+)\s*,\s*(?P<i>-?\d+)\s*"
    r"(?:,\s*(?:AP_)?(?P<q>[A-Z_]+)\s*)?(?:,\s*(?:AP_)?(?P<o>[A-Z_]+)\s*)?"
    r"(?:,\s*(?P<n>\d+)\s*)?>\s*$"
)


@dataclass(frozen=True)
class FixedPoint:
    """One ``ap_fixed<width, integer>`` (``signed``) or ``ap_ufixed`` type.

    Parameters
    ----------
    width : total bits, 1 to 64.
    integer : bits above the binary point, the sign bit included for a signed type; may
        be negative or exceed ``width`` (then the grid is coarser than 1 or finer than
        the range needs), as ``ap_fixed`` allows.
    signed : two's complement (``ap_fixed``) or unsigned (``ap_ufixed``).
    rounding : ``"TRN"`` (floor) or ``"RND"`` (round half up).
    saturation : ``"WRAP"`` (wrap around) or ``"SAT"`` (clip to ``[min, max]``).
    """

    width: int
    integer: int
    signed: bool = True
    rounding: str = "RND"
    saturation: str = "SAT"

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, int | np.integer):
            raise ConfigError(f"fixed-point width must be an integer, got {self.width!r}")
        if isinstance(self.integer, bool) or not isinstance(self.integer, int | np.integer):
            raise ConfigError(f"fixed-point integer bits must be an integer, got {self.integer!r}")
        if not 1 <= int(self.width) <= 64 or (self.signed and self.width < 2):
            raise ConfigError(
                f"fixed-point width {self.width} is out of range; accepted: 1 to 64 bits "
                "(at least 2 for a signed type)"
            )
        if self.rounding not in ROUNDING_MODES:
            raise ConfigError(
                f"rounding mode {self.rounding!r} is not supported; accepted: "
                f"{', '.join(ROUNDING_MODES)}"
            )
        if self.saturation not in SATURATION_MODES:
            raise ConfigError(
                f"saturation mode {self.saturation!r} is not supported; accepted: "
                f"{', '.join(SATURATION_MODES)}"
            )
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "integer", int(self.integer))
        object.__setattr__(self, "signed", bool(self.signed))

    # -- the grid ---------------------------------------------------------------------
    @property
    def fractional(self) -> int:
        """Bits below the binary point (``width - integer``, may be negative)."""
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        """The grid step, ``2**-fractional``."""
        return math.ldexp(1.0, -self.fractional)

    @property
    def code_min(self) -> int:
        """Smallest integer code (the value is ``code * lsb``)."""
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def code_max(self) -> int:
        """Largest integer code."""
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def min(self) -> float:
        """Smallest representable value."""
        return math.ldexp(float(self.code_min), -self.fractional)

    @property
    def max(self) -> float:
        """Largest representable value."""
        return math.ldexp(float(self.code_max), -self.fractional)

    # -- text -------------------------------------------------------------------------
    def hls(self) -> str:
        """The HLS type, e.g. ``ap_fixed<8,3,AP_RND,AP_SAT>`` (modes always spelled out)."""
        kind = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{kind}<{self.width},{self.integer},AP_{self.rounding},AP_{self.saturation}>"

    def __str__(self) -> str:
        return self.hls()

    @classmethod
    def parse(cls, text: str | FixedPoint) -> FixedPoint:
        """The type written as ``ap_fixed<W,I[,Q[,O[,N]]]>`` or ``ap_ufixed<...>`` (also
        hls4ml's ``fixed<...>``); omitted modes are the HLS defaults ``TRN``/``WRAP``.

        Raises :class:`~fivesigma.errors.ConfigError` for anything else, including modes
        other than TRN/RND and WRAP/SAT and a saturation-bits argument other than 0.
        """
        if isinstance(text, FixedPoint):
            return text
        accepted = (
            "accepted: ap_fixed<W,I> or ap_ufixed<W,I>, optionally with AP_TRN|AP_RND and "
            "AP_WRAP|AP_SAT"
        )
        match = _HLS_RE.match(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigError(f"cannot read fixed-point type {shorten(repr(text))}; {accepted}")
        q = match.group("q") or "TRN"
        o = match.group("o") or "WRAP"
        if q not in ROUNDING_MODES or o not in SATURATION_MODES:
            raise ConfigError(f"fixed-point type {text!r} uses an unsupported mode; {accepted}")
        if match.group("n") not in (None, "0"):
            raise ConfigError(f"fixed-point type {text!r} has saturation bits; {accepted}")
        return cls(
            int(match.group("w")),
            int(match.group("i")),
            signed=match.group("kind") == "fixed",
            rounding=q,
            saturation=o,
        )


def _as_type(fp: FixedPoint | str) -> FixedPoint:
    return fp if isinstance(fp, FixedPoint) else FixedPoint.parse(fp)


def _float_codes(x: Any, fp: FixedPoint) -> np.ndarray:
    """Rounded integer codes of ``x`` (float64 integers, before overflow handling)."""
    if fp.width > MAX_FLOAT_WIDTH:
        raise ConfigError(
            f"{fp.hls()} is wider than {MAX_FLOAT_WIDTH} bits; quantize works in float64 "
            f"and accepts up to {MAX_FLOAT_WIDTH}"
        )
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise DataError(
            f"cannot quantize {int(np.sum(~np.isfinite(x)))} non-finite values to "
            f"{fp.hls()}; accepted: finite numbers"
        )
    scaled = np.ldexp(x, fp.fractional)  # exact: a power-of-two scaling
    floor = np.floor(scaled)
    if fp.rounding == "TRN":
        return floor
    # floor + (remainder >= 1/2): exact even where scaled + 0.5 would round in float64
    return floor + (scaled - floor >= 0.5)


def _overflow(codes: np.ndarray, fp: FixedPoint) -> np.ndarray:
    """Integer codes brought into the type's range by its overflow mode."""
    lo, hi = fp.code_min, fp.code_max
    if fp.saturation == "SAT":
        return np.clip(codes, lo, hi)
    span = 1 << fp.width
    if codes.dtype.kind == "f":
        return np.mod(codes - lo, float(span)) + lo
    return np.mod(codes - lo, span) + lo


def quantize(x: Any, fp: FixedPoint | str) -> np.ndarray:
    """``x`` converted to ``fp`` exactly as ``ap_fixed`` does; float64 values on the grid.

    The value is rounded to a multiple of ``fp.lsb`` (floor for ``TRN``, half up for
    ``RND``), then clipped (``SAT``) or wrapped modulo ``2**width`` codes (``WRAP``).

    >>> quantize([1.0, -1.0, 0.75], FixedPoint(3, 1, rounding="TRN", saturation="WRAP"))
    array([-1.  , -1.  ,  0.75])
    """
    fp = _as_type(fp)
    return np.ldexp(_overflow(_float_codes(x, fp), fp), -fp.fractional)


def count_overflow(x: Any, fp: FixedPoint | str) -> int:
    """How many values of ``x`` overflow ``fp``: whose rounded value falls outside
    ``[fp.min, fp.max]``, so that saturation or wrap around changes them.

    The rounding comes first, as in ``ap_fixed``: with ``RND`` a value just below
    ``max + lsb/2`` still fits, one at ``max + lsb/2`` rounds up and overflows.
    """
    fp = _as_type(fp)
    codes = _float_codes(x, fp)
    return int(np.sum((codes < fp.code_min) | (codes > fp.code_max)))


def _signed_integer_bits(fp: FixedPoint) -> int:
    """Integer bits (sign included) a signed type needs to hold every value of ``fp``."""
    return fp.integer if fp.signed else fp.integer + 1


def accumulator_type(
    input_type: FixedPoint, weight_type: FixedPoint, bias_type: FixedPoint | None, n_terms: int
) -> FixedPoint:
    """The accumulator that holds a sum of ``n_terms`` products plus a bias exactly.

    Fractional bits: those of a product (input + weight), or the bias's if finer.
    Integer bits: a product of two signed types needs ``I_in + I_w`` (the one extreme
    case ``min * min``), a sum of ``n`` of them ``ceil(log2 n)`` more, the bias one more.
    The accumulator never rounds or overflows, so only the result cast rounds.
    """
    fractional = input_type.fractional + weight_type.fractional
    integer = _signed_integer_bits(input_type) + _signed_integer_bits(weight_type)
    integer += max(0, math.ceil(math.log2(max(n_terms, 1))))
    if bias_type is not None:
        fractional = max(fractional, bias_type.fractional)
        integer = max(integer, _signed_integer_bits(bias_type)) + 1
    return FixedPoint(integer + fractional, integer, True, "TRN", "WRAP")


# -- integer-code arithmetic -----------------------------------------------------------
def _codes_of(values: np.ndarray, fp: FixedPoint) -> np.ndarray:
    """int64 codes of values already on ``fp``'s grid (checked)."""
    codes = np.ldexp(np.asarray(values, dtype=np.float64), fp.fractional)
    ints = np.rint(codes)
    if not np.array_equal(ints, codes):
        raise ModelError(f"values are not on the grid of {fp.hls()}; quantise them first")
    return ints.astype(np.int64)


def _requantize(codes: np.ndarray, fractional: int, fp: FixedPoint) -> tuple[np.ndarray, int]:
    """int64 ``codes`` (value ``codes * 2**-fractional``) cast to ``fp``: its codes and
    the number that overflowed."""
    shift = fractional - fp.fractional
    if shift <= 0:
        out = codes << (-shift)
    elif fp.rounding == "TRN":
        out = codes >> shift  # arithmetic shift: floor
    else:
        out = (codes + (1 << (shift - 1))) >> shift
    n_over = int(np.sum((out < fp.code_min) | (out > fp.code_max)))
    return _overflow(out, fp), n_over


@dataclass
class LayerSpec:
    """One layer of a quantised network, as the firmware computes it.

    Attributes
    ----------
    name : the layer's name (also its name in the hls4ml project).
    kind : ``"input"``, ``"dense"``, ``"conv2d"``, ``"relu"`` or ``"flatten"``.
    result : the output type; ``None`` for a dense or convolution without its own
        result type (the exact accumulator is passed on) and for ``flatten``.
    weight, bias : the dense/convolution weights as values on their grids, torch layout
        (dense ``(out, in)``, convolution ``(out, in, kh, kw)``); bias may be ``None``.
    weight_type, bias_type : their types.
    stride : the convolution stride ``(sh, sw)``.
    """

    name: str
    kind: str
    result: FixedPoint | None = None
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    weight_type: FixedPoint | None = None
    bias_type: FixedPoint | None = None
    stride: tuple[int, int] = (1, 1)
    # filled in by FixedPointReference: the type of this layer's input and accumulator
    input_type: FixedPoint | None = field(default=None, repr=False)
    accum_type: FixedPoint | None = field(default=None, repr=False)


_SUPPORTED = "FakeQuant (input), QDense, QConv2d, QReLU, torch.nn.Flatten, torch.nn.Sequential"


def _collect_layers(module: Any, prefix: str = "") -> list[LayerSpec]:
    """The :class:`LayerSpec` of every layer of ``module`` in forward order."""
    describe = getattr(module, "fixed_point_layer", None)
    if callable(describe):
        return [describe(prefix or type(module).__name__.lower())]
    cls = type(module)
    if cls.__name__ == "Flatten" and cls.__module__.startswith("torch.nn"):
        if getattr(module, "start_dim", 1) != 1 or getattr(module, "end_dim", -1) != -1:
            raise ModelError(
                f"layer {prefix!r}: only Flatten(start_dim=1, end_dim=-1) is supported"
            )
        return [LayerSpec(prefix or "flatten", "flatten")]
    if cls.__name__ == "Sequential" and cls.__module__.startswith("torch.nn"):
        layers = []
        for name, child in module.named_children():
            layers += _collect_layers(child, f"{prefix}_{name}" if prefix else name)
        return layers
    raise ModelError(
        f"layer {prefix or '<model>'!r} of type {cls.__name__} is not supported for fixed-point "
        f"export; supported: {_SUPPORTED}"
    )


def network_layers(qmodel: Any) -> list[LayerSpec]:
    """The layers of a quantised network (or copies of a list of :class:`LayerSpec`),
    checked, with input and accumulator types set.

    The first layer must be the input quantiser (a ``FakeQuant``); every dense or
    convolution gets the exact accumulator type of :func:`accumulator_type`.
    """
    if isinstance(qmodel, list | tuple) and all(isinstance(v, LayerSpec) for v in qmodel):
        layers = [dataclasses.replace(layer) for layer in qmodel]
    else:
        layers = _collect_layers(qmodel)
    if not layers or layers[0].kind != "input":
        raise ModelError(
            "a quantised network must start with an input quantiser (FakeQuant) that sets the "
            "input type; build it with quant_mlp/quant_cnn or put FakeQuant(type) first"
        )
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise ModelError(f"layer names are not unique: {names}")
    if any(layer.kind == "input" for layer in layers[1:]):
        raise ModelError("only the first layer may be an input quantiser (FakeQuant)")
    current: FixedPoint = layers[0].result  # type: ignore[assignment]
    for layer in layers[1:]:
        layer.input_type = current
        if layer.kind in ("dense", "conv2d"):
            assert layer.weight is not None and layer.weight_type is not None
            n_terms = int(np.prod(layer.weight.shape[1:]))
            layer.accum_type = accumulator_type(
                current, layer.weight_type, layer.bias_type, n_terms
            )
            if layer.accum_type.width > MAX_INT_WIDTH:
                raise ModelError(
                    f"layer {layer.name!r}: the exact accumulator needs "
                    f"{layer.accum_type.width} bits, more than {MAX_INT_WIDTH}; use narrower types"
                )
            current = layer.result or layer.accum_type
        elif layer.kind == "relu":
            current = layer.result  # type: ignore[assignment]
    return layers


class FixedPointReference:
    """Bit-exact integer emulation of a quantised network built from
    :mod:`fivesigma.nn.quant` (``quant_mlp``, ``quant_cnn`` or a ``Sequential`` of
    ``FakeQuant``, ``QDense``, ``QConv2d``, ``QReLU`` and ``Flatten``).

    Attributes
    ----------
    layers : the :class:`LayerSpec` list, forward order.
    overflows : after :meth:`predict`/:meth:`trace`, per layer, how many values overflowed
        that layer's result type (saturated or wrapped) in the last call.
    """

    def __init__(self, layers: Sequence[LayerSpec]):
        self.layers = list(layers)
        self.overflows: dict[str, int] = {}
        self._codes = {
            layer.name: (
                _codes_of(layer.weight, layer.weight_type),  # type: ignore[arg-type]
                None if layer.bias is None else _codes_of(layer.bias, layer.bias_type),  # type: ignore[arg-type]
            )
            for layer in self.layers
            if layer.kind in ("dense", "conv2d")
        }

    @classmethod
    def from_model(cls, qmodel: Any) -> FixedPointReference:
        """The reference of a quantised torch network (its current weights, quantised), or
        of a list of :class:`LayerSpec`."""
        return cls(network_layers(qmodel))

    @property
    def input_type(self) -> FixedPoint:
        """The type the inputs are converted to."""
        return self.layers[0].result  # type: ignore[return-value]

    @property
    def output_type(self) -> FixedPoint:
        """The type of the last layer's output."""
        last = self.layers[-1]
        return last.result or last.accum_type or last.input_type  # type: ignore[return-value]

    @property
    def overflow_total(self) -> int:
        """Overflowed values of the last call, over all layers."""
        return sum(self.overflows.values())

    def predict(self, x: Any) -> np.ndarray:
        """The output of the last layer for inputs ``x`` (events first; float64, on the
        output type's grid)."""
        return self._run(x, keep=False)[self.layers[-1].name]

    def trace(self, x: Any) -> dict[str, np.ndarray]:
        """Every layer's output (float64 values), by layer name, in forward order."""
        return self._run(x, keep=True)

    def _run(self, x: Any, keep: bool) -> dict[str, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        in_type = self.input_type
        self.overflows = {self.layers[0].name: count_overflow(x, in_type)}
        codes = _codes_of(quantize(x, in_type), in_type)
        frac = in_type.fractional
        out: dict[str, np.ndarray] = {}
        if keep:
            out[self.layers[0].name] = np.ldexp(codes.astype(np.float64), -frac)
        for layer in self.layers[1:]:
            n_over = 0
            if layer.kind in ("dense", "conv2d"):
                w, b = self._codes[layer.name]
                if layer.kind == "dense":
                    if codes.ndim != 2 or codes.shape[1] != w.shape[1]:
                        raise DataError(
                            f"layer {layer.name!r} expects inputs of shape (n, {w.shape[1]}), "
                            f"got {codes.shape}"
                        )
                    acc = codes @ w.T
                else:
                    acc = _conv2d(codes, w, layer.stride, layer.name)
                acc_frac = frac + layer.weight_type.fractional  # type: ignore[union-attr]
                accum: FixedPoint = layer.accum_type  # type: ignore[assignment]
                # bring the products and the bias to the accumulator's grid (exact shifts)
                acc = acc << (accum.fractional - acc_frac)
                if b is not None:
                    shape = (1, -1) + (1,) * (acc.ndim - 2)
                    acc = acc + (b << (accum.fractional - layer.bias_type.fractional)).reshape(
                        shape
                    )  # type: ignore[union-attr]
                if layer.result is None:
                    codes, frac = acc, accum.fractional
                else:
                    codes, n_over = _requantize(acc, accum.fractional, layer.result)
                    frac = layer.result.fractional
            elif layer.kind == "relu":
                codes, n_over = _requantize(np.maximum(codes, 0), frac, layer.result)  # type: ignore[arg-type]
                frac = layer.result.fractional  # type: ignore[union-attr]
            elif layer.kind == "flatten":
                codes = codes.reshape(codes.shape[0], -1)
            self.overflows[layer.name] = n_over
            if keep or layer is self.layers[-1]:
                out[layer.name] = np.ldexp(codes.astype(np.float64), -frac)
        return out

    def describe(self) -> list[dict[str, Any]]:
        """Per layer: name, kind, input/weight/bias/accumulator/result types (HLS text)."""
        rows = []
        for layer in self.layers:
            row: dict[str, Any] = {"name": layer.name, "kind": layer.kind}
            for key in ("input_type", "weight_type", "bias_type", "accum_type", "result"):
                value = getattr(layer, key)
                if value is not None:
                    row[key] = value.hls()
            rows.append(row)
        return rows


def _conv2d(codes: np.ndarray, w: np.ndarray, stride: tuple[int, int], name: str) -> np.ndarray:
    """Valid (unpadded) 2-D cross-correlation in int64: (n, c, h, w) -> (n, o, h', w')."""
    if codes.ndim != 4 or codes.shape[1] != w.shape[1]:
        raise DataError(
            f"layer {name!r} expects inputs of shape (n, {w.shape[1]}, height, width), got "
            f"{codes.shape}"
        )
    n, _, h, wd = codes.shape
    o, _, kh, kw = w.shape
    sh, sw = stride
    ho, wo = (h - kh) // sh + 1, (wd - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise DataError(f"layer {name!r}: input {h}x{wd} is smaller than the kernel {kh}x{kw}")
    out = np.zeros((n, o, ho, wo), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = codes[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out
