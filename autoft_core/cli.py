"""Command line: `python -m autoft_core {weights,finetune,setups,methods,export,sweep,shots,grid,table,shifts}`
(a stable contract).

Bad input exits 2 with one line naming the valid choices; progress goes to stderr through tqdm.
The engine (torch) is imported only when a command needs it: a cached `finetune` answers from the
store alone, in well under the time torch takes to import.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from .cli_args import add_paths, add_task, paths_from, run_config as config_from, setup_from
from .errors import AutoFTError, RunDiverged
from .experiments.commands import HANDLERS as EXPERIMENT_COMMANDS, add_subcommands as add_experiment_commands
from .export import add_export_command, run_export_command
from .setups import overview
from .runs import lookup
from .shift_sizes import add_subcommand as add_shifts_command, command as shifts_command
from .store import ResultStore


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and its flags (the recipe's from `Recipe`'s fields, the paths from `DataPaths`)."""
    parser = _Parser(prog="autoft_core", description="AutoFT Explorer engine: per-layer fine-tuning weights.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_task(sub.add_parser("weights", help="per-layer scores and multipliers of a method"))
    add_task(sub.add_parser("finetune", help="fine-tune with a method's multipliers and evaluate"))
    setups = sub.add_parser("setups", help="list setups, their default recipes and whether their files are present")
    setups.add_argument("--json", action="store_true")
    add_paths(setups)
    methods = sub.add_parser("methods", help="list methods with their hyper-parameters")
    methods.add_argument("--json", action="store_true")
    add_export_command(sub)
    add_experiment_commands(sub)
    add_shifts_command(sub)
    return parser


def _print_layers(out: dict[str, Any]) -> None:
    width = max(len(name) for name in out["layers"])
    print(f"{'layer':<{width}}  {'score':>10}  {'weight':>7}" + ("  change" if "param_change" in out else ""))
    for i, name in enumerate(out["layers"]):
        line = f"{name:<{width}}  {out['scores'][i]:>10.4g}  {out['weights'][i]:>7.3f}"
        if "param_change" in out:
            line += f"  {out['param_change'][i]:.4f}"
        print(line)


def _cmd_weights(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from .api import WEIGHTS_KEYS
    from .experiment import compute_weights

    with tqdm(desc=f"{args.method} weights", file=sys.stderr, disable=None, bar_format="{desc} {elapsed}") as bar:
        out = compute_weights(config_from(args), paths_from(args), args.device, status=bar.set_description_str)
    if args.json:
        print(json.dumps({k: out[k] for k in WEIGHTS_KEYS}))
    else:
        _print_layers(out)


def _cmd_finetune(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    bar = tqdm(desc=f"{args.method} fine-tuning", unit="epoch", file=sys.stderr, disable=None)

    def progress(epoch: int, total: int, stats: dict) -> None:
        bar.total = total
        bar.set_postfix(loss=f"{stats['train_loss']:.3f}", val=f"{stats['val_acc']:.3f}")
        bar.update(epoch - bar.n)

    store = ResultStore(args.store)
    cfg = config_from(args)
    found = lookup(cfg, store, paths_from(args))  # a hit on the request's own key never imports torch
    try:
        if found.stored:
            out = {**found.record, "cached": True}
        else:
            from .api import run_config

            out = run_config(cfg, paths_from(args), args.device, store, progress, status=bar.set_description_str)
    finally:
        bar.close()
    if args.json:
        from .api import RUN_KEYS  # torch-free: a cache hit stays fast

        print(json.dumps({k: out.get(k) for k in RUN_KEYS}))
    if out.get("status") == "diverged":
        raise RunDiverged(f"training diverged at epoch {out['diverged_epoch']} (the loss or the weights became "
                          f"infinite or NaN): lower --lr; the run is stored with status diverged")
    if not args.json:
        _print_layers(out)
        print(f"zero-shot {out['zero_shot_acc']:.4f}  final {out['test_acc']:.4f}  "
              f"best-val (epoch {out['best_val_epoch']}) {out['best_val_test_acc']:.4f}  "
              f"{out['seconds']:.1f}s{'  (cached)' if out['cached'] else ''}")


def _cmd_setups(args: argparse.Namespace) -> None:
    rows = overview(paths_from(args))
    if args.json:
        print(json.dumps(rows))
        return
    for row in rows:
        print(f"{row['setup']:<16} {'ready' if row['ready'] else 'missing files':<14} {row['description']}")
        print(f"{'':<16} recipe: {', '.join(f'{k} {v}' for k, v in row['recipe'].items())}")
        for line in row["missing"]:
            print(f"{'':<16} - {line}")


def _cmd_methods(args: argparse.Namespace) -> None:
    from .methods import method_info, method_names

    rows = []
    for name in method_names():
        info = method_info(name)
        rows.append({"method": name, "summary": info.summary,
                     "params": {k: {"default": p.default, "help": p.help, "valid": p.bounds.describe(),
                                    "grid": list(p.grid)} for k, p in info.params.items()}})
    if args.json:
        print(json.dumps(rows))
        return
    for row in rows:
        print(f"{row['method']:<26} {row['summary']}")
        for key, p in row["params"].items():
            print(f"{'':<28}{key}={p['default']}  {p['help']} ({p['valid']})")


COMMANDS = {"weights": _cmd_weights, "finetune": _cmd_finetune, "setups": _cmd_setups, "methods": _cmd_methods,
            "export": run_export_command, "shifts": shifts_command, **EXPERIMENT_COMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 done, 2 bad input or an unusable file or store (one line on stderr), 3 the run diverged
    (stored as such), 130 interrupted (Ctrl-C); sweeps exit 1 when some runs failed (see experiments.commands)."""
    with _interrupts() as interrupted:
        try:
            args = build_parser().parse_args(argv)
            if getattr(args, "setup", None) is not None:  # --setup with --arch / the folder options: one name
                args.setup = setup_from(args)
            COMMANDS[args.command](args)
        except AutoFTError as exc:
            print(f"autoft_core: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            return _interrupted_line()
        except BrokenPipeError:  # the reader went away (`| head`): nothing more to say to it
            _silence_stdout()
            return 0
        except OSError as exc:  # output that cannot be written (a full disk, /dev/full) or a file the OS refuses
            if interrupted:
                return _interrupted_line()
            where = f" ({exc.filename})" if exc.filename else " (the output)"
            print(f"autoft_core: error: {exc.strerror or exc}{where}; check the free space and permissions there, "
                  "or write elsewhere", file=sys.stderr)
            return 2
        except Exception:
            if interrupted:  # Ctrl-C inside an import leaves the module half made: its next use fails otherwise
                return _interrupted_line()
            raise
    return 0


def _interrupted_line() -> int:
    """Say that the command was interrupted; its exit status."""
    print("autoft_core: interrupted; nothing of the unfinished run was stored", file=sys.stderr)
    return 130


@contextmanager
def _interrupts() -> Iterator[list[bool]]:
    """Within: Ctrl-C raises KeyboardInterrupt as usual and is remembered (a non-empty list), where Python's
    own handler has it (the main thread; not a background job that ignores it); the previous one afterwards."""
    seen: list[bool] = []
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield seen
        return

    def remember(signum: int, frame: Any) -> NoReturn:
        seen.append(True)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, remember)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of a closed pipe raises nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
