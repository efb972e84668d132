"""Classifier-free guidance over ComfyUI-style conditioning, and the guided sampling loop.

CONDITIONING is a list of `[context, options]` pairs: `context` a Tensor[1, T, C] of cross-attention
states, `options` a dict ("pooled_output", SDXL sizes, "area", "strength", "mask", "mask_strength",
"set_area_to_bounds", "start_percent", "end_percent"). Each step, every active entry of the positive
and negative lists is run through the U-Net — batched into as few calls as a memory budget allows —
and entries of one list are blended by their area/mask/strength weights:

    D_cond = Σ_e w_e·D(x; σ, c_e) / Σ_e w_e        (per latent pixel)
    D      = D_uncond + (D_cond − D_uncond) · cfg    (cfg = 1: the negative pass is skipped)

Contexts of different token lengths share a batch by repeating each to the least common multiple
of the lengths (repeating keys/values leaves attention unchanged), when that multiple is at most 4×
the shorter one. Batch order, area feathering and the symmetric-area rule follow ComfyUI
(`comfy/samplers.py`), so results match it number for number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .diffusion_model import DiffusionModel
from .inpaint import check_latent_channels, concat_input
from .patches import ModelPatches, SamplingRun, guided
from .previews import StepCallback, StepInfo
from .samplers import Sampler

COND, UNCOND = 0, 1


@dataclass
class CondEntry:
    """One conditioning entry, resolved for a given latent size (areas in latent pixels)."""

    context: torch.Tensor
    options: dict
    area: tuple[int, int, int, int] | None = None  # (height, width, y, x)
    strength: float = 1.0
    mask: torch.Tensor | None = None  # [n, H, W] at latent resolution
    mask_strength: float = 1.0
    sigma_start: float | None = None  # active while σ ≤ sigma_start …
    sigma_end: float | None = None    # … and σ ≥ sigma_end
    y: torch.Tensor | None = None     # the U-Net's `y` (adm), [1 or B, channels]
    concat: torch.Tensor | None = None  # extra input channels (inpainting/ip2p U-Nets), [B, c, H, W]
    control: Any = None               # a nodes.sd.control Control (options["control"]), or None


@dataclass
class _Piece:
    """An entry's share of one model call: its crop of x, blend weights and inputs."""

    x: torch.Tensor
    mult: torch.Tensor
    context: torch.Tensor
    y: torch.Tensor | None
    area: tuple[int, int, int, int] | None
    concat: torch.Tensor | None = None
    control: Any = None


def parse_conditioning(conditioning: Any, name: str) -> list[CondEntry]:
    """Check a CONDITIONING value and wrap its entries (errors name the input and the entry)."""
    if not isinstance(conditioning, (list, tuple)):
        raise TypeError(f"{name} conditioning: expected a list of [Tensor[1, T, C], dict] pairs, "
                        f"got {type(conditioning).__name__}")
    entries = []
    for i, item in enumerate(conditioning):
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], torch.Tensor)
                and isinstance(item[1], dict)):
            raise TypeError(f"{name} conditioning entry {i}: expected [Tensor[1, T, C], dict], got {item!r:.80}")
        context, options = item
        if context.ndim != 3:
            raise ValueError(f"{name} conditioning entry {i}: context must be [batch, tokens, channels], "
                             f"got shape {tuple(context.shape)}")
        entries.append(CondEntry(context=context, options=dict(options),
                                 strength=float(options.get("strength", 1.0)),
                                 mask_strength=float(options.get("mask_strength", 1.0)),
                                 control=options.get("control")))
    return entries


