"""Command line: `python -m autoft_core {weights,finetune,setups,methods,sweep,shots,grid,table,shifts}` (a stable contract).

Bad input exits 2 with one line naming the valid choices; progress goes to stderr through tqdm.
The engine (torch) is imported only when a command needs it: a cached `finetune` answers from the
store alone, in well under the time torch takes to import.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from tqdm import tqdm

from .config import RunConfig
from .errors import AutoFTError
from .experiments.commands import HANDLERS as EXPERIMENT_COMMANDS, add_subcommands as add_experiment_commands
from .paths import DataPaths
from .setups import get_setup, setup_names
from .shift_sizes import add_subcommand as add_shifts_command, command as shifts_command
from .store import ResultStore


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number >= 0")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _add_task_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--setup", default="digits", help=f"one of: {', '.join(setup_names())}")
    p.add_argument("--shift", default="output", help="input, feature or output")
    p.add_argument("--corruption", default=None, help="input-level shift: which corruption")
    p.add_argument("--severity", type=_positive_int, default=5, help="input-level shift: 1-5")
    p.add_argument("--method", default="full", help="see `python -m autoft_core methods`")
    p.add_argument("--param", type=_key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="a method hyper-parameter (repeatable)")
    p.add_argument("--granularity", default="module", help="module or block")
    p.add_argument("--shots", type=_positive_int, default=None, help="target training examples")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    for name, var in DataPaths.ENV.items():
        p.add_argument(f"--{name.replace('_', '-')}", default=None, help=f"local path (env {var})")


def _add_recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=_non_negative_int, default=None)
    p.add_argument("--lr", type=_positive_float, default=None)
    p.add_argument("--batch-size", type=_positive_int, default=None)
    p.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--train-bn-stats", action="store_true", help="update BatchNorm running statistics")
    p.add_argument("--store", default=None, help="result store file (default cache/results.sqlite)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="autoft_core", description="AutoFT Explorer engine: per-layer fine-tuning weights.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    weights = sub.add_parser("weights", help="per-layer scores and multipliers of a method")
    _add_task_args(weights)
    finetune = sub.add_parser("finetune", help="fine-tune with a method's multipliers and evaluate")
    _add_task_args(finetune)
    _add_recipe_args(finetune)
    setups = sub.add_parser("setups", help="list setups and whether their files are present")
    setups.add_argument("--json", action="store_true")
    for name, var in DataPaths.ENV.items():
        setups.add_argument(f"--{name.replace('_', '-')}", default=None, help=f"local path (env {var})")
    methods = sub.add_parser("methods", help="list methods with their hyper-parameters")
    methods.add_argument("--json", action="store_true")
    add_experiment_commands(sub)
    add_shifts_command(sub)
    return parser


def _paths(args: argparse.Namespace) -> DataPaths:
    return DataPaths.from_env().with_overrides(**{k: getattr(args, k, None) for k in DataPaths.ENV})


def _run_config(args: argparse.Namespace) -> RunConfig:
    extra = {}
    if args.command == "finetune":
        extra = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "optimizer": args.optimizer,
                 "weight_decay": args.weight_decay, "train_bn_stats": args.train_bn_stats}
    return RunConfig(setup=args.setup, shift=args.shift, corruption=args.corruption, severity=args.severity,
                     method=args.method, params=dict(args.param), granularity=args.granularity,
                     shots=args.shots, seed=args.seed, **extra)


def _print_layers(out: dict[str, Any]) -> None:
    width = max(len(name) for name in out["layers"])
    print(f"{'layer':<{width}}  {'score':>10}  {'weight':>7}" + ("  change" if "param_change" in out else ""))
    for i, name in enumerate(out["layers"]):
        line = f"{name:<{width}}  {out['scores'][i]:>10.4g}  {out['weights'][i]:>7.3f}"
        if "param_change" in out:
            line += f"  {out['param_change'][i]:.4f}"
        print(line)


def _cmd_weights(args: argparse.Namespace) -> None:
    from .experiment import compute_weights

    with tqdm(desc=f"{args.method} weights", file=sys.stderr, disable=None, bar_format="{desc} {elapsed}") as bar:
        out = compute_weights(_run_config(args), _paths(args), args.device, status=bar.set_description_str)
    if args.json:
        print(json.dumps({k: out[k] for k in ("method", "layers", "scores", "weights")}))
    else:
        _print_layers(out)


def _cmd_finetune(args: argparse.Namespace) -> None:
    bar = tqdm(desc=f"{args.method} fine-tuning", unit="epoch", file=sys.stderr, disable=None)

    def progress(epoch: int, total: int, stats: dict) -> None:
        bar.total = total
        bar.set_postfix(loss=f"{stats['train_loss']:.3f}", val=f"{stats['val_acc']:.3f}")
        bar.update(epoch - bar.n)

    store = ResultStore(args.store) if args.store else ResultStore()
    cfg = _run_config(args)
    found = store.get(cfg.key())
    try:
        if found is not None:
            out = {**found, "cached": True}
        else:
            from .experiment import run_experiment

            out = run_experiment(cfg, store, _paths(args), args.device, progress, status=bar.set_description_str)
    finally:
        bar.close()
    if args.json:
        keys = ("method", "layers", "scores", "weights", "zero_shot_acc", "test_acc", "best_val_test_acc",
                "best_val_epoch", "param_change", "history", "seconds", "cached")
        print(json.dumps({k: out[k] for k in keys}))
    else:
        _print_layers(out)
        print(f"zero-shot {out['zero_shot_acc']:.4f}  final {out['test_acc']:.4f}  "
              f"best-val (epoch {out['best_val_epoch']}) {out['best_val_test_acc']:.4f}  "
              f"{out['seconds']:.1f}s{'  (cached)' if out['cached'] else ''}")


def _cmd_setups(args: argparse.Namespace) -> None:
    rows = []
    for name in setup_names():
        setup = get_setup(name, _paths(args))
        missing = setup.missing()
        rows.append({"setup": name, "ready": not missing, "description": setup.description,
                     "shifts": list(setup.shifts), "missing": missing})
    if args.json:
        print(json.dumps(rows))
        return
    for row in rows:
        print(f"{row['setup']:<16} {'ready' if row['ready'] else 'missing files':<14} {row['description']}")
        for line in row["missing"]:
            print(f"{'':<16} - {line}")


def _cmd_methods(args: argparse.Namespace) -> None:
    from .methods import method_class, method_names

    rows = []
    for name in method_names():
        cls = method_class(name)
        rows.append({"method": name, "summary": cls.summary,
                     "params": {k: {"default": p.default, "help": p.help} for k, p in cls.params.items()}})
    if args.json:
        print(json.dumps(rows))
        return
    for row in rows:
        print(f"{row['method']:<26} {row['summary']}")
        for key, p in row["params"].items():
            print(f"{'':<28}{key}={p['default']}  {p['help']}")


COMMANDS = {"weights": _cmd_weights, "finetune": _cmd_finetune, "setups": _cmd_setups, "methods": _cmd_methods,
            "shifts": shifts_command, **EXPERIMENT_COMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except AutoFTError as exc:
        print(f"autoft_core: error: {exc}", file=sys.stderr)
        return 2
    return 0
