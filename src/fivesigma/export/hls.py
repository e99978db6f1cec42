"""hls4ml firmware of a quantised network, its bit-exact C++ emulation, and estimates.

:meth:`Firmware.convert` turns a network of :mod:`fivesigma.nn.quant` layers into an
hls4ml project: the quantised weights go into a plain torch network (``Linear``,
``Conv2d``, ``ReLU``, ``Flatten``, with the same layer names) that hls4ml's PyTorch
front end reads, and every layer's ``weight``, ``bias``, ``accum`` and ``result``
precision is set from the QAT types (the accumulator wide enough never to round, see
:func:`~fivesigma.export.fixed_point.accumulator_type`). The g++-compiled emulation then
agrees with :class:`~fivesigma.export.fixed_point.FixedPointReference` bit for bit.

:meth:`Firmware.compile` builds the emulation library once per content: the key hashes
the quantised weights, the types, the settings and the hls4ml version, and a compiled
project is reused from ``~/.cache/fivesigma/hls/<key>`` (or the given cache directory).
:meth:`Firmware.predict` calls the library's ``myproject_double`` through ctypes, the
way hls4ml's ``predict`` does, so a saved bundle (:meth:`Firmware.save` /
:meth:`Firmware.load`) predicts without hls4ml and without converting again.

:func:`resources` estimates what is knowable without vendor tools (stated models, see
its docstring).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fivesigma.errors import (
    ConfigError,
    DataError,
    MissingDependencyError,
    ModelError,
    describe_exception,
)
from fivesigma.export.fixed_point import FixedPoint, LayerSpec, network_layers

__all__ = ["DSP_THRESHOLD_BITS", "Firmware", "HLSSettings", "require_compiler", "resources"]

BACKENDS = ("Vitis", "Vivado")
IO_TYPES = ("io_parallel",)
STRATEGIES = ("Latency", "Resource")
PROJECT = "myproject"
MANIFEST = "firmware.json"
FORMAT_VERSION = 2

#: A multiplication maps to DSP48E2 slices when both operands are wider than this.
DSP_THRESHOLD_BITS = 9
#: Adder-tree levels that fit one clock cycle (of 5 ns; scaled with the period).
ADDER_LEVELS_PER_5NS = 2


@dataclass
class HLSSettings:
    """hls4ml project settings.

    Attributes
    ----------
    backend : ``"Vitis"`` or ``"Vivado"``.
    io_type : ``"io_parallel"`` (the only one whose bit-exactness is checked here).
    strategy : ``"Latency"`` or ``"Resource"``.
    reuse_factor : how many times each multiplier is reused (1: fully parallel).
    clock_period_ns : target clock period.
    part : the FPGA part.
    """

    backend: str = "Vitis"
    io_type: str = "io_parallel"
    strategy: str = "Latency"
    reuse_factor: int = 1
    clock_period_ns: float = 5.0
    part: str = "xcvu13p-flga2577-2-e"

    def __post_init__(self) -> None:
        for key, value, accepted in (
            ("backend", self.backend, BACKENDS),
            ("io_type", self.io_type, IO_TYPES),
            ("strategy", self.strategy, STRATEGIES),
        ):
            if value not in accepted:
                raise ConfigError(
                    f"HLS setting {key}={value!r} is not supported; accepted: {', '.join(accepted)}"
                )
        if isinstance(self.reuse_factor, bool) or int(self.reuse_factor) != self.reuse_factor:
            raise ConfigError(f"reuse_factor must be a positive integer, got {self.reuse_factor!r}")
        if self.reuse_factor < 1:
            raise ConfigError(f"reuse_factor must be a positive integer, got {self.reuse_factor!r}")
        if not self.clock_period_ns > 0:
            raise ConfigError(f"clock_period_ns must be positive, got {self.clock_period_ns!r}")
        self.reuse_factor = int(self.reuse_factor)
        self.clock_period_ns = float(self.clock_period_ns)


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fivesigma" / "hls"


def _hls4ml_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hls4ml")
    except PackageNotFoundError:
        return "missing"


def _key(layers: list[LayerSpec], input_shape: tuple[int, ...], settings: HLSSettings) -> str:
    """Content key of a firmware: weights, types, shapes, settings, hls4ml version."""
    digest = hashlib.sha256()
    head = {
        "format": FORMAT_VERSION,
        "hls4ml": _hls4ml_version(),
        "settings": asdict(settings),
        "input_shape": list(input_shape),
        "layers": [_describe(layer) for layer in layers],
    }
    digest.update(json.dumps(head, sort_keys=True).encode())
    for layer in layers:
        for array in (layer.weight, layer.bias):
            if array is not None:
                digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()[:24]


def _describe(layer: LayerSpec) -> dict[str, Any]:
    row: dict[str, Any] = {"name": layer.name, "kind": layer.kind}
    for key in ("input_type", "weight_type", "bias_type", "accum_type", "result"):
        value = getattr(layer, key)
        if value is not None:
            row[key] = value.hls()
    if layer.weight is not None:
        row["weight_shape"] = list(layer.weight.shape)
    if layer.kind == "conv2d":
        row["stride"] = list(layer.stride)
    return row


def _plain_network(layers: list[LayerSpec]) -> Any:
    """A plain torch network with the quantised weights, for hls4ml's front end."""
    from fivesigma.core import extras

    torch = extras.torch()
    modules: OrderedDict[str, Any] = OrderedDict()
    for layer in layers[1:]:
        if layer.kind in ("dense", "conv2d"):
            w = layer.weight
            assert w is not None
            if layer.kind == "dense":
                module = torch.nn.Linear(w.shape[1], w.shape[0], bias=layer.bias is not None)
            else:
                module = torch.nn.Conv2d(
                    w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=layer.stride,
                    bias=layer.bias is not None,
                )  # fmt: skip
            with torch.no_grad():
                # float64 -> float32 is exact: the values are on grids of at most 24 bits
                module.weight.copy_(torch.from_numpy(np.asarray(w, dtype=np.float32)))
                if layer.bias is not None:
                    module.bias.copy_(torch.from_numpy(np.asarray(layer.bias, dtype=np.float32)))
        elif layer.kind == "relu":
            module = torch.nn.ReLU()
        else:
            module = torch.nn.Flatten()
        modules[layer.name] = module
    return torch.nn.Sequential(modules).eval()


