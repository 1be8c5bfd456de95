"""The project's fine-tuning loop against plain hand-written PyTorch doing the same work, in CPU time.

Cases (ratio = plain time / project time; >= 1 means the project is at least as fast):
- all layers trained: `finetune` (every multiplier 1, 8-image val/test) vs a plain loop;
- 3/10 and 9/10 of the layers frozen: `finetune` with those multipliers 0 vs the plain loop with
  requires_grad=False on the same layers (the fair baseline: it skips their weight gradients too);
- a whole run with evaluation (the digits output task, its pretrained model): `finetune` vs a plain
  script that evaluates the same way (zero-shot test, validation each epoch keeping the best state,
  final test, the best state's test unless it is the final or the pretrained one);
- evaluation beside training (`evalthread`, CPU with a spare core): the default digits run (output
  shift) with its evaluation on the training thread (AUTOFT_THREADS pins it there) against on the
  second thread (finetune.py), in wall time (what it buys) and in CPU time (what it costs).
Both sides use the same Adam kernel (the plain loop through torch.optim.Adam(fused=True), the project
calls torch._fused_adam_ itself), the same prepared model (channels-last) and the same data on the
device; the project's accuracy cache is cleared before each of its runs, so every run pays its own
zero-shot pass. On the CPU: one intra-op thread and the process's CPU time (robust on a shared
machine), the project's runs pinned to that thread as a sweep worker's are (`pinned_threads`: its
evaluation inline, as the plain side's; `evalthread` measures what evaluating beside it on a spare core
buys and costs); on CUDA: synchronised wall time, plus the WRN-28-10 MFU at the recipe's batch and at 256
and one CIFAR-10-C-sized run (1,000 images x 25 epochs + 10,000 test images).

    python bench/throughput.py [--repeats 15] [--cases all,frozen3,frozen9,run,evalthread,figures]
    python bench/throughput.py --model wrn --device cuda [--compile]
    python bench/throughput.py --model wrn --device cuda --cases frozen3 --repeats 1 --profile

`--profile` then runs each step case once more per side under torch.profiler and prints both sides' top
operators by self time (device time on CUDA): where a ratio below target comes from.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import Comparison, alternate, clock, profiled  # noqa: E402
from autoft_core.core.data import Split, TaskData  # noqa: E402
from autoft_core.core.recipe import Recipe  # noqa: E402
from autoft_core.device import (autocast, fused_kwargs, peak_bf16_flops, pinned_threads, prepare_model,  # noqa: E402
                                resolve_device, spare_cpu_core)
from autoft_core.evaluation import clear_accuracy_cache, eval_batch  # noqa: E402
from autoft_core.finetune import EpochStats, finetune, set_train_mode  # noqa: E402
from autoft_core.layers import partition  # noqa: E402

TARGETS = {"all": 0.97, "frozen3": 1.0, "frozen9": 1.0, "run": 0.9, "evalthread": 1.0}
GPU_STEP_TARGET = 0.95  # issue 13: on a GPU the step is held to 0.95 of the plain loop (0.97 on the CPU)


def build(name: str) -> torch.nn.Module:
    if name == "digits":
        from autoft_core.models.digits_net import DigitsResNet

        return DigitsResNet()
    from autoft_core.compat import import_robustbench

    import_robustbench()
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    return WideResNet(depth=28, widen_factor=10)


def synthetic(n: int, device: torch.device, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)).to(device)


def freeze_first(model: torch.nn.Module, frozen: int) -> list[float]:
    """Multipliers with the first `frozen` module-granularity layers at 0; their params get requires_grad False."""
    layers = partition(model, "module")
    for layer in layers[:frozen]:
        for p in layer.parameters(model):
            p.requires_grad_(False)
    return [0.0] * frozen + [1.0] * (len(layers) - frozen)


def plain_epochs(model: torch.nn.Module, train: Split, epochs: int, cfg: Recipe, device: torch.device,
                 after_epoch: Callable[[int], None] = lambda epoch: None) -> None:
    """What one writes by hand: Adam over the parameters that require grad, shuffled minibatches."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, **fused_kwargs(device))
    epochs_loop(model, train, epochs, cfg.batch_size, opt.step, lambda: opt.zero_grad(set_to_none=True),
                after_epoch=after_epoch)


