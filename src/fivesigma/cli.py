"""The ``fivesigma`` command: thin wrappers over the Python API.

Each subcommand parses arguments, calls one API function and prints a short summary.
User errors (:class:`~fivesigma.errors.FivesigmaError`) print one line to stderr and exit
non-zero; ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import FivesigmaError, OutputError

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


def _err(message: str) -> None:
    print(f"fivesigma: error: {message}", file=sys.stderr)


# --------------------------------------------------------------------------------------
# Subcommands


def cmd_generate(args: argparse.Namespace) -> int:
    from .generate import generate

    sample = generate(
        args.process,
        events=args.events,
        out=args.out,
        seed=args.seed,
        jobs=args.jobs,
        luminosity_fb=args.lumi,
        progress=not args.quiet,
    )
    prov = sample.provenance
    print(f"wrote {len(sample.files)} files to {sample.directory}")
    for name, path in sample.files.items():
        info = prov.get("processes", {}).get(name, {})
        xs = info.get("cross_section_pb")
        xs_txt = f"  sigma = {xs:.4g} pb" if xs is not None else ""
        print(f"  {name:<10} {path.name}{xs_txt}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from .config import config_schema, load_config

    if args.schema:
        print(config_schema())
        return 0
    if args.check:
        cfg = load_config(args.check)
        print(f"{args.check}: valid (version {cfg.version}, {len(cfg.data.samples)} samples)")
        return 0
    raise FivesigmaError("config: give --schema to print the JSON schema or --check FILE to validate a config")


def cmd_init(args: argparse.Namespace) -> int:
    from ._io import atomic_file
    from .workflow import default_config_text

    path = Path(args.path)
    if path.exists() and not args.force:
        raise OutputError(f"'{path}' already exists; use --force to overwrite or choose another name")
    with atomic_file(path) as tmp:
        tmp.write_text(default_config_text())
    print(f"wrote {path}; edit data.samples, then: fivesigma run {path}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .data.sources import describe_file

    print(describe_file(args.file, tree=args.tree))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .workflow import default_config, prepare_data

    cfg = load_config(args.config) if args.config else default_config()
    if args.out:
        cfg.output.dir = str(args.out)
    dataset = prepare_data(cfg, progress=not args.quiet)
    _print_dataset_summary(dataset)
    return 0


def _print_dataset_summary(dataset) -> None:
    from rich.console import Console
    from rich.table import Table

    summary = dataset.summary()
    table = Table(title=f"{summary['events']} events after selection")
    table.add_column("sample")
    for col in ("read", "selected", "train", "validation", "test", "sum of weights"):
        table.add_column(col, justify="right")
    for name, row in summary["samples"].items():
        table.add_row(
            name,
            str(row.get("events_read", "")),
            str(row["events"]),
            str(row["train"]["events"]),
            str(row["validation"]["events"]),
            str(row["test"]["events"]),
            f"{row['sum_weights']:.4g}",
        )
    Console().print(table)


# --------------------------------------------------------------------------------------
# Argument parsing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fivesigma",
        description="Machine learning for particle physics: from event files to a physics result.",
        epilog="Run 'fivesigma COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"fivesigma {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run an analysis (default: the built-in H->4l example)")
    p.add_argument("config", nargs="?", help="YAML config (default: the built-in analysis)")
    p.add_argument("--out", help="output directory (overrides output.dir)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("generate", help="generate a built-in Pythia8 sample")
    p.add_argument("process", help="sample to generate: higgs4l")
    p.add_argument("--events", type=int, required=True, help="events per physics process")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=1, help="master random seed (default 1)")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: all cores)")
    p.add_argument("--lumi", type=float, default=140.0, help="luminosity in fb^-1 for the weights (default 140)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("config", help="print the config schema or validate a config")
    p.add_argument("--schema", action="store_true", help="print the JSON schema of a config")
    p.add_argument("--check", metavar="FILE", help="validate FILE and report the first problem")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("init", help="write a commented example config to start from")
    p.add_argument("path", nargs="?", default="fivesigma.yaml", help="where to write (default fivesigma.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("inspect", help="list the trees/columns of a data file")
    p.add_argument("file", help="ROOT, Parquet, HDF5 or CSV file")
    p.add_argument("--tree", default=None, help="tree (ROOT) or key (HDF5) to describe")
    p.set_defaults(func=cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(args.func(args) or 0)
    except FivesigmaError as err:
        if args.debug:
            raise
        _err(str(err).splitlines()[0] if str(err) else type(err).__name__)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        if args.debug:
            raise
        _err("interrupted")
        return EXIT_INTERRUPTED
    except Exception as err:  # a bug, not a user error: say so, keep it to one line
        if args.debug:
            raise
        _err(f"internal error: {type(err).__name__}: {err} (rerun with --debug for the traceback)")
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
