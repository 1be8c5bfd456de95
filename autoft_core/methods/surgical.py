"""Surgical fine-tuning of one chosen block (Lee et al., ICLR 2023, "Surgical Fine-Tuning Improves
Adaptation to Distribution Shifts"): the blocks are `partition(model, "block")` (e.g. WRN stem+block1,
block2, block3, head), whatever the run's layer granularity; every run layer lying in the chosen block
gets multiplier 1, every other layer 0 (frozen).

`block` is an index (0 nearest the input, -1 the last, Python-style) or a block's name. A run layer lies
in the block holding its first parameter (a module-granularity layer's conv and BatchNorm always share a
block). Scores are the multipliers; `extras` names the block. Lee et al. find the first block best for
input-level shifts and the last for output-level ones; `cross-validation` tries every block.
"""
from __future__ import annotations

from ..errors import BadArgumentError
from ..layers import Layer, partition
from .base import LayerWeights, Method, MethodContext, Param


def block_of_layers(layers: list[Layer], blocks: list[Layer]) -> list[int]:
    """For each layer, the index of the block that holds its first parameter."""
    owner = {p: b for b, block in enumerate(blocks) for p in block.param_names}
    return [owner[layer.param_names[0]] for layer in layers]


def block_index(blocks: list[Layer], block: str) -> int:
    """The index (0..len-1) of `block`, given as an index (negative from the end) or a name."""
    names = [b.name for b in blocks]
    if block in names:
        return names.index(block)
    try:
        index = int(block)
    except ValueError:
        index = len(blocks)  # neither a name nor a number
    if not -len(blocks) <= index < len(blocks):
        valid = [f"{i} or {i - len(blocks)} ({name})" for i, name in enumerate(names)]
        raise BadArgumentError("block", block, "; ".join(valid))
    return index % len(blocks)


def one_block(layers: list[Layer], blocks: list[Layer], index: int) -> list[float]:
    """Multipliers over `layers`: 1 for the layers in block `index`, 0 elsewhere."""
    return [1.0 if owner == index else 0.0 for owner in block_of_layers(layers, blocks)]


class Surgical(Method):
    """Fine-tune exactly one block (Lee et al. 2023); the rest of the network stays frozen."""

    name = "surgical"
    summary = "Surgical fine-tuning (Lee et al. 2023): fine-tune one block only, the rest frozen."
    params = {"block": Param("0", "the block to fine-tune: its index (0 nearest the input, -1 the last) or its name")}
    one_hot = True
    order = 19

    def weights(self, ctx: MethodContext) -> LayerWeights:
        blocks = partition(ctx.model, "block")
        index = block_index(blocks, str(ctx.params["block"]))
        weights = one_block(ctx.layers, blocks, index)
        return LayerWeights(scores=list(weights), weights=weights,
                            extras={"block": blocks[index].name, "block_index": index})
