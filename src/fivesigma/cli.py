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
from typing import Any

from fivesigma import __version__
from fivesigma.errors import FivesigmaError, OutputError

__all__ = ["build_parser", "main"]

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


#: longest error line printed: messages echo user input (a column name, an expression),
#: which may be arbitrarily long
MAX_ERROR_CHARS = 1000


def _err(message: str) -> None:
    if len(message) > MAX_ERROR_CHARS:
        half = MAX_ERROR_CHARS // 2
        message = f"{message[:half]} ... {message[-half:]}"
    print(f"fivesigma: error: {message}", file=sys.stderr)


# --------------------------------------------------------------------------------------
# Subcommands


def cmd_generate(args: argparse.Namespace) -> int:
    from fivesigma.core.registry import GENERATORS
    from fivesigma.generate import generate

    GENERATORS.entry(args.process)  # an unknown sample: one line naming the registered ones

    options: dict[str, Any] | None = None
    if args.process == "jets":
        options = {
            "process": args.jet_process,
            "pt_min": args.pt_min,
            "pt_max": args.pt_max,
            "eta_max": args.eta_max,
        }
    elif args.jet_process is not None:
        raise FivesigmaError(
            f"--process applies to 'fivesigma generate jets', not to {args.process!r}"
        )
    if args.process == "tracks":
        if args.pt_max is not None:
            raise FivesigmaError("--pt-max applies to 'fivesigma generate jets', not to 'tracks'")
        options = {
            "mu": args.mu,
            "hard_process": args.hard_process,
            "pt_min": args.pt_min,
            "eta_max": args.eta_max,
        }
    else:
        for flag, value in (("--mu", args.mu), ("--hard-process", args.hard_process)):
            if value is not None:
                raise FivesigmaError(
                    f"{flag} applies to 'fivesigma generate tracks', not to {args.process!r}"
                )
    if args.option:
        options = {**(options or {}), **_parse_options(args.option)}
    with _executor(args.scheduler or "local") as client:
        jobs = args.jobs
        if client is not None and jobs is None:
            from fivesigma.core.execution import total_threads

            jobs = total_threads(client)  # the blocks and seeds, so the sample, stay the same
        sample = generate(
            args.process,
            events=args.events,
            out=args.out,
            seed=args.seed,
            jobs=jobs,
            luminosity_fb=args.lumi,
            progress=not args.quiet,
            options=options,
        )
    prov = sample.provenance
    if args.process == "tracks":
        totals = prov.get("totals", {})
        print(
            f"wrote {len(prov.get('events', []))} TrackML events to {sample.directory} "
            f"({totals.get('hits', 0)} hits, {totals.get('particles', 0)} particles)"
        )
        return 0
    print(f"wrote {len(sample.files)} files to {sample.directory}")
    for name, path in sample.files.items():
        info = prov.get("processes", {}).get(name, {})
        xs = info.get("cross_section_pb")
        xs_txt = f"  sigma = {xs:.4g} pb" if xs is not None else ""
        print(f"  {name:<10} {path.name}{xs_txt}")
    return 0


def _executor(scheduler: str, execution: Any = None) -> Any:
    """The executor context of ``--scheduler`` (or of the config's ``execution:``)."""
    from fivesigma.core.execution import executor, parse_scheduler

    spec = parse_scheduler(scheduler)
    if execution is None:
        return executor(spec)
    return executor(
        spec,
        timeout_s=execution.timeout_s,
        workers=execution.workers,
        jobqueue=execution.jobqueue,
        gateway=execution.gateway,
    )


