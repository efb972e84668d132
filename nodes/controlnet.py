"""ControlNet nodes: ControlNetLoader, DiffControlNetLoader, ControlNetApply, ControlNetApplyAdvanced,
SetUnionControlNetType (ComfyUI's names, params and semantics).

A CONTROL_NET value is a loaded ControlNet, T2I-Adapter or Control-LoRA (``nodes.sd.control``).
Applying one puts a control (model + hint image + strength + percent window) on every entry of the
conditioning; the sampler runs it beside the U-Net at each step and adds its residuals.
"""
from __future__ import annotations

from typing import Any

from nodegraph import Combo, Float, InputSpec, RunContext, node
from nodegraph.errors import InputError

from .runtime import dtype_choice, find_model, manager, model_fingerprint, model_param

# ComfyUI's union ControlNet types (comfy/cldm/control_types.py), in its order
UNION_TYPES = ("openpose", "depth", "hed/pidi/scribble/ted", "canny/lineart/anime_lineart/mlsd", "normal", "segment",
               "tile", "repaint")


def _load(ctx: RunContext, control_net_name: str, model: Any = None) -> Any:
    from nodes.sd.control import load_control

    path = find_model(ctx.options, "controlnet", control_net_name)
    mgr = manager(ctx.options)
    dtype = dtype_choice(ctx.options).unet
    if model is None:
        loaded = mgr.load(path, lambda: load_control(path, dtype=dtype, device=mgr.offload_device), "controlnet", dtype)
    else:  # a difference ControlNet depends on the model it is added to
        loaded = mgr.load(path, lambda: load_control(path, dtype=dtype, device=mgr.offload_device, model=model),
                          "controlnet", dtype, id(model.unet))
    ctx.ui["control_net"] = {"file": str(path), "kind": loaded.describe()}
    return loaded


@node("ControlNetLoader", display_name="Load ControlNet Model", category="loaders",
      params=[model_param("control_net_name", "controlnet", "ControlNet, T2I-Adapter or Control-LoRA")],
      outputs={"CONTROL_NET": "CONTROL_NET"}, fingerprint=model_fingerprint("controlnet", "control_net_name"))
def controlnet_loader(control_net_name: str, ctx: RunContext) -> Any:
    """Load a ControlNet (SD1.x, SD2.x, SDXL; original or diffusers layout), a T2I-Adapter (full, light,
    SDXL) or a Control-LoRA from the ``controlnet`` model folder.

    The kind of file is read from its keys. A difference ControlNet needs the base model: load it with
    Load ControlNet Model (diff).
    """
    return _load(ctx, control_net_name)


@node("DiffControlNetLoader", display_name="Load ControlNet Model (diff)", category="loaders",
      inputs={"model": "MODEL"},
      params=[model_param("control_net_name", "controlnet", "ControlNet")],
      outputs={"CONTROL_NET": "CONTROL_NET"}, fingerprint=model_fingerprint("controlnet", "control_net_name"))
def diff_controlnet_loader(model: Any, control_net_name: str, ctx: RunContext) -> Any:
    """Load a ControlNet; a difference ControlNet (one that stores changes to a base model) gets the
    model's U-Net weights added. Other control files load as with Load ControlNet Model."""
    return _load(ctx, control_net_name, model)


def _hint(image: Any) -> Any:
    if image is None or getattr(image, "ndim", 0) != 4:
        raise InputError("image: expected an IMAGE [batch, height, width, channels] as the control hint")
    return image.movedim(-1, 1)


def _with_control(conditioning: list, control_net: Any, hint: Any, strength: float, percent: tuple[float, float],
                  to_uncond: bool, cache: dict) -> list:
    """``conditioning`` with a control on every entry, chained after the entry's own (one new control per
    distinct previous one, so entries that shared a chain still share it)."""
    from nodes.sd.control import Control

    out = []
    for context, options in conditioning:
        previous = options.get("control")
        control = cache.get(id(previous))
        if control is None:
            control = Control(control_net, hint, strength, percent, previous)
            cache[id(previous)] = control
        out.append([context, {**options, "control": control, "control_apply_to_uncond": to_uncond}])
    return out


@node("ControlNetApply", display_name="Apply ControlNet (OLD)", category="conditioning/controlnet",
      inputs={"conditioning": "CONDITIONING", "control_net": "CONTROL_NET", "image": "IMAGE"},
      params=[Float("strength", 1.0, min=0.0, max=10.0, step=0.01, description="how strongly the control steers")],
      outputs={"CONDITIONING": "CONDITIONING"})
def controlnet_apply(conditioning: list, control_net: Any, image: Any, strength: float) -> list:
    """Steer sampling with a ControlNet or T2I-Adapter and a hint image (edges, depth, pose, ...).

    The hint is resized to the size of the image being sampled. The control also applies to the
    negative prompt (ComfyUI's old behaviour); Apply ControlNet sets positive and negative itself.
    """
    if strength == 0:
        return conditioning
    return _with_control(conditioning, control_net, _hint(image), strength, (0.0, 1.0), True, {})


@node("ControlNetApplyAdvanced", display_name="Apply ControlNet", category="conditioning/controlnet",
      inputs=[InputSpec("positive", "CONDITIONING"), InputSpec("negative", "CONDITIONING"),
              InputSpec("control_net", "CONTROL_NET"), InputSpec("image", "IMAGE"),
              InputSpec("vae", "VAE", optional=True,
                        description="only for ControlNets that read the hint as a latent (not SD1/SD2/SDXL ones)")],
      params=[Float("strength", 1.0, min=0.0, max=10.0, step=0.01, description="how strongly the control steers"),
              Float("start_percent", 0.0, min=0.0, max=1.0, step=0.001,
                    description="where in the sampling the control starts (0: the first step)"),
              Float("end_percent", 1.0, min=0.0, max=1.0, step=0.001,
                    description="where it stops (1: the last step)")],
      outputs={"positive": "CONDITIONING", "negative": "CONDITIONING"})
def controlnet_apply_advanced(positive: list, negative: list, control_net: Any, image: Any, strength: float,
                              start_percent: float, end_percent: float, vae: Any = None) -> tuple[list, list]:
    """Steer sampling with a ControlNet, T2I-Adapter or Control-LoRA and a hint image, on both prompts.

    The control acts between start_percent and end_percent of the sampling (as noise levels: the
    same window whatever the step count). Applying several ControlNets one after another adds their
    effects. The hint image is resized (centre-cropped to the aspect) to the sampled image's size.
    """
    if strength == 0:
        return positive, negative
    hint, cache = _hint(image), {}
    window = (float(start_percent), float(end_percent))
    return (_with_control(positive, control_net, hint, strength, window, False, cache),
            _with_control(negative, control_net, hint, strength, window, False, cache))


@node("SetUnionControlNetType", display_name="SetUnionControlNetType", category="conditioning/controlnet",
      inputs={"control_net": "CONTROL_NET"},
      params=[Combo("type", ("auto",) + UNION_TYPES, "auto", description="the kind of hint a union ControlNet gets")],
      outputs={"CONTROL_NET": "CONTROL_NET"})
def set_union_controlnet_type(control_net: Any, type: str) -> Any:
    """Tell a union ControlNet which kind of hint it gets ("auto": let it tell from the image).

    Returns a copy sharing the weights. Other ControlNets ignore the setting, as in ComfyUI.
    """
    index = UNION_TYPES.index(type) if type in UNION_TYPES else None
    return control_net.with_extra(control_type=[] if index is None else [index])


NODES = [controlnet_loader, diff_controlnet_loader, controlnet_apply, controlnet_apply_advanced,
         set_union_controlnet_type]
