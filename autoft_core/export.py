"""`python -m autoft_core export`: one task as plain files, so anyone can recompute a method's scores
with their own code, independently of this engine.

    DIR/task.npz            source_x, source_y, train_x, train_y, val_x, val_y, test_x, test_y
                            (images float32 (N, 3, H, W) in [0, 1], labels int64) and num_classes
    DIR/model.safetensors   the source model's state dict (parameters and BatchNorm buffers)
    DIR/partition.json      the layer partition, in order input -> output: layer name -> parameter names
    DIR/task.json           the resolved task (setup, shift, corruption, severity, shots, seed,
                            granularity) and the model's class, to rebuild the architecture
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .cli_args import add_task, paths_from, run_config
from .config import RunConfig
from .paths import DataPaths

FILES = ("task.npz", "model.safetensors", "partition.json", "task.json")


def export_task(cfg: RunConfig, out: Path, paths: DataPaths | None = None) -> dict[str, Any]:
    """Write the task of `cfg` (setup, shift, corruption, severity, shots, seed, granularity) to `out`."""
    import numpy as np
    from safetensors.torch import save_file

    from .experiment import load_task, resolve
    from .layers import partition

    cfg = resolve(cfg, paths)
    setup, data = load_task(cfg, paths)
    model = setup.source_model(cfg.shift)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f"{name}_{part}": getattr(getattr(data, name), part).cpu().numpy()
              for name in ("source", "train", "val", "test") for part in ("x", "y")}
    np.savez(out / "task.npz", num_classes=np.int64(data.num_classes), **arrays)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    layers = {layer.name: list(layer.param_names) for layer in partition(model, cfg.recipe.granularity)}
    (out / "partition.json").write_text(json.dumps(layers, indent=1) + "\n")
    task = {"setup": cfg.setup, "shift": cfg.shift, "corruption": cfg.corruption, "severity": cfg.severity,
            "shots": cfg.recipe.shots, "seed": cfg.seed, "granularity": cfg.recipe.granularity,
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}"}
    (out / "task.json").write_text(json.dumps(task, indent=1) + "\n")
    return {"out": str(out), "files": list(FILES), **task}


def add_export_command(sub: argparse._SubParsersAction) -> None:
    """Register `export` with the CLI's subcommands (the task flags and recipe flags of `weights`)."""
    p = sub.add_parser("export", help="write a task's data, source model and layer partition as plain files")
    add_task(p)
    p.add_argument("--out", required=True, type=Path, help="folder to write (created if missing)")


def run_export_command(args: argparse.Namespace) -> None:
    """The `export` handler: write the files and say where."""
    done = export_task(run_config(args), args.out, paths_from(args))
    print(json.dumps(done) if args.json else "\n".join(str(args.out / f) for f in FILES))
