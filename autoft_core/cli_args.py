"""The command line's shared arguments, derived from the engine's declarations (Recipe's fields, the
data paths), so every subcommand offers the same flags with the same defaults and checks."""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .config import RunConfig
from .core.recipe import DEFAULT_SEVERITY, SEED_BOUNDS, SEVERITY_BOUNDS, Recipe, field_info
from .core.values import Bounds, cli_flag
from .errors import AutoFTError
from .paths import DataPaths, write_atomic
from .setups import get_setup, setup_names


def bounded(name: str, bounds: Bounds) -> Any:
    """An argparse type checking `bounds` (argparse prints its one-line error and exits 2)."""
    def parse(text: str) -> Any:
        try:
            return bounds.parse(name, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = name
    return parse


def key_value(text: str) -> tuple[str, str]:
    """KEY=VALUE (a method hyper-parameter)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def output_file(text: str) -> Path:
    """An argparse type for a file to write: a name, not a folder, in a folder that exists."""
    path = Path(text)
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a file name")
    try:
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name in it")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"the folder {path.parent} does not exist; create it or write elsewhere")
        path.stat()  # a name the file system refuses (too long, ...) fails here; a missing file is fine
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot use {text[:80]}: {exc.strerror}") from None
    return path


def write_output(path: Path, text: str) -> None:
    """Write `text` whole (a reader sees the old file or the new one), or raise one AutoFTError line."""
    try:
        write_atomic(path, lambda tmp: tmp.write_text(text))
    except OSError as exc:
        raise AutoFTError(f"cannot write {path}: {exc.strerror}; choose another file") from None


def store_file(text: str) -> str:
    """An argparse type for --store: a non-empty file name (the store itself is checked when opened)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a file name (leave --store out for cache/results.sqlite)")
    return text


def device_name(text: str) -> str:
    """An argparse type for --device: auto, cpu, cuda or cuda:N (whether a GPU is there is checked when a run
    needs it: a stored run answers without one)."""
    if text in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"unknown device {text!r}; valid: auto, cpu, cuda, cuda:N")


POSITIVE_INT = bounded("count", Bounds(int, 1))
SEED = bounded("seed", SEED_BOUNDS)
SEVERITY = bounded("severity", SEVERITY_BOUNDS)


def add_paths(p: argparse.ArgumentParser) -> None:
    """One flag per real-setup path (each also read from its AUTOFT_* variable)."""
    for name, var in DataPaths.ENV.items():
        p.add_argument(cli_flag(name), default=None, help=f"local path (env {var})")


def add_recipe(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per Recipe setting (default: the setup's, see `setups`), plus --store."""
    for name, default, help_text, bounds in field_info():
        if name in skip:
            continue
        flag = cli_flag(name)
        if bounds.kind is bool:
            p.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            p.add_argument(flag, type=bounded(name, bounds), default=None,
                           help=f"{help_text}; {bounds.describe()} (default: the setup's)")
    p.add_argument("--store", type=store_file, default=None, help="result store file (default cache/results.sqlite)")


def add_setup_options(p: argparse.ArgumentParser) -> None:
    """--arch and the folder setup's options (setups.folder.OPTIONS); `setup_from` reads them."""
    from .setups import ARCH_VARIANTS
    from .setups.folder import OPTIONS

    group = p.add_argument_group("your own model and data: --setup folder with these (--arch also picks "
                                 "an embedded setup's architecture)")
    for option in OPTIONS:
        text = option.help + (f"; one of {', '.join(option.choices)}" if option.choices else "")
        text += f" (default {option.default})" if option.default is not None else ""
        if option.name == "arch":
            text += "".join(f"; --setup {setup}: {' or '.join(archs)} (default {next(iter(archs))})"
                            for setup, archs in ARCH_VARIANTS.items())
        group.add_argument(option.flag, default=None, help=text)


def setup_from(args: argparse.Namespace) -> str:
    """The setup name `--setup` and its options stand for (e.g. digits-vit, folder?source_dir=...)."""
    from .setups import named_setup
    from .setups.folder import OPTIONS

    return named_setup(args.setup, getattr(args, "arch", None),
                       **{o.name: getattr(args, o.name, None) for o in OPTIONS if o.name != "arch"})


def add_task(p: argparse.ArgumentParser) -> None:
    """Setup, shift, corruption, severity, method and its parameters, seed, device, output, recipe and paths."""
    p.add_argument("--setup", default="digits",
                   help=f"one of: {', '.join(setup_names())}, or python:package.module:function")
    add_setup_options(p)
    p.add_argument("--shift", default="output", help="input, feature or output")
    p.add_argument("--corruption", default=None, help="input-level shift: which corruption")
    p.add_argument("--severity", type=SEVERITY, default=DEFAULT_SEVERITY, help="input-level shift: 1-5")
    p.add_argument("--method", default="full", help="see `python -m autoft_core methods`")
    p.add_argument("--param", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="a method hyper-parameter (repeatable)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--device", type=device_name, default=None, help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_recipe(p)
    add_paths(p)


def paths_from(args: argparse.Namespace) -> DataPaths:
    """The data paths: AUTOFT_* variables, overridden by the path flags given."""
    return DataPaths.from_env().with_overrides(**{k: getattr(args, k, None) for k in DataPaths.ENV})


def recipe_from(args: argparse.Namespace, setup: str) -> Recipe:
    """The setup's default recipe with the flags given applied; a flag the recipe would ignore is refused."""
    given = {name: getattr(args, name, None) for name, *_ in field_info()}
    return get_setup(setup, paths_from(args)).recipe.with_values(**given)


def run_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig the task and recipe flags ask for."""
    return RunConfig(setup=args.setup, shift=args.shift, corruption=args.corruption, severity=args.severity,
                     method=args.method, params=dict(args.param), recipe=recipe_from(args, args.setup),
                     seed=args.seed)
