"""What-if source models for the embedded default: how a change to the digits renders, the network or its
pretraining moves the surgical input-level gap (README, "What the gap follows").

A variant sets the digits modules' constants before anything is built: fields of `digits.STYLE`
(`--style`), of the pretraining recipe (`--pretrain`), the head's input features and the first stage's
width. It keeps everything, renders, source models and runs, in a cache folder of its own (`--cache-root`/
NAME, never the project's cache), so its runs cannot mix with the default's. At the digits setup's default
recipe (or `--set SETTING=VALUE`, as `sweep` takes it) it fine-tunes the first block alone and the head
alone on the 14 corruptions at severity 5 and on the label flip, and each block alone on the feature level;
it prints each corruption's zero-shot accuracy beside the two, the mean gap, the median zero-shot accuracy
and the source model's held-out accuracy. Seed 0 and 2 worker processes unless told.

    python bench/source_variants.py --name default
    python bench/source_variants.py --name p1 --pretrain seed=1
    python bench/source_variants.py --name feat128 --features 128
    python bench/source_variants.py --name str08 --style stripes=0.8 --style stripe_period=2.0,2.5
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autoft_core.core.recipe import CORRUPTIONS  # noqa: E402

BLOCKS = ("0", "1", "2", "-1")  # the digits ResNet's four blocks, first to last


def _number(text: str) -> float | tuple[float, ...]:
    """'0.8' -> 0.8; '2.0,2.5' -> (2.0, 2.5) (a range)."""
    values = tuple(float(v) for v in text.split(","))
    return values[0] if len(values) == 1 else values


def _pairs(items: list[str], flag: str, parser: argparse.ArgumentParser) -> dict[str, str]:
    if any("=" not in item for item in items):
        parser.error(f"{flag} takes NAME=VALUE, e.g. {flag} seed=1")
    return dict(item.split("=", 1) for item in items)


def _apply(style: dict[str, str], pretrain: dict[str, str], features: int | None, width: int | None) -> None:
    """Set the variant's constants in the digits modules (before any render, model or run exists)."""
    from autoft_core.data import digits
    from autoft_core.setups import digits as setup

    known = {f.name for f in fields(digits.STYLE)}
    unknown = (set(style) - known) | (set(pretrain) - set(setup.PRETRAIN))
    if unknown:
        raise SystemExit(f"unknown variant setting(s) {sorted(unknown)}; style: {sorted(known)}; "
                         f"pretrain: {sorted(setup.PRETRAIN)}")
    digits.STYLE = replace(digits.STYLE, **{k: _number(v) for k, v in style.items()})
    setup.PRETRAIN.update({k: type(setup.PRETRAIN[k])(float(v)) for k, v in pretrain.items()})
    setup.FEATURES = features or setup.FEATURES
    setup.WIDTH = width or setup.WIDTH


def _run(job: tuple[str, str | None, str, int, dict[str, Any], str]) -> tuple[str, str | None, str, float, float]:
    """One surgical run through the variant's store: (shift, corruption, block, test %, zero-shot %)."""
    import autoft_core as aft
    from autoft_core.store import ResultStore

    shift, corruption, block, seed, settings, store = job
    record = aft.run("digits", shift, "surgical", corruption=corruption, params={"block": block}, seed=seed,
                     store=ResultStore(store), **settings)
    return shift, corruption, block, 100 * record["test_acc"], 100 * record["zero_shot_acc"]


def _held_out_accuracy(shift: str) -> float:
    """The source model's accuracy on its held-out source share (%)."""
    import autoft_core as aft
    from autoft_core.data.digits_tasks import source_and_pool
    from autoft_core.evaluation import accuracy
    from autoft_core.setups import digits as setup
    from autoft_core.setups.source_training import holdout_task

    family = "feature" if shift == "feature" else "standard"
    source, _ = source_and_pool(family)
    held = holdout_task(source, setup.CLASSES[family], setup.PRETRAIN["seed"], setup.PRETRAIN["holdout"]).test
    return 100 * accuracy(aft.pretrained_model("digits", shift), held)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the variant's name: its cache folder")
    parser.add_argument("--cache-root", default=str(Path(__file__).resolve().parent.parent / "cache" / "variants"))
    parser.add_argument("--style", action="append", default=[], metavar="FIELD=VALUE",
                        help="a digits.Style field (repeatable); a range as LOW,HIGH")
    parser.add_argument("--pretrain", action="append", default=[], metavar="NAME=VALUE",
                        help="a pretraining setting: seed, epochs, lr, batch_size (repeatable)")
    parser.add_argument("--features", type=int, default=None, help="the head's input features (default 128)")
    parser.add_argument("--width", type=int, default=None, help="the first stage's channels (default 8)")
    parser.add_argument("--set", action="append", default=[], metavar="SETTING=VALUE",
                        help="a fine-tuning recipe setting other than the setup's default (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    style, pretrain, settings = (_pairs(args.style, "--style", parser), _pairs(args.pretrain, "--pretrain", parser),
                                 _pairs(args.set, "--set", parser))
    cache = Path(args.cache_root) / args.name
    os.environ["AUTOFT_CACHE"] = str(cache)
    os.environ.setdefault("AUTOFT_THREADS", "1")
    _apply(style, pretrain, args.features, args.width)
    held = {shift: _held_out_accuracy(shift) for shift in ("output", "feature")}  # pretrains before the workers start
    store = str(cache / "results.sqlite")
    first_last = ("0", "-1")
    tasks = [("input", c, first_last) for c in CORRUPTIONS] + [("output", None, first_last), ("feature", None, BLOCKS)]
    jobs = [(shift, corruption, b, args.seed, settings, store) for shift, corruption, blocks in tasks for b in blocks]
    # fresh worker processes (a fork after torch's threads have started can hang), each with the variant set
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(args.workers, initializer=_apply, initargs=(style, pretrain, args.features, args.width)) as pool:
        results = pool.map(_run, jobs, chunksize=1)
    acc = {(shift, corruption, block): (test, zero) for shift, corruption, block, test, zero in results}
    print(f"{args.name}: source held-out {held['output']:.1f} % (feature family {held['feature']:.1f} %)")
    for c in CORRUPTIONS:
        (first, zero), (head, _) = acc[("input", c, "0")], acc[("input", c, "-1")]
        print(f"  {c:17s} zero-shot {zero:5.1f}  first block {first:5.1f}  head {head:5.1f}  gap {first - head:5.1f}")
    first = statistics.mean(acc[("input", c, "0")][0] for c in CORRUPTIONS)
    head = statistics.mean(acc[("input", c, "-1")][0] for c in CORRUPTIONS)
    zero = statistics.median(acc[("input", c, "0")][1] for c in CORRUPTIONS)
    print(f"{args.name}: input first {first:.1f} head {head:.1f} gap {first - head:.1f}; median zero-shot {zero:.1f}")
    print(f"{args.name}: flip first {acc[('output', None, '0')][0]:.1f} head {acc[('output', None, '-1')][0]:.1f}; "
          "feature by block " + " / ".join(f"{acc[('feature', None, b)][0]:.1f}" for b in BLOCKS))


if __name__ == "__main__":
    main()
