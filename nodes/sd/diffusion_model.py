"""The sampling view of a U-Net: sigma-space in, denoised latent out.

`DiffusionModel` glues a U-Net (any module with LDM's `forward(x, timesteps, context=None, y=None)`)
to its noise schedule and latent format, which is all a sampler and the guidance code need:

    denoised = model.apply_model(x, sigma, context, y)

scales x to the U-Net's input, turns σ into the U-Net's (discrete) timestep, runs the U-Net in its
own dtype and converts its ε/v output to the denoised latent in float32, as ComfyUI's BaseModel does.

A DiffusionModel is a light value over a shared U-Net: model patches (nodes/sd/patches.py) make
clones that carry more hooks (`patched`) or another model sampling (`with_model_sampling`), never
a copy of the weights. `in_use()` holds the U-Net for a sampling run with the weight patches applied.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from nodegraph.errors import NodeError

from .model_sampling import ModelSampling, ModelSamplingDiscrete
from .patches import NO_PATCHES, ModelCall, ModelPatches, UNetHooks, weights_applied
from .unet import sdxl_adm, sdxl_refiner_adm
from .vae import latent_scale

AdmFn = Callable[[dict, int, torch.device, torch.dtype], Optional[torch.Tensor]]

FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner")


class DiffusionModel:
    """A U-Net with its model sampling (schedule, eps/v) and latent scale, ready for the samplers.

    Args:
        unet: module with LDM's forward signature `unet(x, timesteps, context=..., y=...)`.
        model_sampling: the noise schedule and prediction type (`ModelSamplingDiscrete`).
        family: "sd1", "sd2", "sdxl" or "sdxl_refiner" (picks the preview projection).
        latent_scale: VAE latent scale factor (``vae.latent_scale(family)``).
        adm_fn: for models with a class/size embedding (SDXL), `adm_fn(cond, batch, device, dtype)`
            returning `y` [batch, adm_channels] from one conditioning dict ("pooled_output", "width",
            "height", "crop_w", "crop_h", "target_width", "target_height", "aesthetic_score", …).
        patches: the model patches this value carries (default: none).
    """

    source: str | None = None
    """The checkpoint file the U-Net came from (set by the loader; named in errors)."""
    latent_format: Any = None  # an object patch with process_in/process_out (e.g. Playground v2.5's)

    def __init__(self, unet: nn.Module, model_sampling: ModelSampling, family: str,
                 latent_scale: float, adm_fn: AdmFn | None = None, patches: ModelPatches | None = None) -> None:
        if family not in FAMILIES:
            raise ValueError(f"DiffusionModel: family must be one of {', '.join(FAMILIES)}, got {family!r}")
        self.unet = unet
        self.model_sampling = model_sampling
        self.family = family
        self.latent_scale = float(latent_scale)
        self.adm_fn = adm_fn
        self.preview_projection = None
        """Live previews' latent→RGB map when the family's published one does not fit the checkpoint's
        VAE, or a callable computing it on first use (see preview_fit.projection_for); None: the family's."""
        self.patches = patches if patches is not None else NO_PATCHES

    # -- patching -------------------------------------------------------------------------------
    def with_patches(self, patches: ModelPatches) -> "DiffusionModel":
        """A clone sharing the U-Net, carrying ``patches`` instead of this value's."""
        clone = copy.copy(self)
        clone.patches = patches
        return clone

    def patched(self, **hooks: Any) -> "DiffusionModel":
        """A clone sharing the U-Net with ``hooks`` added (``ModelPatches.add``'s names)."""
        return self.with_patches(self.patches.add(**hooks))

    def with_model_sampling(self, model_sampling: ModelSampling, latent_format: Any = None) -> "DiffusionModel":
        """A clone sharing the U-Net with another noise schedule / prediction type (and, if given, a
        latent format with ``process_in``/``process_out``)."""
        clone = copy.copy(self)
        clone.model_sampling = model_sampling
        if latent_format is not None:
            clone.latent_format = latent_format
        return clone

    @contextmanager
    def in_use(self) -> Iterator["DiffusionModel"]:
        """Hold the shared U-Net for a run: its lock, and this value's weight patches applied in place
        (restored on exit)."""
        with weights_applied({"unet": self.unet}, self.patches.weights):
            yield self

    def __repr__(self) -> str:
        return (f"DiffusionModel(family={self.family!r}, {self.model_sampling!r}, latent_scale={self.latent_scale}, "
                f"dtype={self.dtype}, device={self.device})")

    @property
    def device(self) -> torch.device:
        for p in self.unet.parameters():
            return p.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the U-Net computes in (that of its first floating-point parameter)."""
        for p in self.unet.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    # -- latent format ------------------------------------------------------------------------
    def process_in(self, latent: torch.Tensor) -> torch.Tensor:
        """Raw VAE latent → the space the U-Net was trained on (× scale factor)."""
        if self.latent_format is not None:
            return self.latent_format.process_in(latent)
        return latent * self.latent_scale

    def process_out(self, latent: torch.Tensor) -> torch.Tensor:
        """U-Net latent space → raw VAE latent (÷ scale factor)."""
        if self.latent_format is not None:
            return self.latent_format.process_out(latent)
        return latent / self.latent_scale

    # -- model call -----------------------------------------------------------------------------
    def apply_model(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
                    y: torch.Tensor | None = None, c_concat: torch.Tensor | None = None,
                    control: dict | None = None, *, cond_or_uncond: list[int] | None = None,
                    run: Any = None) -> torch.Tensor:
        """Denoised estimate D(x; σ) for a batch of noisy latents `x` at noise levels `sigma` [B].

        The U-Net sees x/√(σ²+1) and the timestep nearest to σ, in the U-Net's dtype; the result
        is float32. `c_concat` (inpainting and InstructPix2Pix U-Nets, see inpaint.py) is appended
        to the scaled latent along the channels, unscaled. `control` (ControlNet / T2I-Adapter
        residuals) is handed to the U-Net as is. The patches in force (``run.patches``, else this
        value's) wrap the call (``model_function_wrapper``) and hook into the U-Net;
        ``cond_or_uncond`` says which prompt list each chunk of the batch belongs to (for the hooks).
        """
        patches = self.patches if run is None else run.patches
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0])
        cond_or_uncond = [0] if cond_or_uncond is None else cond_or_uncond

        def apply(x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None = None,
                  c_concat: torch.Tensor | None = None, control: dict | None = None) -> torch.Tensor:
            hooks = UNetHooks(patches, sigma, cond_or_uncond, run) if patches.unet_hooks else None
            return self._denoise(x, sigma, context, y, c_concat, control, hooks)

        if patches.model_function_wrapper is not None:
            c = {"context": context, "y": y, "c_concat": c_concat, "control": control}
            return patches.model_function_wrapper(apply, ModelCall(x, sigma, c, cond_or_uncond, run))
        return apply(x, sigma, context, y, c_concat, control)

    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, y: torch.Tensor | None,
                 c_concat: torch.Tensor | None, control: dict | None, hooks: UNetHooks | None) -> torch.Tensor:
        ms = self.model_sampling
        dtype = self.dtype
        x_in = ms.calculate_input(sigma, x)
        if c_concat is not None:
            x_in = torch.cat([x_in, c_concat.to(x_in)], dim=1)
        x_in = x_in.to(dtype)
        timesteps = ms.timestep(sigma).float()
        kwargs = {"context": context.to(dtype)}
        if y is not None:
            kwargs["y"] = y.to(dtype)
        if control is not None:
            kwargs["control"] = control
        if hooks is not None:
            if not getattr(self.unet, "accepts_hooks", False):
                raise NodeError(f"this model's U-Net ({type(self.unet).__name__}) does not take U-Net patches "
                                "(FreeU, attention patches, …); remove them from its MODEL")
            kwargs["hooks"] = hooks
        output = self.unet(x_in, timesteps, **kwargs).float()
        return ms.calculate_denoised(sigma, output, x)

    @classmethod
    def for_family(cls, unet: nn.Module, family: str, prediction: str = "eps") -> "DiffusionModel":
        """How a family is wired — the one place, for loaded checkpoints as for tests and benches: SD's
        discrete schedule with ``prediction`` ("eps" or "v"), the family's latent scale
        (``vae.latent_scale``) and, for SDXL and its refiner, their size conditioning (``sdxl_adm_fn``)."""
        adm = sdxl_adm_fn(refiner=family == "sdxl_refiner") if family.startswith("sdxl") else None
        return cls(unet, ModelSamplingDiscrete(prediction), family, latent_scale(family), adm_fn=adm)

    def encode_adm(self, cond: dict, batch: int, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor | None:
        """The U-Net's `y` input [batch, adm] for one conditioning dict, or None for models without one."""
        if self.adm_fn is None:
            return None
        y = self.adm_fn(cond, batch, torch.device(device), dtype)
        if y is None:
            return None
        if y.ndim != 2:
            raise ValueError(f"DiffusionModel.encode_adm: adm_fn must return [batch, channels], got shape {tuple(y.shape)}")
        return y.to(device=device, dtype=dtype)


def sdxl_adm_fn(refiner: bool = False) -> AdmFn:
    """An `adm_fn` for SDXL (or its refiner) reading ComfyUI's conditioning keys, with ComfyUI's defaults.

    Base: pooled_output, width, height (default 768), crop_w, crop_h (default 0), target_width,
    target_height (default: width/height). Refiner: pooled_output, width, height, crop_w, crop_h,
    aesthetic_score (default 6, or 2.5 for a conditioning marked ``prompt_type: "negative"``). A
    pooled output of another batch size than asked for gives its first row to every item. The
    embedding itself is `unet.sdxl_adm` / `unet.sdxl_refiner_adm`.
    """

    def adm(cond: dict, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        pooled = cond.get("pooled_output")
        if pooled is None:
            raise ValueError("SDXL conditioning has no 'pooled_output': encode the prompt with the SDXL "
                             "checkpoint's CLIP (CLIPTextEncode), which adds it")
        pooled = pooled.to(device=device, dtype=torch.float32)
        if pooled.shape[0] != batch:
            pooled = pooled[:1].expand(batch, -1)
        width, height = cond.get("width", 768), cond.get("height", 768)
        crop_w, crop_h = cond.get("crop_w", 0), cond.get("crop_h", 0)
        if refiner:
            default_score = 2.5 if cond.get("prompt_type") == "negative" else 6.0
            y = sdxl_refiner_adm(pooled, width, height, crop_w, crop_h, cond.get("aesthetic_score", default_score))
        else:
            y = sdxl_adm(pooled, width, height, crop_w, crop_h,
                         cond.get("target_width", width), cond.get("target_height", height))
        return y.to(dtype)

    return adm
