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
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .cli_args import add_task, paths_from, run_config
from .config import RunConfig
from .errors import AutoFTError
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
    arrays = {f"{name}_{part}": getattr(getattr(data, name), part).cpu().numpy()
              for name in ("source", "train", "val", "test") for part in ("x", "y")}
    layers = {layer.name: list(layer.param_names) for layer in partition(model, cfg.recipe.granularity)}
    task = {"setup": cfg.setup, "shift": cfg.shift, "corruption": cfg.corruption, "severity": cfg.severity,
            "shots": cfg.recipe.shots, "seed": cfg.seed, "granularity": cfg.recipe.granularity,
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}"}
    with _staged(out) as folder:
        np.savez(folder / "task.npz", num_classes=np.int64(data.num_classes), **arrays)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(folder / "model.safetensors"))
        (folder / "partition.json").write_text(json.dumps(layers, indent=1) + "\n")
        (folder / "task.json").write_text(json.dumps(task, indent=1) + "\n")
    return {"out": str(out), "files": list(FILES), **task}


def check_out(out: Path) -> None:
    """`out` can take the export (a folder, or a name to create; none of FILES a folder), or one AutoFTError."""
    if out.exists() and not out.is_dir():
        raise AutoFTError(f"--out {out} is a file; give a folder (created if missing)")
    taken = [name for name in FILES if (out / name).is_dir()]
    if taken:
        raise AutoFTError(f"{out / taken[0]} is a folder where the export writes a file; move it or choose "
                          "another --out")


@contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """A fresh hidden folder inside `out` to write into; on success each file is renamed into `out` (so `out`
    never holds a half-written file), and the staging folder is removed whatever happens."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out))
    except OSError as exc:
        raise AutoFTError(f"cannot write to the folder {out}: {exc.strerror}; choose another --out") from None
    try:
        yield staging
        for name in FILES:
            os.replace(staging / name, out / name)
    except OSError as exc:
        raise AutoFTError(f"cannot write the export to {out}: {exc.strerror}; choose another --out") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def add_export_command(sub: argparse._SubParsersAction) -> None:
    """Register `export` with the CLI's subcommands (the task flags and recipe flags of `weights`)."""
    p = sub.add_parser("export", help="write a task's data, source model and layer partition as plain files")
    add_task(p)
    p.add_argument("--out", required=True, type=_folder_name, help="folder to write (created if missing)")


def _folder_name(text: str) -> Path:
    """An argparse type: a non-empty folder name (an empty one would write into the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a folder name (it is created if missing)")
    return Path(text)


def run_export_command(args: argparse.Namespace) -> None:
    """The `export` handler: write the files and say where."""
    check_out(args.out)
    done = export_task(run_config(args), args.out, paths_from(args))
    print(json.dumps(done) if args.json else "\n".join(str(args.out / f) for f in FILES))
