"""Model patches: one mechanism by which nodes change how a loaded model samples, without copying it.

A MODEL value (`DiffusionModel`) is a light object: the loaded U-Net (shared by every value made from
the same checkpoint), its model sampling, and a `ModelPatches` — an immutable record of hooks. A patch
node returns a clone whose record has one more hook; the U-Net is never copied, so patches stack
for free and the executor caches a patched model like any other output (its signature is that of
its inputs and params). Because the hooks live on the value and not on the U-Net, a patched and an
unpatched use of the same loaded model in one graph give the results of two separate runs.

The hooks (ComfyUI's names; see docs/plugins.md, "Model patches"):

U-Net hooks — run inside `UNetModel.forward`, each receives the call's `UNetHooks` (block, depth
index, sigmas, cond_or_uncond, heads, per-run state):
    attn1_patch / attn2_patch           (q_in, context, value, hooks) -> (q_in, context, value)
                                        before self / cross attention's projections
    attn1_replace / attn2_replace       (q, k, v, hooks) -> out, replacing softmax(qkᵀ)v of the
                                        layers at (block, id[, depth index])
    attn1_output_patch / attn2_output_patch   (out, hooks) -> out, after the output projection
    input_block_patch                   (h, hooks) -> h after each input block (before its skip is kept)
    input_block_patch_after_skip        (h, hooks) -> h after the skip is kept
    middle_block_patch                  (h, hooks) -> h after the middle block
    output_block_patch                  (h, skip, hooks) -> (h, skip) before each output block
Model-call hook:
    model_function_wrapper              (apply, ModelCall) -> denoised; `apply(x, sigma, **call.c)`
                                        is the unpatched denoiser call
Guidance hooks — each receives a `GuidanceStep`:
    pre_cfg                             -> new list of predictions (cond, uncond, …)
    cfg_function                        -> denoised (replaces uncond + (cond − uncond)·cfg)
    post_cfg                            -> denoised, after CFG
    disable_cfg1_optimization           run the negative prompt even at cfg 1
Sampling hooks:
    denoise_mask_function               (sigma, mask, run) -> the inpainting mask for this step
    model sampling                      `DiffusionModel.with_model_sampling` (an object patch)
Weight patches — `WeightPatch`: a weight becomes strength_model·W + strength·delta(W), swapped into
the shared module while a sampler (or text encoder) runs, then swapped back (the shared weights are
never written); the patched weights of the last patch set are kept for the next run.

Per-run state: a `SamplingRun` lives for one sampling loop; hooks keep their state in
`run.scratch(self)` (so a cached patched model carries none between runs) and draw random numbers
from `run.generator(device)` (seeded by the sampling seed: runs repeat bit for bit).
"""
from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any

import torch
from torch import nn

# -- weight patches ---------------------------------------------------------------------------------
WeightDelta = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class WeightPatch:
    """One change of one weight: ``W ← strength_model·W + strength·delta``.

    Args:
        module: which module of the model value holds the weight: "unet" for a MODEL, a text
            encoder's slot ("l", "g", "h") for a CLIP.
        key: the parameter's name in that module (its state-dict key), e.g.
            ``input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight``.
        delta: a tensor of the weight's shape (or of its ``rows``), a function of the current weight
            (float32) returning one, or None for no added term. Computed at use time, in float32.
        strength: the delta's factor; strength_model: the weight's own factor (ComfyUI's names).
        rows: only rows [start, stop) of the weight (e.g. the q third of a fused qkv projection).
        direct: optional fast path, ``direct(weight) -> new weight`` in the weight's own dtype, equal to
            `apply` up to rounding (e.g. a LoRA's chunked low-rank update, with no full-size float32
            temporaries); used when the patch is the only one of its weight and covers all its rows.
    """

    module: str
    key: str
    delta: torch.Tensor | WeightDelta | None = None
    strength: float = 1.0
    strength_model: float = 1.0
    rows: tuple[int, int] | None = None
    direct: Callable[[torch.Tensor], torch.Tensor] | None = None

    def apply(self, weight: torch.Tensor) -> torch.Tensor:
        """The new value of ``weight`` (float32, the rows this patch covers)."""
        if self.strength_model != 1.0:
            weight = weight * self.strength_model
        if self.delta is not None and self.strength != 0.0:
            delta = self.delta(weight) if callable(self.delta) else self.delta
            weight = weight + self.strength * delta.to(weight.device, torch.float32).reshape(weight.shape)
        return weight


