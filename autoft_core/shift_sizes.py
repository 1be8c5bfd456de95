"""The `shifts` command: how large each of a setup's shifts is, as the source model's zero-shot accuracy
on each target task's test split beside its accuracy on the clean target.

The clean target is the output-level task's test images with their labels flipped back (every setup's
output-level shift is the label flip y -> C-1-y of clean target images), classified by the output-level
source model; without an output-level shift there is no clean accuracy (None). Feature-level targets
have their own source model (trained on other subpopulations), so their zero-shot accuracy is read
against chance (1/C) rather than against the clean accuracy.
"""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from .cli_args import SEED, SEVERITY, add_paths, add_setup_options, paths_from
from .core.recipe import DEFAULT_SEVERITY
from .paths import DataPaths
from .setups import Setup, TaskSpec, get_setup

if TYPE_CHECKING:  # torch loads only when the command runs
    from .core.data import Split


def clean_target(setup: Setup, seed: int) -> "Split":
    """The output-level task's test images with their true (unflipped) labels."""
    from .core.data import Split

    task = setup.task(setup.check(TaskSpec("output", seed=seed)))
    return Split(task.test.x, task.num_classes - 1 - task.test.y)


def shift_sizes(setup_name: str, severity: int = DEFAULT_SEVERITY, seed: int = 0, paths: DataPaths | None = None,
                device: str | None = None) -> dict[str, Any]:
    """{"setup", "clean_acc", "tasks": [{"shift", "corruption", "severity", "zero_shot_acc"}, ...]}: every
    shift (each corruption at `severity` for the input-level one) on the target test split of `seed`."""
    from .device import prepare_model, resolve_device
    from .evaluation import accuracy

    setup = get_setup(setup_name, paths)
    torch_device = resolve_device(device)
    specs = [setup.check(TaskSpec(shift, corruption, severity, seed=seed))
             for shift in setup.shifts
             for corruption in (setup.corruptions() if shift == "input" else (None,))]
    models = {shift: prepare_model(setup.source_model(shift), torch_device) for shift in setup.shifts}
    clean = accuracy(models["output"], clean_target(setup, seed).to(torch_device)) if "output" in models else None
    tasks = [{"shift": spec.shift, "corruption": spec.corruption,
              "severity": spec.severity if spec.shift == "input" else None,
              "zero_shot_acc": accuracy(models[spec.shift], setup.task(spec).test.to(torch_device))}
             for spec in specs]
    return {"setup": setup_name, "clean_acc": clean, "tasks": tasks}


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    """Register `shifts` on the CLI's subparsers."""
    p = sub.add_parser("shifts", help="the size of each shift: the source model's zero-shot accuracy per target")
    p.add_argument("--setup", default="digits")
    add_setup_options(p)
    p.add_argument("--severity", type=SEVERITY, default=DEFAULT_SEVERITY, help="input-level shift: 1-5")
    p.add_argument("--seed", type=SEED, default=0, help="which target split (default 0)")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_paths(p)


def command(args: argparse.Namespace) -> None:
    """The `shifts` handler: a table, or one JSON object with --json."""
    out = shift_sizes(args.setup, args.severity, args.seed, paths_from(args), args.device)
    if args.json:
        print(json.dumps(out))
        return
    clean = out["clean_acc"]
    print(f"{out['setup']}: source model on the clean target {'-' if clean is None else f'{100 * clean:.1f}%'}")
    print(f"{'shift':<8} {'corruption':<18} {'severity':>8} {'zero-shot':>9} {'vs clean':>9}")
    for row in out["tasks"]:
        gap = "" if clean is None or row["shift"] == "feature" else f"{100 * (row['zero_shot_acc'] - clean):+9.1f}"
        print(f"{row['shift']:<8} {row['corruption'] or '-':<18} {row['severity'] or '-':>8} "
              f"{100 * row['zero_shot_acc']:>8.1f}% {gap:>9}")
