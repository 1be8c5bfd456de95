"""The `sweep`, `shots`, `grid` and `table` subcommands: argument parsing and their handlers.

Registered by `cli.build_parser`; the engine (torch) is imported only inside the handlers. Bad input is
an AutoFTError (one line, exit 2); failed runs exit 1 after the others are stored; diverged runs are
stored and counted (exit 0, with a warning); Ctrl-C or SIGTERM stops the workers at once and exits 130
(finished runs are stored as each one ends).
"""
from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..cli_args import (POSITIVE_INT, SEVERITY, add_paths, add_recipe, add_setup_options, bounded, device_name,
                        key_value, output_file, paths_from, recipe_from, write_output)
from ..config import RunConfig
from ..core.recipe import DEFAULT_SEVERITY, SEED_BOUNDS
from ..core.values import Bounds
from ..errors import AutoFTError, BadArgumentError
from ..paths import DataPaths
from ..store import ResultStore

if TYPE_CHECKING:  # the handlers import these (and torch) only when they run
    from .backends import Backend

BACKENDS = ("local", "ray")
METRICS = ("test_acc", "best_val_test_acc", "zero_shot_acc")
MAX_CPUS, MAX_GPUS = 4096, 1024  # per run: more is a typo


def _add_common(p: argparse.ArgumentParser, shots_help: str | None) -> None:
    """Setup, severity, seeds, recipe (as `finetune`), device, data paths and backend options."""
    p.add_argument("--setup", default="digits")
    add_setup_options(p)
    p.add_argument("--severity", type=SEVERITY, default=DEFAULT_SEVERITY, help="input-level shift: 1-5")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    add_recipe(p, skip=() if shots_help else ("shots",))
    p.add_argument("--device", type=device_name, default=None,
                   help="auto (default), cpu, cuda or cuda:N, for every run")
    p.add_argument("--backend", default="local", choices=BACKENDS,
                   help="local: this process, or --max-parallel spawned processes; ray: Ray tasks")
    p.add_argument("--max-parallel", type=POSITIVE_INT, default=None,
                   help="runs at once (local default 1; ray default: as many as the cluster fits)")
    p.add_argument("--cpus-per-run", type=bounded("cpus-per-run", Bounds(float, 0.01, MAX_CPUS)), default=None,
                   help="torch threads per run (local default: the CPU thread policy, one thread for a small "
                        "model, in one process; cores / max-parallel in several) and Ray num_cpus (default 1)")
    p.add_argument("--gpus-per-run", type=bounded("gpus-per-run", Bounds(float, 0.0, MAX_GPUS)), default=None,
                   help="Ray num_gpus per run (ray only)")
    p.add_argument("--ray-address", default=None,
                   help="an existing Ray cluster (ray only; default: start a local one); its nodes get this engine "
                        "code and should see this cache folder and the data paths (same machine or shared disk)")
    add_paths(p)


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add sweep, shots, grid and table to the CLI's subparsers."""
    from .plan import DEFAULT_CORRUPTION

    sweep = sub.add_parser("sweep", help="methods × shifts × corruptions × seeds, through the result store")
    sweep.add_argument("--shifts", default="all", help="comma-separated shifts or all (default)")
    sweep.add_argument("--corruptions", default=None, help="input-level corruptions, comma-separated or all (default)")
    sweep.add_argument("--methods", default="all", help="comma-separated methods or all registered (default)")
    sweep.add_argument("--param", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                       help="a method hyper-parameter for every run (repeatable; each method must have it)")
    _add_common(sweep, "TOTAL target training examples per run, as in finetune (default: the setup's)")

    single_task = f"input shift: which corruption (default {DEFAULT_CORRUPTION})"
    shots = sub.add_parser("shots", help="shot scaling: methods × K examples per class × seeds")
    shots.add_argument("--shift", default="input")
    shots.add_argument("--corruption", default=None,
                       help=f"input shift: which corruption, several comma-separated, or all (their mean is the input "
                            f"level's curve, as in Table 1; default {DEFAULT_CORRUPTION})")
    shots.add_argument("--methods", default="all", help="comma-separated methods or all (default)")
    shots.add_argument("--shots", dest="shots_per_class", default="1,5,10,25,50",
                       help="K examples PER CLASS, comma-separated (a run's shots = K × classes)")
    _add_common(shots, None)

    grid = sub.add_parser("grid", help="one method's hyper-parameter grid (e.g. criticality's top-K × partial "
                                       "epochs) × seeds")
    grid.add_argument("--shift", default="input")
    grid.add_argument("--corruption", default=None, help=single_task)
    grid.add_argument("--method", required=True)
    grid.add_argument("--values", type=key_value, action="append", default=[], metavar="KEY=V1,V2,...",
                      help="values of one hyper-parameter to try (repeatable); default: the grid the method "
                           "declares (see `methods`)")
    _add_common(grid, "TOTAL target training examples per run (default: the setup's)")

    table = sub.add_parser("table", help="Table 1: methods × shift levels, mean ± std over seeds (%%)")
    table.add_argument("--setup", default="digits")
    add_setup_options(table)
    table.add_argument("--format", default="markdown", choices=("markdown", "csv"))
    table.add_argument("--out", type=output_file, default=None, help="write to this file instead of stdout")
    table.add_argument("--metric", default="test_acc", choices=METRICS)
    table.add_argument("--severity", type=SEVERITY, default=DEFAULT_SEVERITY, help="input-level severity")
    table.add_argument("--corruptions", default="all", help="input-level corruptions averaged (default all)")
    table.add_argument("--methods", default="all", help="rows: comma-separated methods or all with runs (default)")
    table.add_argument("--seeds", default=None, help="comma-separated seeds (default: all stored)")
    table.add_argument("--per-corruption", action="store_true",
                       help="the input-level runs as methods × corruptions instead of Table 1")
    table.add_argument("--any-version", action="store_true",
                       help="include runs of older code versions (default: the current code's only)")
    add_recipe(table)
    add_paths(table)


