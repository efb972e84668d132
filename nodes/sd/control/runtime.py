"""Control models at sampling time: the CONTROL_NET value, and the control a conditioning entry carries.

A :class:`ControlModel` is what ControlNetLoader returns (a ControlNet, a T2I-Adapter, or a
Control-LoRA's weights, which become a ControlNet once the base model is known). ControlNetApply
wraps it with a hint image, a strength and a percent window in a :class:`Control` stored in the
conditioning entry's options under ``"control"``; applying another one to the same conditioning
chains them (``previous``) and the residuals of the chain add up, as in ComfyUI.

Each model call, the guidance code asks the batch's control for residuals with the same inputs it
gives the U-Net: :meth:`Control.residuals` resizes the hint to 8× the latent (ComfyUI's
``nearest-exact`` with a centre crop), repeats it over the batch, runs the ControlNet at the U-Net's
timestep and scaled input, multiplies by the strength, and leaves out links whose σ window does not
hold the current σ.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nodes.sd.resize import common_upscale

from .cldm import ControlNetConfig, ControlNetModel
from .files import ControlError
from .t2i import AdapterConfig, T2IAdapterModel, adapter_residuals

FAMILY_NAMES = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL", "sdxl_refiner": "SDXL refiner"}


def unet_family(config) -> str:
    """The model family a U-Net (or ControlNet encoder) config has the traits of: an adm input (SDXL;
    the refiner's last level has no attention), else linear projections (SD2) or 1x1 convs (SD1)."""
    if config.adm_in_channels:
        return "sdxl_refiner" if config.transformer_depth[-1] == 0 else "sdxl"
    return "sd2" if config.use_linear_in_transformer else "sd1"


def _fits(control_unet, unet) -> bool:
    # A control model sees the noisy latent without an inpainting/ip2p U-Net's extra input channels,
    # so its input width is compared with the latent's (the U-Net's output), as ComfyUI lets one run.
    fields = ("model_channels", "channel_mult", "num_res_blocks", "context_dim", "adm_in_channels",
              "use_linear_in_transformer")
    return control_unet.in_channels == unet.out_channels and \
        all(getattr(control_unet, f) == getattr(unet, f) for f in fields)


@dataclass(eq=False)
class ControlModel:
    """A loaded ControlNet / T2I-Adapter / Control-LoRA (the CONTROL_NET value)."""

    path: Path
    kind: str  # "controlnet", "t2i", "control_lora"
    module: nn.Module | None = None
    lora: dict[str, torch.Tensor] | None = None  # Control-LoRA tensors
    global_average_pooling: bool = False  # "shuffle" ControlNets (ComfyUI: by file name)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the union control type
    _bound: dict[tuple, ControlNetModel] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    def modules(self) -> dict[str, nn.Module]:
        """The weights it holds (what the model manager counts)."""
        return {"control": self.module} if self.module is not None else {}

    def with_extra(self, **extra: Any) -> "ControlModel":
        """A copy sharing the weights, with ``extra`` settings (SetUnionControlNetType)."""
        return ControlModel(self.path, self.kind, self.module, self.lora, self.global_average_pooling,
                            {**self.extra, **extra}, self._bound)

    def check(self, model) -> None:
        """ControlError naming both families if this control model was made for another one than ``model``."""
        unet = model.unet.config
        fits, family = True, None
        if isinstance(self.module, ControlNetModel):
            family = unet_family(self.module.config.unet)
            fits = _fits(self.module.config.unet, unet)
        elif isinstance(self.module, T2IAdapterModel):
            cfg = self.module.config
            family = "sdxl" if cfg.kind == "full_xl" else "sd1"
            widths = tuple(unet.model_channels * m for m in unet.channel_mult)
            fits = (cfg.kind == "full_xl") == (unet.adm_in_channels is not None) and \
                cfg.channels[: len(widths)] == widths[: len(cfg.channels)]
        if fits:
            return
        theirs = FAMILY_NAMES.get(family, family)
        if family == "sd1" and isinstance(self.module, T2IAdapterModel):
            theirs = "SD1.x/SD2.x"
        ours = FAMILY_NAMES.get(model.family, model.family)
        same = " (of other widths)" if family == model.family else ""
        raise ControlError(f"{self.name}: a {theirs} {self.describe()}{same}, but the model is {ours}: load a "
                           f"{self.describe()} made for this {ours} model")

    def describe(self) -> str:
        return {"controlnet": "ControlNet", "t2i": "T2I-Adapter", "control_lora": "Control-LoRA"}[self.kind]

    def controlnet_for(self, model) -> ControlNetModel:
        """The ControlNet to run with ``model`` (a Control-LoRA is merged onto the model's U-Net once per
        U-Net and set of weight patches: it copies the weights as they are while the model is in use)."""
        if self.kind != "control_lora":
            return self.module  # type: ignore[return-value]
        key = (id(model.unet), getattr(getattr(model, "patches", None), "weights", ()))
        net = self._bound.get(key)
        if net is None:
            from .loading import build_control_lora

            net = build_control_lora(self.lora, model.unet, self.path)
            self._bound.clear()  # one base model at a time
            self._bound[key] = net
        return net


@dataclass(eq=False)
class Control:
    """One applied control: model + hint + strength + σ window, and the control applied before it."""

    model: ControlModel
    hint: torch.Tensor  # [B, C, H, W] in 0..1
    strength: float = 1.0
    percent: tuple[float, float] = (0.0, 1.0)
    previous: "Control | None" = None
    _cache: dict[Any, torch.Tensor] = field(default_factory=dict, repr=False)

    def chain(self) -> list["Control"]:
        out, link = [], self
        while link is not None:
            out.append(link)
            link = link.previous
        return out[::-1]

    def check(self, model) -> None:
        for link in self.chain():
            link.model.check(model)

    def residuals(self, model, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None,
                  batched_number: int) -> dict[str, list] | None:
        """The summed residuals of the chain for one model call (None if no link is active at σ)."""
        total: dict[str, list] | None = None
        for link in self.chain():
            out = link._own(model, x, sigma, context, y, batched_number)
            if out is not None:
                total = out if total is None else _add(total, out)
        return total

    def _active(self, model, sigma: torch.Tensor) -> bool:
        ms = model.model_sampling
        start, end = ms.percent_to_sigma(self.percent[0]), ms.percent_to_sigma(self.percent[1])
        s = float(sigma[0])
        return not (s > start or s < end)

    def _own(self, model, x, sigma, context, y, batched_number) -> dict[str, list] | None:
        if not self._active(model, sigma):
            return None
        cm = self.model
        if cm.kind == "t2i":  # features are cached over steps: scaled copies
            out = self._adapter(model, x, batched_number)
            return {k: [None if r is None else r * self.strength for r in v] for k, v in out.items()}
        net = cm.controlnet_for(model)
        hint = self._hint(x, batched_number, 8, net.dtype)
        ms = model.model_sampling
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0])
        _place(net, x.device)
        out = net(ms.calculate_input(sigma, x), hint, ms.timestep(sigma).float(), context, y,
                  control_type=cm.extra.get("control_type", []))
        if cm.global_average_pooling:
            out = {k: [r.mean(dim=(2, 3), keepdim=True).expand_as(r) for r in v] for k, v in out.items()}
        if self.strength != 1:  # fresh outputs of this call: scaled in place
            out = {k: [r.mul_(self.strength) if r.is_contiguous() else r * self.strength for r in v]
                   for k, v in out.items()}
        return out

    def _hint(self, x: torch.Tensor, batched_number: int, ratio: int, dtype: torch.dtype,
              multiple: int = 1) -> torch.Tensor:
        """The hint at ``ratio``× the latent (rounded up to ``multiple``), over the batch of ``x``."""
        width = math.ceil(x.shape[3] * ratio / multiple) * multiple
        height = math.ceil(x.shape[2] * ratio / multiple) * multiple
        key = ("hint", width, height, dtype, x.device)
        hint = self._cache.get(key)
        if hint is None:
            self._cache.clear()
            hint = common_upscale(self.hint.float(), width, height, "nearest-exact", "center").to(x.device, dtype)
            self._cache[key] = hint
        return broadcast_hint(hint, x.shape[0], batched_number)

    def _adapter(self, model, x: torch.Tensor, batched_number: int) -> dict[str, list]:
        adapter: T2IAdapterModel = self.model.module  # type: ignore[assignment]
        cfg = adapter.config
        key = ("features", tuple(x.shape), batched_number, x.device)
        features = self._cache.get(key)
        if features is None:
            hint = self._hint(x, batched_number, 8, adapter.dtype, multiple=cfg.unshuffle)
            if cfg.hint_channels == 1 and hint.shape[1] > 1:
                hint = hint.mean(dim=1, keepdim=True)
            _place(adapter, x.device)
            features = adapter(hint)
            self._cache[key] = features
        return adapter_residuals([f.to(x.dtype) for f in features], model.unet.config, cfg.kind == "full_xl")


