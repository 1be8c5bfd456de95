"""The embedded ViT (`--setup digits --arch vit`): trained on the digits source (once per machine, then
cached), its layers, its accuracy on held-out source images, and valid weights from every method
(its pretraining time: bench/vit_checks.py)."""
from __future__ import annotations

import json
import math

import pytest

from autoft_core.cli import main
from autoft_core.core.recipe import TaskSpec
from autoft_core.evaluation import accuracy
from autoft_core.layers import partition
from autoft_core.methods import method_names
from autoft_core.setups import get_setup
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
