"""The Vision Transformer: torchvision's numbers, its declared layers and forward chain, checkpoints of
other sizes, and what the methods' hooks make of its residual branches."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from autoft_core.core.data import Split
from autoft_core.errors import AutoFTError
from autoft_core.layers import partition
from autoft_core.methods._probes import LayerProbe
from autoft_core.methods._activations import unit_values
from autoft_core.methods.criticality import IdentityCriticality
from autoft_core.models.identity import identity_
from autoft_core.models.checkpoints import load_into, read_state_dict
from autoft_core.models.normalize import normalized
from autoft_core.models.vit import VisionTransformer, from_torchvision, resize_positions

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = {"patch_size": 8, "dim": 32, "depth": 2, "heads": 4, "mlp_dim": 64}


def _torchvision(image_size: int = 32) -> TorchvisionViT:
    model = TorchvisionViT(image_size=image_size, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
                           num_classes=5)
    with torch.no_grad():
        for p in model.parameters():  # no zero head, no zero biases: every weight must be carried over
            p.normal_(std=0.2)
    return model.eval()


def test_same_logits_as_torchvision_from_its_state_dict():
    reference = _torchvision()
    model = VisionTransformer(5, 32, **SMALL).eval()
    model.load_state_dict(from_torchvision(reference.state_dict()))
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


def test_a_torchvision_checkpoint_loads_at_another_image_size(tmp_path):
    torch.save(_torchvision().state_dict(), tmp_path / "vit.pt")
    model = VisionTransformer(5, 64, **SMALL)
    assert load_into(model, read_state_dict(tmp_path / "vit.pt"), "head.fc", tmp_path / "vit.pt", "vit") is None
    assert model.embed.positions.shape == (1, 1 + 8 * 8, 32)
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 5)


def test_position_resizing_keeps_the_class_token_and_a_constant_grid():
    positions = torch.cat([torch.full((1, 1, 3), 7.0), torch.full((1, 16, 3), 2.0)], dim=1)
    resized = resize_positions(positions, 1 + 36)
    assert resized.shape == (1, 37, 3) and torch.equal(resized[:, 0], positions[:, 0])
    torch.testing.assert_close(resized[:, 1:], torch.full((1, 36, 3), 2.0))
    assert resize_positions(positions, 17) is positions


def test_layers_are_embedding_attention_mlp_and_head_and_blocks_group_them():
    model = VisionTransformer(5, 32, **SMALL)
    modules, blocks = partition(model, "module"), partition(model, "block")
    assert [(layer.name, layer.residual) for layer in modules] == [
        ("embed", False), ("block0.attn", True), ("block0.mlp", True), ("block1.attn", True), ("block1.mlp", True),
        ("head", False)]
    assert [layer.name for layer in blocks] == ["embed", "block0", "block1", "head"]
    for layers in (modules, blocks):
        names = [p for layer in layers for p in layer.param_names]
        assert sorted(names) == sorted(n for n, _ in model.named_parameters()) and len(set(names)) == len(names)
    assert set(modules[1].param_names) == {f"blocks.0.attn.{n}" for n, _ in model.blocks[0].attn.named_parameters()}


def test_the_forward_chain_is_the_forward_with_or_without_normalisation():
    model = VisionTransformer(5, 32, **SMALL).eval()
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(nn.Sequential(*model.autoft_stages())(x), model(x))
    shifted = normalized(model, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    torch.testing.assert_close(nn.Sequential(*shifted.autoft_stages())(x), shifted(x))
    plain = VisionTransformer(5, 32, **SMALL).eval()
    plain.load_state_dict(shifted.state_dict())
    torch.testing.assert_close(shifted(x), plain((x - 0.5) / 0.25))


def test_criticality_identity_skips_a_residual_branch():
    model = VisionTransformer(5, 32, **SMALL).eval()
    x, y = torch.rand(3, 3, 32, 32), torch.tensor([0, 3, 4])
    with torch.no_grad():
        tokens = model.embed(x)
        tokens = tokens + model.blocks[0].mlp(tokens)  # block 0 without its attention branch
        expected = nn.functional.cross_entropy(model.head(model.blocks[1](tokens)), y)
    layers = partition(model)
    probe = LayerProbe(model, layers, Split(x, y))
    loss = IdentityCriticality().layer_loss(probe, 1, SimpleNamespace(layers=layers, model=model), {})
    torch.testing.assert_close(loss, expected)


def test_identity_of_a_layernorm_and_of_the_patch_embedding():
    norm = nn.LayerNorm(4)
    with torch.no_grad():
        norm.weight.fill_(3.0)
        norm.bias.fill_(1.0)
        identity_(norm)
    assert torch.equal(norm.weight, torch.ones(4)) and torch.equal(norm.bias, torch.zeros(4))
    model = VisionTransformer(5, 16, patch_size=1, dim=3, depth=1, heads=1, mlp_dim=4)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        identity_(model.embed)
        tokens = model.embed(x)
    assert torch.equal(tokens[:, 0], torch.zeros(2, 3))  # no class token, no positions
    torch.testing.assert_close(tokens[:, 1:], x.flatten(2).transpose(1, 2))  # 1-pixel patches: the pixels


def test_a_convolutional_stem_gives_the_patch_grid_and_its_identity_picks_one_pixel_per_patch():
    model = VisionTransformer(5, 16, patch_size=4, dim=3, depth=1, heads=1, mlp_dim=4, pool="mean", stem_width=3).eval()
    x = torch.rand(2, 3, 16, 16)
    assert model.embed(x).shape == (2, 16, 3) and model(x).shape == (2, 5)
    with torch.no_grad():
        identity_(model.embed)
        tokens = model.embed(x)
    torch.testing.assert_close(tokens, x[:, :, ::4, ::4].flatten(2).transpose(1, 2))  # strided Dirac convs
    with pytest.raises(ValueError, match="power-of-two"):
        VisionTransformer(5, 18, patch_size=6, dim=3, depth=1, heads=1, mlp_dim=4, stem_width=3)


def test_zero_branches_start_every_block_as_the_identity_and_still_train_them():
    """zero_branches: the network's output is the head on the embedding alone (computed without the
    blocks); one backward step gives the branches' output projections a nonzero gradient."""
    torch.manual_seed(0)
    model = VisionTransformer(5, 32, **SMALL, pool="mean", zero_branches=True).eval()
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(model(x), model.head(model.embed(x)))
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2])).backward()
    for block in model.blocks:
        assert block.attn.proj.weight.grad.abs().sum() > 0 and block.mlp.fc2.weight.grad.abs().sum() > 0
    plain = VisionTransformer(5, 32, **SMALL, pool="mean").eval()
    assert not torch.allclose(plain(x), plain.head(plain.embed(x)), atol=1e-4)


