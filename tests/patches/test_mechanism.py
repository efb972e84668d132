"""The model-patch mechanism: patches live on the MODEL value (never on the shared U-Net), stack in order,
reach every hook point with the U-Net's whereabouts, and weight patches apply only while in use."""
from __future__ import annotations

import threading

import pytest
import torch
from patchkit import LATENT, SIGMA, guider, latent, prompt, tiny_model, tiny_unet

from nodes.sd import ksampler as K
from nodes.sd.attention import attention
from nodes.sd.diffusion_model import DiffusionModel
from nodes.sd.patches import NO_PATCHES, ModelPatches, UNetHooks, WeightPatch, module_lock, weights_applied

TIMESTEPS = torch.tensor([500.0, 500.0])


def unet_inputs():
    return latent(3), TIMESTEPS, torch.cat([prompt(1)[0][0], prompt(2)[0][0]])


def hooked(unet, patches: ModelPatches, cond_or_uncond=(0, 1)):
    x, t, context = unet_inputs()
    hooks = UNetHooks(patches, torch.tensor([2.0, 2.0]), list(cond_or_uncond))
    with torch.no_grad():
        return unet(x, t, context, hooks=hooks)


def plain(unet):
    with torch.no_grad():
        return unet(*unet_inputs())


def sample(model, cfg=5.0, sampler="euler", seed=7, steps=3):
    return K.sample(model, {"samples": torch.zeros(1, 4, 16, 16)}, prompt(1), prompt(2), seed=seed, steps=steps,
                    cfg=cfg, sampler_name=sampler, scheduler="karras")["samples"]


# -- patches live on the value -----------------------------------------------------------------------
def test_a_patched_clone_shares_the_unet_and_leaves_its_input_unpatched():
    model = tiny_model()
    pointers = [p.data_ptr() for p in model.unet.parameters()]
    patched = model.patched(post_cfg=lambda s: s.denoised * 2)
    assert patched.unet is model.unet
    assert model.patches is NO_PATCHES and len(patched.patches.post_cfg) == 1
    assert [p.data_ptr() for p in patched.unet.parameters()] == pointers


def test_records_are_immutable_and_stack_in_the_order_added():
    first, second = (lambda h, hooks: h + 1), (lambda h, hooks: h * 3)
    base = NO_PATCHES.add(input_block_patch=first)
    stacked = base.add(input_block_patch=second)
    assert base.input_block_patch == (first,)
    assert stacked.input_block_patch == (first, second)
    assert not NO_PATCHES and stacked.unet_hooks and not stacked.attention_hooks


def test_a_later_single_hook_replaces_the_earlier_and_the_cfg1_switch_sticks():
    a, b = (lambda s: 1), (lambda s: 2)
    patches = NO_PATCHES.add(cfg_function=a, disable_cfg1_optimization=True).add(cfg_function=b)
    assert patches.cfg_function is b and patches.disable_cfg1_optimization
    merged = NO_PATCHES.add(post_cfg=a).then(NO_PATCHES.add(post_cfg=b, disable_cfg1_optimization=True))
    assert merged.post_cfg == (a, b) and merged.disable_cfg1_optimization


def test_unknown_hook_names_are_refused():
    with pytest.raises(TypeError, match="unknown hook 'attn3_patch'"):
        NO_PATCHES.add(attn3_patch=lambda *a: a)


# -- the U-Net's hook points ---------------------------------------------------------------------------
def test_hooks_that_change_nothing_leave_the_unet_output_bit_identical():
    """The hooked transformer block does the very operations of the fused one, in the same order."""
    unet = tiny_unet()
    same = NO_PATCHES.add(attn1_patch=lambda n, c, v, h: (n, c, v), attn2_patch=lambda n, c, v, h: (n, c, v),
                          attn1_output_patch=lambda o, h: o, attn2_output_patch=lambda o, h: o,
                          input_block_patch=lambda h, hooks: h, input_block_patch_after_skip=lambda h, hooks: h,
                          middle_block_patch=lambda h, hooks: h, output_block_patch=lambda h, s, hooks: (h, s))
    assert torch.equal(hooked(unet, same), plain(unet))


