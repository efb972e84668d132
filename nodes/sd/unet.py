"""The Stable Diffusion U-Net (the LDM / sgm ``UNetModel``) in the original single-file key layout.

One module serves SD1.x, SD2.x, SDXL and the SDXL refiner; a :class:`UNetConfig` says which. The
``state_dict()`` keys are those of a single-file checkpoint minus ``model.diffusion_model.``:
``time_embed``, ``label_emb`` (SDXL), ``input_blocks``, ``middle_block``, ``output_blocks``, ``out``.

Also here: the sinusoidal timestep embedding, and the SDXL "adm" vectors (pooled text embedding
plus embedded size / crop / aesthetic-score numbers) that feed ``label_emb``.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import attention
from .patches import UNetHooks
from .unet_hooks import hooked_transformer_block

FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner")

# Width of the sinusoidal embedding of each SDXL size/crop/aesthetic number.
ADM_SCALAR_DIM = 256


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of one U-Net.

    ``transformer_depth`` has one entry per resolution level (``channel_mult``): how many transformer
    blocks each attention layer of that level holds, 0 for a level without attention.
    ``transformer_depth_middle`` is the same for the middle block (0: the middle block is a single
    ResBlock). Heads follow LDM: either ``num_heads`` fixed heads (SD1) or heads of
    ``num_head_channels`` channels each (SD2, SDXL); the unused one is -1.
    ``adm_in_channels`` is the width of the SDXL ``y`` vector (None: no ``label_emb``).
    """

    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    transformer_depth: tuple[int, ...]
    transformer_depth_middle: int
    context_dim: int | None
    use_linear_in_transformer: bool
    num_heads: int = -1
    num_head_channels: int = -1
    adm_in_channels: int | None = None
    in_channels: int = 4
    out_channels: int = 4

    def __post_init__(self) -> None:
        if len(self.transformer_depth) != len(self.channel_mult):
            raise ValueError(
                f"UNetConfig: transformer_depth {self.transformer_depth} needs one entry per level of "
                f"channel_mult {self.channel_mult}"
            )
        if (self.num_heads > 0) == (self.num_head_channels > 0):
            raise ValueError("UNetConfig: set exactly one of num_heads and num_head_channels (the other -1)")

    def heads(self, channels: int) -> tuple[int, int]:
        """(heads, head_dim) of an attention layer working on ``channels`` channels."""
        if self.num_head_channels > 0:
            return channels // self.num_head_channels, self.num_head_channels
        return self.num_heads, channels // self.num_heads


_FULL = {
    "sd1": UNetConfig(320, (1, 2, 4, 4), 2, (1, 1, 1, 0), 1, 768, False, num_heads=8),
    "sd2": UNetConfig(320, (1, 2, 4, 4), 2, (1, 1, 1, 0), 1, 1024, True, num_head_channels=64),
    "sdxl": UNetConfig(320, (1, 2, 4), 2, (0, 2, 10), 10, 2048, True, num_head_channels=64, adm_in_channels=2816),
    "sdxl_refiner": UNetConfig(
        384, (1, 2, 4, 4), 2, (0, 4, 4, 0), 4, 1280, True, num_head_channels=64, adm_in_channels=2560
    ),
}

# Same traits as the real ones (where attention is, per-level depth, projections, context and adm
# widths, the head rule), narrow and shallow. Linear-projection families need 64-channel multiples
# because their heads are 64 channels wide.
_TINY = {
    "sd1": UNetConfig(32, (1, 2, 2), 1, (1, 1, 0), 1, 768, False, num_heads=8),
    "sd2": UNetConfig(64, (1, 2, 2), 1, (1, 1, 0), 1, 1024, True, num_head_channels=64),
    "sdxl": UNetConfig(64, (1, 2, 2), 1, (0, 1, 2), 2, 2048, True, num_head_channels=64, adm_in_channels=2816),
    "sdxl_refiner": UNetConfig(
        64, (1, 2, 2), 1, (0, 2, 0), 2, 1280, True, num_head_channels=64, adm_in_channels=2560
    ),
}


def _family(table: Mapping[str, UNetConfig], family: str) -> UNetConfig:
    if family not in table:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}")
    return table[family]


def full_config(family: str) -> UNetConfig:
    """The real U-Net of ``family`` ("sd1", "sd2", "sdxl", "sdxl_refiner")."""
    return _family(_FULL, family)