def _check_float32_exact(layers: list[LayerSpec]) -> None:
    for layer in layers:
        for what, fp in (("weight", layer.weight_type), ("bias", layer.bias_type)):
            if fp is not None and fp.width > 24:
                raise ModelError(
                    f"layer {layer.name!r}: {what} type {fp.hls()} is wider than 24 bits; "
                    "hls4ml reads float32 weights, accepted: up to 24 bits"
                )


def _hls_config(hls4ml: Any, plain: Any, layers: list[LayerSpec], input_shape, settings) -> dict:
    """hls4ml's per-layer config with every precision set from the QAT types."""
    config = hls4ml.utils.config_from_pytorch_model(
        plain,
        input_shape=tuple(input_shape),
        granularity="name",
        # every layer gets an explicit type below; a layer hls4ml adds would get this
        # deliberately useless one, and the bit-exact check would show it
        default_precision="ap_fixed<2,1>",
        default_reuse_factor=settings.reuse_factor,
        backend=settings.backend,
    )
    config["Model"]["Strategy"] = settings.strategy
    by_name = config["LayerName"]
    ours = {layer.name for layer in layers[1:]}
    inputs = [name for name in by_name if name not in ours]
    if len(inputs) != 1:
        raise ModelError(f"hls4ml named the layers {list(by_name)}; expected one input layer")
    by_name[inputs[0]]["Precision"] = {"result": layers[0].result.hls()}  # type: ignore[union-attr]
    for layer in layers[1:]:
        entry = by_name.get(layer.name)
        if entry is None:
            raise ModelError(
                f"hls4ml did not keep layer {layer.name!r}; its layers: {list(by_name)}"
            )
        precision = entry.setdefault("Precision", {})
        if layer.kind in ("dense", "conv2d"):
            precision["weight"] = layer.weight_type.hls()  # type: ignore[union-attr]
            precision["bias"] = (layer.bias_type or layer.weight_type).hls()  # type: ignore[union-attr]
            precision["accum"] = layer.accum_type.hls()  # type: ignore[union-attr]
            precision["result"] = (layer.result or layer.accum_type).hls()  # type: ignore[union-attr]
        elif layer.kind == "relu":
            precision["result"] = layer.result.hls()  # type: ignore[union-attr]
        else:  # flatten: a reshape, same type as its input
            precision["result"] = layer.input_type.hls()  # type: ignore[union-attr]
        entry["ReuseFactor"] = settings.reuse_factor
    return config