def epochs_loop(model: torch.nn.Module, train: Split, epochs: int, batch_size: int, step: Callable[[], None],
                zero_grad: Callable[[], None], stats: bool = False, sync: bool = False,
                after_epoch: Callable[[int], None] = lambda epoch: None) -> None:
    """The plain loop's epochs with the given optimizer calls; with `stats`, the project's per-step statistics
    (`EpochStats`: loss sum, correct count, non-finite flag on the device); with `sync`, one host read per
    epoch (of them, else of the last loss; bench/loop_variants.py builds the project's epoch up from these)."""
    device = train.x.device
    generator = torch.Generator().manual_seed(0)
    for epoch in range(1, epochs + 1):
        set_train_mode(model, train_bn_stats=False)
        order = torch.randperm(len(train), generator=generator).to(device)
        epoch_stats = EpochStats()
        for i in range(0, len(train), batch_size):
            idx = order[i:i + batch_size]
            x, y = train.x[idx], train.y[idx]
            with autocast(device):
                logits = model(x)
                loss = F.cross_entropy(logits, y)
            zero_grad()
            loss.backward()
            step()
            if stats:
                epoch_stats.add(loss, logits, y)
        if sync:  # the statistics kept, else the last loss
            (torch.stack([t.float() for t in epoch_stats.totals(device)]) if stats else loss.detach()).tolist()
        after_epoch(epoch)


@torch.inference_mode()
def plain_accuracy(model: torch.nn.Module, split: Split, device: torch.device) -> float:
    model.eval()
    correct = 0
    batch = eval_batch(split.x, device)
    with autocast(device):
        for i in range(0, len(split), batch):
            correct += (model(split.x[i:i + batch]).argmax(1) == split.y[i:i + batch]).sum()
    return int(correct) / len(split)


def plain_script(model: torch.nn.Module, data: TaskData, cfg: Recipe, device: torch.device) -> None:
    """A hand-written run with the project's evaluation: zero-shot, best-validation state, final and best test."""
    state = lambda: {k: v.detach().clone() for k, v in model.state_dict().items()}  # noqa: E731
    plain_accuracy(model, data.test, device)
    best = {"epoch": 0, "val": plain_accuracy(model, data.val, device), "state": state()}

    def validate(epoch: int) -> None:
        val = plain_accuracy(model, data.val, device)
        if val > best["val"]:
            best.update(epoch=epoch, val=val, state=state())

    plain_epochs(model, data.train, cfg.epochs, cfg, device, validate)
    plain_accuracy(model, data.test, device)
    if best["epoch"] not in (0, cfg.epochs):
        model.load_state_dict(best["state"])
        plain_accuracy(model, data.test, device)


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    now = clock(device)
    start = now()
    fn()
    return now() - start


def project_timed(device: torch.device, fn: Callable[[], object]) -> float:
    """`timed`, on the CPU with the project pinned to this process's intra-op threads (module doc)."""
    with pinned_threads(torch.get_num_threads() if device.type == "cpu" else None):
        return timed(device, fn)


def step_sides(base: torch.nn.Module, frozen: int, train: Split, cfg: Recipe,
               device: torch.device) -> dict[str, Callable[[int], float]]:
    """The plain loop and `finetune` (8-image val/test), `frozen` first layers frozen, each a function of the
    epoch count returning its seconds (bench/phases.py times them at two counts)."""
    tiny = synthetic(8, device, seed=1)
    data = TaskData(source=tiny, train=train, val=tiny, test=tiny, num_classes=10)

    def plain(epochs: int) -> float:
        model = copy.deepcopy(base)
        freeze_first(model, frozen)
        return timed(device, lambda: plain_epochs(model, train, epochs, cfg, device))

    def project(epochs: int) -> float:
        model = copy.deepcopy(base)
        multipliers = freeze_first(model, frozen)
        clear_accuracy_cache()
        return project_timed(device, lambda: finetune(model, partition(model, "module"), multipliers, data,
                                                      cfg.with_values(epochs=epochs), 0, device))

    return {"plain": plain, "project": project}