def tiny_config(family: str, **overrides) -> UNetConfig:
    """A very small U-Net with the architecture traits of ``family``, for tests; fields can be overridden."""
    return dataclasses.replace(_family(_TINY, family), **overrides)


# --------------------------------------------------------------------------------------------
# Reading the architecture from a state dict


def config_from_state_dict(sd: Mapping[str, torch.Tensor]) -> UNetConfig:
    """Derive the :class:`UNetConfig` of a U-Net state dict (``model.diffusion_model.`` already stripped).

    Everything except the head layout comes from key names and tensor shapes: widths from
    ``input_blocks.0.0`` and the ResBlocks' output convs, levels from the downsamplers
    (``input_blocks.N.0.op``), attention and its depth from ``N.1.transformer_blocks.M``, the context
    width from ``attn2.to_k``, linear vs 1x1-conv projections from ``proj_in``'s rank, the adm width
    from ``label_emb.0.0``. Heads only reshape activations, so the weights cannot show them; we follow
    the released models (as ComfyUI does): 1x1-conv projections (SD1.x) use 8 heads, linear
    projections (SD2.x, SDXL) use 64-channel heads.
    """
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    if "input_blocks.0.0.weight" not in shapes:
        prefixed = [k for k in shapes if k.endswith(".input_blocks.0.0.weight")]
        hint = f" (found {prefixed[0]!r}: strip the prefix first)" if prefixed else ""
        raise ValueError(f"U-Net state dict: no 'input_blocks.0.0.weight' key{hint}")
    prefixes = {k[: i] for k in shapes for i in range(len(k)) if k[i] == "."}

    def need(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise ValueError(f"U-Net state dict: missing key {key!r}")
        return shapes[key]

    def count(fmt: str) -> int:
        n = 0
        while fmt.format(n) in prefixes:
            n += 1
        return n

    if "label_emb.weight" in shapes:
        raise ValueError("U-Net state dict: 'label_emb.weight' (class-label U-Nets) is not supported")
    model_channels, in_channels = need("input_blocks.0.0.weight")[:2]

    def res_out(prefix: str) -> int:
        return need(f"{prefix}.0.out_layers.3.weight")[0]

    def depth(prefix: str) -> int:
        return count(prefix + ".1.transformer_blocks.{}")

    # input side: per level, (channels, depth) of each ResBlock
    levels: list[list[tuple[int, int]]] = [[]]
    for i in range(1, count("input_blocks.{}")):
        p = f"input_blocks.{i}"
        if f"{p}.0.op.weight" in shapes:
            levels.append([])
        else:
            levels[-1].append((res_out(p), depth(p)))
    num_res_blocks = len(levels[0])
    channel_mult, transformer_depth = [], []
    for n, blocks in enumerate(levels):
        if len(blocks) != num_res_blocks or len(set(blocks)) != 1:
            raise ValueError(
                f"U-Net state dict: level {n} has ResBlocks (channels, transformer depth) {blocks}; "
                f"only {num_res_blocks} identical blocks per level are supported"
            )
        channels, d = blocks[0]
        if channels % model_channels:
            raise ValueError(f"U-Net state dict: level {n} width {channels} is not a multiple of {model_channels}")
        channel_mult.append(channels // model_channels)
        transformer_depth.append(d)

    # output side must mirror it
    n_out = count("output_blocks.{}")
    if n_out != len(levels) * (num_res_blocks + 1):
        raise ValueError(
            f"U-Net state dict: {n_out} output blocks, expected {len(levels) * (num_res_blocks + 1)} "
            f"for {len(levels)} levels of {num_res_blocks} ResBlocks"
        )
    for i in range(n_out):
        level = len(levels) - 1 - i // (num_res_blocks + 1)
        p = f"output_blocks.{i}"
        found = (res_out(p), depth(p))
        expected = (channel_mult[level] * model_channels, transformer_depth[level])
        if found != expected:
            raise ValueError(
                f"U-Net state dict: {p} has (channels, transformer depth) {found}, the input side "
                f"of level {level} has {expected}; asymmetric U-Nets are not supported"
            )

    transformer_depth_middle = depth("middle_block")
    to_k = sorted(k for k in shapes if k.endswith(".attn2.to_k.weight"))
    proj_in = sorted(k for k in shapes if k.endswith(".proj_in.weight"))
    linear = bool(proj_in) and len(shapes[proj_in[0]]) == 2
    adm = shapes["label_emb.0.0.weight"][1] if "label_emb.0.0.weight" in shapes else None
    return UNetConfig(
        model_channels=model_channels,
        channel_mult=tuple(channel_mult),
        num_res_blocks=num_res_blocks,
        transformer_depth=tuple(transformer_depth),
        transformer_depth_middle=transformer_depth_middle,
        context_dim=shapes[to_k[0]][1] if to_k else None,
        use_linear_in_transformer=linear,
        num_heads=-1 if linear else 8,
        num_head_channels=64 if linear else -1,
        adm_in_channels=adm,
        in_channels=in_channels,
        out_channels=need("out.2.weight")[0],
    )


def ldm_yaml_config(config: UNetConfig) -> dict:
    """The original LDM (SD1/SD2, ``unet_config``) or sgm (SDXL, ``network_config``) yaml, as a dict,
    that describes ``config``: what diffusers' single-file converters and other LDM tools read.

    LDM yamls give one transformer depth per level and take the middle block's from the last level;
    levels without attention (absent from ``attention_resolutions``) carry the middle depth there.
    """
    depths = [d or config.transformer_depth_middle for d in config.transformer_depth]
    if depths[-1] != config.transformer_depth_middle:
        raise ValueError(
            f"UNetConfig: a last level with attention depth {depths[-1]} and a middle depth "
            f"{config.transformer_depth_middle} cannot be written as an LDM yaml"
        )
    params: dict = {
        "in_channels": config.in_channels,
        "out_channels": config.out_channels,
        "model_channels": config.model_channels,
        "channel_mult": list(config.channel_mult),
        "attention_resolutions": [2**level for level, d in enumerate(config.transformer_depth) if d],
        "num_res_blocks": config.num_res_blocks,
        "transformer_depth": depths,
        "context_dim": config.context_dim,
        "use_linear_in_transformer": config.use_linear_in_transformer,
        "use_spatial_transformer": True,
        "legacy": False,
    }
    if config.num_heads > 0:
        params["num_heads"] = config.num_heads
    else:
        params["num_head_channels"] = config.num_head_channels
    section = "unet_config"
    if config.adm_in_channels:
        params.update(num_classes="sequential", adm_in_channels=config.adm_in_channels)
        section = "network_config"
    vae = {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}
    return {"model": {"params": {section: {"params": params}, "first_stage_config": vae}}}


# --------------------------------------------------------------------------------------------
# Embeddings


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """LDM's sinusoidal embedding ``[cos(t·f), sin(t·f)]`` with ``f = max_period^(-i/(dim/2))``, float32.

    (diffusers' ``Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)``.)
    """
    half = dim // 2
    # same operation order as LDM (and diffusers), so the float32 rounding matches too
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.to(torch.float32).reshape(-1, 1) * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


def _adm(pooled: torch.Tensor, numbers: Sequence[float]) -> torch.Tensor:
    t = torch.tensor([float(v) for v in numbers], dtype=torch.float32, device=pooled.device)
    flat = timestep_embedding(t, ADM_SCALAR_DIM).reshape(1, -1).to(pooled.dtype)
    return torch.cat([pooled, flat.expand(pooled.shape[0], -1)], dim=1)


def sdxl_adm(
    pooled: torch.Tensor,
    width: float,
    height: float,
    crop_w: float = 0,
    crop_h: float = 0,
    target_width: float | None = None,
    target_height: float | None = None,
) -> torch.Tensor:
    """SDXL's ``y``: pooled text embedding ``[B, 1280]`` then the 256-wide embeddings of original
    height, width, crop top, crop left, target height, target width → ``[B, 2816]``.

    Targets default to the original size (ComfyUI's defaults).
    """
    target_width = width if target_width is None else target_width
    target_height = height if target_height is None else target_height
    return _adm(pooled, [height, width, crop_h, crop_w, target_height, target_width])


def sdxl_refiner_adm(
    pooled: torch.Tensor,
    width: float,
    height: float,
    crop_w: float = 0,
    crop_h: float = 0,
    aesthetic_score: float = 6.0,
) -> torch.Tensor:
    """The SDXL refiner's ``y``: pooled ``[B, 1280]`` then embedded original height, width, crop top,
    crop left and aesthetic score → ``[B, 2560]``. (ComfyUI uses 6 for positive and 2.5 for negative
    prompts by default.)"""
    return _adm(pooled, [height, width, crop_h, crop_w, aesthetic_score])


# --------------------------------------------------------------------------------------------
# Layers. Adds go in place into freshly computed conv / linear outputs (safe under autograd too);
# SiLU goes in place only when no autograd graph is recorded.


def _silu(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x, inplace=not torch.is_grad_enabled())


def _norm_silu(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    return _silu(F.group_norm(x, norm.num_groups, norm.weight, norm.bias, norm.eps))


def _group_norm(channels: int, eps: float = 1e-5) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=eps)


# PyTorch's fp32 CPU convolution (oneDNN) re-lays-out the weight on every call. Where the weight is
# large next to the output (the 1280-channel levels at 8x8 and below), unfold + one matmul is
# 1.5-2.5x faster; elsewhere, and in bf16, oneDNN wins. Threshold: weight elements per output pixel.
GEMM_CONV_MIN_WEIGHT_PER_PIXEL = 50_000


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (zero padding, no dilation or groups) that runs as unfold + matmul where that is faster."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if x.device.type != "cpu" or x.dtype != torch.float32 or w.shape[-1] == 1:
            return super().forward(x)
        b, _, h, wd = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
        if w.numel() < GEMM_CONV_MIN_WEIGHT_PER_PIXEL * b * ho * wo:
            return super().forward(x)
        cols = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw))  # [b, cin*kh*kw, ho*wo]
        out = torch.matmul(w.flatten(1), cols)
        if self.bias is not None:
            out += self.bias[:, None]
        return out.unflatten(2, (ho, wo))


