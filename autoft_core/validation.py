"""Range checks for every number a user can give (CLI flags, configs, method parameters), in plain English.

Torch-free, so the command line validates before importing the engine. Each check returns the value
or raises BadNumberError naming what was given and what is allowed; `arg_type` turns one into an
argparse type whose error reads "'abc' is not a whole number from 0 to 2147483647".
"""
from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Callable
from typing import Any

from .errors import BadNumberError

MAX_SEED = 2**31 - 1  # numpy and torch seed ranges overlap here, and SQLite integers hold it
MAX_LR = 1e6  # far above any useful rate; float32 (the optimizer's step) overflows near 3e38
MAX_SHOTS = 10**6  # more than any setup's target pool holds
MAX_EPOCHS = 10_000
MAX_COUNT = 10**9  # batch sizes, parameter counts: anything larger is a typo


def _text(value: float) -> str:
    """2147483647 and 1000000 in full, 0.001 as 0.001."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


def expected(whole: bool, minimum: float | None, maximum: float | None, above: bool = False) -> str:
    """'a whole number from 0 to 10', 'a number > 0 and at most 1000000', 'a number >= 0'."""
    kind = "a whole number" if whole else "a number"
    if minimum is not None and maximum is not None and not above:
        return f"{kind} from {_text(minimum)} to {_text(maximum)}"
    bounds = [] if minimum is None else [f"{'>' if above else '>='} {_text(minimum)}"]
    bounds += [] if maximum is None else [f"at most {_text(maximum)}"]
    return f"{kind} {' and '.join(bounds)}".strip()


def check_number(what: str, value: object, *, whole: bool = False, minimum: float | None = None,
                 maximum: float | None = None, above: bool = False) -> float | int:
    """`value` when it is a finite number in range (`above`: strictly greater than `minimum`), else BadNumberError."""
    valid = expected(whole, minimum, maximum, above)
    kind = numbers.Integral if whole else numbers.Real  # numpy's numbers too
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise BadNumberError(what, value, valid)
    too_low = minimum is not None and (value <= minimum if above else value < minimum)
    if too_low or (maximum is not None and value > maximum):
        raise BadNumberError(what, value, valid)
    return value


def check_seed(value: object) -> int:
    return int(check_number("seed", value, whole=True, minimum=0, maximum=MAX_SEED))


def check_lr(value: object, what: str = "learning rate") -> float:
    return float(check_number(what, value, minimum=0, maximum=MAX_LR, above=True))


def check_weight_decay(value: object) -> float:
    return float(check_number("weight decay", value, minimum=0))


def check_run_config(cfg: Any) -> None:
    """The numbers of a RunConfig (None: the setup's default), so that no bad value reaches a run or the store."""
    check_seed(cfg.seed)
    check_number("severity", cfg.severity, whole=True, minimum=0, maximum=5)
    counts = {"shots": (cfg.shots, 1, MAX_SHOTS), "epochs": (cfg.epochs, 0, MAX_EPOCHS),
              "batch size": (cfg.batch_size, 1, MAX_COUNT)}
    for what, (value, low, high) in counts.items():
        if value is not None:
            check_number(what, value, whole=True, minimum=low, maximum=high)
    if cfg.lr is not None:
        check_lr(cfg.lr)
    check_weight_decay(cfg.weight_decay)


def arg_type(whole: bool, minimum: float | None = None, maximum: float | None = None,
             above: bool = False) -> Callable[[str], int | float]:
    """An argparse `type=` that parses and range-checks one number, with a plain-English error."""
    valid = expected(whole, minimum, maximum, above)

    def parse(text: str) -> int | float:
        try:
            return check_number("value", int(text) if whole else float(text), whole=whole, minimum=minimum,
                                maximum=maximum, above=above)
        except (ValueError, OverflowError):  # BadNumberError is a ValueError too
            raise argparse.ArgumentTypeError(f"{text!r} is not {valid}") from None

    parse.__name__ = valid  # argparse names the type by it in the few messages it writes itself
    return parse
