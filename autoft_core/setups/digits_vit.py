"""`digits-vit` (`--setup digits --arch vit`): the embedded digits setup, same data and shifts, with a
small Vision Transformer as the source model instead of the ResNet.

The ViT (models.vit, config "vit_mini": a convolutional stem down to 8x8 tokens of width 32 (Xiao et
al. 2021), 2 blocks of 2 heads, head on the tokens' mean) is trained from scratch on the setup's own
source split (`task(...).source`, so it follows whatever data the digits setup serves) and cached under
a hash of the source data and the recipe. Its layers: patch embedding (the stem), each block's attention
and MLP, final norm + head.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.recipe import Recipe, TaskSpec
from ..errors import BadArgumentError
from .digits import DigitsSetup

if TYPE_CHECKING:
    from torch import nn

CONFIG = "vit_mini"
# 8 epochs at lr 1e-3 with BatchNorm statistics learnt (the stem's): 47 s on one thread, 91.7 % of the
# held-out source images (bench/vit_checks.py; the digits ResNet: 91.5 %). Longer is more accurate but
# over the 60 s budget: 8 + 2 epochs at 2e-4 gave 93.6 % in 73 s; 12-16 epochs at 1e-3 in a plain loop,
# 92-95 % in 90-127 s. The patchify ViT this replaced sat at chance for 4 epochs on these renders (also
# at lr 2e-3 to 3e-3, patch 8, width 64, a class token, per-image normalised inputs, distillation from
# the ResNet).
PRETRAIN = (Recipe(epochs=8, lr=1e-3, batch_size=64, train_bn_stats=True),)


class DigitsVitSetup(DigitsSetup):
    """The digits setup with a small ViT pretrained on its source split."""

    name = "digits-vit"
    description = ("Embedded: the digits setup with a small Vision Transformer (convolutional stem, 2 "
                   "blocks, head) trained on its source (--setup digits --arch vit)")
    # The ResNet's lr 3e-3 is too high for the ViT: at it full fine-tuning ended at chance in 3 of 10 runs
    # (seeds 0-1 on the flip, the feature level and 5 corruptions) and its best validation epoch was the
    # pretrained model in 6; at 1e-3, its pretraining lr, it gains on every shift (seed 0: flip 58.6,
    # feature 72.7, frost 5 84.7 from zero-shot 82.5); bench/arch_comparison.py compares the methods at it.
    recipe = DigitsSetup.recipe.with_values(lr=1e-3)

    def source_model(self, shift: str) -> "nn.Module":
        """A fresh copy of the ViT trained on this shift's source split (eval mode, CPU)."""
        from ..models.vit import CONFIGS, vit
        from .source_training import trained_source_model

        if shift not in self.shifts:
            raise BadArgumentError(f"shift for setup {self.name}", shift, self.shifts)
        data = self.task(TaskSpec("feature" if shift == "feature" else "output"))
        size = data.source.x.shape[-1]
        return trained_source_model(self.name, {"arch": CONFIG, "config": CONFIGS[CONFIG], "size": size},
                                    lambda: vit(CONFIG, data.num_classes, size), data.source, data.num_classes,
                                    PRETRAIN)