class ResBlock(nn.Module):
    """Two 3x3 convs with the time embedding added in between, and a (1x1 conv) skip."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(
            _group_norm(channels), nn.SiLU(), Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            _group_norm(out_channels), nn.SiLU(), nn.Identity(), Conv2d(out_channels, out_channels, 3, padding=1)
        )  # index 2 is LDM's dropout: keeps the checkpoint's "out_layers.3" name
        self.skip_connection = (
            nn.Identity() if channels == out_channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb_silu: torch.Tensor) -> torch.Tensor:
        """``emb_silu`` is SiLU(time embedding), computed once per U-Net call."""
        h = self.in_layers[2](_norm_silu(self.in_layers[0], x))
        h += self.emb_layers[1](emb_silu)[:, :, None, None]
        h = self.out_layers[3](_norm_silu(self.out_layers[0], h))
        h += self.skip_connection(x)
        return h


class CrossAttention(nn.Module):
    """Multi-head attention of ``x`` over ``context`` (over ``x`` itself when ``context_dim`` is None)."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])  # LDM: Sequential(Linear, Dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        source = x if context is None else context
        out = attention(self.to_q(x), self.to_k(source), self.to_v(source), self.heads)
        return self.to_out[0](out)


class GEGLU(nn.Module):
    """``a * gelu(gate)`` where ``[a, gate]`` = one linear projection split in halves."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        if torch.is_grad_enabled():
            return a * F.gelu(gate)
        return F.gelu(gate).mul_(a)


# Without autograd, the feed-forward runs over slices of at most this many elements of its (8x wider)
# hidden activation: no huge short-lived buffers (which the allocator maps and page-faults afresh
# each time); 30% faster on 64x64 latents, the same on small ones.
FF_CHUNK_ELEMENTS = 1 << 22


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        # index 1 is LDM's dropout: keeps the checkpoint's "net.2" name
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        geglu, out = self.net[0], self.net[2]
        rows = max(1, FF_CHUNK_ELEMENTS // geglu.proj.out_features)
        flat = x.reshape(-1, x.shape[-1])
        if torch.is_grad_enabled() or flat.shape[0] <= rows:
            return out(geglu(x))
        result = x.new_empty(flat.shape[0], out.out_features)
        for start in range(0, flat.shape[0], rows):
            torch.addmm(out.bias, geglu(flat[start : start + rows]), out.weight.t(), out=result[start : start + rows])
        return result.view(*x.shape[:-1], out.out_features)


class BasicTransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention over the text context, GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None) -> None:
        super().__init__()
        self.attn1 = CrossAttention(dim, heads, head_dim)
        self.ff = FeedForward(dim)
        self.attn2 = CrossAttention(dim, heads, head_dim, context_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, hooks: UNetHooks | None = None) -> torch.Tensor:
        if hooks is not None:
            return hooked_transformer_block(self, x, context, hooks)
        x = self.attn1(self.norm1(x)).add_(x)
        x = self.attn2(self.norm2(x), context).add_(x)
        return self.ff(self.norm3(x)).add_(x)


class SpatialTransformer(nn.Module):
    """GroupNorm, projection to tokens, transformer blocks, projection back, residual.

    SD1 projects with 1x1 convs, SD2/SDXL with linear layers; both are the same matmul, so both run
    as ``F.linear`` on the token view (the conv weights only carry two extra unit dims).
    """

    def __init__(
        self, channels: int, heads: int, head_dim: int, depth: int, context_dim: int | None, linear: bool
    ) -> None:
        super().__init__()
        inner = heads * head_dim
        self.norm = _group_norm(channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if linear else nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, head_dim, context_dim) for _ in range(depth)
        )
        self.proj_out = nn.Linear(inner, channels) if linear else nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, hooks: UNetHooks | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        tokens = F.linear(tokens, self.proj_in.weight.flatten(1), self.proj_in.bias)
        if hooks is not None:
            hooks.activations_shape = [b, c, h, w]
        for index, block in enumerate(self.transformer_blocks):
            if hooks is None:
                tokens = block(tokens, context)
            else:
                hooks.block_index = index
                tokens = block(tokens, context, hooks)
        if hooks is not None:
            hooks.transformer_index += 1
        tokens = F.linear(tokens, self.proj_out.weight.flatten(1), self.proj_out.bias)
        return x + tokens.transpose(1, 2).unflatten(2, (h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest-neighbour upscale to ``size`` (twice the input unless the skip tensor is odd-sized), conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        if size is None:
            size = (x.shape[-2] * 2, x.shape[-1] * 2)
        return self.conv(F.interpolate(x, size=tuple(size), mode="nearest"))


class UNetBlock(nn.ModuleList):
    """One entry of input_blocks / middle_block / output_blocks (LDM's TimestepEmbedSequential)."""

    def forward(
        self,
        x: torch.Tensor,
        emb_silu: torch.Tensor,
        context: torch.Tensor | None,
        size: Sequence[int] | None = None,
        hooks: UNetHooks | None = None,
    ) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb_silu)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context, hooks)
            elif isinstance(layer, Upsample):
                x = layer(x, size)
            else:
                x = layer(x)
        return x