def _find_library(project: Path) -> Path:
    libs = sorted((project / "firmware").glob(f"{PROJECT}-*.so"))
    if not libs:
        raise ModelError(
            f"no compiled emulation library {PROJECT}-*.so in '{project / 'firmware'}'"
        )
    return libs[-1]


class Firmware:
    """An hls4ml project of a quantised network and its compiled C++ emulation.

    Build it with :meth:`convert` (or :meth:`load` a saved one); :meth:`compile`, then
    :meth:`predict`.

    Attributes
    ----------
    layers : per layer, its name, kind and HLS types (``describe`` rows).
    input_shape : one event's input shape (torch layout, channels first).
    n_outputs : outputs per event.
    settings : the :class:`HLSSettings`.
    key : the content key (weights, types, settings, hls4ml version).
    directory : the hls4ml project directory (set once compiled or loaded).
    compile_seconds : time the last :meth:`compile` took (0 when the cache had it).
    cache_hit : whether the last :meth:`compile` reused a cached project.
    """

    def __init__(
        self,
        layers: list[dict[str, Any]],
        input_shape: tuple[int, ...],
        n_outputs: int,
        settings: HLSSettings,
        key: str,
        out_dir: Path | None = None,
        cache_dir: Path | None = None,
        specs: list[LayerSpec] | None = None,
    ):
        self.layers = layers
        self.input_shape = tuple(int(s) for s in input_shape)
        self.n_outputs = int(n_outputs)
        self.settings = settings
        self.key = key
        self.out_dir = out_dir
        self.cache_dir = cache_dir
        self.directory: Path | None = None
        self.compile_seconds = 0.0
        self.cache_hit = False
        self._specs = specs
        self._lib: Any = None
        self._function: Any = None

    # -- building -----------------------------------------------------------------------
    @classmethod
    def convert(
        cls,
        qmodel: Any,
        input_shape: tuple[int, ...] | int,
        settings: HLSSettings | None = None,
        out_dir: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> Firmware:
        """The firmware of quantised network ``qmodel`` for events of ``input_shape``.

        Reads the layers and their types (raising :class:`~fivesigma.errors.ModelError`
        that names an unsupported layer and lists the supported ones) and fixes the
        content key. The hls4ml project itself is written by :meth:`compile` into
        ``out_dir`` (default: a new temporary directory) unless the cache has it.
        """
        settings = settings or HLSSettings()
        shape = (
            (int(input_shape),) if isinstance(input_shape, int | np.integer) else tuple(input_shape)
        )
        specs = network_layers(qmodel)
        _check_float32_exact(specs)
        n_outputs = _output_size(specs, shape)
        return cls(
            [_describe(layer) for layer in specs],
            shape,
            n_outputs,
            settings,
            _key(specs, shape, settings),
            Path(out_dir) if out_dir is not None else None,
            Path(cache_dir) if cache_dir is not None else None,
            specs,
        )

    def compile(self, cache_dir: str | os.PathLike | None = None) -> None:
        """Build (or reuse from the cache) the C++ emulation library and load it.

        Raises :class:`~fivesigma.errors.MissingDependencyError` when a build is needed
        and g++ is not on the PATH.
        """
        cache = Path(cache_dir) if cache_dir is not None else self.cache_dir or _default_cache()
        cached = cache / self.key
        start = time.perf_counter()
        self.cache_hit = (cached / MANIFEST).is_file()
        if self.cache_hit:
            project = cached / "project"
            if self.out_dir is not None:
                shutil.copytree(project, self.out_dir, dirs_exist_ok=True)
                project = self.out_dir
        else:
            if self._specs is None:
                raise ModelError("this firmware was loaded from a bundle and is compiled already")
            require_compiler()
            project = self._build(self.out_dir or Path(tempfile.mkdtemp(prefix="fivesigma-hls-")))
            self._store(project, cached)
        self.directory = project
        self._open(_find_library(project))
        self.compile_seconds = time.perf_counter() - start

    def _build(self, project: Path) -> Path:
        from fivesigma.core import extras

        hls4ml = extras.hls4ml()
        specs = self._specs
        assert specs is not None
        plain = _plain_network(specs)
        config = _hls_config(hls4ml, plain, specs, self.input_shape, self.settings)
        log = io.StringIO()
        try:
            with contextlib.redirect_stdout(log):
                model = hls4ml.converters.convert_from_pytorch_model(
                    plain,
                    hls_config=config,
                    output_dir=str(project),
                    project_name=PROJECT,
                    backend=self.settings.backend,
                    io_type=self.settings.io_type,
                    part=self.settings.part,
                    clock_period=self.settings.clock_period_ns,
                    # weights compiled into the library: with .txt weights it reads them
                    # at run time from the build directory and cannot be moved
                    write_weights_txt=False,
                )
                _check_types(model, specs)
                model.compile()
        except (ModelError, MissingDependencyError):
            raise
        except Exception as err:
            tail = log.getvalue().strip().splitlines()[-1:] or [""]
            raise ModelError(
                f"hls4ml could not convert or compile the network ({describe_exception(err)}) "
                f"{tail[0][:200]}"
            ) from err
        return project

    def _store(self, project: Path, cached: Path) -> None:
        """Copy a compiled project into the cache (atomically; a failure only warns)."""
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=f".{cached.name}."))
            shutil.copytree(project, tmp / "project", dirs_exist_ok=True)
            (tmp / MANIFEST).write_text(json.dumps(self._manifest(), indent=1))
            try:
                os.replace(tmp, cached)
            except OSError:  # another process stored it first
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass

    def _open(self, library: Path) -> None:
        self._lib = ctypes.cdll.LoadLibrary(str(library))
        function = getattr(self._lib, f"{PROJECT}_double")
        pointer = np.ctypeslib.ndpointer(np.float64, flags="C_CONTIGUOUS")
        function.argtypes = [pointer, pointer]
        function.restype = None
        self._function = function

    # -- running ------------------------------------------------------------------------
    def predict(self, x: Any) -> np.ndarray:
        """The firmware's output for events ``x`` of shape ``(n, *input_shape)`` (float64,
        ``(n, n_outputs)``). Inputs are converted to the input type by the C++ code."""
        if self._function is None:
            raise ModelError("the firmware is not compiled; call compile() first")
        x = np.asarray(x, dtype=np.float64)
        if x.shape[1:] != self.input_shape:
            raise DataError(
                f"firmware input has shape {x.shape}; expected (n, "
                f"{', '.join(map(str, self.input_shape))})"
            )
        if not np.all(np.isfinite(x)):
            raise DataError("firmware input has NaN or infinite values; accepted: finite numbers")
        flat = np.ascontiguousarray(x.reshape(len(x), -1))
        out = np.zeros((len(x), self.n_outputs), dtype=np.float64)
        row = np.zeros(self.n_outputs, dtype=np.float64)
        for i in range(len(x)):
            self._function(np.ascontiguousarray(flat[i]), row)
            out[i] = row
        return out

    # -- bundles ------------------------------------------------------------------------
    def _manifest(self) -> dict[str, Any]:
        return {
            "kind": "fivesigma-hls-firmware",
            "format": FORMAT_VERSION,
            "key": self.key,
            "hls4ml": _hls4ml_version(),
            "input_shape": list(self.input_shape),
            "n_outputs": self.n_outputs,
            "settings": asdict(self.settings),
            "layers": self.layers,
            "project": PROJECT,
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the bundle: ``firmware.json`` and ``project/`` (the hls4ml project with
        the compiled library ``project/firmware/myproject-*.so``), atomically."""
        from fivesigma.core.files import atomic_dir

        if self.directory is None:
            raise ModelError("the firmware is not compiled; call compile() before save()")
        path = Path(directory)
        with atomic_dir(path) as tmp:
            shutil.copytree(self.directory, tmp / "project")
            (tmp / MANIFEST).write_text(json.dumps(self._manifest(), indent=1))
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Firmware:
        """A saved bundle, ready to predict: its library is opened with ctypes; neither
        hls4ml nor g++ is needed."""
        path = Path(directory)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError) as err:
            raise ModelError(
                f"'{path}' is not a firmware bundle ({describe_exception(err)}); expected a "
                f"directory written by Firmware.save with {MANIFEST}"
            ) from None
        if manifest.get("kind") != "fivesigma-hls-firmware":
            raise ModelError(f"'{path / MANIFEST}' is not a firmware manifest")
        firmware = cls(
            manifest["layers"],
            tuple(manifest["input_shape"]),
            manifest["n_outputs"],
            HLSSettings(**manifest["settings"]),
            manifest["key"],
        )
        firmware.directory = path / "project"
        try:
            firmware._open(_find_library(firmware.directory))
        except OSError as err:
            raise ModelError(
                f"cannot load the emulation library of '{path}' ({describe_exception(err)})"
            ) from None
        return firmware


def _output_size(specs: list[LayerSpec], input_shape: tuple[int, ...]) -> int:
    return int(np.prod(_shapes(specs, input_shape)[specs[-1].name]))


def _check_types(model: Any, specs: list[LayerSpec]) -> None:
    """Every layer hls4ml made carries the types we set (a layer it inserted, or an
    optimiser pass that changed a type, would break bit-exactness)."""
    wanted = {layer.name: layer for layer in specs[1:]}
    for layer in model.get_layers():
        spec = wanted.get(layer.name)
        if layer.class_name in ("Input", "InputLayer"):
            continue
        if spec is None:
            raise ModelError(
                f"hls4ml added layer {layer.name!r} ({layer.class_name}) that fivesigma "
                "cannot check for bit-exactness"
            )
        result = str(layer.get_output_variable().type.precision)
        expected = spec.result or (spec.accum_type if spec.kind != "flatten" else spec.input_type)
        if result != _hls4ml_text(expected):
            raise ModelError(
                f"hls4ml set layer {layer.name!r} result type {result}; expected "
                f"{_hls4ml_text(expected)}"
            )


def _hls4ml_text(fp: FixedPoint | None) -> str:
    """hls4ml's own spelling of a type (``fixed<8,3,RND,SAT,0>``)."""
    assert fp is not None
    kind = "fixed" if fp.signed else "ufixed"
    return f"{kind}<{fp.width},{fp.integer},{fp.rounding},{fp.saturation},0>"


# -- resources and latency -----------------------------------------------------------
def _csd_digits(code: int) -> int:
    """Non-zero digits of ``code`` in canonical signed-digit (non-adjacent) form."""
    n, digits = abs(int(code)), 0
    while n:
        if n & 1:
            digits += 1
            n = n - 1 if n & 2 == 0 else n + 1
        n >>= 1
    return digits


def _multiplier_cost(a_bits: int, w_bits: int, code: int) -> tuple[int, int]:
    """(DSPs, LUTs) of one multiplication by the constant weight ``code``.

    DSP48E2 (27x18) slices when both operands are wider than :data:`DSP_THRESHOLD_BITS`;
    else shift-and-add: one ``a_bits + w_bits`` wide adder (one LUT per bit) per
    canonical-signed-digit of the weight beyond the first (a power of two is free).
    """
    if a_bits > DSP_THRESHOLD_BITS and w_bits > DSP_THRESHOLD_BITS:
        big, small = max(a_bits, w_bits), min(a_bits, w_bits)
        return math.ceil(big / 27) * math.ceil(small / 18), 0
    return 0, max(0, _csd_digits(code) - 1) * (a_bits + w_bits)


def require_compiler() -> None:
    """Raise a one-line MissingDependencyError when g++ (hls4ml's emulation) is missing."""
    if shutil.which("g++") is None:
        raise MissingDependencyError(
            "g++ is needed to compile the hls4ml emulation of the firmware; install it "
            "with: apt-get install g++ (or conda install -c conda-forge gxx), or set "
            "hls.enabled: false to skip the firmware"
        )


def resources(
    qmodel: Any, settings: HLSSettings | None = None, input_shape: tuple[int, ...] | None = None
) -> dict[str, Any]:
    """Resources and latency knowable without vendor tools, per layer and in total.

    Models (stated, rough; synthesis gives the real numbers):

    - multiplications: non-zero quantised weights (times output positions for a
      convolution); physical multipliers: non-zero weights / reuse factor, rounded up
      (a convolution reuses its kernel multipliers over the output positions);
    - a multiplication is DSP48E2 slices (``ceil(max/27) * ceil(min/18)``) when both
      operand widths exceed ``DSP_THRESHOLD_BITS`` (9), else shift-and-add by the constant
      weight: ``(csd - 1) * (a + w)`` LUTs, ``csd`` the weight's non-zero canonical
      signed digits (LUT costs divided by the reuse factor);
    - adders: one accumulator-wide adder per non-zero weight and bias, ``accum`` LUTs
      each; a ReLU: its result width in LUTs per output;
    - latency (Latency strategy, io_parallel): a dense layer takes ``reuse_factor`` cycles
      for the products (``+2`` when they use DSPs, the DSP pipeline) plus
      ``ceil(ceil(log2(n_in + 1)) / L)`` cycles of adder tree, ``L = 2`` levels per cycle
      at 5 ns (scaled with the period); a convolution repeats this over its output
      positions (initiation interval ``positions * reuse_factor``); ReLU and flatten are
      combinational (0 cycles). The network's interval is its largest layer interval.
    """
    settings = settings or HLSSettings()
    specs = network_layers(qmodel)
    if input_shape is None:
        first = next((layer for layer in specs if layer.weight is not None), None)
        if first is None or first.kind != "dense":
            raise ConfigError(
                "resources of a network that does not start with a dense layer need input_shape"
            )
        input_shape = (int(first.weight.shape[1]),)  # type: ignore[union-attr]
    shapes = _shapes(specs, tuple(input_shape))
    rf = settings.reuse_factor
    levels = max(1, int(ADDER_LEVELS_PER_5NS * settings.clock_period_ns / 5.0))
    rows: dict[str, dict[str, Any]] = {}
    for layer in specs[1:]:
        row: dict[str, Any] = {"kind": layer.kind}
        if layer.kind in ("dense", "conv2d"):
            w = layer.weight
            assert w is not None and layer.input_type and layer.weight_type and layer.accum_type
            nonzero = int(np.count_nonzero(w))
            positions = 1
            if layer.kind == "conv2d":
                positions = int(np.prod(shapes[layer.name][1:]))
            a_bits, w_bits = layer.input_type.width, layer.weight_type.width
            multipliers = math.ceil(nonzero / rf)
            codes = np.rint(np.ldexp(w[w != 0], layer.weight_type.fractional)).astype(np.int64)
            costs = [_multiplier_cost(a_bits, w_bits, int(c)) for c in codes]
            dsp_all = sum(c[0] for c in costs)
            lut_all = sum(c[1] for c in costs)
            dsp_each = dsp_all > 0
            n_bias = 0 if layer.bias is None else int(np.count_nonzero(layer.bias))
            adders = math.ceil((nonzero + n_bias) / rf)
            n_in = int(np.prod(w.shape[1:]))
            depth = rf + (2 if dsp_each else 0) + math.ceil(math.ceil(math.log2(n_in + 1)) / levels)
            interval = positions * rf
            row.update(
                weights=int(w.size),
                nonzero_weights=nonzero,
                weight_bits=nonzero * w_bits,
                multiplications=nonzero * positions,
                multipliers=multipliers,
                dsp=math.ceil(dsp_all / rf),
                lut=math.ceil(lut_all / rf) + adders * layer.accum_type.width,
                operand_bits=[a_bits, w_bits],
                accumulator=layer.accum_type.hls(),
                latency_cycles=depth + (positions - 1) * rf,
                interval_cycles=interval,
            )
        else:
            if layer.kind == "relu":
                assert layer.result is not None
                n_out = int(np.prod(shapes[layer.name]))
                row["lut"] = n_out * layer.result.width
            row.update(latency_cycles=0, interval_cycles=1)
        rows[layer.name] = row
    total_keys = ("weights", "nonzero_weights", "weight_bits", "multiplications", "multipliers")
    total: dict[str, Any] = {key: sum(r.get(key, 0) for r in rows.values()) for key in total_keys}
    total["dsp"] = sum(r.get("dsp", 0) for r in rows.values())
    total["lut"] = sum(r.get("lut", 0) for r in rows.values())
    total["latency_cycles"] = sum(r["latency_cycles"] for r in rows.values())
    total["latency_ns"] = total["latency_cycles"] * settings.clock_period_ns
    total["interval_cycles"] = max(r["interval_cycles"] for r in rows.values())
    return {
        "settings": asdict(settings),
        "layers": rows,
        "total": total,
        "model": {
            "dsp_threshold_bits": DSP_THRESHOLD_BITS,
            "lut_per_lut_multiplier": "(csd_digits(weight) - 1) * (a_bits + w_bits)",
            "lut_per_adder": "accumulator width",
            "adder_levels_per_cycle": levels,
            "dsp_pipeline_cycles": 2,
        },
        "synthesis_needed_for": [
            "timing closure at the clock period",
            "exact LUT, FF, BRAM and DSP counts (HLS constant-multiplier optimisation)",
            "the scheduled latency and initiation interval",
            "routing and congestion",
        ],
    }


def _shapes(specs: list[LayerSpec], input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Each layer's output shape (one event, channels first)."""
    shape = tuple(input_shape)
    shapes = {specs[0].name: shape}
    for layer in specs[1:]:
        if layer.kind == "dense":
            n_in = layer.weight.shape[1]  # type: ignore[union-attr]
            if shape != (n_in,):
                raise ModelError(f"layer {layer.name!r} expects ({n_in},) inputs, gets {shape}")
            shape = (layer.weight.shape[0],)  # type: ignore[union-attr]
        elif layer.kind == "conv2d":
            o, c, kh, kw = layer.weight.shape  # type: ignore[union-attr]
            if len(shape) != 3 or shape[0] != c or shape[1] < kh or shape[2] < kw:
                raise ModelError(
                    f"layer {layer.name!r} expects ({c}, height >= {kh}, width >= {kw}) inputs, "
                    f"gets {shape}"
                )
            sh, sw = layer.stride
            shape = (o, (shape[1] - kh) // sh + 1, (shape[2] - kw) // sw + 1)
        elif layer.kind == "flatten":
            shape = (int(np.prod(shape)),)
        shapes[layer.name] = shape
    return shapes
