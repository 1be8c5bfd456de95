"""`digits-vit` (`--setup digits --arch vit`): the embedded digits setup, same data and shifts, with a
small Vision Transformer as the source model instead of the ResNet.

The ViT (models.vit, config "vit_mini": 4x4-pixel patches, width 32, 4 blocks of 2 heads, head on
the tokens' mean) is trained
from scratch on the setup's own source split (`task(...).source`, so it follows whatever data the
digits setup serves), with translated copies of the images (a ViT has no convolution to give it
translation invariance), and cached under a hash of the source data and the recipe. Its layers:
patch embedding, each block's attention and MLP, final norm + head.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.recipe import Recipe, TaskSpec
from ..errors import BadArgumentError
from .digits import DigitsSetup

if TYPE_CHECKING:
    from torch import nn

CONFIG = "vit_mini"
# It does not learn the striped low-contrast renders yet: held-out accuracy stays near chance (10-14 %) with
# 2-7 epochs at lr 1e-4 to 2e-3, patch 4 or 8, and also with a 3-conv stem before the tokens, a shallower
# or wider ViT, or that stem alone with global pooling, where the digits ResNet reaches 93 % after 2 epochs
# in the same loop. So it trains 2 epochs of the 9,000 source images (about 18 s on one CPU thread;
# bench/vit_checks.py): a valid source model for every method, at half the cost of the 4 that bought nothing.
PRETRAIN = (Recipe(epochs=2, lr=1e-3, batch_size=32),)
SHIFT_PIXELS = 0


class DigitsVitSetup(DigitsSetup):
    """The digits setup with a small ViT pretrained on its source split."""

    name = "digits-vit"
    description = ("Embedded: the digits setup with a small Vision Transformer (patch embedding, 4 blocks, "
                   "head) trained on its source (--setup digits --arch vit)")

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
                                    PRETRAIN, shift_pixels=SHIFT_PIXELS)