def _backend_factory(args: argparse.Namespace, paths: DataPaths) -> Callable[[], Backend]:
    """Checks the backend options now; the backend itself is made only when a run is missing."""
    from .backends import LocalBackend, ProcessBackend, RayBackend

    if args.backend == "local":
        for flag, value in (("--ray-address", args.ray_address), ("--gpus-per-run", args.gpus_per_run)):
            if value is not None:
                raise BadArgumentError("option for --backend local", flag, "use it with --backend ray")
        threads = int(args.cpus_per_run) if args.cpus_per_run else None

        def local() -> Backend:
            from ..device import resolve_device  # torch: only once a run is missing

            resolve_device(args.device)  # a GPU asked for and not here: one line before any run, not one per run
            if (args.max_parallel or 1) == 1:
                return LocalBackend(paths, args.device, threads)
            return ProcessBackend(paths, args.device, args.max_parallel, threads)
        return local
    return lambda: RayBackend(paths, args.device, args.ray_address, args.max_parallel,
                              args.cpus_per_run or 1.0, args.gpus_per_run or 0.0)


def _interrupt(signum: int, frame: object) -> None:
    """A signal handler that stops the sweep the way Ctrl-C does."""
    raise KeyboardInterrupt


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`, batch schedulers) stops a sweep as Ctrl-C does: workers stopped, finished runs kept."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, plan: Callable[[DataPaths], list[RunConfig]]) -> None:
    """Plan (validating everything), then run what the store lacks; one summary line on stdout."""
    from .runner import SweepFailed, run_sweep

    paths = paths_from(args)
    make_backend = _backend_factory(args, paths)
    store = ResultStore(args.store)
    try:
        with _terminate_as_interrupt():
            report = run_sweep(plan(paths), store, make_backend, paths, title=args.command)
    except SweepFailed as exc:
        print(f"autoft_core: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print(f"autoft_core: interrupted; finished runs are in {store.path}; re-run the same command to resume",
              file=sys.stderr)
        raise SystemExit(130) from None
    if report.other_versions:
        print(f"autoft_core: warning: some runs of the {args.command} were computed by other engine code (files "
              "changed meanwhile) or on another CPU (a Ray worker) and are stored under code version "
              f"{', '.join(sorted(report.other_versions))}; re-run the command here to complete it under this "
              "code and CPU", file=sys.stderr)
    if report.diverged:
        print(f"autoft_core: warning: {len(report.diverged)} of {report.total} runs diverged "
              f"({', '.join(report.diverged[:3])}{', ...' if len(report.diverged) > 3 else ''}); they are stored "
              "with status diverged; lower --lr for results from them", file=sys.stderr)
    print(f"{args.command}: {report.total} runs, {report.cached} from the store, {report.ran} ran, "
          f"{len(report.diverged)} diverged; store {store.path}; log {report.log_path}")


def sweep_plan(args: argparse.Namespace, paths: DataPaths) -> list[RunConfig]:
    """The runs `sweep` with these arguments asks for (bench/sweep.py plans them as the command does)."""
    from .plan import ALL, sweep_configs

    configs = sweep_configs(args.setup, args.shifts, args.corruptions or ALL, args.severity, args.methods,
                            args.seeds, recipe_from(args, args.setup), paths, dict(args.param))
    if args.corruptions is not None and all(c.shift != "input" for c in configs):
        raise AutoFTError("--corruptions applies to the input shift only, which --shifts leaves out: add input "
                          "to --shifts or leave --corruptions out")
    return configs


def _cmd_sweep(args: argparse.Namespace) -> None:
    _run(args, lambda paths: sweep_plan(args, paths))


def _cmd_shots(args: argparse.Namespace) -> None:
    from .plan import shots_configs

    def plan(paths: DataPaths) -> list[RunConfig]:
        configs, skipped = shots_configs(args.setup, args.shift, args.corruption, args.severity, args.methods,
                                         args.shots_per_class, args.seeds, recipe_from(args, args.setup), paths)
        if skipped:
            print(f"note: K = {', '.join(map(str, skipped))} skipped: more than the target pool's smallest class "
                  "holds (the training set could not be balanced)", file=sys.stderr)
        return configs

    _run(args, plan)


def _cmd_grid(args: argparse.Namespace) -> None:
    from .plan import grid_configs, grid_values

    grid = grid_values(args.method, dict(args.values))
    _run(args, lambda paths: grid_configs(args.setup, args.shift, args.corruption, args.severity, args.method,
                                          grid, args.seeds, recipe_from(args, args.setup), paths))


def _cmd_table(args: argparse.Namespace) -> None:
    from ..config import code_version
    from ..methods import method_names
    from ..setups import get_setup
    from .plan import choose, numbers
    from .tables import per_corruption, table1, table1_selection, to_csv, to_markdown

    paths = paths_from(args)
    setup = get_setup(args.setup, paths)
    corruptions = choose("corruption", args.corruptions, setup.corruptions())
    version = {} if args.any_version else {"code_version": code_version()}
    frame = ResultStore(args.store).frame(result_fields=[args.metric], setup=args.setup, **version)
    stored = sorted(set(frame["method"])) if not frame.empty else []
    known = [*method_names(), *(m for m in stored if m not in method_names())]
    sel = table1_selection(args.setup, setup.shifts, corruptions, args.severity,
                           recipe_from(args, args.setup).to_dict(),
                           current_only=not args.any_version,
                           methods=None if args.methods == "all" else choose("method", args.methods, known),
                           seeds=None if args.seeds is None else numbers("seed", args.seeds, SEED_BOUNDS))
    table = (per_corruption if args.per_corruption else table1)(frame, sel, args.metric)
    if not table.cells:
        version = "any code version" if args.any_version else f"code version {code_version()} (or add --any-version)"
        raise AutoFTError(f"no stored runs of setup {args.setup} match severity {args.severity}, "
                          f"{', '.join(f'{k} {v}' for k, v in sel.recipe.items())}, {version}; run `sweep` "
                          "with the same recipe flags first")
    text = to_markdown(table) if args.format == "markdown" else to_csv(table)
    if args.out:
        write_output(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.format == "csv":
        for note in table.notes:
            print(f"note: {note}", file=sys.stderr)


HANDLERS = {"sweep": _cmd_sweep, "shots": _cmd_shots, "grid": _cmd_grid, "table": _cmd_table}
