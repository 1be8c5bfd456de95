"""The public Python API for notebooks and scripts; the CLI and the dashboard go through it too.

    import autoft_core as aft
    data = aft.load_task("digits", "input", corruption="frost", seed=0)        # .source .train .val .test
    model = aft.pretrained_model("digits", "input")                            # nn.Module, eval mode
    layers = aft.layer_partition(model, "block")                               # .name, .param_names
    w = aft.compute_weights("digits", "input", "auto-rgn", corruption="frost")   # as `weights --json`
    r = aft.run("digits", "input", "auto-rgn", corruption="frost", epochs=5)    # as `finetune --json`

Keyword settings are recipe fields (shots, epochs, lr, ...; default: the setup's) or real-setup paths
(cifar10_dir, imagenet_dir, ...; default: the AUTOFT_* variables).
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RunConfig
from .core.recipe import DEFAULT_SEVERITY, field_names
from .errors import BadArgumentError
from .paths import DataPaths
from .setups import get_setup

if TYPE_CHECKING:
    from torch import nn

    from .core.data import TaskData
    from .finetune import Progress
    from .layers import Layer
    from .store import ResultStore

WEIGHTS_KEYS = ("method", "layers", "scores", "weights", "extras")
RUN_KEYS = ("method", "layers", "scores", "weights", "zero_shot_acc", "test_acc", "best_val_test_acc",
            "best_val_epoch", "param_change", "history", "seconds", "cached", "status", "diverged_epoch")
_PATH_NAMES = tuple(f.name for f in fields(DataPaths))


def _split(settings: dict[str, Any]) -> tuple[dict[str, Any], DataPaths]:
    """(recipe settings, data paths) from keyword settings; anything else is rejected by name."""
    for name in settings:
        if name not in field_names() + _PATH_NAMES:
            raise BadArgumentError("setting", name, field_names() + _PATH_NAMES)
    recipe = {k: v for k, v in settings.items() if k in field_names()}
    paths = DataPaths.from_env().with_overrides(**{k: v for k, v in settings.items() if k in _PATH_NAMES})
    return recipe, paths


def config(setup: str = "digits", shift: str = "output", method: str = "full", *, corruption: str | None = None,
           severity: int = DEFAULT_SEVERITY, params: dict[str, Any] | None = None, seed: int = 0,
           **settings: Any) -> tuple[RunConfig, DataPaths]:
    """The RunConfig (recipe: the setup's defaults with `settings` applied) and data paths of a request."""
    values, paths = _split(settings)
    recipe = get_setup(setup, paths).recipe.with_values(**values)
    return RunConfig(setup=setup, shift=shift, corruption=corruption, severity=severity, method=method,
                     params=dict(params or {}), recipe=recipe, seed=seed), paths


def load_task(setup: str = "digits", shift: str = "output", corruption: str | None = None,
              severity: int = DEFAULT_SEVERITY, seed: int = 0, **settings: Any) -> "TaskData":
    """The source sample and the shifted target's train/val/test splits (tensors `.x`, `.y`), fixed by `seed`."""
    from .experiment import load_task as load, resolve

    cfg, paths = config(setup, shift, corruption=corruption, severity=severity, seed=seed, **settings)
    return load(resolve(cfg, paths), paths)[1]


def pretrained_model(setup: str = "digits", shift: str = "output", **paths: Any) -> "nn.Module":
    """A fresh copy of the setup's pretrained source model for `shift` (eval mode, CPU)."""
    _, data_paths = _split(paths)
    return get_setup(setup, data_paths).source_model(shift)


def layer_partition(model: "nn.Module", granularity: str = "module") -> list["Layer"]:
    """The layers each getting one multiplier, input to output (`.name`, `.param_names` as in named_parameters)."""
    from torch import nn

    from .layers import partition

    if not isinstance(model, nn.Module):
        raise BadArgumentError("model", type(model).__name__, "a torch.nn.Module, e.g. aft.pretrained_model(...)")
    return partition(model, granularity)


def compute_weights(setup: str = "digits", shift: str = "output", method: str = "full", *,
                    corruption: str | None = None, severity: int = DEFAULT_SEVERITY,
                    params: dict[str, Any] | None = None, seed: int = 0, device: str | None = None,
                    status: Any = None, **settings: Any) -> dict[str, Any]:
    """A method's per-layer scores and multipliers: the record `weights --json` prints."""
    from .experiment import compute_weights as compute

    cfg, paths = config(setup, shift, method, corruption=corruption, severity=severity, params=params, seed=seed,
                        **settings)
    out = compute(cfg, paths, device, status)
    return {k: out[k] for k in WEIGHTS_KEYS}


def run(setup: str = "digits", shift: str = "output", method: str = "full", *, corruption: str | None = None,
        severity: int = DEFAULT_SEVERITY, params: dict[str, Any] | None = None, seed: int = 0,
        device: str | None = None, store: "ResultStore | str | Path | None" = None, progress: "Progress | None" = None,
        status: Any = None, **settings: Any) -> dict[str, Any]:
    """Weights, fine-tuning and evaluation through the result store: the record `finetune --json` prints."""
    cfg, paths = config(setup, shift, method, corruption=corruption, severity=severity, params=params, seed=seed,
                        **settings)
    return run_config(cfg, paths, device, store, progress, status)


def run_config(cfg: RunConfig, paths: DataPaths | None = None, device: str | None = None,
               store: "ResultStore | str | Path | None" = None, progress: "Progress | None" = None,
               status: Any = None) -> dict[str, Any]:
    """`run` for a RunConfig already built (the CLI's and the dashboard's entry); `store`: a ResultStore or the
    path of its file (default: cache/results.sqlite)."""
    from .experiment import run_experiment
    from .store import ResultStore

    if isinstance(store, (str, Path)):
        store = ResultStore(store)
    out = run_experiment(cfg, store, paths, device, progress, status)
    return {k: out[k] for k in RUN_KEYS}