# -- resolving entries for a latent size -----------------------------------------------------------
def _mask_bounds(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """Bounding box (h, w, y, x) of a mask's non-zero pixels, at least 8×8; (8, 8, 0, 0) if empty."""
    bounds = mask.abs().amax(dim=0)
    ys, xs = torch.nonzero(bounds, as_tuple=True)
    if len(ys) == 0:
        return (8, 8, 0, 0)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    return (max(8, y1 - y0 + 1), max(8, x1 - x0 + 1), y0, x0)


def resolve_entries(entries: list[CondEntry], model: DiffusionModel, latent_shape: Sequence[int],
                    device: torch.device, prompt_type: str, latent_image: torch.Tensor | None = None,
                    denoise_mask: torch.Tensor | None = None) -> list[CondEntry]:
    """Areas to latent pixels, masks to latent size, percents to σ, and each entry's `y` and extra
    input channels (`concat`: inpainting and InstructPix2Pix U-Nets, from the latent being sampled,
    its noise mask and the entry's options; see inpaint.py)."""
    height, width = int(latent_shape[2]), int(latent_shape[3])
    ms = model.model_sampling
    resolved = []
    for e in entries:
        opts = e.options
        area = opts.get("area")
        if area is not None:
            if area[0] == "percentage":
                _, h, w, y, x = area
                area = (max(1, round(h * height)), max(1, round(w * width)), round(y * height), round(x * width))
            area = tuple(int(v) for v in area)
        mask = opts.get("mask")
        if mask is not None:
            mask = mask.to(device=device, dtype=torch.float32)
            if mask.ndim == 2:
                mask = mask.unsqueeze(0)
            if tuple(mask.shape[1:]) != (height, width):
                mask = F.interpolate(mask.unsqueeze(1), size=(height, width), mode="bilinear",
                                     align_corners=False).squeeze(1)
            if opts.get("set_area_to_bounds", False):
                area = _mask_bounds(mask)
        sigma_start = ms.percent_to_sigma(opts["start_percent"]) if "start_percent" in opts else None
        sigma_end = ms.percent_to_sigma(opts["end_percent"]) if "end_percent" in opts else None
        if e.control is not None:
            e.control.check(model)
        y = None
        if model.adm_fn is not None:
            adm_opts = {"width": width * 8, "height": height * 8, "prompt_type": prompt_type, **opts}
            y = model.encode_adm(adm_opts, 1, device, torch.float32)
        concat = concat_input(model, opts, latent_shape, device, latent_image, denoise_mask)
        resolved.append(replace(e, area=area, mask=mask, sigma_start=sigma_start, sigma_end=sigma_end, y=y,
                                concat=concat))
    return resolved


def _area_inside(inner: tuple, outer: tuple) -> bool:
    h, w, y, x = inner
    oh, ow, oy, ox = outer
    return y >= oy and x >= ox and y + h <= oy + oh and x + w <= ox + ow


def add_matching_areas(entries: list[CondEntry], others: list[CondEntry]) -> None:
    """Give every area in `others` a counterpart of the same area in `entries` (ComfyUI's rule).

    For an area entry of `others` without an equal area here, the smallest entry here that covers
    it (an area-less entry covers everything) lends its prompt to a copy with the other's area.
    """
    for c in others:
        if c.area is None:
            continue
        smallest = None
        for e in entries:
            if e.area is None:
                if smallest is None:
                    smallest = e
            elif _area_inside(c.area, e.area):
                if smallest is None or smallest.area is None or \
                        smallest.area[0] * smallest.area[1] > e.area[0] * e.area[1]:
                    smallest = e
        if smallest is None or smallest.area == c.area:
            continue
        entries.append(replace(c, context=smallest.context, y=smallest.y, options=smallest.options,
                               concat=smallest.concat))


# -- one model evaluation over all entries --------------------------------------------------------
def _repeat_to_batch(t: torch.Tensor, batch: int) -> torch.Tensor:
    if t.shape[0] > batch:
        return t[:batch]
    if t.shape[0] < batch:
        return t.repeat((math.ceil(batch / t.shape[0]),) + (1,) * (t.ndim - 1))[:batch]
    return t


def _piece(e: CondEntry, x: torch.Tensor, sigma: torch.Tensor) -> _Piece | None:
    """The crop, blend weights and inputs of entry `e` at this step, or None if inactive at σ."""
    if e.sigma_start is not None and sigma[0] > e.sigma_start:
        return None
    if e.sigma_end is not None and sigma[0] < e.sigma_end:
        return None
    area = e.area
    x_in = x
    if area is not None:
        h, w, top, left = area
        h, w = min(x.shape[2] - top, h), min(x.shape[3] - left, w)
        if h <= 0 or w <= 0:  # an area wholly outside the latent has nothing to act on
            return None
        area = (h, w, top, left)
        x_in = x[:, :, top:top + h, left:left + w]
    if e.mask is not None:
        mask = e.mask[: x_in.shape[0]]
        if area is not None:
            mask = mask[:, area[2]:area[2] + area[0], area[3]:area[3] + area[1]]
        mask = (mask * e.mask_strength).unsqueeze(1)
        mult = mask.repeat(x_in.shape[0] // mask.shape[0], x_in.shape[1], 1, 1) * e.strength
    else:
        mult = torch.ones_like(x_in) * e.strength
        if area is not None:
            _feather(mult, area, x.shape)
    batch = x.shape[0]
    y = None if e.y is None else _repeat_to_batch(e.y, batch)
    concat = e.concat
    if concat is not None and area is not None:
        concat = concat[:, :, area[2]:area[2] + area[0], area[3]:area[3] + area[1]]
    concat = None if concat is None else _repeat_to_batch(concat, batch)
    return _Piece(x_in, mult, _repeat_to_batch(e.context, batch), y, area, concat, e.control)


def _feather(mult: torch.Tensor, area: tuple, full_shape: torch.Size) -> None:
    """Ramp the weights linearly over up to 8 latent pixels at area edges inside the image."""
    h, w, top, left = area
    for dim, (size, offset, full) in enumerate(((h, top, full_shape[2]), (w, left, full_shape[3])), start=2):
        ramp = min(8, mult.shape[dim] // 4)
        if offset != 0:  # leading edge is inside the image
            for t in range(ramp):
                mult.narrow(dim, t, 1).mul_((1.0 / ramp) * (t + 1))
        if size + offset < full:  # trailing edge is inside the image
            for t in range(ramp):
                mult.narrow(dim, size - 1 - t, 1).mul_((1.0 / ramp) * (t + 1))


def _can_batch(a: _Piece, b: _Piece) -> bool:
    if a.x.shape != b.x.shape or a.control is not b.control:
        return False
    if (a.y is None) != (b.y is None) or (a.y is not None and a.y.shape != b.y.shape):
        return False
    if (a.concat is None) != (b.concat is None) or (a.concat is not None and a.concat.shape != b.concat.shape):
        return False
    sa, sb = a.context.shape, b.context.shape
    if sa != sb:
        if sa[0] != sb[0] or sa[2] != sb[2]:
            return False
        if math.lcm(sa[1], sb[1]) // min(sa[1], sb[1]) > 4:
            return False
    return True


def _cat_contexts(contexts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along the batch after repeating each to the LCM of the token lengths."""
    length = math.lcm(*(c.shape[1] for c in contexts))
    return torch.cat([c.repeat(1, length // c.shape[1], 1) if c.shape[1] < length else c for c in contexts])


def calc_cond_batch(model: DiffusionModel, cond_lists: Sequence[list[CondEntry] | None], x: torch.Tensor,
                    sigma: torch.Tensor, max_batch_area: int | None = None,
                    run: SamplingRun | None = None) -> list[torch.Tensor]:
    """Denoised predictions for each list of entries (a blend of its active entries), in few U-Net calls.

    `max_batch_area` bounds batch × latent height × width of one call (None: no bound); compatible
    pieces beyond it are split over several calls, largest group first, as ComfyUI does. `run`: the
    sampling run whose model patches are in force (None: the model's own).
    """
    outs = [torch.zeros_like(x) for _ in cond_lists]
    counts = [torch.ones_like(x) * 1e-37 for _ in cond_lists]
    to_run: list[tuple[_Piece, int]] = []
    for index, entries in enumerate(cond_lists):
        for e in entries or ():
            piece = _piece(e, x, sigma)
            if piece is not None:
                to_run.append((piece, index))

    while to_run:
        first = to_run[0][0]
        compatible = [k for k in range(len(to_run)) if _can_batch(to_run[k][0], first)][::-1]
        chosen = compatible[:1]
        per_piece = first.x.shape[0] * first.x.shape[2] * first.x.shape[3]
        for divisor in range(1, len(compatible) + 1):
            group = compatible[: len(compatible) // divisor]
            if max_batch_area is None or len(group) * per_piece < max_batch_area:
                chosen = group
                break
        batch = [to_run.pop(k) for k in chosen]  # indices are descending, so pops do not shift them
        pieces = [p for p, _ in batch]
        ys = [p.y for p in pieces]
        inputs = (torch.cat([p.x for p in pieces]), torch.cat([sigma] * len(pieces)),
                  _cat_contexts([p.context for p in pieces]), torch.cat(ys) if ys[0] is not None else None)
        control = None if first.control is None else first.control.residuals(model, *inputs, len(pieces))
        extra = {} if control is None else {"control": control}
        if first.concat is not None:
            extra["c_concat"] = torch.cat([p.concat for p in pieces])
        output = model.apply_model(*inputs, **extra, cond_or_uncond=[index for _, index in batch],
                                   run=run).chunk(len(pieces))
        for out, (piece, index) in zip(output, batch):
            target, count = outs[index], counts[index]
            if piece.area is not None:
                h, w, top, left = piece.area
                target = target[:, :, top:top + h, left:left + w]
                count = count[:, :, top:top + h, left:left + w]
            target += out * piece.mult
            count += piece.mult
    for out, count in zip(outs, counts):
        out /= count
    return outs


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, cfg: float) -> torch.Tensor:
    """Classifier-free guidance on denoised predictions: uncond + (cond − uncond)·cfg."""
    return uncond + (cond - uncond) * cfg


def prepare_mask(mask: torch.Tensor, shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """An inpainting mask ([H, W], [B, H, W] or [B, 1, H, W] in image pixels) at latent shape [B, C, h, w]."""
    mask = F.interpolate(mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float(),
                         size=(int(shape[2]), int(shape[3])), mode="bilinear")
    mask = torch.cat([mask] * int(shape[1]), dim=1)
    return _repeat_to_batch(mask, int(shape[0])).to(device)


# -- guiders -------------------------------------------------------------------------------------
class CFGGuider:
    """A GUIDER value (ComfyUI's CFGGuider node): model + positive/negative conditioning + cfg scale.

    `guider(x, sigma)` is the guided denoiser handed to a sampler (after `prepare`); `sample(...)`
    runs a whole sampling loop. `max_batch_area` bounds batch × latent height × width per U-Net
    call (None: cond and uncond always share one call).
    """

    def __init__(self, model: DiffusionModel, positive: Any = None, negative: Any = None, cfg: float = 8.0,
                 *, max_batch_area: int | None = None) -> None:
        self.model = model
        self.cfg = float(cfg)
        self.max_batch_area = max_batch_area
        self.original: dict[str, list[CondEntry]] = {}
        self.conds: dict[str, list[CondEntry]] = {}
        if positive is not None:
            self.set_conds(positive, negative if negative is not None else [])

    def set_conds(self, positive: Any, negative: Any) -> None:
        self.original = {"positive": parse_conditioning(positive, "positive"),
                         "negative": parse_conditioning(negative, "negative")}

    def set_cfg(self, cfg: float) -> None:
        self.cfg = float(cfg)

    def prepare(self, latent_shape: Sequence[int], device: torch.device, latent_image: torch.Tensor | None = None,
                denoise_mask: torch.Tensor | None = None) -> None:
        """Resolve the conditioning for a latent of `latent_shape` (call before using the guider);
        `latent_image` (in the U-Net's space) and `denoise_mask` (at latent shape) feed the extra
        inputs of inpainting and InstructPix2Pix U-Nets."""
        if "positive" not in self.original:
            raise ValueError("guider has no conditioning: call set_conds(positive, negative) first")
        conds = {k: resolve_entries(v, self.model, latent_shape, device, k, latent_image, denoise_mask)
                 for k, v in self.original.items()}
        if "negative" in conds:
            from .control import share_controls

            share_controls(conds["positive"], conds["negative"])
        for k in conds:
            for other in conds:
                if other != k:
                    add_matching_areas(conds[other], conds[k])
        self.conds = conds

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, seed: int | None = None,
                 run: SamplingRun | None = None, patches: ModelPatches | None = None, **_: Any) -> torch.Tensor:
        """The guided D(x; σ) with the model's patches, in the sampling `run` (the sampling loop passes
        it). `patches`: hooks a sampler adds for this call (a CFG++ sampler's post-CFG hook reads the
        unconditional prediction, and makes it computed even at cfg = 1, as in ComfyUI)."""
        run = self.run_for(run, seed, patches)
        return guided(run, self.conds["positive"], self.conds.get("negative"), self.cfg, x, sigma)

    def run_for(self, run: SamplingRun | None, seed: int | None, patches: ModelPatches | None) -> SamplingRun:
        """`run` (a fresh one for this model when None) with a sampler's `patches` after the model's."""
        if run is None:
            run = SamplingRun(self.model, seed=seed, max_batch_area=self.max_batch_area)
        return run.extended(patches)

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, latent_image: torch.Tensor, sampler: Sampler, sigmas: torch.Tensor,
               denoise_mask: torch.Tensor | None = None, callback: StepCallback | None = None,
               seed: int | None = None) -> torch.Tensor:
        """Sample from raw `latent_image` + `noise` down `sigmas`; returns the raw (unscaled) latent.

        As ComfyUI: a non-zero latent is scaled in (×scale factor); the start is latent + noise·σ_0,
        or noise·√(1+σ_0²) from σ_max; `seed` seeds the sampler's own noise; with `denoise_mask`
        (1 = repaint) the unmasked region is held to the latent noised to the current σ, and a run that
        ends at σ = 0 returns the latent itself wherever the mask is 0.
        """
        if sigmas.shape[-1] == 0:
            return latent_image
        model, ms = self.model, self.model.model_sampling
        device = model.device
        ms.to(device)
        noise, sigmas = noise.to(device), sigmas.to(device)
        latent = latent_image.to(device)
        if torch.count_nonzero(latent) > 0:  # an empty latent stays empty (ComfyUI)
            latent = model.process_in(latent)
        check_latent_channels(model, latent)
        if denoise_mask is not None:
            denoise_mask = prepare_mask(denoise_mask, noise.shape, device)
        self.prepare(noise.shape, device, latent, denoise_mask)

        denoiser = self
        if denoise_mask is not None:
            denoiser = self._inpainting(denoise_mask, latent, noise, sampler, seed)
        x = ms.noise_scaling(sigmas[0], noise, latent, ms.is_max_denoise(sigmas))
        total = len(sigmas) - 1

        def report(d: dict) -> None:  # an adaptive sampler (dpm_adaptive) may take more steps than planned
            callback(StepInfo(step=int(d["i"]), total=max(total, int(d["i"]) + 1), sigma=float(d["sigma"]),
                              x=d["x"], denoised=d["denoised"], family=model.family,
                              projection=model.preview_projection))

        run = SamplingRun(model, seed=seed, sigmas=sigmas, max_batch_area=self.max_batch_area)
        with model.in_use():  # the U-Net held, its weight patches applied
            samples = sampler(denoiser, x, sigmas, extra_args={"seed": seed, "model_sampling": ms, "run": run},
                              callback=report if callback is not None else None)
        samples = model.process_out(ms.inverse_noise_scaling(sigmas[-1], samples).to(torch.float32))
        if denoise_mask is not None and sigmas[-1] == 0 and model.patches.denoise_mask_function is None:
            # Where the mask is 0 the result is the latent itself — also for the samplers that stop short of
            # σ = 0 (dpm_fast, dpm_adaptive, uni_pc), which in ComfyUI leave their last noise level there.
            # Not with a per-step mask (DifferentialDiffusion): its last step repaints every pixel, as in ComfyUI.
            samples = torch.where(denoise_mask == 0, latent_image.to(samples), samples)
        return samples

    def _inpainting(self, mask, latent, noise, sampler: Sampler, seed):
        """Denoiser that keeps mask-0 regions on the noised original latent (ComfyUI's KSamplerX0Inpaint):
        before each model call x is put back to latent + noise·σ outside the mask, and the denoised
        output is the latent there. The model patches' denoise-mask function (DifferentialDiffusion), if
        any, gives the mask of each step."""
        if sampler.random_inpaint_noise:
            generator = torch.Generator().manual_seed((41 if seed is None else int(seed)) + 1)
            noise = torch.randn(noise.shape, generator=generator).to(noise.dtype).to(noise.device)
        ms = self.model.model_sampling
        mask_function = self.model.patches.denoise_mask_function

        def denoise(x, sigma, **kwargs):
            step_mask = mask
            if mask_function is not None:  # a model patch reshapes the mask per step (DifferentialDiffusion)
                step_mask = mask_function(sigma, mask, kwargs.get("run"))
            keep = 1.0 - step_mask
            x = x * step_mask + ms.noise_scaling(sigma, noise, latent) * keep
            return self(x, sigma, **kwargs) * step_mask + latent * keep

        return denoise


class BasicGuider(CFGGuider):
    """ComfyUI's BasicGuider: one conditioning, no classifier-free guidance (cfg = 1)."""

    def __init__(self, model: DiffusionModel, conditioning: Any = None, *, max_batch_area: int | None = None) -> None:
        super().__init__(model, cfg=1.0, max_batch_area=max_batch_area)
        if conditioning is not None:
            self.set_conds(conditioning)

    def set_conds(self, conditioning: Any, negative: Any = None) -> None:  # type: ignore[override]
        self.original = {"positive": parse_conditioning(conditioning, "conditioning")}
