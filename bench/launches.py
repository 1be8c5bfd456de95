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
(`digest.device_sums` on the model's state).

    python bench/launches.py [--model digits|wrn]
"""
from __future__ import annotations

import argparse
import collections
import copy
import sys
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

NO_KERNEL = frozenset("detach view _unsafe_view alias t transpose permute expand as_strided empty empty_like "
                      "empty_strided new_empty set_ split split_with_sizes slice select unsqueeze squeeze "
                      "_reshape_alias unbind lift_fresh".split())
ENGINE = str(Path(__file__).resolve().parent.parent / "autoft_core")


class Launches(TorchDispatchMode):
    """Counts the kernel-launching operations dispatched inside it, by the engine function that issued them."""

    def __init__(self) -> None:
        super().__init__()
        self.by_function: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ not in NO_KERNEL:
            frame = sys._getframe(1)
            while frame is not None and (not frame.f_code.co_filename.startswith(ENGINE)
                                         or frame.f_code.co_name.startswith("<")):
                frame = frame.f_back
            self.by_function[frame.f_code.co_name if frame else "(outside the engine)"] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.by_function.values())


def counted_run(base: torch.nn.Module, data: TaskData, epochs: int) -> Launches:
    """The launches of one `finetune` of `epochs` epochs (every layer trained, evaluation inline)."""
    model = copy.deepcopy(base)
    clear_accuracy_cache()
    layers = partition(model, "module")
    with pinned_threads(1), Launches() as launches:
        finetune(model, layers, [1.0] * len(layers), data, Recipe(epochs=epochs, lr=1e-4, batch_size=64), 0,
                 torch.device("cpu"))
    return launches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("digits", "wrn"), default="wrn")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the same weights, so the same epochs validate best, in every process
    base = prepare_model(build(args.model), torch.device("cpu"))
    tiny = synthetic(8, torch.device("cpu"), seed=1)
    data = TaskData(source=tiny, train=synthetic(16, torch.device("cpu")), val=tiny, test=tiny, num_classes=10)
    one, three = counted_run(base, data, 1), counted_run(base, data, 3)
    print(f"{args.model}: launches by engine function, a 1-epoch and a 3-epoch run (one step per epoch)")
    print(f"  {'total':<24} {one.total:>6} {three.total:>6}")
    for function in sorted(three.by_function, key=lambda f: -three.by_function[f]):
        print(f"  {function:<24} {one.by_function[function]:>6} {three.by_function[function]:>6}")
    state = [t.detach().contiguous().reshape(-1).view(torch.uint8) for t in base.state_dict().values()]
    with Launches() as digest:
        device_sums(state)
    print(f"the CUDA path of one model digest ({len(state)} tensors): {digest.total} launches")


if __name__ == "__main__":
    main()
