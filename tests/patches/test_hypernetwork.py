"""A1111 hypernetworks: files read with the weights-only unpickler (or as safetensors), the MLPs built as
A1111 builds them, and the patch k ← k + strength·f_k(k), v ← v + strength·f_v(v) on matching widths."""
from __future__ import annotations

import collections
import pickle

import pytest
import torch
from patchkit import rand
from torch import nn

from nodes.sd.files import CheckpointError
from nodes.sd.hypernetwork import HypernetworkPatch, read_hypernetwork
from nodes.sd.patches import NO_PATCHES, UNetHooks
from nodes.sd.testing import save_safetensors

HOOKS = UNetHooks(NO_PATCHES, torch.tensor([1.0]), [0])


def a1111_module(width: int, layer_norm: bool, seed: int) -> nn.Sequential:
    """HypernetworkModule's `linear` for layer_structure [1, 2, 1], relu, as A1111 builds it: Linear, act
    (not after the last), LayerNorm after each Linear if asked."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(width, 2 * width), nn.ReLU()]
    if layer_norm:
        layers.append(nn.LayerNorm(2 * width))
    layers.append(nn.Linear(2 * width, width))
    if layer_norm:
        layers.append(nn.LayerNorm(width))
    for p in nn.Sequential(*layers).parameters():
        with torch.no_grad():
            p.add_(torch.randn(p.shape) * 0.1)
    return nn.Sequential(*layers).eval()


def write_pt(path, modules: dict, **settings) -> None:
    data = {width: (collections.OrderedDict((f"linear.{k}", v) for k, v in mk.state_dict().items()),
                    collections.OrderedDict((f"linear.{k}", v) for k, v in mv.state_dict().items()))
            for width, (mk, mv) in modules.items()}
    data.update({"activation_func": "relu", "name": "test", "layer_structure": [1.0, 2.0, 1.0], "step": 100,
                 "sd_checkpoint_name": "model", "activate_output": False, "use_dropout": True}, **settings)
    torch.save(data, path)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_a_pt_hypernetwork_transforms_keys_and_values_of_its_widths(tmp_path, layer_norm):
    modules = {8: (a1111_module(8, layer_norm, 1), a1111_module(8, layer_norm, 2)),
               16: (a1111_module(16, layer_norm, 3), a1111_module(16, layer_norm, 4))}
    write_pt(tmp_path / "net.pt", modules, is_layer_norm=layer_norm)
    patch = HypernetworkPatch(read_hypernetwork(tmp_path / "net.pt"), 0.7)
    q, k, v = rand(1, 5, 8, seed=1), rand(1, 5, 8, seed=2), rand(1, 5, 8, seed=3)
    with torch.no_grad():
        q2, k2, v2 = patch(q, k, v, HOOKS)
        assert q2 is q
        torch.testing.assert_close(k2, k + 0.7 * modules[8][0](k), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(v2, v + 0.7 * modules[8][1](v), rtol=1e-6, atol=1e-6)
        other = rand(1, 5, 12, seed=4)  # a width it has no networks for: unchanged
        assert patch(other, other, other, HOOKS)[1] is other


def test_a_safetensors_hypernetwork_reads_the_same(tmp_path):
    modules = {8: (a1111_module(8, True, 1), a1111_module(8, True, 2))}
    tensors = {f"8.{i}.linear.{k}": v for i, m in enumerate(modules[8]) for k, v in m.state_dict().items()}
    save_safetensors(tmp_path / "net.safetensors", tensors,
                     {"activation_func": "relu", "is_layer_norm": "True", "activate_output": "False"})
    patch = HypernetworkPatch(read_hypernetwork(tmp_path / "net.safetensors"), 1.0)
    k = rand(1, 5, 8, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(patch(k, k, k, HOOKS)[1], k + modules[8][0](k), rtol=1e-6, atol=1e-6)


class Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_a_pickle_with_code_in_it_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({320: Payload()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="refused"):
        read_hypernetwork(path)


def test_an_unknown_activation_and_a_file_without_layers_are_named(tmp_path):
    write_pt(tmp_path / "odd.pt", {8: (a1111_module(8, False, 1), a1111_module(8, False, 2))}, activation_func="gelu2")
    with pytest.raises(CheckpointError, match="unknown hypernetwork activation_func 'gelu2'"):
        read_hypernetwork(tmp_path / "odd.pt")
    torch.save({"activation_func": "relu"}, tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="no hypernetwork layers"):
        read_hypernetwork(tmp_path / "empty.pt")


class _Residual(nn.Module):
    """x + strength·net(x) for inputs of the net's width, x otherwise (the reference's k/v input change)."""

    def __init__(self, nets: dict, index: int, strength: float) -> None:
        super().__init__()
        self.nets, self.index, self.strength = nets, index, strength

    def forward(self, x):
        net = self.nets.get(x.shape[-1])
        return x if net is None else x + self.strength * net[self.index](x)


def test_on_a_tiny_unet_every_attention_projects_transformed_keys_and_values(tmp_path):
    """The U-Net with the patch equals a copy whose to_k/to_v first apply the hypernetwork to their input:
    self-attention at width 32 (the tiny U-Net's first level) and cross-attention at the prompt's 768."""
    import copy

    from patchkit import LATENT, latent, prompt, tiny_model

    modules = {32: (a1111_module(32, False, 1), a1111_module(32, False, 2)),
               768: (a1111_module(768, False, 3), a1111_module(768, False, 4))}
    write_pt(tmp_path / "net.pt", modules, is_layer_norm=False)
    patch = HypernetworkPatch(read_hypernetwork(tmp_path / "net.pt"), 0.6)
    model = tiny_model()
    reference = copy.deepcopy(model.unet)
    for name, module in reference.named_modules():
        if name.endswith(("attn1", "attn2")):
            module.to_k = nn.Sequential(_Residual(modules, 0, 0.6), module.to_k)
            module.to_v = nn.Sequential(_Residual(modules, 1, 0.6), module.to_v)
    x, context, t = latent(3), torch.cat([prompt(1)[0][0], prompt(2)[0][0]]), torch.tensor([500.0] * LATENT[0])
    patched = model.patched(attn1_patch=patch, attn2_patch=patch.cross)  # as HypernetworkLoader wires it
    hooks = UNetHooks(patched.patches, torch.tensor([1.0, 1.0]), [0, 1])
    calls = []
    prompt_net = patch.hypernetwork.on(torch.device("cpu"), torch.float32)[768][0]
    prompt_net.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        got = model.unet(x, t, context, hooks=hooks)
        assert len(calls) == 1  # the prompt's keys are transformed once per U-Net call, not per layer
        expected = reference(x, t, context)
        assert (got - model.unet(x, t, context)).abs().max() > 1e-3
    # the same layers on the same inputs; the reference's Sequential adds nothing but a call: float32 rounding
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
