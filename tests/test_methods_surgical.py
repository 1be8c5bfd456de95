"""Surgical fine-tuning of one block, and cross-validation over its candidates."""
from __future__ import annotations

import copy

import pytest
import torch

from autoft_core.core.data import Split, TaskData
from autoft_core.errors import BadArgumentError
from autoft_core.core.recipe import Recipe
from autoft_core.layers import partition
from autoft_core.methods import MethodContext, get_method
from autoft_core.methods.cross_validation import final_val_acc
from autoft_core.models.digits_net import DigitsResNet

pytestmark = pytest.mark.usefixtures("one_thread")
BLOCKS = ["stem+stage1", "stage2", "stage3", "head"]


def _ctx(granularity: str = "module", epochs: int = 2, **params: object) -> MethodContext:
    """A tiny random DigitsResNet on random 3-class data (fast, no cache)."""
    torch.manual_seed(0)
    model = DigitsResNet(num_classes=3, width=4, features=8).eval()
    g = torch.Generator().manual_seed(1)
    split = lambda n: Split(torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 3, (n,), generator=g))
    data = TaskData(source=split(12), train=split(24), val=split(12), test=split(12), num_classes=3)
    return MethodContext(model=model, layers=partition(model, granularity), data=data, params=dict(params),
                         recipe=Recipe(epochs=epochs, lr=1e-2, batch_size=8), seed=0,
                         device=torch.device("cpu"))


def _changed_blocks(before: torch.nn.Module, after: torch.nn.Module) -> list[str]:
    """Blocks any of whose parameters differ between the two models."""
    a, b = dict(before.named_parameters()), dict(after.named_parameters())
    return [block.name for block in partition(before, "block")
            if any(not torch.equal(a[p], b[p]) for p in block.param_names)]


@pytest.mark.parametrize("granularity", ["module", "block"])
@pytest.mark.parametrize("block", ["0", "1", "2", "3"])
def test_surgical_trains_exactly_the_chosen_block(granularity, block):
    ctx = _ctx(granularity, block=block)
    initial = copy.deepcopy(ctx.model)
    chosen, _ = get_method("surgical").run(ctx)
    assert _changed_blocks(initial, ctx.model) == [BLOCKS[int(block)]]
    assert chosen.extras["block"] == BLOCKS[int(block)]
    named = set(partition(initial, "block")[int(block)].param_names)
    assert chosen.weights == [1.0 if set(layer.param_names) <= named else 0.0 for layer in ctx.layers]


@pytest.mark.parametrize("alias, index", [("-1", 3), ("-4", 0), ("head", 3), ("stage2", 1), ("stem+stage1", 0)])
def test_negative_indices_and_names_pick_the_same_block(alias, index):
    by_alias = get_method("surgical").weights(_ctx(block=alias))
    by_index = get_method("surgical").weights(_ctx(block=str(index)))
    assert by_alias.weights == by_index.weights and by_alias.extras["block_index"] == index


@pytest.mark.parametrize("bad", ["4", "-5", "stage9", "", "1.5"])
def test_a_bad_block_is_a_clear_error_naming_the_blocks(bad):
    with pytest.raises(BadArgumentError, match="block.*0 or -4 \\(stem\\+stage1\\).*3 or -1 \\(head\\)"):
        get_method("surgical").weights(_ctx(block=bad))


def test_cross_validation_candidates_are_surgical_runs_and_the_best_final_val_wins():
    ctx = _ctx()
    chosen, result = get_method("cross-validation").run(copy.deepcopy(ctx))
    rows = chosen.extras["candidates"]
    assert [r["name"] for r in rows] == [*BLOCKS, "all"]
    for i, row in enumerate(rows[:-1]):  # each candidate is what `surgical` alone gives
        _, alone = get_method("surgical").run(_ctx(block=str(i)))
        assert (row["test_acc"], row["val_acc"]) == (alone.test_acc, final_val_acc(alone))
    _, full = get_method("full").run(_ctx())
    assert (rows[-1]["test_acc"], rows[-1]["val_acc"]) == (full.test_acc, final_val_acc(full))
    winner = next(r for r in rows if r["val_acc"] == max(r["val_acc"] for r in rows))  # first of the best
    assert chosen.extras["chosen"] == winner["name"] and result.test_acc == winner["test_acc"]