def encoder_blocks(cfg: UNetConfig) -> tuple[nn.ModuleList, list[int], UNetBlock]:
    """The input blocks, the width of each one's output (the skip connections), and the middle block:
    the encoder a U-Net and a ControlNet share."""
    mc, emb_dim = cfg.model_channels, cfg.model_channels * 4

    def transformer(ch: int, depth: int) -> SpatialTransformer:
        heads, head_dim = cfg.heads(ch)
        return SpatialTransformer(ch, heads, head_dim, depth, cfg.context_dim, cfg.use_linear_in_transformer)

    blocks = nn.ModuleList([UNetBlock([Conv2d(cfg.in_channels, mc, 3, padding=1)])])
    widths, ch = [mc], mc
    last = len(cfg.channel_mult) - 1
    for level, (mult, depth) in enumerate(zip(cfg.channel_mult, cfg.transformer_depth)):
        for _ in range(cfg.num_res_blocks):
            layers: list[nn.Module] = [ResBlock(ch, emb_dim, mc * mult)]
            ch = mc * mult
            if depth:
                layers.append(transformer(ch, depth))
            blocks.append(UNetBlock(layers))
            widths.append(ch)
        if level != last:
            blocks.append(UNetBlock([Downsample(ch)]))
            widths.append(ch)
    middle: list[nn.Module] = [ResBlock(ch, emb_dim, ch)]
    if cfg.transformer_depth_middle:
        middle += [transformer(ch, cfg.transformer_depth_middle), ResBlock(ch, emb_dim, ch)]
    return blocks, widths, UNetBlock(middle)