def test_block_hooks_see_every_block_in_order_with_the_call_context():
    unet = tiny_unet()
    seen = []

    def record(kind):
        def hook(h, *rest):
            hooks = rest[-1]
            seen.append((kind, hooks.block, tuple(h.shape[1:]), hooks.original_shape, hooks.cond_or_uncond,
                         float(hooks.sigmas[0])))
            return (h, rest[0]) if kind == "output" else h
        return hook

    hooked(unet, NO_PATCHES.add(input_block_patch=record("input"), middle_block_patch=record("middle"),
                                output_block_patch=record("output")), cond_or_uncond=(1, 0))
    n_in, n_out = len(unet.input_blocks), len(unet.output_blocks)
    assert [s[1] for s in seen] == ([("input", i) for i in range(n_in)] + [("middle", 0)]
                                    + [("output", i) for i in range(n_out)])
    assert all(s[3] == list(LATENT) and s[4] == [1, 0] and s[5] == 2.0 for s in seen)
    assert seen[0][2] == (32, 16, 16) and seen[n_in][2] == (128, 4, 4)  # conv_in output; the middle at 1/4


def test_attention_hooks_know_block_depth_transformer_index_and_heads():
    unet = tiny_unet(transformer_depth=(1, 2, 1))
    seen = []

    def record(n, context, value, hooks):
        seen.append((hooks.block, hooks.block_index, hooks.transformer_index, hooks.n_heads, hooks.dim_head,
                     tuple(hooks.activations_shape[1:]), context.shape[-1]))
        return n, context, value

    hooked(unet, NO_PATCHES.add(attn1_patch=record, attn2_patch=record))
    self_attn, cross = seen[0::2], seen[1::2]
    assert [s[6] for s in cross] == [768] * len(cross) and [s[6] for s in self_attn] == [s[5][0] for s in self_attn]
    assert seen[0][:6] == (("input", 1), 0, 0, 8, 4, (32, 16, 16))
    level1 = [s for s in self_attn if s[0] == ("input", 3)]  # one ResBlock per level: block 3 is level 1's
    assert [s[1] for s in level1] == [0, 1] and {s[2] for s in level1} == {1}  # depth 2; the second transformer
    assert [s[2] for s in self_attn] == sorted(s[2] for s in self_attn)
    assert ("middle", 0) in {s[0] for s in self_attn}


def test_a_replacement_gets_the_projected_qkv_and_its_result_is_projected_out():
    unet = tiny_unet()
    calls = []

    def by_hand(q, k, v, hooks):
        calls.append((hooks.block, hooks.block_index, q.shape, k.shape))
        heads, d = hooks.n_heads, hooks.dim_head
        split = [t.unflatten(-1, (heads, d)).transpose(1, 2) for t in (q, k, v)]
        weights = (split[0] @ split[1].transpose(-1, -2) / d**0.5).softmax(-1)
        return (weights @ split[2]).transpose(1, 2).flatten(2)

    out = hooked(unet, NO_PATCHES.replace_attention("attn1", by_hand, "middle", 0))
    assert [c[:2] for c in calls] == [(("middle", 0), 0)]
    assert calls[0][2][-1] == 128 and calls[0][3][1] == 16  # 4×4 tokens of 128 channels
    # softmax(qkᵀ)v by hand vs the fused kernel: float32 rounding of 16-term sums, ~1e-6 relative
    torch.testing.assert_close(out, plain(unet), rtol=1e-4, atol=1e-5)


def test_replacements_are_keyed_by_block_or_by_block_and_depth_index():
    f, g = (lambda *a: "block"), (lambda *a: "depth")
    patches = NO_PATCHES.replace_attention("attn1", f, "output", 3).replace_attention("attn1", g, "output", 3, 1)
    assert patches.attention_replacement("attn1", ("output", 3), 0) is f
    assert patches.attention_replacement("attn1", ("output", 3), 1) is g
    assert patches.attention_replacement("attn2", ("output", 3), 1) is None
    assert patches.attention_replacement("attn1", ("input", 3), 0) is None