def step_case(base: torch.nn.Module, frozen: int, train: Split, cfg: Recipe, device: torch.device,
              repeats: int, label: str, profile: bool = False):
    """Training only (8-image val/test for the project): plain loop vs `finetune`, `frozen` first layers frozen;
    with `profile`, one more run of each side under the profiler afterwards."""
    sides = step_sides(base, frozen, train, cfg, device)
    plain, project = (lambda: sides["plain"](cfg.epochs)), (lambda: sides["project"](cfg.epochs))
    comparison = alternate(label, plain, project, repeats)
    if profile:
        profiled(device, f"{label}, plain loop", plain)
        profiled(device, f"{label}, project", project)
    return comparison


def digits_output_task(device: torch.device) -> tuple[Recipe, TaskData, torch.nn.Module]:
    """The digits setup's default recipe, its label-flip task and its pretrained model, on `device`."""
    from autoft_core.core.recipe import TaskSpec
    from autoft_core.setups import get_setup

    setup = get_setup("digits")
    data = setup.task(setup.check(TaskSpec("output"))).to(device)
    return setup.recipe, data, prepare_model(setup.source_model("output"), device)


def run_case(device: torch.device, epochs: int, repeats: int):
    """A whole digits run (output shift, pretrained model, 1000/150/500 images): plain script vs `finetune`."""
    recipe, data, base = digits_output_task(device)
    cfg = recipe.with_values(epochs=epochs)

    def plain() -> float:
        model = copy.deepcopy(base)
        return timed(device, lambda: plain_script(model, data, cfg, device))

    def project() -> float:
        model = copy.deepcopy(base)
        clear_accuracy_cache()
        layers = partition(model, "module")
        return project_timed(device, lambda: finetune(model, layers, [1.0] * len(layers), data, cfg, 0, device))

    return alternate(f"whole run, {epochs} epochs, with eval", plain, project, repeats)


def eval_thread_case(device: torch.device, repeats: int) -> tuple[Comparison, Comparison]:
    """The default digits run (output shift): evaluation on the training thread (baseline) against beside
    it on the spare core (project); (wall-time comparison, CPU-time comparison) of the same pairs."""
    recipe, data, base = digits_output_task(device)
    cpu: dict[bool, list[float]] = {False: [], True: []}

    def run(beside: bool) -> float:
        model = copy.deepcopy(base)
        clear_accuracy_cache()
        layers = partition(model, "module")
        with pinned_threads(None if beside else torch.get_num_threads()):  # pinned: evaluation stays inline
            wall, start = time.perf_counter(), time.process_time()
            finetune(model, layers, [1.0] * len(layers), data, recipe, 0, device)
            cpu[beside].append(time.process_time() - start)
            return time.perf_counter() - wall

    label = "run, evaluation beside training"
    walls = alternate(f"{label} (wall)", lambda: run(False), lambda: run(True), repeats)
    return walls, Comparison(f"{label} (CPU)", cpu[False][1:], cpu[True][1:])  # [0]: the warm-ups