def test_token_outputs_are_histogrammed_per_channel():
    tokens = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)  # (N, tokens, channels)
    units = unit_values(tokens, "channel")
    assert units.shape == (2, 3, 5) and torch.equal(units[1, 2], tokens[1, :, 2])


def test_mean_pooling_has_no_class_token_and_ignores_patch_order_without_positions():
    model = VisionTransformer(5, 16, patch_size=4, dim=8, depth=2, heads=2, mlp_dim=16, pool="mean").eval()
    assert model.embed.class_token is None and model.embed.positions.shape == (1, 16, 8)
    with torch.no_grad():
        model.embed.positions.zero_()
        x = torch.rand(2, 3, 16, 16)
        patches = x.unfold(2, 4, 4).unfold(3, 4, 4)  # (N, C, 4, 4, 4, 4): a 4x4 grid of 4x4 patches
        shuffled = patches.flip(2).transpose(2, 3).permute(0, 1, 2, 4, 3, 5).reshape(2, 3, 16, 16)
        torch.testing.assert_close(model(shuffled), model(x))


def test_any_garbage_checkpoint_is_one_clear_error(tmp_path):
    """The weights-only unpickler fails wherever its parser stops (IndexError, KeyError...): always one message."""
    rng = np.random.default_rng(0)
    for i in range(200):
        path = tmp_path / f"garbage{i}.pt"
        path.write_bytes(rng.bytes(int(rng.integers(1, 512))))
        with pytest.raises(AutoFTError, match="could not read checkpoint"):
            read_state_dict(path)