def test_queries_of_another_batch_size_attend_to_consecutive_chunks_of_the_keys():
    """A patch that splits the queries into two batch rows: each row attends to half of the tokens."""
    unet = tiny_unet()
    block = unet.input_blocks[1][1].transformer_blocks[0]
    split = NO_PATCHES.add(attn1_patch=lambda n, c, v, h: (n.reshape(2, -1, n.shape[-1]), c, v),
                           attn1_output_patch=lambda o, h: o.reshape(1, -1, o.shape[-1]))
    x = latent(5, (1, 256, 32))
    hooks = UNetHooks(split, torch.tensor([1.0]), [0])
    hooks.block, hooks.block_index = ("input", 1), 0
    with torch.no_grad():
        out = block(x, prompt(1)[0][0], hooks)
        n = block.norm1(x)
        a = block.attn1
        halves = [attention(a.to_q(part), a.to_k(part), a.to_v(part), a.heads) for part in n.split(128, dim=1)]
        expected = a.to_out[0](torch.cat(halves, dim=1)) + x
        expected = block.attn2(block.norm2(expected), prompt(1)[0][0]) + expected
        expected = block.ff(block.norm3(expected)) + expected
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


# -- the model call --------------------------------------------------------------------------------------
class Recorder(torch.nn.Module):
    """A U-Net stand-in without hook support: records the keyword arguments it is called with."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(1))
        self.kwargs: list[set] = []

    def forward(self, x, timesteps, context=None, y=None, **kwargs):
        self.kwargs.append(set(kwargs))
        return x * self.weight


def test_without_unet_hooks_the_unet_is_called_exactly_as_before():
    model = DiffusionModel.for_family(Recorder(), "sd1").patched(post_cfg=lambda s: s.denoised)
    sample(model)
    assert model.unet.kwargs and all(k == set() for k in model.unet.kwargs)


def test_unet_hooks_on_a_unet_that_cannot_take_them_are_a_clear_error():
    from nodegraph import NodeError

    model = DiffusionModel.for_family(Recorder(), "sd1").patched(input_block_patch=lambda h, hooks: h)
    with pytest.raises(NodeError, match="does not take U-Net patches"):
        sample(model)


def test_the_model_function_wrapper_wraps_each_model_call():
    model = tiny_model()
    calls = []

    def wrapper(apply, call):
        calls.append((tuple(call.input.shape), call.cond_or_uncond, tuple(call.c["context"].shape)))
        return apply(call.input, call.sigma, **call.c)

    g_plain, g_wrapped = guider(model), guider(model.patched(model_function_wrapper=wrapper))
    x = latent(4)
    assert torch.equal(g_wrapped(x, SIGMA), g_plain(x, SIGMA))
    assert calls == [((4, 4, 16, 16), [1, 0], (4, 77, 768))]  # ComfyUI's batch order: the negative first


def test_pre_cfg_cfg_and_post_cfg_hooks_run_in_order_on_the_predictions():
    model = tiny_model()
    x, g = latent(4), guider(model)
    run = g.run_for(None, None, None)
    cond, uncond = run.predict([g.conds["positive"], g.conds["negative"]], x, SIGMA)
    seen = []

    def pre(step):
        seen.append("pre")
        assert torch.equal(step.conds_out[0], cond) and step.cond_scale == 5.0
        return [step.conds_out[0] * 2, step.conds_out[1]]

    def cfg(step):
        seen.append("cfg")
        return step.cond_denoised - step.uncond_denoised

    def post(step):
        seen.append("post")
        return step.denoised + 1

    patched = guider(model.patched(pre_cfg=pre, cfg_function=cfg, post_cfg=post))
    torch.testing.assert_close(patched(x, SIGMA), cond * 2 - uncond + 1, rtol=0, atol=0)
    assert seen == ["pre", "cfg", "post"]


def test_cfg_one_skips_the_negative_unless_a_patch_turns_the_shortcut_off():
    def batches(model):
        calls = []

        def wrapper(apply, call):
            calls.append(call.cond_or_uncond)
            return apply(call.input, call.sigma, **call.c)

        guider(model.patched(model_function_wrapper=wrapper), cfg=1.0)(latent(4), SIGMA)
        return calls

    model = tiny_model()
    assert batches(model) == [[0]]
    assert batches(model.patched(post_cfg=lambda s: s.denoised, disable_cfg1_optimization=True)) == [[1, 0]]


def test_the_denoise_mask_function_reshapes_the_inpainting_mask_at_every_step():
    model = tiny_model()
    seen = []

    def everything(sigma, mask, run):
        seen.append((float(sigma[0]), run.sigmas))
        return torch.ones_like(mask)

    masked = {"samples": torch.zeros(1, 4, 16, 16), "noise_mask": torch.zeros(1, 1, 128, 128)}
    kwargs = dict(seed=7, steps=3, cfg=5.0, sampler_name="euler", scheduler="karras")
    out = K.sample(model.patched(denoise_mask_function=everything), masked, prompt(1), prompt(2), **kwargs)
    unmasked = K.sample(model, {"samples": torch.zeros(1, 4, 16, 16)}, prompt(1), prompt(2), **kwargs)
    assert torch.equal(out["samples"], unmasked["samples"])  # an all-ones mask repaints everything
    schedule = K.ksampler_sigmas(model.model_sampling, "karras", 3)
    assert [s for s, _ in seen] == pytest.approx(schedule[:-1].tolist())
    assert torch.equal(seen[0][1].cpu(), schedule)


# -- weight patches ----------------------------------------------------------------------------------------
KEY = "input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight"


def test_a_weight_patch_computes_strength_model_times_w_plus_strength_times_delta():
    w = torch.arange(6.0).reshape(3, 2)
    delta = torch.full((3, 2), 0.5)
    assert torch.equal(WeightPatch("unet", KEY, delta, 2.0, 3.0).apply(w), 3 * w + 1.0)
    assert torch.equal(WeightPatch("unet", KEY, lambda cur: cur * cur, 1.0, 1.0).apply(w), w + w * w)
    assert torch.equal(WeightPatch("unet", KEY, None, 0.0, 0.5).apply(w), w * 0.5)


def test_weight_patches_apply_in_order_only_to_their_rows_and_are_restored_bit_for_bit():
    module = torch.nn.Linear(4, 6)
    before = module.weight.detach().clone()
    patches = [WeightPatch("m", "weight", torch.ones(2, 4), 1.0, 2.0, rows=(2, 4)),
               WeightPatch("m", "weight", lambda w: w, 1.0, 1.0, rows=(2, 4))]
    with weights_applied({"m": module}, patches):
        inside = module.weight.detach().clone()
    expected = before.clone()
    expected[2:4] = 2 * (2 * before[2:4] + 1)
    torch.testing.assert_close(inside, expected, rtol=0, atol=1e-6)
    assert torch.equal(module.weight, before)


def test_weights_are_patched_while_sampling_and_restored_after_it_even_on_failure():
    model = tiny_model()
    param = model.unet.get_parameter(KEY)
    before = param.detach().clone()
    seen = []

    def look(apply, call):
        seen.append(model.unet.get_parameter(KEY).detach().clone())
        return apply(call.input, call.sigma, **call.c)

    patched = model.patched(weights=[WeightPatch("unet", KEY, None, 0.0, 3.0)], model_function_wrapper=look)
    sample(patched, steps=1)
    torch.testing.assert_close(seen[0], before * 3, rtol=0, atol=0)
    assert torch.equal(param, before)

    def fail(apply, call):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        sample(patched.patched(model_function_wrapper=fail), steps=1)
    assert torch.equal(param, before)


def test_a_weight_patch_for_a_missing_weight_names_it():
    model = tiny_model().patched(weights=[WeightPatch("unet", "middle_block.9.weight", None, 0.0, 2.0)])
    with pytest.raises(ValueError, match="no weight 'middle_block.9.weight'"):
        sample(model, steps=1)


def test_a_patched_use_holds_the_shared_unet_until_it_has_restored_it():
    model = tiny_model()
    acquired = []
    with model.patched(weights=[WeightPatch("unet", KEY, None, 0.0, 2.0)]).in_use():
        t = threading.Thread(target=lambda: acquired.append(module_lock(model.unet).acquire(timeout=0.05)))
        t.start()
        t.join()
    assert acquired == [False]
    assert module_lock(model.unet).acquire(timeout=1)
    module_lock(model.unet).release()


# -- per-run state ---------------------------------------------------------------------------------------------
def test_hook_state_lives_for_one_run_so_runs_repeat():
    from nodes.sd.guidance_patches import APG

    model = tiny_model().patched(pre_cfg=APG(1.0, 5.0, 0.7))
    assert torch.equal(sample(model), sample(model))


@pytest.mark.parametrize("which", ["hypertile", "tome"])
def test_random_patches_repeat_with_the_seed(which):
    from nodes.sd.tome import TokenMerging
    from nodes.sd.unet_patches import HyperTile

    model = tiny_model()
    if which == "hypertile":
        patch = HyperTile(32, 3, 0, False)  # 16×16 latent: 4×4 or 2×2 tiles at random
        model = model.patched(attn1_patch=patch.tile, attn1_output_patch=patch.untile)
    else:
        patch = TokenMerging(0.5)
        model = model.patched(attn1_patch=patch.merge, attn1_output_patch=patch.unmerge)
    assert torch.equal(sample(model, seed=1), sample(model, seed=1))


def test_a_runs_generator_is_seeded_by_the_sampling_seed():
    from nodes.sd.patches import SamplingRun

    def draws(seed):
        return torch.randint(0, 1000, (8,), generator=SamplingRun(None, seed=seed).generator("cpu"))

    assert torch.equal(draws(1), draws(1)) and not torch.equal(draws(1), draws(2))
    assert torch.equal(draws(None), draws(0))


def test_a_control_lora_is_built_again_for_a_model_with_other_weight_patches(tmp_path):
    """A Control-LoRA copies the U-Net's weights as they are in use: one built while a weight patch is
    applied must not be reused for the unpatched model (nor the other way round)."""
    from nodes.sd.control.loading import build_control_lora
    from nodes.sd.control.runtime import ControlModel
    from nodes.sd.control.testing import random_control_lora

    model = tiny_model()
    path = tmp_path / "cl.safetensors"
    control = ControlModel(path, "control_lora", lora=random_control_lora(model.unet.config, seed=3))
    scaled = model.patched(weights=[WeightPatch("unet", "input_blocks.1.0.in_layers.2.weight", None, 0.0, 2.0)])
    plain_net = control.controlnet_for(model)
    with scaled.in_use():
        scaled_net = control.controlnet_for(scaled)
        expected_scaled = build_control_lora(control.lora, model.unet, path).state_dict()
    assert scaled_net is not plain_net
    assert control.controlnet_for(model) is not scaled_net
    fresh = build_control_lora(control.lora, model.unet, path).state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in control.controlnet_for(model).state_dict().items())
    assert all(torch.equal(v, expected_scaled[k]) for k, v in scaled_net.state_dict().items())


def test_a_patched_weight_is_computed_once_per_patch_set_and_the_shared_weight_is_never_written():
    module = torch.nn.Linear(4, 4)
    storage, before = module.weight.data_ptr(), module.weight.detach().clone()
    computed = []

    def delta(weight):
        computed.append(1)
        return torch.ones_like(weight)

    lora = [WeightPatch("m", "weight", delta, 1.0, 1.0)]
    for _ in range(2):  # a second run of the same patched model reuses its patched weight
        with weights_applied({"m": module}, lora):
            torch.testing.assert_close(module.weight.detach(), before + 1, rtol=0, atol=0)
        assert torch.equal(module.weight, before) and module.weight.data_ptr() == storage
    assert len(computed) == 1
    with weights_applied({"m": module}, [WeightPatch("m", "weight", delta, 2.0, 1.0)]):  # another patch set
        torch.testing.assert_close(module.weight.detach(), before + 2, rtol=0, atol=0)
    with weights_applied({"m": module}, lora):  # the last set is the one kept
        torch.testing.assert_close(module.weight.detach(), before + 1, rtol=0, atol=0)
    assert len(computed) == 3
    module.double()  # a moved model: the patched weight follows the new weights
    with weights_applied({"m": module}, lora):
        assert module.weight.dtype == torch.float64
        torch.testing.assert_close(module.weight.detach(), (before + 1).double(), rtol=0, atol=0)  # computed in float32
    assert len(computed) == 4
