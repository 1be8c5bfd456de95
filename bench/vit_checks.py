"""The embedded ViT's source model (`--setup digits --arch vit`): how long it pretrains (one CPU thread,
CPU time, cold cache) and how accurate it is on the source images it did not train on and on the clean
target renders (target: >= 95% on the held-out source images, pretraining <= 60 s), beside the digits
ResNet on the same images.

    python bench/vit_checks.py            # uses a fresh cache folder, so it always pretrains
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    os.environ["AUTOFT_CACHE"] = tempfile.mkdtemp(prefix="autoft-vit-")  # cold: the pretraining is timed
    import torch

    from autoft_core.core.data import Split
    from autoft_core.core.recipe import TaskSpec
    from autoft_core.evaluation import accuracy
    from autoft_core.setups import get_setup
    from autoft_core.setups.source_training import holdout_task

    torch.set_num_threads(1)
    setup = get_setup("digits-vit")
    data = setup.task(TaskSpec("output"))
    start, cpu = time.perf_counter(), time.process_time()
    model = setup.source_model("output")
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    held_out = holdout_task(data.source, data.num_classes).test
    clean = Split(data.test.x, data.num_classes - 1 - data.test.y)
    held_acc, clean_acc = accuracy(model, held_out), accuracy(model, clean)
    print(f"pretraining: {cpu:.1f} s CPU, {wall:.1f} s wall (target <= 60 s) -> {'meets' if wall <= 60 else 'misses'}")
    resnet = get_setup("digits").source_model("output")  # the same held-out images were held out of its training
    print(f"held-out source accuracy {100 * held_acc:.1f}% (target >= 95%) -> "
          f"{'meets' if held_acc >= 0.95 else 'misses'}; clean target renders {100 * clean_acc:.1f}%")
    print(f"the digits ResNet on the same images: held-out source {100 * accuracy(resnet, held_out):.1f}%, "
          f"clean target renders {100 * accuracy(resnet, clean):.1f}%")


if __name__ == "__main__":
    main()