class UNetModel(nn.Module):
    """The LDM U-Net: ``forward(x, timesteps, context=None, y=None)`` predicts eps (or v) for latents ``x``."""

    accepts_hooks = True  # takes the model patches' U-Net hooks (forward's ``hooks``)

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = cfg = config
        mc, emb_dim = cfg.model_channels, cfg.model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = None
        if cfg.adm_in_channels:
            self.label_emb = nn.Sequential(
                nn.Sequential(nn.Linear(cfg.adm_in_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            )

        self.input_blocks, skip_channels, self.middle_block = encoder_blocks(cfg)
        ch = skip_channels[-1]

        def transformer(ch: int, depth: int) -> SpatialTransformer:
            heads, head_dim = cfg.heads(ch)
            return SpatialTransformer(ch, heads, head_dim, depth, cfg.context_dim, cfg.use_linear_in_transformer)

        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(cfg.channel_mult))):
            mult, depth = cfg.channel_mult[level], cfg.transformer_depth[level]
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_dim, mc * mult)]
                ch = mc * mult
                if depth:
                    layers.append(transformer(ch, depth))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(UNetBlock(layers))

        self.out = nn.Sequential(_group_norm(ch), nn.SiLU(), Conv2d(ch, cfg.out_channels, 3, padding=1))

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor | float,
        context: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        control: Mapping[str, Sequence[torch.Tensor | None]] | None = None,
        hooks: UNetHooks | None = None,
    ) -> torch.Tensor:
        """Latents ``x`` [B, C, H, W], ``timesteps`` [B] (or one number), text ``context`` [B, T, D],
        SDXL ``y`` [B, adm]. Inputs are cast to the weights' dtype; the result has ``x``'s dtype.

        ``control`` adds residuals (ControlNet, T2I-Adapter): ``"input"`` and ``"output"`` hold one
        entry per input block (None: nothing), added to that block's output before it moves on
        (T2I-Adapters) and to its skip connection as the decoder takes it (ControlNets);
        ``"middle"`` holds one, added after the middle block. ``hooks``: the model patches' U-Net
        hooks for this call (nodes/sd/patches.py; None: none); they see the blocks' outputs with the
        control residuals added, as in ComfyUI."""
        cfg = self.config
        dtype = self.input_blocks[0][0].weight.dtype
        t = torch.as_tensor(timesteps, device=x.device).reshape(-1).expand(x.shape[0])
        emb = self.time_embed(timestep_embedding(t, cfg.model_channels).to(dtype))
        if self.label_emb is not None:
            if y is None:
                raise ValueError(f"UNetModel: this U-Net needs y [B, {cfg.adm_in_channels}] (SDXL size/pooled conditioning)")
            emb = emb + self.label_emb(y.to(dtype))
        if cfg.context_dim is not None:
            if context is None:
                raise ValueError(f"UNetModel: this U-Net needs a text context [B, T, {cfg.context_dim}]")
            context = context.to(dtype)
        emb_silu = F.silu(emb)

        h = x.to(dtype)
        if hooks is not None:
            hooks.original_shape, hooks.transformer_index = list(x.shape), 0
        skips = []
        control = control or {}
        for index, block in enumerate(self.input_blocks):
            h = _plus(block(h, emb_silu, context, hooks=hooks and hooks.at("input", index)), control.get("input"), index)
            if hooks is not None:
                h = hooks.run_hooks("input_block_patch", h)
            skips.append(h)
            if hooks is not None:
                h = hooks.run_hooks("input_block_patch_after_skip", h)
        h = _plus(self.middle_block(h, emb_silu, context, hooks=hooks and hooks.at("middle", 0)), control.get("middle"), 0)
        if hooks is not None:
            h = hooks.run_hooks("middle_block_patch", h)
        for index, block in enumerate(self.output_blocks):
            skip = skips.pop()
            residuals = control.get("output")
            if residuals is not None and len(skips) < len(residuals) and residuals[len(skips)] is not None:
                skip = skip + residuals[len(skips)].to(skip.dtype)  # not in place: an input hook may hold the skip
            if hooks is not None:
                h, skip = hooks.output_block(index, h, skip)
            h = torch.cat([h, skip], dim=1)
            h = block(h, emb_silu, context, skips[-1].shape[-2:] if skips else None, hooks=hooks)
        h = self.out[2](_norm_silu(self.out[0], h))
        return h.to(x.dtype)


def _plus(h: torch.Tensor, residuals: Sequence[torch.Tensor | None] | None, index: int) -> torch.Tensor:
    """``h`` (a freshly computed block output) plus ``residuals[index]`` if there is one, added in place."""
    if residuals is None or index >= len(residuals) or residuals[index] is None:
        return h
    return h.add_(residuals[index].to(h.dtype))
