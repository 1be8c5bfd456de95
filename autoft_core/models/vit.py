"""A Vision Transformer (Dosovitskiy et al., ICLR 2021) built so the engine sees its natural layers.

Pre-norm encoder blocks, each two residual branches (x + attention(norm(x)), then x + MLP(norm(x))),
a class token read out by a final norm and linear head: torchvision's `VisionTransformer` computed
the same way (`from_torchvision` converts its state dicts, so its vit_b_16 checkpoints load here).
Small ViTs trained from scratch on little data do better with the tokens' mean instead of a class
token (`pool="mean"`) and with a convolutional stem in place of the patchify conv (`stem_width`: Xiao
et al., "Early Convolutions Help Transformers See Better", NeurIPS 2021), as the embedded vit_mini:
with the patchify stem it sat at chance for 4 epochs on the digits renders and reached 29 % after 6,
with the conv stem 59 % after 3 epochs and 89 % after 8 (held-out source images, lr 1e-3, one CPU thread).
vit_mini also starts each residual branch at zero (`zero_branches`: the branch's output projection,
attention's `proj` and the MLP's `fc2`, weights and biases 0, so every block is the identity at first
and the network starts as its stem + head; as Goyal et al. 2017's zero-γ and De & Smith 2020's
SkipInit): in a plain loop (8 epochs at 2e-3, 1 epoch of warm-up, cosine; the two weights zeroed, biases
at their default init) 94.5 % against 93.6 % without.
The branches are modules of their own, so:
- module granularity (`autoft_modules`): patch embedding, each block's attention and MLP (residual
  branches: taking one out skips it), final norm + head;
- block granularity (`autoft_blocks`): patch embedding, each encoder block, final norm + head;
- the forward is a chain (`autoft_stages`), so fine-tuning runs a frozen prefix once.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from .identity import identity_

CONFIGS = {  # patch size, width, depth, heads, MLP width, head on the class token or the tokens' mean
    "vit_b_16": {"patch_size": 16, "dim": 768, "depth": 12, "heads": 12, "mlp_dim": 3072},  # torchvision's
    "vit_tiny": {"patch_size": 16, "dim": 192, "depth": 12, "heads": 3, "mlp_dim": 768},  # ViT-Ti/16 (DeiT-Ti)
    "vit_mini": {"patch_size": 4, "dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64, "pool": "mean",  # embedded
                 "stem_width": 16, "zero_branches": True},
}


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def conv_stem(patch_size: int, dim: int, width: int) -> nn.Sequential:
    """Xiao et al. (2021)'s convolutional stem down to the patch grid: per halving of the resolution a
    strided and an unstrided 3x3 conv-BN-ReLU (`width` channels, doubled at each halving), then a 1x1
    conv to the token width."""
    halvings = patch_size.bit_length() - 1
    if 2 ** halvings != patch_size:
        raise ValueError(f"a convolutional stem needs a power-of-two patch size, not {patch_size}")
    layers: list[nn.Module] = []
    channels = 3
    for i in range(halvings):
        width_i = width * 2 ** i
        layers += [*_conv_bn_relu(channels, width_i, 2), *_conv_bn_relu(width_i, width_i, 1)]
        channels = width_i
    return nn.Sequential(*layers, nn.Conv2d(channels, dim, 1))


class PatchEmbedding(nn.Module):
    """Image -> tokens: a strided conv per patch (or a convolutional stem, `stem_width` > 0), a learnt class
    token in front, learnt positions added."""

    def __init__(self, image_size: int, patch_size: int, dim: int, class_token: bool = True,
                 stem_width: int = 0) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch_size}")
        self.proj = (conv_stem(patch_size, dim, stem_width) if stem_width
                     else nn.Conv2d(3, dim, patch_size, patch_size))
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        self.positions = nn.Parameter(torch.zeros(1, (image_size // patch_size) ** 2 + class_token, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """This module's own parameters as torchvision initialises them (the conv resets itself)."""
        if self.class_token is not None:
            nn.init.zeros_(self.class_token)
        nn.init.normal_(self.positions, std=0.02)

    @torch.no_grad()
    def autoft_identity_(self) -> None:
        """As close to the identity as a change of shape allows: each token carries one pixel of its patch
        (the centre, or for a conv stem the one its Dirac convs pick) on the first three channels, no class
        token, no positions (every conv a Dirac conv, every BatchNorm the identity, biases 0)."""
        for module in self.proj.modules():
            if next(module.parameters(recurse=False), None) is not None:
                identity_(module)
        self.positions.zero_()
        if self.class_token is not None:
            self.class_token.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        if self.class_token is not None:
            tokens = torch.cat([self.class_token.expand(len(x), -1, -1), tokens], dim=1)
        return tokens + self.positions


