"""Own checkpoints: a training script's nested checkpoint is read, NaN weights and a head of another input width
are refused in one line (models/checkpoints.py)."""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from autoft_core.errors import AutoFTError
from autoft_core.models.checkpoints import load_into, read_state_dict


def _model(classes: int = 3, width: int = 8) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(body=nn.Linear(4, width), fc=nn.Linear(width, classes)))


def test_a_state_dict_beside_the_epoch_and_optimizer_is_read(tmp_path):
    state = _model().state_dict()
    path = tmp_path / "train.pt"
    torch.save({"epoch": 5, "state_dict": state, "optimizer": {"lr": 0.1, "momentum": torch.zeros(2)}}, path)
    read = read_state_dict(path)
    assert read.keys() == state.keys() and all(torch.equal(read[k], state[k]) for k in state)


def test_a_dict_with_two_candidate_state_dicts_is_refused_naming_its_keys(tmp_path):
    state = _model().state_dict()
    path = tmp_path / "two.pt"
    torch.save({"model": state, "state_dict": state, "epoch": 1}, path)
    with pytest.raises(AutoFTError, match="keys model, state_dict, epoch"):
        read_state_dict(path)


def test_nan_weights_are_refused_naming_the_tensor(tmp_path):
    state = _model().state_dict()
    state["body.weight"][0, 0] = float("nan")
    state["fc.bias"][1] = float("inf")
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    with pytest.raises(AutoFTError, match=r"NaN or infinite values in 2 tensor\(s\) \(e.g. body.weight, fc.bias\)"):
        read_state_dict(path)


def test_a_head_with_another_class_count_is_left_out_and_reported(tmp_path):
    model = _model(classes=3)
    saved = _model(classes=10).state_dict()
    assert load_into(model, saved, "fc", tmp_path / "c.pt", "mlp") == 10
    assert torch.equal(model.body.weight, saved["body.weight"])


def test_a_head_of_another_input_width_is_another_model(tmp_path):
    saved = _model(classes=3, width=16).state_dict()
    saved["body.weight"], saved["body.bias"] = torch.zeros(8, 4), torch.zeros(8)  # the body fits, the head does not
    with pytest.raises(AutoFTError, match=r"does not fit --arch mlp: .*fc.weight \(3, 16\) \(model \(3, 8\)\)"):
        load_into(_model(classes=3), saved, "fc", tmp_path / "w.pt", "mlp")