def _place(module: nn.Module, device: torch.device) -> None:
    """Move a control model to the device the U-Net runs on, if it is elsewhere."""
    first = next(module.parameters(), None)
    if first is not None and first.device != device:
        module.to(device)


def broadcast_hint(hint: torch.Tensor, batch: int, batched_number: int) -> torch.Tensor:
    """The hint repeated over a model call's batch of ``batched_number`` conditioning chunks (ComfyUI's
    rule: a one-image hint serves everything; a batch of hints is cycled within each chunk)."""
    if hint.shape[0] == 1 or hint.shape[0] == batch:
        return hint.expand(batch, -1, -1, -1) if hint.shape[0] == 1 else hint
    per_chunk = batch // batched_number
    hint = hint[:per_chunk]
    if hint.shape[0] < per_chunk:
        reps = math.ceil(per_chunk / hint.shape[0])
        hint = hint.repeat(reps, 1, 1, 1)[:per_chunk]
    return hint.repeat(batched_number, 1, 1, 1)


def _add(a: dict[str, list], b: dict[str, list]) -> dict[str, list]:
    out = {}
    for key in set(a) | set(b):
        xs, ys = a.get(key, []), b.get(key, [])
        merged = []
        for i in range(max(len(xs), len(ys))):
            p = xs[i] if i < len(xs) else None
            q = ys[i] if i < len(ys) else None
            merged.append(q if p is None else p if q is None else p + q)
        out[key] = merged
    return out


def share_controls(positive: list, negative: list) -> None:
    """ComfyUI's rule for ControlNetApply (``control_apply_to_uncond``): unless a negative entry has a
    control of its own, each such positive control also goes on a negative entry without an area."""
    cond_controls = [e.control for e in positive
                     if e.area is None and e.control is not None and e.options.get("control_apply_to_uncond")]
    if not cond_controls or any(e.area is None and e.control is not None for e in negative):
        return
    free = [i for i, e in enumerate(negative) if e.area is None and e.control is None]
    if not free:
        return
    for n, control in enumerate(cond_controls):
        i = free[n % len(free)]
        if negative[i].control is None:
            negative[i] = replace(negative[i], control=control)
        else:
            negative.append(replace(negative[i], control=control))


__all__ = ["Control", "ControlModel", "ControlNetConfig", "AdapterConfig", "broadcast_hint", "share_controls",
           "unet_family"]