class Attention(nn.Module):
    """The attention branch: multi-head self-attention of the normalised tokens (added to x by the block)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d_head)) v per head, written out: per-example gradients (torch.func.vmap,
        Auto-SNR) have no batching rule for the fused CPU kernel."""
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((weights @ v).transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    """The MLP branch: Linear-GELU-Linear on the normalised tokens (added to x by the block)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class Block(nn.Module):
    """One pre-norm encoder block: x + attention, then + MLP."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, zero_branches: bool = False) -> None:
        super().__init__()
        self.attn = Attention(dim, heads)
        self.mlp = Mlp(dim, mlp_dim)
        if zero_branches:  # both branches output 0 at first: the block starts as the identity
            for output in (self.attn.proj, self.mlp.fc2):
                nn.init.zeros_(output.weight)
                nn.init.zeros_(output.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class Head(nn.Module):
    """Final norm and linear classifier on the class token, or on the mean of the tokens (`pool`)."""

    def __init__(self, dim: int, num_classes: int, pool: str = "token") -> None:
        super().__init__()
        self.pool = pool
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return self.fc(x[:, 0] if self.pool == "token" else x.mean(dim=1))


class VisionTransformer(nn.Module):
    """embed -> blocks -> head; the layer partitions and forward chain are declared for the engine."""

    def __init__(self, num_classes: int, image_size: int = 224, patch_size: int = 16, dim: int = 768,
                 depth: int = 12, heads: int = 12, mlp_dim: int = 3072, pool: str = "token",
                 stem_width: int = 0, zero_branches: bool = False) -> None:
        super().__init__()
        self.embed = PatchEmbedding(image_size, patch_size, dim, class_token=pool == "token", stem_width=stem_width)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_dim, zero_branches) for _ in range(depth)))
        self.head = Head(dim, num_classes, pool)

    @property
    def autoft_modules(self) -> list[tuple[str, tuple[str, ...], bool]]:
        """Patch embedding, each block's attention and MLP (residual branches), final norm + head."""
        branches = [(f"block{i}.{part}", (f"blocks.{i}.{part}",), True)
                    for i in range(len(self.blocks)) for part in ("attn", "mlp")]
        return [("embed", ("embed",), False), *branches, ("head", ("head",), False)]

    @property
    def autoft_blocks(self) -> list[tuple[str, tuple[str, ...]]]:
        """Patch embedding, each encoder block, final norm + head."""
        return [("embed", ("embed",)), *((f"block{i}", (f"blocks.{i}",)) for i in range(len(self.blocks))),
                ("head", ("head",))]

    def autoft_stages(self) -> list[nn.Module]:
        """The modules the forward runs one after another (stages.py caches a frozen prefix of them)."""
        return [self.embed, *self.blocks, self.head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.embed(x)))


def vit(config: str, num_classes: int, image_size: int) -> VisionTransformer:
    """A ViT of one of CONFIGS for `image_size` images (a multiple of its patch size)."""
    return VisionTransformer(num_classes, image_size, **CONFIGS[config])


_TORCHVISION_NAMES = [  # torchvision VisionTransformer state-dict names -> these
    (r"^class_token$", "embed.class_token"), (r"^conv_proj\.", "embed.proj."),
    (r"^encoder\.pos_embedding$", "embed.positions"),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.ln_1\.", r"blocks.\1.attn.norm."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.in_proj_(weight|bias)$", r"blocks.\1.attn.qkv.\2"),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.ln_2\.", r"blocks.\1.mlp.norm."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.mlp\.(?:0|linear_1)\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.mlp\.(?:3|linear_2)\.", r"blocks.\1.mlp.fc2."),
    (r"^encoder\.ln\.", "head.norm."), (r"^heads\.head\.", "head.fc."),
]


def is_torchvision_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether a checkpoint's names are torchvision's ViT's (`from_torchvision` converts them)."""
    return "conv_proj.weight" in state and "encoder.pos_embedding" in state


def from_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision VisionTransformer state dict renamed for this class (unknown names kept as they are)."""
    out = {}
    for name, value in state.items():
        for pattern, replacement in _TORCHVISION_NAMES:
            name, hits = re.subn(pattern, replacement, name)
            if hits:
                break
        out[name] = value
    return out


def resize_positions(positions: torch.Tensor, tokens: int) -> torch.Tensor:
    """Position embeddings (1, 1 + g*g, D) for another patch grid (1 + tokens' grid): bicubic on the grid."""
    old, new = round((positions.shape[1] - 1) ** 0.5), round((tokens - 1) ** 0.5)
    if old == new:
        return positions
    grid = positions[:, 1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    return torch.cat([positions[:, :1], grid.permute(0, 2, 3, 1).reshape(1, new * new, -1)], dim=1)