def train_flop_per_image(model: torch.nn.Module, device: torch.device) -> float:
    """FLOP of one training step per image (forward + backward), counted by torch's FlopCounterMode on a batch
    of 2 (2 FLOP per multiply-add; WRN-28-10: 31.5 G, three times its 10.5 G forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(model).train()
    x = synthetic(2, device).x
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return counter.get_total_flops() / len(x)


def gpu_figures(base: torch.nn.Module, device: torch.device, images: int, epochs: int) -> None:
    """WRN-28-10 on CUDA: MFU of the project's loop at batch 64 (the recipe's) and 256; one CIFAR-10-C run."""
    name = torch.cuda.get_device_name(device)
    peak = peak_bf16_flops(name)
    step_flop = train_flop_per_image(base, device)
    train = synthetic(images, device)
    for batch in (64, 256):
        cfg = Recipe(epochs=epochs, lr=1e-4, batch_size=batch)
        tiny = synthetic(8, device, seed=1)
        data = TaskData(source=tiny, train=train, val=tiny, test=tiny, num_classes=10)
        model = copy.deepcopy(base)
        layers = partition(model, "module")
        finetune(model, layers, [1.0] * len(layers), data, cfg.with_values(epochs=1), 0, device)  # warm-up
        seconds = timed(device, lambda: finetune(model, layers, [1.0] * len(layers), data, cfg, 0, device))
        achieved = images * epochs / seconds * step_flop
        mfu = f"{100 * achieved / peak:.1f}% of {peak / 1e12:.0f} TFLOP/s" if peak else "peak unknown for this GPU"
        print(f"batch {batch:<4} {images * epochs / seconds:9.0f} images/s  {achieved / 1e12:6.1f} TFLOP/s  MFU {mfu}"
              + ("  (target >= 35%)" if batch == 256 else ""))
    seconds = cifar10c_sized_run(base, cifar10c_sized_task(device), device)
    print(f"one CIFAR-10-C-sized run (1000 x 25 epochs + 10,000 test images): {seconds:.2f} s (target <= 10 s)")


def cifar10c_sized_task(device: torch.device) -> TaskData:
    """Random data the size of a CIFAR-10-C task: 1,000 training, 1,000 validation and 10,000 test images."""
    return TaskData(source=synthetic(8, device), train=synthetic(1000, device), val=synthetic(1000, device, 2),
                    test=synthetic(10_000, device, 3), num_classes=10)


def cifar10c_sized_run(base: torch.nn.Module, data: TaskData, device: torch.device) -> float:
    """Seconds of one full fine-tuning run of a copy of `base` on `data` with the CIFAR-10-C recipe's 25 epochs
    (its zero-shot accuracy not cached: the run pays it)."""
    model = copy.deepcopy(base)
    layers = partition(model, "module")
    clear_accuracy_cache()
    return timed(device, lambda: finetune(model, layers, [1.0] * len(layers), data, Recipe(epochs=25, lr=1e-4),
                                          0, device))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("digits", "wrn"), default="digits")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (default 1)")
    parser.add_argument("--images", type=int, default=None, help="training images per epoch (step cases)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the step cases (default 4)")
    parser.add_argument("--run-epochs", type=int, default=5, help="epochs of the whole-run case")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--cases", default="all,frozen3,frozen9,run,evalthread,figures",
                        help="comma-separated; figures: the MFU lines and the CIFAR-10-C-sized run (WRN-28-10 on CUDA)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training forward (CUDA)")
    parser.add_argument("--profile", action="store_true", help="profile each step case's two sides once more")
    args = parser.parse_args()
    if args.compile:
        os.environ["AUTOFT_COMPILE"] = "1"
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    images = args.images or (1024 if args.model == "wrn" and device.type == "cuda" else 448)
    cfg = Recipe(epochs=args.epochs, lr=1e-4, batch_size=64)
    base = prepare_model(build(args.model), device)
    what = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} thread(s), process CPU time"
    print(f"model {args.model}; {what}; step cases {images} images x {args.epochs} epochs, batch 64; "
          f"{args.repeats} alternated repeats; medians [quartiles]")
    train = synthetic(images, device)
    cases = args.cases.split(",")
    n_layers = len(partition(base, "module"))
    for case, share in (("all", 0.0), ("frozen3", 0.3), ("frozen9", 0.9)):
        if case in cases:
            frozen = round(share * n_layers)
            label = "all layers trained" if frozen == 0 else f"{frozen}/{n_layers} layers frozen"
            comparison = step_case(base, frozen, train, cfg, device, args.repeats, label, args.profile)
            target = GPU_STEP_TARGET if case == "all" and device.type == "cuda" else TARGETS[case]
            print(comparison.report(target), flush=True)
    if "run" in cases and args.model == "digits":
        print(run_case(device, args.run_epochs, args.repeats).report(TARGETS["run"]), flush=True)
    if "evalthread" in cases and args.model == "digits":
        if spare_cpu_core(device):
            walls, cpu = eval_thread_case(device, args.repeats)
            print(walls.report(TARGETS["evalthread"]), flush=True)
            print(cpu.report(0.9), flush=True)
        else:
            print("evaluation beside training: no spare CPU core here (or not the CPU); nothing to compare")
    if "figures" in cases and device.type == "cuda" and args.model == "wrn":
        gpu_figures(base, device, images, args.epochs)


if __name__ == "__main__":
    main()
