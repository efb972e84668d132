"""The AutoencoderKL of latent diffusion: images ↔ latents.

The module tree mirrors the original LDM code, so ``AutoencoderKL.state_dict()`` has exactly the
keys of a single-file checkpoint minus its ``first_stage_model.`` prefix (``encoder.conv_in.weight``,
``encoder.down.0.block.0.norm1.weight``, ``decoder.up.3.upsample.conv.weight``, ``quant_conv.weight``,
…) — the same keys a standalone VAE file such as ``vae-ft-mse-840000`` or ``sdxl_vae`` carries.

``VAE`` wraps the module with the data conventions of the node graph: images are ``[B, H, W, C]``
floats in 0..1, latents are raw (unscaled) ``[B, 4, H/8, W/8]``. Its tiled encode/decode handle
images too large to process in one piece.

Latent scale factors belong to the diffusion model family, not to the VAE: ``latent_scale(family)``.
"""
from __future__ import annotations

import re
import threading
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from nodes.sd.attention import attention
from nodes.sd.build import fill_module

FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner")

_LATENT_SCALE = {"sd1": 0.18215, "sd2": 0.18215, "sdxl": 0.13025, "sdxl_refiner": 0.13025}


def latent_scale(family: str) -> float:
    """The factor that takes raw VAE latents to the U-Net's latent space for a model family."""
    try:
        return _LATENT_SCALE[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; expected one of {', '.join(FAMILIES)}") from None


# ----------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of an LDM AutoencoderKL (``ddconfig`` in the original yaml)."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    in_channels: int = 3
    out_ch: int = 3
    z_channels: int = 4
    embed_dim: int = 4
    norm_groups: int = 32

    @property
    def downscale(self) -> int:
        """Pixels per latent pixel along one side (8 for every Stable Diffusion VAE)."""
        return 2 ** (len(self.ch_mult) - 1)


def full_config(family: str = "sd1") -> VAEConfig:
    """The VAE of SD1.x, SD2.x, SDXL and the SDXL refiner (all share one architecture)."""
    latent_scale(family)  # validates the family name
    return VAEConfig()


def tiny_config(family: str = "sd1", **overrides) -> VAEConfig:
    """A very small VAE with the real structure (4 levels, 8× down-sampling, mid attention)."""
    latent_scale(family)
    params = dict(ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1)
    params.update(overrides)
    return VAEConfig(**params)


def _count_indices(keys, pattern: str) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def config_from_state_dict(sd: Mapping[str, torch.Tensor]) -> VAEConfig:
    """Read the architecture from the keys and shapes of a VAE state dict (prefix already stripped)."""
    required = ("encoder.conv_in.weight", "decoder.conv_in.weight", "decoder.conv_out.weight",
                "post_quant_conv.weight", "encoder.conv_out.weight")
    missing = [k for k in required if k not in sd]
    if missing:
        raise ValueError(f"not an AutoencoderKL state dict: missing {', '.join(missing)}")
    ch, in_channels = sd["encoder.conv_in.weight"].shape[:2]
    levels = _count_indices(sd, r"encoder\.down\.(\d+)\.")
    blocks = _count_indices(sd, r"encoder\.down\.0\.block\.(\d+)\.")
    if levels == 0 or blocks == 0:
        raise ValueError("not an AutoencoderKL state dict: no encoder.down.N.block.M keys")
    ch_mult = tuple(sd[f"encoder.down.{i}.block.0.conv2.weight"].shape[0] // ch for i in range(levels))
    return VAEConfig(
        ch=int(ch),
        ch_mult=ch_mult,
        num_res_blocks=blocks,
        in_channels=int(in_channels),
        out_ch=int(sd["decoder.conv_out.weight"].shape[0]),
        z_channels=int(sd["decoder.conv_in.weight"].shape[1]),
        embed_dim=int(sd["post_quant_conv.weight"].shape[1]),
    )


# ----------------------------------------------------------------------------------------------
# Modules (names follow ldm/modules/diffusionmodules/model.py so that keys match the files)


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` that can share its statistics between the tiles of one image (see ``_NormSync``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sync = _NORM_SYNC.get()
        if sync is None:
            return super().forward(x)
        return sync.normalize(x, self)


def _norm(channels: int, groups: int) -> GroupNorm:
    return GroupNorm(groups, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """Two 3×3 convs with group norm and SiLU, plus a 1×1 shortcut when the width changes."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = _norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.nin_shortcut is None else self.nin_shortcut(x))


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions, with a residual connection.

    Files store q/k/v/proj_out as 1×1 conv weights ``[C, C, 1, 1]``; some (converted back from
    diffusers) store linear weights ``[C, C]``: both load.
    """

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("q", "k", "v", "proj_out"):
            key = f"{prefix}{name}.weight"
            w = state_dict.get(key)
            if w is not None and w.dim() == 2:
                state_dict[key] = w[:, :, None, None]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (conv(y).flatten(2).transpose(1, 2) for conv in (self.q, self.k, self.v))
        y = attention(q, k, v, heads=1)
        y = y.transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(y)


class Downsample(nn.Module):
    """Stride-2 3×3 conv after padding one pixel on the right and bottom only (as LDM does)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2× up-sampling followed by a 3×3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution of the encoder (``down.N``) or decoder (``up.N``)."""

    def __init__(self, cin: int, cout: int, n_blocks: int, groups: int, resample: nn.Module | None, name: str):
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(cin if i == 0 else cout, cout, groups) for i in range(n_blocks)
        )
        if resample is not None:
            self.add_module(name, resample)
        self._resample = name if resample is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        if self._resample is not None:
            x = getattr(self, self._resample)(x)
        return x


class Encoder(nn.Module):
    """Image ``[B, 3, H, W]`` in -1..1 → moments ``[B, 2·z, H/8, W/8]`` (before ``quant_conv``)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        g = cfg.norm_groups
        widths = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        cin = cfg.ch
        for i, cout in enumerate(widths):
            last = i == len(widths) - 1
            self.down.append(_Level(cin, cout, cfg.num_res_blocks, g, None if last else Downsample(cout), "downsample"))
            cin = cout
        self.mid = _Mid(cin, g)
        self.norm_out = _norm(cin, g)
        self.conv_out = nn.Conv2d(cin, 2 * cfg.z_channels, 3, padding=1)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The down-sampling path: convolutions and group norms only."""
        x = self.conv_in(x)
        for level in self.down:
            x = level(x)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The part at latent resolution, with the image-wide attention: ``mid`` and the output conv."""
        return self.conv_out(F.silu(self.norm_out(self.mid(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Decoder(nn.Module):
    """Latent ``[B, z, h, w]`` (after ``post_quant_conv``) → image ``[B, 3, 8h, 8w]`` in about -1..1."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        g = cfg.norm_groups
        widths = [cfg.ch * m for m in cfg.ch_mult]
        cin = widths[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, cin, 3, padding=1)
        self.mid = _Mid(cin, g)
        levels: list[_Level] = []
        for i in reversed(range(len(widths))):
            cout = widths[i]
            levels.append(_Level(cin, cout, cfg.num_res_blocks + 1, g, Upsample(cout) if i > 0 else None, "upsample"))
            cin = cout
        self.up = nn.ModuleList(reversed(levels))  # up.0 is the full-resolution level, as in the files
        self.norm_out = _norm(cin, g)
        self.conv_out = nn.Conv2d(cin, cfg.out_ch, 3, padding=1)

    def head(self, z: torch.Tensor) -> torch.Tensor:
        """The part at latent resolution, with the image-wide attention: ``conv_in`` and ``mid``."""
        return self.mid(self.conv_in(z))

    def tail(self, x: torch.Tensor) -> torch.Tensor:
        """The up-sampling path: convolutions and group norms only."""
        for level in reversed(self.up):
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.tail(self.head(z))


class AutoencoderKL(nn.Module):
    """LDM's KL autoencoder: ``encode`` gives the latent distribution's mean (or a sample), ``decode``
    maps latents back to images. Both work on ``[B, C, H, W]`` tensors in -1..1 (no scale factor)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    def moments(self, x: torch.Tensor) -> torch.Tensor:
        """Mean and log-variance of the latent distribution, concatenated on the channel axis."""
        return self.quant_conv(self.encoder(x))

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False) -> torch.Tensor:
        """The distribution's mean, or a sample from it when ``sample`` is true."""
        return moments_to_latent(self.moments(x), generator=generator, sample=sample)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def moments_to_latent(moments: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False) -> torch.Tensor:
    """Mean of the diagonal Gaussian, or ``mean + std · ε`` (ε from ``generator``, drawn on the CPU)."""
    mean, logvar = moments.chunk(2, dim=1)
    if not sample:
        return mean
    std = torch.exp(0.5 * logvar.clamp(-30.0, 20.0))
    eps = torch.randn(mean.shape, generator=generator, dtype=torch.float32, device="cpu")
    return mean + std * eps.to(mean.device, mean.dtype)


# ----------------------------------------------------------------------------------------------
# Tiling
#
# Convolutions see a bounded neighbourhood, so tiles that overlap by more than that neighbourhood
# reproduce them. Group norm and the mid attention see the whole image, and a VAE (a random one
# most of all) is sensitive to them: tiles normalised with their own statistics drift visibly apart,
# and even 1% errors in the statistics compound through the ~25 norms of the decoder. So:
#  - the mid block with its attention runs untiled at latent resolution (cheap);
#  - the tiles run in lock-step, one thread per tile taking turns: at each group norm every tile
#    adds the statistics of its "core" (the tiles' cores partition the image, and lie far enough
#    from the tile edges that zero padding has not reached them), and all tiles normalise with the
#    image-wide totals. The result equals the untiled one up to float rounding.
# The price: a paused tile keeps its activations, so all tiles' activations are alive at once —
# about the untiled peak (one tile computes at a time, so per-op temporaries stay tile-sized).
# ``shared_norms=False`` is ComfyUI's way instead: tiles one after the other, each normalised
# with its own statistics, memory bounded by the tile size, colours that drift between tiles.


class _Lockstep:
    """Turn-taking between tile threads with image-wide group-norm statistics."""

    def __init__(self, n_tiles: int):
        self.n = n_tiles
        self.turn = 0  # (norm call index) · n + tile index of the thread allowed to run
        self.cond = threading.Condition()
        self.sums: dict[int, list] = {}
        self.stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.error: BaseException | None = None

    def _wait_for(self, turn: int) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == turn or self.error is not None)
            if self.error is not None:
                raise _Aborted

    def _pass_turn(self, finish_call: int | None = None) -> None:
        with self.cond:
            if finish_call is not None and self.turn % self.n == self.n - 1:
                s, s2, n = self.sums.pop(finish_call)
                mean = s / n
                self.stats[finish_call] = (mean, (s2 / n - mean * mean).clamp_min(0))
            self.turn += 1
            self.cond.notify_all()

    def run(self, fn, tiles: list[torch.Tensor], cores: list[tuple[int, int, int, int]]) -> list[torch.Tensor]:
        results: list[torch.Tensor | None] = [None] * len(tiles)
        grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

        def work(j: int) -> None:
            _NORM_SYNC.set(_TileNorms(self, j, cores[j]))
            try:
                self._wait_for(j)
                with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                    results[j] = fn(tiles[j])
                self._pass_turn()
            except _Aborted:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                with self.cond:
                    self.error = self.error or exc
                    self.cond.notify_all()

        threads = [threading.Thread(target=work, args=(j,), daemon=True) for j in range(len(tiles))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.error is not None:
            raise self.error
        return results  # type: ignore[return-value]


class _Aborted(Exception):
    pass


@dataclass
class _TileNorms:
    """One tile's view of the lock-step: its index, its core (y0, y1, x0, x1 as fractions' numerators
    over the tile's own height/width, in tile input pixels) and how many norms it has passed."""

    shared: _Lockstep
    index: int
    core: tuple[int, int, int, int, int, int]  # y0, y1, tile_h, x0, x1, tile_w
    calls: int = 0

    def normalize(self, x: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
        i, self.calls = self.calls, self.calls + 1
        b, c, h, w = x.shape
        g = norm.num_groups
        y0, y1, th, x0, x1, tw = self.core
        core = x[:, :, y0 * h // th: y1 * h // th, x0 * w // tw: x1 * w // tw].reshape(b, g, -1)
        var, mean = torch.var_mean(core.float(), dim=-1, correction=0)
        n = core.shape[-1]
        mean, var = mean.double(), var.double()
        sums = [mean * n, (var + mean * mean) * n, n]
        shared = self.shared
        with shared.cond:
            if i in shared.sums:
                shared.sums[i] = [a + b_ for a, b_ in zip(shared.sums[i], sums)]
            else:
                shared.sums[i] = sums
        shared._pass_turn(finish_call=i)
        shared._wait_for((i + 1) * shared.n + self.index)
        mean, var = shared.stats[i]
        xg = x.reshape(b, g, -1)
        xg = (xg - mean[..., None].to(x.dtype)) * torch.rsqrt(var[..., None] + norm.eps).to(x.dtype)
        return xg.reshape(b, c, h, w) * norm.weight[:, None, None] + norm.bias[:, None, None]


_NORM_SYNC: ContextVar[_TileNorms | None] = ContextVar("vae_norm_sync", default=None)


def _tiles(size: int, tile: int, overlap: int, align: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis as (start, end, core_start, core_end); the cores partition [0, size)."""
    if size <= tile:
        return [(0, size, 0, size)]
    starts = list(range(0, size - tile, tile - overlap)) + [size - tile]
    ends = [s + tile for s in starts]
    cuts = [0] + [align * round((starts[i + 1] + ends[i]) / 2 / align) for i in range(len(starts) - 1)] + [size]
    return [(s, e, cuts[i], cuts[i + 1]) for i, (s, e) in enumerate(zip(starts, ends))]


def _ramp(n_out: int, before: float | None, after: float | None, device) -> torch.Tensor:
    """Blend weights along one axis of a tile of ``n_out`` output pixels.

    ``before``/``after`` are the overlaps (in output pixels) with the neighbouring tiles, or None at
    the image border. In an overlap of width O, the O/4 pixels at the tile's edge get weight 0 (they
    see the tile's zero padding) and the next O/2 ramp linearly to 1; two tiles' ramps sum to 1.
    """
    d = torch.arange(n_out, device=device, dtype=torch.float32) + 0.5
    w = torch.ones(n_out, device=device, dtype=torch.float32)
    if before:
        w = w * ((d - before / 4) / (before / 2)).clamp(0, 1)
    if after:
        w = w * ((n_out - d - after / 4) / (after / 2)).clamp(0, 1)
    return w


def _neighbour_overlaps(tiles, i: int, scale: float) -> tuple[float | None, float | None]:
    start, end = tiles[i][:2]
    before = (tiles[i - 1][1] - start) * scale if i > 0 else None
    after = (end - tiles[i + 1][0]) * scale if i + 1 < len(tiles) else None
    return before, after


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int,
    overlap: int,
    scale: float,
    align: int = 1,
    shared_norms: bool = True,
) -> torch.Tensor:
    """Apply ``fn`` tile by tile to ``x`` ``[B, C, H, W]`` and blend the tiles without seams.

    ``fn`` maps a ``[B, C, h, w]`` tile to ``[B, C', h·scale, w·scale]`` with convolutions and this
    module's ``GroupNorm`` layers (no attention). Tiles are ``tile`` input pixels square, overlapping
    by ``overlap``, starting on multiples of ``align``. With ``shared_norms`` the group norms use
    image-wide statistics (exact; see above); without, each tile normalises itself (as ComfyUI's
    tiled VAE does: less memory held, visibly different colours on sensitive models). Returns float32.
    """
    b, _, h, w = x.shape
    if tile % align or overlap % align or h % align or w % align:
        raise ValueError(f"tile {tile}, overlap {overlap} and size {h}×{w} must be multiples of {align}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap {overlap} must be ≥ 0 and smaller than the tile size {tile}")
    rows, cols = _tiles(h, tile, overlap, align), _tiles(w, tile, overlap, align)
    grid = [(r, c) for r in rows for c in cols]
    inputs = [x[:, :, y0:y1, x0:x1] for (y0, y1, _, _), (x0, x1, _, _) in grid]
    if shared_norms and len(grid) > 1:
        cores = [(cy0 - y0, cy1 - y0, y1 - y0, cx0 - x0, cx1 - x0, x1 - x0)
                 for (y0, y1, cy0, cy1), (x0, x1, cx0, cx1) in grid]
        pieces = _Lockstep(len(grid)).run(fn, inputs, cores)
    else:
        pieces = [fn(t) for t in inputs]
    out = total = None
    for i, piece in enumerate(pieces):
        piece = piece.float()
        if out is None:
            out = piece.new_zeros(b, piece.shape[1], round(h * scale), round(w * scale))
            total = piece.new_zeros(1, 1, out.shape[2], out.shape[3])
        ri, ci = divmod(i, len(cols))
        wy = _ramp(piece.shape[2], *_neighbour_overlaps(rows, ri, scale), piece.device)
        wx = _ramp(piece.shape[3], *_neighbour_overlaps(cols, ci, scale), piece.device)
        weight = wy[:, None] * wx[None, :]
        oy, ox = round(rows[ri][0] * scale), round(cols[ci][0] * scale)
        out[:, :, oy:oy + piece.shape[2], ox:ox + piece.shape[3]] += piece * weight
        total[:, :, oy:oy + piece.shape[2], ox:ox + piece.shape[3]] += weight
        pieces[i] = None  # type: ignore[call-overload]
    return out / total


# ----------------------------------------------------------------------------------------------
# The wrapper the nodes use


class VAE:
    """An AutoencoderKL with the node graph's conventions.

    ``encode(images)``: IMAGE ``[B, H, W, C]`` in 0..1 → raw latents ``[B, 4, H/8, W/8]`` (float32, CPU).
    ``decode(latents)``: raw latents → IMAGE in 0..1 (float32, CPU). Inputs are moved to the module's
    device and dtype; ``family`` is the checkpoint family it came with (None for a standalone file).
    """

    def __init__(self, model: AutoencoderKL, family: str | None = None):
        self.model = model
        self.family = family

    @property
    def config(self) -> VAEConfig:
        return self.model.config

    @property
    def downscale(self) -> int:
        return self.model.config.downscale

    def _param(self) -> torch.Tensor:
        return next(self.model.parameters())

    def _images_to_input(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"expected an IMAGE [B, H, W, C], got shape {tuple(images.shape)}")
        f = self.downscale
        h, w = images.shape[1], images.shape[2]
        if h % f or w % f:
            raise ValueError(f"image size {w}×{h} must be a multiple of {f} to encode")
        images = images[..., : self.config.in_channels]
        p = self._param()
        return (images.movedim(-1, 1).to(p.device, p.dtype) * 2.0 - 1.0)

    def _latents_to_input(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.dim() != 4 or latents.shape[1] != self.config.embed_dim:
            raise ValueError(
                f"expected latents [B, {self.config.embed_dim}, h, w], got shape {tuple(latents.shape)}"
            )
        p = self._param()
        return latents.to(p.device, p.dtype)

    @staticmethod
    def _to_images(x: torch.Tensor) -> torch.Tensor:
        return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1).cpu()

    @torch.inference_mode()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False) -> torch.Tensor:
        x = self._images_to_input(images)
        return self.model.encode(x, generator=generator, sample=sample).float().cpu()

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self._to_images(self.model.decode(self._latents_to_input(latents)))

    @torch.inference_mode()
    def decode_tiled(self, latents: torch.Tensor, tile: int = 64, overlap: int = 16, shared_norms: bool = True) -> torch.Tensor:
        """Decode in tiles of ``tile`` latent pixels overlapping by ``overlap`` (both in latent pixels).

        The mid block (with its image-wide attention) runs untiled at latent resolution; the
        up-sampling path runs in tiles. With ``shared_norms`` (default) the tiles share image-wide
        group-norm statistics and the image equals the untiled one (≤ 0.4/255 for the full SD VAE
        with overlap ≥ 16), but all tiles' activations stay alive: peak memory is about the
        untiled one (measured at 768²: 1.4× it). ``shared_norms=False`` is the memory saver
        (ComfyUI's tiling: 0.5× the untiled peak at 768²) at the price of colour drift between
        tiles. Keep ``overlap`` ≥ 16: the statistics come from tile cores ≥ overlap/2 from the
        tile edges, which zero padding must not have reached.
        """
        dec = self.model.decoder
        h = dec.head(self.model.post_quant_conv(self._latents_to_input(latents)))
        out = tiled_apply(dec.tail, h, tile, overlap, self.downscale, shared_norms=shared_norms)
        return self._to_images(out)

    @torch.inference_mode()
    def encode_tiled(
        self,
        images: torch.Tensor,
        tile: int = 512,
        overlap: int = 128,
        generator: torch.Generator | None = None,
        sample: bool = False,
        shared_norms: bool = True,
    ) -> torch.Tensor:
        """Encode in tiles of ``tile`` image pixels overlapping by ``overlap`` (multiples of 8).

        The down-sampling path runs in tiles; the mid block with its attention runs untiled on the
        result at latent resolution. ``shared_norms`` as in ``decode_tiled`` (exact but no memory
        saving, or ComfyUI's per-tile statistics); keep ``overlap`` ≥ 128 pixels.
        """
        x = self._images_to_input(images)
        f = self.downscale
        enc = self.model.encoder
        h = tiled_apply(enc.body, x, tile, overlap, 1.0 / f, align=f, shared_norms=shared_norms)
        moments = self.model.quant_conv(enc.head(h.to(x.dtype)))
        return moments_to_latent(moments, generator=generator, sample=sample).float().cpu()

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values())


# ----------------------------------------------------------------------------------------------
# State dicts from files


def _diffusers_to_ldm(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a diffusers-format ``AutoencoderKL`` state dict to the LDM layout."""
    levels = _count_indices(sd, r"encoder\.down_blocks\.(\d+)\.")
    out: dict[str, torch.Tensor] = {}
    simple = [
        ("conv_norm_out.", "norm_out."),
        ("mid_block.resnets.0.", "mid.block_1."),
        ("mid_block.resnets.1.", "mid.block_2."),
        ("mid_block.attentions.0.", "mid.attn_1."),
    ]
    attn = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out.",
            "query.": "q.", "key.": "k.", "value.": "v.", "proj_attn.": "proj_out."}
    for key, value in sd.items():
        k = key
        for old, new in simple:
            k = k.replace(old, new)
        if ".mid.attn_1." in k:
            for old, new in attn.items():
                k = k.replace(".mid.attn_1." + old, ".mid.attn_1." + new)
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", k)
        k = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", k)
        k = re.sub(
            r"decoder\.up_blocks\.(\d+)\.resnets\.",
            lambda m: f"decoder.up.{levels - 1 - int(m.group(1))}.block.", k,
        )
        k = re.sub(
            r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
            lambda m: f"decoder.up.{levels - 1 - int(m.group(1))}.upsample.", k,
        )
        k = k.replace("conv_shortcut.", "nin_shortcut.")
        out[k] = value
    return out


def is_diffusers_vae(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("encoder.down_blocks.") for k in sd)


def vae_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The LDM-layout VAE weights of a checkpoint or standalone VAE file's tensors.

    Accepts keys under ``first_stage_model.`` or ``vae.``, bare LDM keys (``encoder.conv_in.weight``),
    or diffusers-format keys (``encoder.down_blocks.0.resnets.0.conv1.weight``), which are renamed.
    """
    for prefix in ("first_stage_model.", "vae."):
        if any(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            break
    else:
        sd = {k: v for k, v in sd.items() if k.startswith(("encoder.", "decoder.", "quant_conv.", "post_quant_conv."))}
    return _diffusers_to_ldm(sd) if is_diffusers_vae(sd) else dict(sd)


def build_vae(
    sd: Mapping[str, torch.Tensor],
    family: str | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> VAE:
    """Build a ``VAE`` from an LDM-layout state dict without allocating weights twice.

    The module is created on the meta device and takes the given tensors as its parameters
    (converted only when ``dtype``/``device`` differ from theirs). Raises ``ValueError`` naming the
    missing/unexpected keys if the state dict does not match the architecture read from it.
    """
    cfg = config_from_state_dict(sd)
    model, missing, unexpected = fill_module(lambda: AutoencoderKL(cfg), dict(sd), dtype, device)
    if missing or unexpected:
        raise ValueError(_key_mismatch_message("VAE", missing, unexpected))
    return VAE(model, family)


def _key_mismatch_message(what: str, missing, unexpected, shown: int = 5) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {', '.join(missing[:shown])}" + (", …" if len(missing) > shown else ""))
    if unexpected:
        parts.append(
            f"{len(unexpected)} unexpected key(s): {', '.join(unexpected[:shown])}" + (", …" if len(unexpected) > shown else "")
        )
    return f"{what} weights do not match its architecture: " + "; ".join(parts)