_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def module_lock(module: nn.Module) -> threading.RLock:
    """The lock serialising uses of one shared module (weight patches change it while in use)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(module)
        if lock is None:
            lock = _LOCKS[module] = threading.RLock()
        return lock


def _parameter(modules: Mapping[str, nn.Module], patch: WeightPatch) -> torch.Tensor:
    module = modules.get(patch.module)
    if module is None:
        raise ValueError(f"weight patch for {patch.module!r}.{patch.key}: this model has no module "
                         f"{patch.module!r} (it has {', '.join(modules)})")
    try:
        return module.get_parameter(patch.key)
    except AttributeError:
        raise ValueError(f"weight patch: module {patch.module!r} has no weight {patch.key!r}; the patch was "
                         "made for another model") from None


class _Patched:
    """A parameter's patched weight: the patches that made it and the parameter (both weakly: the entry
    goes when either goes), the address of the weight they were applied to, and the result (of the
    parameter's dtype and device)."""

    def __init__(self, param: torch.Tensor, group: Sequence[WeightPatch], weight: torch.Tensor) -> None:
        key = id(param)

        def forget(_dead: object) -> None:
            with _PATCHED_GUARD:
                if _PATCHED.get(key) is self:
                    del _PATCHED[key]

        self.param = weakref.ref(param, forget)
        self.patches = tuple(weakref.ref(p, forget) for p in group)
        self.base = param.data_ptr()
        self.weight = weight

    def made_by(self, param: torch.Tensor, group: Sequence[WeightPatch]) -> bool:
        return (self.param() is param and self.base == param.data_ptr() and self.weight.dtype == param.dtype
                and self.weight.device == param.device and len(self.patches) == len(group)
                and all(ref() is p for ref, p in zip(self.patches, group)))


_PATCHED: dict[int, _Patched] = {}
"""By the parameter's id, the weight its last patch set gave (kept while both live). Not a
WeakKeyDictionary: its look-ups compare tensors with ==."""
_PATCHED_GUARD = threading.RLock()  # re-entrant: a death may be noticed while it is held


def applied_float32(param: torch.Tensor, patches: Sequence[WeightPatch]) -> torch.Tensor:
    """``param``'s value with ``patches`` (all of this weight) applied in order, as a new float32 tensor;
    ``param`` itself is not changed."""
    weight = param.detach().float()
    weight = weight.clone() if weight.data_ptr() == param.data_ptr() else weight
    for patch in patches:
        rows = slice(*patch.rows) if patch.rows else slice(None)
        weight[rows] = patch.apply(weight[rows])
    return weight


def _patched_weight(param: torch.Tensor, group: Sequence[WeightPatch]) -> torch.Tensor:
    """The value ``param`` takes with ``group`` applied, as a new tensor of its dtype: computed once per
    parameter and patch set (the patches are immutable and the parameter is always restored), so that a
    model run again with the same LoRA or merge does not recompute its weights. Moving the model (another
    device or dtype) gives its weights new storage, and the weight is computed again."""
    with _PATCHED_GUARD:
        known = _PATCHED.get(id(param))
    if known is not None and known.made_by(param, group):
        return known.weight
    if len(group) == 1 and group[0].direct is not None and group[0].rows is None:
        weight = group[0].direct(param.detach())
    else:
        weight = applied_float32(param, group)
    weight = weight.to(param.dtype)
    if weight.data_ptr() == param.data_ptr():
        weight = weight.clone()
    with _PATCHED_GUARD:
        _PATCHED[id(param)] = _Patched(param, group, weight)  # one patch set per parameter: the last one used
    return weight


@contextmanager
def weights_applied(modules: Mapping[str, nn.Module], patches: Sequence[WeightPatch]) -> Iterator[None]:
    """Hold ``modules`` (their locks) with ``patches`` applied; restore every weight on exit.

    Patches of one weight apply in order. A patched parameter's tensor is swapped for the patched
    weight for the time of use and swapped back after, so the shared weights themselves are never
    written; the patched weight of the last patch set used is kept per parameter (the next run of the
    same patched model reuses it). Always locks, so that an unpatched use of a module waits for a
    patched one to restore it.
    """
    with ExitStack() as stack:
        for module in {id(m): m for m in modules.values()}.values():
            stack.enter_context(module_lock(module))
        if not patches:
            yield
            return
        grouped: dict[tuple[str, str], list[WeightPatch]] = {}
        for patch in patches:
            grouped.setdefault((patch.module, patch.key), []).append(patch)
        originals: list[tuple[torch.Tensor, torch.Tensor]] = []
        try:
            with torch.no_grad():
                for group in grouped.values():
                    param = _parameter(modules, group[0])
                    patched = _patched_weight(param, group)
                    originals.append((param, param.data))
                    param.data = patched
            yield
        finally:
            for param, original in reversed(originals):
                param.data = original


# -- the record of hooks ------------------------------------------------------------------------------
AttnKey = tuple  # ("input"|"middle"|"output", block id) or the same plus the depth index

_LISTS = ("attn1_patch", "attn2_patch", "attn1_output_patch", "attn2_output_patch", "input_block_patch",
          "input_block_patch_after_skip", "middle_block_patch", "output_block_patch", "pre_cfg", "post_cfg",
          "weights")
_SINGLES = ("model_function_wrapper", "cfg_function", "denoise_mask_function")
_UNET = ("attn1_patch", "attn2_patch", "attn1_output_patch", "attn2_output_patch", "attn1_replace",
         "attn2_replace", "input_block_patch", "input_block_patch_after_skip", "middle_block_patch",
         "output_block_patch")


@dataclass(frozen=True)
class ModelPatches:
    """Every hook a model value carries (see the module docstring), immutable: `add` and
    `replace_attention` return a new record, so values sharing a record never see each other's
    patches. List hooks run in the order they were added; a single hook added later replaces
    the earlier one (as in ComfyUI)."""

    attn1_patch: tuple = ()
    attn2_patch: tuple = ()
    attn1_output_patch: tuple = ()
    attn2_output_patch: tuple = ()
    attn1_replace: tuple = ()  # ((key, fn), ...); a later entry for a key wins
    attn2_replace: tuple = ()
    input_block_patch: tuple = ()
    input_block_patch_after_skip: tuple = ()
    middle_block_patch: tuple = ()
    output_block_patch: tuple = ()
    model_function_wrapper: Callable | None = None
    pre_cfg: tuple = ()
    cfg_function: Callable | None = None
    post_cfg: tuple = ()
    disable_cfg1_optimization: bool = False
    denoise_mask_function: Callable | None = None
    weights: tuple[WeightPatch, ...] = ()

    def add(self, *, disable_cfg1_optimization: bool = False, **hooks: Any) -> "ModelPatches":
        """A record with ``hooks`` added: list hooks (a callable, or a sequence for ``weights``)
        are appended, single hooks replaced. ``disable_cfg1_optimization=True`` sticks."""
        changes: dict[str, Any] = {}
        for name, value in hooks.items():
            if name in _LISTS:
                extra = tuple(value) if name == "weights" else (value,)
                changes[name] = getattr(self, name) + extra
            elif name in _SINGLES:
                changes[name] = value
            else:
                raise TypeError(f"ModelPatches.add: unknown hook {name!r}")
        if disable_cfg1_optimization:
            changes["disable_cfg1_optimization"] = True
        return replace(self, **changes)

    def replace_attention(self, which: str, fn: Callable, block: str, number: int,
                          depth_index: int | None = None) -> "ModelPatches":
        """Replace softmax(qkᵀ)v of the ``which`` ("attn1" self, "attn2" cross) layers of U-Net block
        (``block``, ``number``) — "input"/"middle"/"output" and the block's index — or only of the
        transformer at ``depth_index`` inside it."""
        if which not in ("attn1", "attn2"):
            raise ValueError(f"replace_attention: which must be 'attn1' or 'attn2', got {which!r}")
        key = (block, number) if depth_index is None else (block, number, depth_index)
        name = f"{which}_replace"
        return replace(self, **{name: getattr(self, name) + ((key, fn),)})

    def then(self, later: "ModelPatches") -> "ModelPatches":
        """This record followed by ``later``'s hooks (e.g. a sampler's own post-CFG hook)."""
        changes: dict[str, Any] = {}
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(later, f.name)
            if isinstance(mine, tuple):
                changes[f.name] = mine + theirs
            elif f.name == "disable_cfg1_optimization":
                changes[f.name] = mine or theirs
            else:
                changes[f.name] = theirs if theirs is not None else mine
        return ModelPatches(**changes)

    @cached_property
    def unet_hooks(self) -> bool:
        """True if any hook runs inside the U-Net (then the U-Net is called with a `UNetHooks`)."""
        return any(getattr(self, name) for name in _UNET)

    @cached_property
    def attention_hooks(self) -> bool:
        """True if any hook runs inside the attention layers."""
        return any(getattr(self, name) for name in _UNET[:6])

    @cached_property
    def _replacements(self) -> dict[str, dict]:
        return {"attn1": dict(self.attn1_replace), "attn2": dict(self.attn2_replace)}

    def attention_replacement(self, which: str, block: tuple | None, depth_index: int) -> Callable | None:
        """The replacement for the ``which`` attention at (block, depth index), if any (the
        depth-specific key first, then the whole block's)."""
        table = self._replacements[which]
        if not table or block is None:
            return None
        found = table.get((block[0], block[1], depth_index))
        return found if found is not None else table.get(tuple(block))

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


NO_PATCHES = ModelPatches()


# -- what hooks receive ----------------------------------------------------------------------------------
@dataclass(eq=False)
class UNetHooks:
    """One U-Net call's view for the U-Net hooks (ComfyUI's transformer_options): where the U-Net is
    and what it is computing. ``block`` is ("input"|"middle"|"output", index), ``block_index`` the
    depth index of the transformer inside its block, ``transformer_index`` the count of spatial
    transformers already run, ``sigmas`` the call's σ per batch row, ``cond_or_uncond`` which list
    each chunk of the batch comes from (0 positive, 1 negative, …), ``n_heads``/``dim_head`` those of
    the attention layer being run, ``original_shape`` the U-Net input's shape and ``activations_shape``
    that of the current spatial transformer's input. ``call_memo`` holds what a hook computes once per
    U-Net call (e.g. a function of the prompt, the same at every cross-attention layer)."""

    patches: ModelPatches
    sigmas: torch.Tensor
    cond_or_uncond: list[int]
    run: "SamplingRun | None" = None
    block: tuple | None = None
    block_index: int = 0
    transformer_index: int = 0
    original_shape: list[int] = field(default_factory=list)
    activations_shape: list[int] = field(default_factory=list)
    n_heads: int = 0
    dim_head: int = 0
    call_memo: dict = field(default_factory=dict)  # values hooks keep for this one U-Net call

    def at(self, kind: str, index: int) -> "UNetHooks":
        self.block = (kind, index)
        return self

    def run_hooks(self, name: str, h: torch.Tensor) -> torch.Tensor:
        for fn in getattr(self.patches, name):
            h = fn(h, self)
        return h

    def output_block(self, index: int, h: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.block = ("output", index)
        for fn in self.patches.output_block_patch:
            h, skip = fn(h, skip, self)
        return h, skip

    def scratch(self, owner: Any) -> dict:
        """Per-run state for ``owner`` (per call when there is no run)."""
        return self._run().scratch(owner)

    def run_generator(self, device: torch.device | str) -> torch.Generator:
        """The run's seeded generator (see `SamplingRun.generator`)."""
        return self._run().generator(device)

    def _run(self) -> "SamplingRun":
        if self.run is None:
            self.run = SamplingRun(None)
        return self.run


@dataclass(eq=False)
class ModelCall:
    """What a ``model_function_wrapper`` gets: the sigma-space batch ``input``, its ``sigma`` [B], the
    model inputs ``c`` (context, y) and ``cond_or_uncond``; ``apply(input, sigma, **c)`` denoises."""

    input: torch.Tensor
    sigma: torch.Tensor
    c: dict
    cond_or_uncond: list[int]
    run: "SamplingRun | None" = None


@dataclass(eq=False)
class GuidanceStep:
    """What a guidance hook gets (ComfyUI's args): the sigma-space ``input`` x at ``sigma``, the
    guidance scale, the resolved prompt lists ``conds`` ([positive, negative or None, …]), and by
    stage the model's predictions ``conds_out`` (pre-CFG), ``cond_denoised``/``uncond_denoised``
    (CFG; the negative is zeros when cfg 1 skipped it) and ``denoised`` (post-CFG). ``run`` runs the
    model again (``run.predict``) and keeps per-run state; ``extra`` holds guider-specific values."""

    run: "SamplingRun"
    input: torch.Tensor
    sigma: torch.Tensor
    cond_scale: float
    conds: list
    conds_out: list | None = None
    cond_denoised: torch.Tensor | None = None
    uncond_denoised: torch.Tensor | None = None
    denoised: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)

    @property
    def model(self) -> Any:
        return self.run.model

    @property
    def patches(self) -> ModelPatches:
        return self.run.patches


class SamplingRun:
    """One sampling loop's context: the model, the hooks in force (the model's, then any a sampler
    adds), the seed and schedule, and state the hooks keep for the length of the run."""

    def __init__(self, model: Any, *, patches: ModelPatches | None = None, seed: int | None = None,
                 sigmas: torch.Tensor | None = None, max_batch_area: int | None = None) -> None:
        self.model = model
        self.patches = patches if patches is not None else getattr(model, "patches", NO_PATCHES)
        self.seed = seed
        self.sigmas = sigmas
        self.max_batch_area = max_batch_area
        self._state: dict[int, tuple[Any, dict]] = {}
        self._generators: dict[str, torch.Generator] = {}

    def with_patches(self, patches: ModelPatches) -> "SamplingRun":
        """The same run (same state, generators) with ``patches`` in force instead."""
        other = object.__new__(SamplingRun)
        other.__dict__.update(self.__dict__)
        other.patches = patches
        return other

    def extended(self, extra: ModelPatches | None) -> "SamplingRun":
        """The run with ``extra`` hooks after its own (a sampler's, for one call)."""
        return self if not extra else self.with_patches(self.patches.then(extra))

    def scratch(self, owner: Any) -> dict:
        """A dict that lives as long as this run, private to ``owner`` (a hook object)."""
        entry = self._state.get(id(owner))
        if entry is None or entry[0] is not owner:
            entry = self._state[id(owner)] = (owner, {})
        return entry[1]

    def generator(self, device: torch.device | str = "cpu") -> torch.Generator:
        """A generator for hooks that draw random numbers, seeded by the run's seed (0 without one)."""
        device = torch.device(device)
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = self._generators[key] = torch.Generator(device=device).manual_seed(
                (int(self.seed) if self.seed is not None else 0) % (2**63))
        return gen

    def predict(self, conds: Sequence, x: torch.Tensor, sigma: torch.Tensor,
                patches: ModelPatches | None = None) -> list[torch.Tensor]:
        """The model's prediction for each prompt list of ``conds`` (None: skipped, zeros), batched as
        the guiders batch them; ``patches`` replaces the run's hooks for this call (e.g. PAG's)."""
        from .guidance import calc_cond_batch

        run = self if patches is None else self.with_patches(patches)
        return calc_cond_batch(self.model, list(conds), x, sigma, self.max_batch_area, run=run)

    def entries(self, conditioning: Any, prompt_type: str, x: torch.Tensor, owner: Any) -> list:
        """A CONDITIONING value resolved for latents like ``x`` (kept for the run, per ``owner``)."""
        memo = self.scratch(owner)
        key = ("entries", prompt_type, tuple(x.shape), str(x.device))
        if key not in memo:
            from .guidance import parse_conditioning, resolve_entries

            memo[key] = resolve_entries(parse_conditioning(conditioning, prompt_type), self.model, x.shape,
                                        x.device, prompt_type)
        return memo[key]


# -- the guidance pipeline (ComfyUI's sampling_function / cfg_function) -----------------------------------
def cfg_result(run: SamplingRun, cond_pred: torch.Tensor, uncond_pred: torch.Tensor, cond_scale: float,
               x: torch.Tensor, sigma: torch.Tensor, conds: Sequence) -> torch.Tensor:
    """CFG of two predictions — ``uncond + (cond − uncond)·scale`` or the ``cfg_function`` hook — then
    every ``post_cfg`` hook in order. ``conds`` are the two prompt lists behind the predictions."""
    patches = run.patches
    step = GuidanceStep(run, x, sigma, cond_scale, list(conds), cond_denoised=cond_pred, uncond_denoised=uncond_pred)
    if patches.cfg_function is not None:
        denoised = patches.cfg_function(step)
    else:
        denoised = uncond_pred + (cond_pred - uncond_pred) * cond_scale
    return post_cfg(step, denoised)


def post_cfg(step: GuidanceStep, denoised: torch.Tensor) -> torch.Tensor:
    """Every ``post_cfg`` hook of the step's run in order, starting from the guided ``denoised``."""
    for fn in step.run.patches.post_cfg:
        step.denoised = denoised
        denoised = fn(step)
    return denoised


def pre_cfg(run: SamplingRun, conds: Sequence, out: list, cond_scale: float, x: torch.Tensor,
            sigma: torch.Tensor) -> list:
    """Every ``pre_cfg`` hook in order over the predictions ``out`` of the prompt lists ``conds``."""
    for fn in run.patches.pre_cfg:
        out = fn(GuidanceStep(run, x, sigma, cond_scale, list(conds), conds_out=out))
    return out


def guided(run: SamplingRun, positive: list, negative: list | None, cond_scale: float, x: torch.Tensor,
           sigma: torch.Tensor) -> torch.Tensor:
    """Classifier-free guided D(x; σ) with every guidance hook: predictions of positive and negative
    (the negative skipped at cfg 1 unless a hook needs it), pre-CFG hooks, CFG, post-CFG hooks."""
    if math.isclose(cond_scale, 1.0) and not run.patches.disable_cfg1_optimization:
        negative = None
    conds = [positive, negative]
    out = run.predict(conds, x, sigma)
    out = pre_cfg(run, conds, out, cond_scale, x, sigma)
    return cfg_result(run, out[0], out[1], cond_scale, x, sigma, conds)
