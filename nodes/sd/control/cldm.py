"""The ControlNet model (lllyasviel's ``cldm.ControlNet``) in the original single-file key layout.

A ControlNet is a copy of the U-Net's encoder (``time_embed``, ``label_emb`` for SDXL,
``input_blocks``, ``middle_block``) plus

- ``input_hint_block``: eight 3x3 convs with SiLU between them (indices 0, 2, …, 14) that take the
  hint image at 8× the latent size down to the latent size and ``model_channels`` wide (strides 2 at
  indices 4, 8 and 12); its output is added to the first input block's output;
- ``zero_convs.N.0``: a 1x1 conv per input block, whose outputs are the residuals added to the
  U-Net's skip connections;
- ``middle_block_out.0``: a 1x1 conv after the middle block, the residual added after the U-Net's
  middle block.

``forward`` returns ``{"output": [one residual per input block], "middle": [one]}``: the format
:meth:`nodes.sd.unet.UNetModel.forward` takes as ``control``.

A union ControlNet (xinsir's ControlNet-Union/ProMax; ComfyUI's semantics) adds ``task_embedding``
(one vector per hint type), ``control_add_embedding`` (the one-hot hint type, each entry embedded
sinusoidally in 256 dims, through linear/SiLU/linear, added to the time embedding),
``transformer_layes`` (one pre-norm attention + QuickGELU MLP block over the hint's token: its
channel mean plus its type's embedding) and ``spatial_ch_projs`` (the token back to a per-channel
offset added to the hint features). With no type given ("auto") the hint goes the plain way.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nodes.sd.unet import Conv2d, UNetConfig, encoder_blocks, timestep_embedding

# (out channels, stride) of the hint convs after the first; the last goes to model_channels
HINT_CONVS = ((16, 1), (32, 2), (32, 1), (96, 2), (96, 1), (256, 2))


@dataclass(frozen=True)
class ControlNetConfig:
    """A ControlNet: the U-Net config it copies the encoder of, and the hint image's channels."""

    unet: UNetConfig
    hint_channels: int = 3
    union_types: int = 0  # hint types of a union ControlNet (0: not a union one)


UNION_HEADS = 8
UNION_TYPE_DIM = 256


class _UnionAttention(nn.Module):
    """Multi-head self-attention with one packed q/k/v projection (``in_proj_weight``), as the union
    files store it."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)  # as nn.MultiheadAttention (files bring their own)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        b, n, c = q.shape
        q, k, v = (t.reshape(b, n, self.heads, c // self.heads).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        return self.out_proj(out)


class _UnionBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attn = _UnionAttention(dim, UNION_HEADS)
        self.ln_1 = nn.LayerNorm(dim)
        self.mlp = nn.ModuleDict({"c_fc": nn.Linear(dim, dim * 4), "c_proj": nn.Linear(dim * 4, dim)})
        self.ln_2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        h = self.mlp["c_fc"](self.ln_2(x))
        return x + self.mlp["c_proj"](h * torch.sigmoid(1.702 * h))  # QuickGELU


class ControlNetModel(nn.Module):
    """``forward(x, hint, timesteps, context, y)`` → residuals for the U-Net (see the module doc)."""

    def __init__(self, config: ControlNetConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config.unet
        mc, emb_dim = cfg.model_channels, cfg.model_channels * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = None
        if cfg.adm_in_channels:
            self.label_emb = nn.Sequential(
                nn.Sequential(nn.Linear(cfg.adm_in_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)))
        hint: list[nn.Module] = [Conv2d(config.hint_channels, 16, 3, padding=1)]
        ch = 16
        for out, stride in HINT_CONVS:
            hint += [nn.SiLU(), Conv2d(ch, out, 3, padding=1, stride=stride)]
            ch = out
        hint += [nn.SiLU(), Conv2d(ch, mc, 3, padding=1)]
        self.input_hint_block = nn.Sequential(*hint)
        self.input_blocks, widths, self.middle_block = encoder_blocks(cfg)
        self.zero_convs = nn.ModuleList(nn.Sequential(nn.Conv2d(w, w, 1)) for w in widths)
        self.middle_block_out = nn.Sequential(nn.Conv2d(widths[-1], widths[-1], 1))
        if config.union_types:
            n = config.union_types
            self.task_embedding = nn.Parameter(torch.randn(n, mc) * mc ** 0.5)  # as diffusers initialises it
            self.transformer_layes = nn.Sequential(_UnionBlock(mc))
            self.spatial_ch_projs = nn.Linear(mc, mc)
            self.control_add_embedding = nn.ModuleDict({"linear_1": nn.Linear(n * UNION_TYPE_DIM, emb_dim),
                                                        "linear_2": nn.Linear(emb_dim, emb_dim)})

    @property
    def dtype(self) -> torch.dtype:
        return self.zero_convs[0][0].weight.dtype


    def _union_type_embedding(self, control_type: list[int], batch: int, dtype: torch.dtype) -> torch.Tensor:
        one_hot = torch.zeros(self.config.union_types, device=self.task_embedding.device)
        one_hot[list(control_type)] = 1.0
        flat = timestep_embedding(one_hot, UNION_TYPE_DIM).to(dtype).reshape(1, -1)
        embed = self.control_add_embedding
        return embed["linear_2"](F.silu(embed["linear_1"](flat))).expand(batch, -1)

    def _union_hint(self, hint: torch.Tensor, control_type: list[int]) -> torch.Tensor:
        features = self.input_hint_block(hint)
        token = features.mean(dim=(2, 3)) + self.task_embedding[control_type[0]]
        token = self.transformer_layes(token.unsqueeze(1))[:, 0]
        return features + self.spatial_ch_projs(token)[:, :, None, None]

    def forward(self, x: torch.Tensor, hint: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None,
                y: torch.Tensor | None = None, control_type: list[int] = ()) -> dict[str, list[torch.Tensor]]:
        """``x`` the U-Net's input (already scaled), ``hint`` [B, C, 8H, 8W] in 0..1, ``timesteps`` [B];
        ``control_type`` the hint type(s) of a union ControlNet (empty: auto)."""
        cfg = self.config.unet
        dtype = self.dtype
        emb = self.time_embed(timestep_embedding(timesteps, cfg.model_channels).to(dtype))
        if self.config.union_types:
            emb = emb + self._union_type_embedding(control_type, emb.shape[0], dtype)
        if self.label_emb is not None:
            if y is None:
                raise ValueError("this ControlNet is for SDXL and needs the model's y (size/pooled conditioning)")
            emb = emb + self.label_emb(y.to(dtype))
        emb_silu = F.silu(emb)
        context = None if context is None else context.to(dtype)
        h = x.to(dtype)
        if self.config.union_types and control_type:
            guided = self._union_hint(hint.to(dtype), list(control_type))
        else:
            guided = self.input_hint_block(hint.to(dtype))
        outputs = []
        for i, (block, zero) in enumerate(zip(self.input_blocks, self.zero_convs)):
            h = block(h, emb_silu, context)
            if i == 0:
                h = h + guided
            outputs.append(zero(h))
        h = self.middle_block(h, emb_silu, context)
        return {"output": outputs, "middle": [self.middle_block_out(h)]}
