"""Operations one `finetune` run dispatches, split into a fixed part and a part per epoch and counted by the
engine function that issued them: a proxy, measurable on the CPU, for the kernel launches that bound a
small-batch CUDA run where the host issues them slower than the GPU runs them (on the lent H200, WRN-28-10
at batch 64 spent about as much CPU time as wall time: bench/phases.py).

Counted: every aten operation that reaches the dispatcher below autograd (forward and backward), except
the ones that only make views or allocate (detach, view, empty, ...), which launch no kernel. One run of 1
and one of 3 epochs (16 training images: one step per epoch; 8-image validation and test; every layer
trained; evaluation inline as on CUDA; seeded weights, so the same epoch validates best in any process:
in the 3-epoch run of WRN-28-10 an earlier one, which adds the best state's test pass and state copies).
On the CPU the digests hash on the host, so the count of the CUDA digest path is printed apart
(`digest.device_sums` on the model's state). Beside the launches, the host reads (`tolist`, `item`, and a
tensor's bool / float / int), each a device synchronisation on CUDA; `--auto-rgn` counts a run re-weighted
every step as Auto-RGN's default does (`every=step`: each step's own gradients), against the plain run.

    python bench/launches.py [--model digits|wrn] [--auto-rgn]
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.throughput import build, synthetic  # noqa: E402
from autoft_core.core.data import TaskData  # noqa: E402
from autoft_core.core.recipe import Recipe  # noqa: E402
from autoft_core.device import pinned_threads, prepare_model  # noqa: E402
from autoft_core.digest import device_sums  # noqa: E402
from autoft_core.evaluation import clear_accuracy_cache  # noqa: E402
from autoft_core.finetune import finetune  # noqa: E402
from autoft_core.layers import partition  # noqa: E402
from autoft_core.methods._gradients import GradientReweighter  # noqa: E402

NO_KERNEL = frozenset("detach view _unsafe_view alias t transpose permute expand as_strided empty empty_like "
                      "empty_strided new_empty set_ split split_with_sizes slice select unsqueeze squeeze "
                      "_reshape_alias unbind lift_fresh".split())
ENGINE = str(Path(__file__).resolve().parent.parent / "autoft_core")
HOST_READS = ("tolist", "item", "__bool__", "__float__", "__int__")


def engine_function(frame) -> str:
    """The innermost engine function on the stack from `frame` out."""
    while frame is not None and (not frame.f_code.co_filename.startswith(ENGINE)
                                 or frame.f_code.co_name.startswith("<")):
        frame = frame.f_back
    return frame.f_code.co_name if frame else "(outside the engine)"


class Launches(TorchDispatchMode):
    """Counts the kernel-launching operations dispatched inside it, by the engine function that issued them."""

    def __init__(self) -> None:
        super().__init__()
        self.by_function: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ not in NO_KERNEL:
            self.by_function[engine_function(sys._getframe(1))] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.by_function.values())


@contextlib.contextmanager
def host_reads() -> Iterator[collections.Counter[str]]:
    """Counts the tensor reads into Python (HOST_READS) made inside it, by engine function: torch.Tensor's
    methods wrapped for the duration."""
    counts: collections.Counter[str] = collections.Counter()
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def counting(method):
        def read(self, *args, **kwargs):
            counts[engine_function(sys._getframe(1))] += 1
            return method(self, *args, **kwargs)
        return read

    for name, method in originals.items():
        setattr(torch.Tensor, name, counting(method))
    try:
        yield counts
    finally:
        for name, method in originals.items():
            setattr(torch.Tensor, name, method)


def counted_run(base: torch.nn.Module, data: TaskData, epochs: int,
                reweighted: bool = False) -> tuple[Launches, collections.Counter[str]]:
    """The launches and host reads of one `finetune` of `epochs` epochs (every layer trained, evaluation
    inline; `reweighted`: re-weighted from each step's gradients, as Auto-RGN's default)."""
    model = copy.deepcopy(base)
    clear_accuracy_cache()
    layers = partition(model, "module")
    reweighter = GradientReweighter(layers, "max", [1.0] * len(layers)) if reweighted else None
    with pinned_threads(1), Launches() as launches, host_reads() as reads:
        finetune(model, layers, [1.0] * len(layers), data, Recipe(epochs=epochs, lr=1e-4, batch_size=64), 0,
                 torch.device("cpu"), reweighter)
    return launches, reads


def report(title: str, one: collections.Counter[str], three: collections.Counter[str]) -> None:
    """Counts by engine function of a 1-epoch and a 3-epoch run, the largest first."""
    print(f"{title}: a 1-epoch and a 3-epoch run (one step per epoch)")
    print(f"  {'total':<24} {sum(one.values()):>6} {sum(three.values()):>6}")
    for function in sorted(three, key=lambda f: -three[f]):
        print(f"  {function:<24} {one[function]:>6} {three[function]:>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("digits", "wrn"), default="wrn")
    parser.add_argument("--auto-rgn", action="store_true", help="also a run re-weighted every step (auto-rgn)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same weights, so the same epochs validate best, in every process
    base = prepare_model(build(args.model), torch.device("cpu"))
    tiny = synthetic(8, torch.device("cpu"), seed=1)
    data = TaskData(source=tiny, train=synthetic(16, torch.device("cpu")), val=tiny, test=tiny, num_classes=10)
    for reweighted in (False, True) if args.auto_rgn else (False,):
        (one, one_reads), (three, three_reads) = (counted_run(base, data, e, reweighted) for e in (1, 3))
        kind = "re-weighted every step (auto-rgn)" if reweighted else "fixed multipliers"
        report(f"{args.model}, {kind}: launches by engine function", one.by_function, three.by_function)
        report(f"{args.model}, {kind}: host reads by engine function", one_reads, three_reads)
    state = [t.detach().contiguous().reshape(-1).view(torch.uint8) for t in base.state_dict().values()]
    with Launches() as digest:
        device_sums(state)
    print(f"the CUDA path of one model digest ({len(state)} tensors): {digest.total} launches")


if __name__ == "__main__":
    main()
