"""What a run asks for: the target task (`TaskSpec`) and the fine-tuning recipe (`Recipe`).

Every fine-tuning setting is a field of `Recipe`, with its default, help and bounds declared once here;
setups override defaults (`Setup.recipe`), and the CLI flags, the dashboard's sidebar widgets, the
result store's columns and Table 1's recipe columns are all derived from these fields. Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..errors import AutoFTError, BadArgumentError
from .values import Bounds

SHIFTS = ("input", "feature", "output")
CORRUPTIONS = (
    "frost", "gaussian_blur", "gaussian_noise", "glass_blur", "impulse_noise", "jpeg_compression",
    "motion_blur", "pixelate", "saturate", "shot_noise", "snow", "spatter", "speckle_noise", "zoom_blur",
)
SEVERITIES = (1, 2, 3, 4, 5)
DEFAULT_SEVERITY = 5
DEFAULT_SEED = 0
SEED_BOUNDS = Bounds(int, 0, 2**31 - 1)
SEVERITY_BOUNDS = Bounds(int, min(SEVERITIES), max(SEVERITIES))
GRANULARITIES = ("module", "block")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "linear", "stable-decay")
MAX_SHOTS = 1_000_000


def _setting(default: Any, help: str, **bounds: Any) -> Any:
    """A Recipe field: its default, one line of help and its bounds (the CLI and sidebar read these)."""
    return field(default=default, metadata={"help": help, "bounds": Bounds(type(default), **bounds)})


@dataclass(frozen=True)
class Recipe:
    """Every fine-tuning setting (Adam as in Lee et al. 2023 by default); a setup declares its own defaults.
    A setting added later defaults to what runs did before it existed: stored runs without it read as that."""

    shots: int = _setting(1000, "target training images (the effective number is stored)",
                          minimum=1, maximum=MAX_SHOTS)
    epochs: int = _setting(15, "fine-tuning epochs", minimum=0, maximum=10_000)
    lr: float = _setting(1e-3, "base learning rate (layer l trains at lr x alpha_l)", minimum=1e-12, maximum=1e6)
    batch_size: int = _setting(64, "images per minibatch", minimum=1, maximum=65_536)
    optimizer: str = _setting("adam", "optimizer", choices=OPTIMIZERS)
    schedule: str = _setting("constant", "learning rate over a run's T steps: constant; linear decay (step t at "
                                         "lr x (1 - t/T)); or stable-decay, constant then linearly to 0 over the "
                                         "last epoch", choices=SCHEDULES)
    warmup: int = _setting(0, "epochs of linear warm-up first (step t of W at lr x (t+1)/W), then the schedule over "
                              "the remaining steps", minimum=0, maximum=10_000)
    translate: int = _setting(0, "augmentation: each training image shifted by its own random offset of up to this "
                                 "many pixels per axis (edge pixels repeated); 0: none", minimum=0, maximum=64)
    momentum: float = _setting(0.9, "SGD momentum (sgd only)", minimum=0.0, maximum=0.999)
    weight_decay: float = _setting(0.0, "weight decay", minimum=0.0, maximum=1.0)
    train_bn_stats: bool = _setting(False, "update BatchNorm running statistics while fine-tuning")
    granularity: str = _setting("module", "layer partition: module (each conv/linear + its norm) or block "
                                          "(Lee et al.'s blocks)", choices=GRANULARITIES)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, f.metadata["bounds"].parse(f.name, getattr(self, f.name)))

    def with_values(self, **given: Any) -> "Recipe":
        """A copy with the given settings (strings parsed; None keeps the current value); unknown names rejected,
        and a momentum given for an optimizer other than sgd, which would ignore it (the CLI, the API and the
        dashboard all build recipes here)."""
        names = field_names()
        for name in given:
            if name not in names:
                raise BadArgumentError("recipe setting", name, names)
        recipe = replace(self, **{k: v for k, v in given.items() if v is not None})
        if given.get("momentum") is not None and recipe.optimizer != "sgd":
            raise AutoFTError(f"momentum applies to optimizer sgd only, not {recipe.optimizer}: set the optimizer "
                              "to sgd (--optimizer sgd) or leave momentum out")
        return recipe

    def to_dict(self) -> dict[str, Any]:
        """Every setting by name (the store's columns, exports)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def field_names() -> tuple[str, ...]:
    """The recipe settings in declaration order."""
    return tuple(f.name for f in fields(Recipe))


def bounds(name: str) -> Bounds:
    """The bounds of one recipe setting."""
    return Recipe.__dataclass_fields__[name].metadata["bounds"]


def field_info() -> list[tuple[str, Any, str, Bounds]]:
    """(name, default, help, bounds) of every recipe setting: what the CLI and the sidebar are built from."""
    return [(f.name, f.default, f.metadata["help"], f.metadata["bounds"]) for f in fields(Recipe)]


@dataclass(frozen=True)
class TaskSpec:
    """What target task to build: the shift, its corruption and severity (input-level only), shots, seed."""

    shift: str
    corruption: str | None = None
    severity: int = DEFAULT_SEVERITY
    shots: int = Recipe.shots  # type: ignore[assignment]  # the dataclass default of Recipe.shots
    seed: int = DEFAULT_SEED
