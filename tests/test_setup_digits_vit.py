"""The embedded ViT (`--setup digits --arch vit`): trained on the digits source (once per machine, then
cached), its layers, its accuracy on held-out source images, and valid weights from every method
(its pretraining time: bench/vit_checks.py)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from autoft_core.cli import main
from autoft_core.core.data import Split
from autoft_core.core.recipe import Recipe, TaskSpec
from autoft_core.evaluation import accuracy
from autoft_core.layers import partition
from autoft_core.methods import method_names
from autoft_core.setups import get_setup, source_training
from autoft_core.setups.source_training import holdout_task

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("vit")]  # one worker pretrains the ViT


@pytest.fixture(scope="module")
def vit_setup():
    return get_setup("digits-vit")


def test_its_layers_are_embedding_attention_mlp_and_head(vit_setup):
    layers = partition(vit_setup.source_model("output"))
    assert [layer.name for layer in layers] == ["embed", *(f"block{i}.{p}" for i in range(2) for p in ("attn", "mlp")),
                                                "head"]
    assert vit_setup.source_model("feature").head.fc.out_features == vit_setup.task(TaskSpec("feature")).num_classes


def test_it_classifies_95_percent_of_the_source_images_held_out_of_its_pretraining(vit_setup):
    data = vit_setup.task(TaskSpec("output"))
    held_out = holdout_task(data.source, data.num_classes).test  # fit_on_source's validation share, never trained on
    assert len(held_out) == 1000 and accuracy(vit_setup.source_model("output"), held_out) >= 0.95


class _Trained(Exception):
    """Raised by the training spy: where and on how many threads the source model would be trained."""


def _spied_training(monkeypatch) -> list:
    """Source training intercepted: a CUDA device claimed present, nothing cached, each `finetune` recorded
    (its device, the thread count, the cache key) and stopped."""
    seen, keys = [], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # resolve_device(None) picks CUDA now

    def spy(model, layers, multipliers, task, recipe, seed, device):
        seen.append((device, torch.get_num_threads(), keys[-1]))
        raise _Trained

    monkeypatch.setattr(source_training, "finetune", spy)
    monkeypatch.setattr(source_training, "cached_model",
                        lambda name, key, build, train: keys.append(key) or train(build()))
    return seen


def test_the_vit_is_trained_on_one_cpu_thread_even_where_cuda_is_present(vit_setup, monkeypatch):
    """Its weights must not depend on the machine (on an H200 its bf16 training reached 94.0 %, not 95.8 %)."""
    seen = _spied_training(monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(_Trained):
            vit_setup.source_model("output")
    finally:
        torch.set_num_threads(threads)
    (device, count, key), = seen
    assert device == torch.device("cpu") and count == 1 and key["device"] == "cpu" and key["threads"] == 1


def test_a_source_model_trained_where_cuda_is_present_says_so_in_its_cache_key(monkeypatch):
    seen = _spied_training(monkeypatch)
    source = Split(torch.rand(20, 3), torch.randint(0, 2, (20,)))
    with pytest.raises(_Trained):
        source_training.trained_source_model("tiny", {}, lambda: nn.Linear(3, 2), source, 2, (Recipe(epochs=1),))
    (device, _, key), = seen
    assert device == torch.device("cuda") and key["device"] == "cuda"


def test_arch_picks_the_setup_and_unknown_archs_are_refused(capsys):
    code = main(["weights", "--setup", "digits", "--arch", "transformer", "--method", "full"])
    assert code == 2 and "resnet, vit" in capsys.readouterr().err


@pytest.mark.parametrize("method", method_names())
def test_every_method_gives_valid_weights(method, capsys):
    argv = ["weights", "--setup", "digits", "--arch", "vit", "--shift", "output", "--method", method, "--json",
            "--shots", "50", "--epochs", "1"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layers"][0] == "embed" and len(out["weights"]) == len(out["scores"]) == 6
    assert all(math.isfinite(w) and w >= 0 for w in out["weights"]) and max(out["weights"]) > 0