def _parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict; values read as YAML scalars (numbers, true/false,
    null, strings)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise FivesigmaError(f"--option expects KEY=VALUE, got {item!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        if isinstance(value, dict | list):
            value = text  # a plain string, not a YAML collection
        out[key.strip()] = value
    return out


def cmd_config(args: argparse.Namespace) -> int:
    from fivesigma.core.config import config_schema, load_config
    from fivesigma.core.registry import TASKS

    if args.schema:
        print(config_schema())
        return 0
    if args.check:
        cfg = load_config(args.check)
        TASKS.get(cfg.task)().check(cfg)
        print(f"{args.check}: valid (task {cfg.task}, version {cfg.version})")
        return 0
    raise FivesigmaError(
        "config: give --schema to print the JSON schema or --check FILE to validate a config"
    )


def cmd_init(args: argparse.Namespace) -> int:
    from fivesigma.core.files import atomic_file
    from fivesigma.core.registry import TASKS

    text = TASKS.get(args.task)().template()
    path = Path(args.path)
    if path.exists() and not args.force:
        raise OutputError(
            f"'{path}' already exists; use --force to overwrite or choose another name"
        )
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    print(f"wrote {path} (task {args.task}); edit it, then: fivesigma run {path}")
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from fivesigma.core.registry import ESTIMATORS, GENERATORS, TASKS

    registry = ESTIMATORS if args.estimators else GENERATORS if args.generators else TASKS
    width = max((len(e.name) for e in registry), default=0)
    for entry in registry:
        print(f"{entry.name:<{width}}  {entry.description}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from fivesigma.io.events import describe_file

    print(describe_file(args.file, tree=args.tree))
    return 0


def _show(renderable: Any) -> None:
    if isinstance(renderable, str):
        print(renderable)  # plain text: brackets are not rich markup
        return
    from rich.console import Console

    Console().print(renderable)


def cmd_run(args: argparse.Namespace) -> int:
    from fivesigma.core.config import DEFAULT_TASK, load_config
    from fivesigma.core.registry import TASKS
    from fivesigma.core.task import execute

    if args.config:
        cfg = load_config(args.config)
        task = TASKS.get(cfg.task)()
    else:
        task = TASKS.get(DEFAULT_TASK)()
        cfg = task.default_config()
    if args.quick:
        if "preset" not in type(cfg).model_fields:
            raise FivesigmaError(
                f"--quick is for tasks with a preset: key (jets, tracking), not {task.name!r}"
            )
        cfg.preset = "quick"
    if args.scheduler:
        from fivesigma.core.execution import parse_scheduler

        parse_scheduler(args.scheduler)  # one line naming the accepted values
        cfg.execution.scheduler = args.scheduler
    out = Path(args.out) if args.out else cfg.resolve(cfg.output.dir)
    if args.data_only and not hasattr(task, "data_summary"):
        raise FivesigmaError(f"--data-only is for tasks that read event tables, not {task.name!r}")
    with _executor(cfg.execution.scheduler, cfg.execution):
        if args.data_only:
            _show(task.data_summary(cfg, progress=not args.quiet))
            return 0
        result = execute(task, cfg, out, progress=not args.quiet, keep_partial=args.keep_partial)
    _show(task.summary(result))
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from fivesigma.core.bundle import bundle_kind
    from fivesigma.core.registry import BUNDLE_KINDS, TASKS
    from fivesigma.io.writers import check_apply_paths

    if args.chunk_size < 1:
        raise FivesigmaError(
            f"--chunk-size must be a positive number of entries, got {args.chunk_size}"
        )
    kind = bundle_kind(args.bundle)
    owner = BUNDLE_KINDS.entry(kind).metadata["task"]
    task = TASKS.get(owner)()
    if not task.apply_writes_directory:
        check_apply_paths(args.out, args.inputs)
    scheduler = args.scheduler or "local"
    options: dict[str, Any] = {"tree": args.tree, "chunk_size": args.chunk_size}
    if scheduler != "local":
        from fivesigma.core.execution import parse_scheduler

        parse_scheduler(scheduler)
        if not getattr(task, "apply_on_dask", False):
            raise FivesigmaError(
                f"--scheduler {scheduler}: applying {kind!r} bundles ({owner} task) runs "
                "locally only; use --scheduler local"
            )
    with _executor(scheduler) as client:
        if client is not None:
            options.update(client=client, progress=True)
        info = task.apply(Path(args.bundle), args.inputs, Path(args.out), **options)
    print(info["message"])
    failed = info.get("failed") or []
    for file, reason in failed:
        _err(f"not scored: {file}: {reason}")
    return EXIT_USER_ERROR if failed else 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from fivesigma.core.config import parse_config
    from fivesigma.core.registry import TASKS
    from fivesigma.core.task import execute

    keys = {
        "benchmark": args.task,
        "data": args.data,
        "seeds": args.seeds,
        "seed": args.seed,
        "jobs": args.jobs,
        "jets_per_class": args.jets,
        "test_background": args.test_background,
        "max_particles": args.max_particles,
        "epochs": args.epochs,
        "frame": args.frame,
        "device": args.device,
        "taggers": args.taggers.split(",") if args.taggers else None,
    }
    raw = {"version": 1, "task": "jets", "preset": "quick" if args.quick else "full"}
    raw.update({k: v for k, v in keys.items() if v is not None})
    # paths on the command line are relative to the working directory
    cfg = parse_config(raw, source="benchmark", base_dir=Path.cwd())
    task = TASKS.get("jets")()
    result = execute(task, cfg, Path(args.out), progress=not args.quiet)
    _show(task.summary(result))
    return 0


# --------------------------------------------------------------------------------------
# Argument parsing


def _scheduler_argument(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="SPEC",
        help="where the work runs: local, threads:N, processes:N, tcp://HOST:PORT, "
        f"jobqueue:htcondor, jobqueue:slurm or gateway:URL {default}; see docs/scale.md",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fivesigma",
        description="Machine learning for particle physics: from event files to a physics result.",
        epilog="Run 'fivesigma COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"fivesigma {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "run", help="run a task from its config (default: the built-in H->4l analysis)"
    )
    p.add_argument(
        "config", nargs="?", help="YAML config; its task: key picks the task (default: classify)"
    )
    p.add_argument("--out", help="output directory (overrides output.dir)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--data-only", action="store_true", help="read and select the data, print a summary, stop"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="use the task's quick preset (tasks with a preset: key, e.g. jets, tracking)",
    )
    _scheduler_argument(p, "(default: the config's execution.scheduler, else local)")
    p.add_argument(
        "--keep-partial",
        action="store_true",
        help="if the run fails, keep what it wrote in OUT.partial (OUT itself is never touched "
        "by a failed run)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "apply", help="score files (or reconstruct TrackML events) with a saved model bundle"
    )
    p.add_argument("bundle", help="model bundle directory (e.g. OUT/models/bdt)")
    p.add_argument("inputs", nargs="+", help="input files or glob patterns")
    p.add_argument(
        "--out",
        required=True,
        help="output file: .parquet, or .root (a friend tree 'scores'); "
        "tracking: a directory for the TrackML submission CSVs",
    )
    p.add_argument("--tree", default=None, help="tree name (default: the one used in training)")
    p.add_argument(
        "--chunk-size", type=int, default=200_000, help="entries per chunk (default 200000)"
    )
    _scheduler_argument(
        p,
        "(default local); on dask each input gets its own output NAME.00000.SUFFIX, ... "
        "beside --out, with NAME.hist.json and NAME.report.json",
    )
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("generate", help="generate a built-in Pythia8 sample")
    p.add_argument("process", help="built-in sample: 'fivesigma tasks --generators' lists them")
    p.add_argument("--events", type=int, required=True, help="events per physics process")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=1, help="master random seed (default 1)")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: all cores)")
    p.add_argument(
        "--lumi",
        type=float,
        default=140.0,
        help="luminosity in fb^-1 for the weights (default 140)",
    )
    p.add_argument(
        "--process",
        dest="jet_process",
        default=None,
        help="jets only: top, qcd, qcd_bb, qcd_cc, w, z or hbb (default top)",
    )
    p.add_argument(
        "--pt-min",
        type=float,
        default=None,
        help="jets: jet pT window low edge in GeV (default 550); tracks: particle pT cut "
        "(default 0.1)",
    )
    p.add_argument(
        "--pt-max",
        type=float,
        default=None,
        help="jets only: jet pT window high edge in GeV (default 650)",
    )
    p.add_argument(
        "--eta-max",
        type=float,
        default=None,
        help="jets: jet |eta| cut (default 2); tracks: particle |eta| cut (default 4)",
    )
    p.add_argument(
        "--mu",
        type=float,
        default=None,
        help="tracks only: mean number of pile-up interactions (default 200)",
    )
    p.add_argument(
        "--hard-process",
        default=None,
        help="tracks only: ttbar or none (default ttbar)",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any option of the sample (repeatable), e.g. --option noise_fraction=0.1; "
        "see fivesigma.generate.tracks.TrackOptions and fivesigma.generate.jets.JetOptions",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _scheduler_argument(p, "(default local: --jobs spawn processes here)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser(
        "benchmark",
        help="train and compare every jet tagger (the papers' table); a shortcut for a "
        "task: jets config",
    )
    p.add_argument(
        "task", help="benchmark task: top (top vs QCD jets) or flavour (b, c, uds, g, top)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small preset: top about 12 minutes on 2 CPU cores (6 per seed once generated), flavour about 7 once generated",
    )
    p.add_argument(
        "--data",
        nargs="+",
        default=None,
        help="jet files (Top Tagging Reference Dataset .h5, EnergyFlow .npz, fivesigma ROOT); default: generate",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="trainings per tagger (mean +- std), default 1"
    )
    p.add_argument("--seed", type=int, default=None, help="base seed (default 1)")
    p.add_argument(
        "--taggers", default=None, help="comma-separated subset of bdt,cnn1d,pfn,particlenet,part"
    )
    p.add_argument("--jets", type=int, default=None, help="generated jets per class")
    p.add_argument(
        "--test-background",
        type=int,
        default=None,
        help="extra generated QCD jets (another seed) added to the test split only, so "
        "large rejections rest on enough background jets",
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs per tagger")
    p.add_argument(
        "--max-particles",
        type=int,
        default=None,
        help="leading constituents per jet the networks see (default 100; the quick "
        "flavour preset 48); fewer train faster but cost ParticleNet and ParT rejection",
    )
    p.add_argument(
        "--frame",
        default=None,
        help="constituent frame: principal (rotate/flip each jet into its principal axes, "
        "default) or none (the ParT paper's inputs)",
    )
    p.add_argument(
        "--jobs", type=int, default=None, help="generation processes (default: all cores)"
    )
    p.add_argument(
        "--device",
        default=None,
        help="where the networks train and predict: cpu (default), cuda, cuda:N or auto",
    )
    p.add_argument(
        "--out",
        default="fivesigma-benchmark",
        help="output directory (default fivesigma-benchmark)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("config", help="print the config schema or validate a config")
    p.add_argument("--schema", action="store_true", help="print the JSON schema of a config")
    p.add_argument("--check", metavar="FILE", help="validate FILE and report the first problem")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("init", help="write a commented example config to start from")
    p.add_argument(
        "path", nargs="?", default="fivesigma.yaml", help="where to write (default fivesigma.yaml)"
    )
    p.add_argument(
        "--task",
        default="classify",
        help="whose config: a task from 'fivesigma tasks' (default classify)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("tasks", help="list the registered tasks, one line each")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--estimators", action="store_true", help="list the estimators instead")
    which.add_argument(
        "--generators", action="store_true", help="list the built-in samples instead"
    )
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("inspect", help="list the trees/columns of a data file")
    p.add_argument("file", help="ROOT, Parquet, HDF5 or CSV file")
    p.add_argument("--tree", default=None, help="tree (ROOT) or key (HDF5) to describe")
    p.set_defaults(func=cmd_inspect)
    return parser


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's exit flush does not raise BrokenPipeError again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


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
    except BrokenPipeError:
        # `fivesigma inspect FILE | head`: the reader left; not an error of ours
        _silence_stdout()
        return 0
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
