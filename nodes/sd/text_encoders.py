"""CLIP text encoders of Stable Diffusion 1.x, 2.x and SDXL, in the original single-file key layouts.

Two transformer layouts hold the same causal pre-LayerNorm text transformer:

- :class:`ClipTextModel` — OpenAI CLIP ViT-L/14 as transformers stores it (SD1's
  ``cond_stage_model.transformer.text_model.``, SDXL's ``conditioner.embedders.0.transformer.text_model.``):
  ``embeddings.token_embedding``, ``encoder.layers.N.self_attn.{q,k,v,out}_proj``, ``mlp.fc1/fc2``,
  ``final_layer_norm``; quick-GELU; no projection in SD checkpoints.
- :class:`OpenClipTextModel` — OpenCLIP ViT-H/14 (SD2, ``cond_stage_model.model.``) and ViT-bigG/14
  (SDXL ``conditioner.embedders.1.model.``, refiner ``conditioner.embedders.0.model.``):
  ``token_embedding``, ``positional_embedding``, ``transformer.resblocks.N.attn.in_proj_*``,
  ``mlp.c_fc/c_proj``, ``ln_final``, ``text_projection``; exact GELU.

What each family feeds the U-Net (ComfyUI's choices, which this module reproduces):

======== ================================ ============================================ ==============
family   encoder (pad token)              context (``layer``, final LayerNorm?)        pooled
======== ================================ ============================================ ==============
sd1      CLIP-L (49407)                   last layer, normed (768)                     final-normed EOS state
sd2      OpenCLIP-H (0)                   penultimate, normed (1024)                   projected EOS state
sdxl     CLIP-L (49407) + bigG (0)        penultimate, *not* normed, concatenated 2048 bigG projected
refiner  bigG (0)                         penultimate, not normed (1280)               bigG projected
======== ================================ ============================================ ==============

The EOS state is the final-normed output of the *last* layer at the first highest token id (the
end token), whatever layer the context comes from. diffusers' SD2 text encoder drops the last
layer and applies the final norm, which gives the same context; its pooled output would differ
(it comes from the 23-layer stack), but the SD2 U-Net never reads a pooled output.

"CLIP skip" is ComfyUI's ``CLIPSetLastLayer.stop_at_clip_layer``: ``-1`` the last layer, ``-2`` the
penultimate, …; it applies to every encoder of the family and keeps each encoder's final-norm
choice. An index beyond the depth falls back to the default "last layer, normed", as in ComfyUI.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

from nodegraph.errors import NodeError

import torch
import torch.nn.functional as F
from torch import nn

from nodes.sd.attention import attention
from nodes.sd.build import assign, convert, on_meta
from nodes.sd.embeddings import EmbeddingLibrary
from nodes.sd.mapped import Mapping as FileMapping
from nodes.sd.tokenizer import (CONTEXT_LENGTH, EMBEDDING_PREFIX, END_TOKEN, START_TOKEN, VOCAB_SIZE, Token,
                                get_tokenizer)

Layout = Literal["clip", "open_clip"]
Windows = list[list[tuple[Token, float]]]
LN_EPS = 1e-5
_TABLE = {"clip": "embeddings.token_embedding.weight", "open_clip": "token_embedding.weight"}
HEAD_WIDTH = 64  # every CLIP text model uses 64-channel heads


# --------------------------------------------------------------------------------------------- config

@dataclass(frozen=True)
class TextEncoderConfig:
    """Architecture of one CLIP text transformer."""

    layout: Layout
    width: int
    layers: int
    heads: int
    mlp_width: int
    vocab_size: int = VOCAB_SIZE
    context_length: int = CONTEXT_LENGTH
    projection_dim: int | None = None  # OpenCLIP's text_projection output width
    activation: Literal["quick_gelu", "gelu"] = "quick_gelu"


_FULL = {
    "clip_l": TextEncoderConfig("clip", 768, 12, 12, 3072),
    "open_clip_h": TextEncoderConfig("open_clip", 1024, 24, 16, 4096, projection_dim=1024, activation="gelu"),
    "open_clip_bigg": TextEncoderConfig("open_clip", 1280, 32, 20, 5120, projection_dim=1280, activation="gelu"),
}


def full_config(kind: str) -> TextEncoderConfig:
    """Real sizes: ``"clip_l"`` (SD1, SDXL), ``"open_clip_h"`` (SD2), ``"open_clip_bigg"`` (SDXL, refiner)."""
    if kind not in _FULL:
        raise ValueError(f"unknown text encoder kind {kind!r}; expected one of {sorted(_FULL)}")
    return _FULL[kind]


def tiny_config(kind: str, **overrides) -> TextEncoderConfig:
    """A few-layer, narrow encoder of the same kind, for tests.

    The vocabulary stays 49408 and the context 77, so the real tokenizer drives it. Defaults:
    width 32 (one head: heads are ``width // 64`` and at least 1, as :func:`config_from_state_dict`
    reads them back), 3 layers, MLP 4×width, projection ``width + 8`` for OpenCLIP kinds.
    """
    full = full_config(kind)
    width = overrides.pop("width", 32)
    tiny = replace(full, width=width, layers=3, heads=_heads(width), mlp_width=4 * width,
                   projection_dim=None if full.projection_dim is None else width + 8)
    return replace(tiny, **overrides)


def _heads(width: int) -> int:
    return max(1, width // HEAD_WIDTH)


def config_from_state_dict(sd: Mapping[str, torch.Tensor]) -> TextEncoderConfig:
    """Read the architecture from a text-encoder state dict whose component prefix is stripped."""
    if "embeddings.token_embedding.weight" in sd:
        layout, table, layer_key = "clip", "embeddings.token_embedding.weight", "encoder.layers.{}.mlp.fc1.weight"
        positions = sd["embeddings.position_embedding.weight"]
    elif "token_embedding.weight" in sd:
        layout, table, layer_key = "open_clip", "token_embedding.weight", "transformer.resblocks.{}.mlp.c_fc.weight"
        positions = sd["positional_embedding"]
    else:
        raise ValueError("not a CLIP text encoder: found neither 'embeddings.token_embedding.weight' "
                         f"(CLIP-L layout) nor 'token_embedding.weight' (OpenCLIP layout) among {len(sd)} keys")
    vocab, width = sd[table].shape
    layers = 0
    while layer_key.format(layers) in sd:
        layers += 1
    if layers == 0:
        raise ValueError(f"CLIP text encoder without layers: no key {layer_key.format(0)!r}")
    mlp_width = sd[layer_key.format(0)].shape[0]
    if layout == "clip":
        return TextEncoderConfig("clip", width, layers, _heads(width), mlp_width, vocab, positions.shape[0])
    projection = sd.get("text_projection")
    return TextEncoderConfig("open_clip", width, layers, _heads(width), mlp_width, vocab, positions.shape[0],
                             projection_dim=None if projection is None else projection.shape[1], activation="gelu")


# --------------------------------------------------------------------------------------------- models

def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's sigmoid approximation of GELU."""
    return x * torch.sigmoid(1.702 * x)


_ACTIVATIONS = {"quick_gelu": quick_gelu, "gelu": F.gelu}


class _TextTransformer(nn.Module):
    """Forward pass shared by both layouts; subclasses supply ``embed``, ``blocks``, ``final_norm``, ``project``."""

    config: TextEncoderConfig

    @property
    def token_embedding_weight(self) -> torch.Tensor:
        """The token table (its device and dtype are the model's)."""
        raise NotImplementedError

    def forward(self, tokens: torch.Tensor, layer: int | None = None, norm_hidden: bool = True,
                pooled: Literal["projected", "plain"] | None = None, token_embeds: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hidden states ``[B, T, width]`` and, if asked, the pooled EOS state ``[B, P]``.

        ``token_embeds`` ``[B, T, width]``, when given, are the input vectors instead of the token
        table's rows for ``tokens`` (textual-inversion embeddings); ``tokens`` still locate the end
        token for the pooled state.

        ``layer`` None is the last layer through the final LayerNorm; an int picks the output of
        that block (negative from the end, ComfyUI's convention), final-normed when ``norm_hidden``.
        The pooled state is the final-normed last layer at each row's highest token id (the end
        token), ``"projected"`` through ``text_projection`` when the model has one.
        """
        blocks = self.blocks
        n = len(blocks)
        index = None if layer is None or not -n <= layer < n else layer % n
        stop = n if pooled is not None or index is None else index + 1
        x = self.embed(tokens, token_embeds)
        hidden = None
        for i in range(stop):
            x = blocks[i](x)
            if i == index:
                hidden = self.final_norm(x) if norm_hidden else x
        last = self.final_norm(x) if stop == n else None
        if hidden is None:
            hidden = last
        if pooled is None:
            return hidden, None
        eos = last[torch.arange(last.shape[0], device=last.device), tokens.argmax(dim=-1)]
        return hidden, self.project(eos) if pooled == "projected" else eos


class _ClipAttention(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        w = config.width
        self.heads = config.heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(w, w) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = attention(self.q_proj(x), self.k_proj(x), self.v_proj(x), self.heads, is_causal=True)
        return self.out_proj(out)


class _ClipMlp(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.width, config.mlp_width)
        self.fc2 = nn.Linear(config.mlp_width, config.width)
        self.act = _ACTIVATIONS[config.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _ClipLayer(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.width, eps=LN_EPS)
        self.self_attn = _ClipAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.width, eps=LN_EPS)
        self.mlp = _ClipMlp(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class _ClipEmbeddings(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = nn.Embedding(config.context_length, config.width)


class _ClipEncoder(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.layers = nn.ModuleList(_ClipLayer(config) for _ in range(config.layers))


class ClipTextModel(_TextTransformer):
    """OpenAI CLIP text transformer with transformers' key names (``embeddings.``, ``encoder.layers.N.``)."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.config = config
        self.embeddings = _ClipEmbeddings(config)
        self.encoder = _ClipEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.width, eps=LN_EPS)

    @property
    def token_embedding_weight(self) -> torch.Tensor:
        return self.embeddings.token_embedding.weight

    def embed(self, tokens: torch.Tensor, token_embeds: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embeddings.token_embedding(tokens) if token_embeds is None else token_embeds
        return x + self.embeddings.position_embedding.weight[:tokens.shape[1]]

    @property
    def blocks(self) -> nn.ModuleList:
        return self.encoder.layers

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer_norm(x)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled  # SD checkpoints carry no projection for CLIP-L


class _OpenClipAttention(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        w = config.width
        self.heads = config.heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * w, w))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * w))
        self.out_proj = nn.Linear(w, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        return self.out_proj(attention(q, k, v, self.heads, is_causal=True))


class _OpenClipMlp(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.width, config.mlp_width)
        self.c_proj = nn.Linear(config.mlp_width, config.width)
        self.act = _ACTIVATIONS[config.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class _OpenClipBlock(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width, eps=LN_EPS)
        self.attn = _OpenClipAttention(config)
        self.ln_2 = nn.LayerNorm(config.width, eps=LN_EPS)
        self.mlp = _OpenClipMlp(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class _OpenClipTransformer(nn.Module):
    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.resblocks = nn.ModuleList(_OpenClipBlock(config) for _ in range(config.layers))


class OpenClipTextModel(_TextTransformer):
    """OpenCLIP text transformer with open_clip's key names (``transformer.resblocks.N.``, ``ln_final``)."""

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.width))
        self.transformer = _OpenClipTransformer(config)
        self.ln_final = nn.LayerNorm(config.width, eps=LN_EPS)
        if config.projection_dim is not None:
            self.text_projection = nn.Parameter(torch.empty(config.width, config.projection_dim))

    @property
    def token_embedding_weight(self) -> torch.Tensor:
        return self.token_embedding.weight

    def embed(self, tokens: torch.Tensor, token_embeds: torch.Tensor | None = None) -> torch.Tensor:
        x = self.token_embedding(tokens) if token_embeds is None else token_embeds
        return x + self.positional_embedding[:tokens.shape[1]]

    @property
    def blocks(self) -> nn.ModuleList:
        return self.transformer.resblocks

    def final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln_final(x)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.config.projection_dim is None:
            return pooled
        return pooled @ self.text_projection


def build_model(config: TextEncoderConfig) -> ClipTextModel | OpenClipTextModel:
    """An encoder of ``config`` with uninitialised weights (fill it with ``load_state_dict``)."""
    return ClipTextModel(config) if config.layout == "clip" else OpenClipTextModel(config)


# ------------------------------------------------------------------------------------------ families

@dataclass(frozen=True)
class EncoderSlot:
    """One text encoder of a family: where its weights live and how the family reads its output."""

    name: str  # ComfyUI's name for it: "l", "h" or "g"
    prefix: str  # single-file key prefix
    kind: str  # full_config kind
    pad_token: int
    layer: int | None  # context layer by default (None: last layer through the final norm)
    norm_hidden: bool  # whether a chosen layer goes through the final norm
    pooled: Literal["projected", "plain"] | None


FAMILIES: dict[str, tuple[EncoderSlot, ...]] = {
    "sd1": (EncoderSlot("l", "cond_stage_model.transformer.text_model.", "clip_l", END_TOKEN, None, True, "plain"),),
    "sd2": (EncoderSlot("h", "cond_stage_model.model.", "open_clip_h", 0, -2, True, "projected"),),
    "sdxl": (
        EncoderSlot("l", "conditioner.embedders.0.transformer.text_model.", "clip_l", END_TOKEN, -2, False, None),
        EncoderSlot("g", "conditioner.embedders.1.model.", "open_clip_bigg", 0, -2, False, "projected"),
    ),
    "sdxl_refiner": (EncoderSlot("g", "conditioner.embedders.0.model.", "open_clip_bigg", 0, -2, False, "projected"),),
}

# Keys real checkpoints carry under a text-encoder prefix that no forward pass reads.
IGNORED_KEYS = ("embeddings.position_ids", "logit_scale")
_SD1_LEGACY_PREFIX = "cond_stage_model.transformer."  # SD1 files saved by transformers < 4.x lack "text_model."


def family_slots(family: str) -> tuple[EncoderSlot, ...]:
    """The text encoders of ``family`` ("sd1", "sd2", "sdxl", "sdxl_refiner")."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[family]


# Other spellings of a slot's prefix that real files use: SD2 files saved by Stability's sgm code
# (generative-models) keep OpenCLIP-H under the conditioner's first embedder.
_PREFIX_ALIASES = {"cond_stage_model.model.": ("conditioner.embedders.0.model.",)}


def _prefix_in(slot: EncoderSlot, keys) -> str:
    """The slot's prefix as this checkpoint spells it (SD1's legacy layout has no ``text_model.``;
    SD2 in the sgm layout sits under ``conditioner.embedders.0.model.``)."""
    if any(k.startswith(slot.prefix) for k in keys):
        return slot.prefix
    if slot.prefix.endswith("text_model."):
        legacy = slot.prefix[: -len("text_model.")]
        if legacy == _SD1_LEGACY_PREFIX and f"{legacy}embeddings.token_embedding.weight" in keys:
            return legacy
    for alias in _PREFIX_ALIASES.get(slot.prefix, ()):
        if any(k.startswith(alias) for k in keys):
            return alias
    return slot.prefix


def has_text_encoder(family: str, keys) -> bool:
    """Whether a checkpoint with these keys holds (some of) ``family``'s text encoder weights."""
    keys = set(keys)
    return any(any(k.startswith(_prefix_in(slot, keys)) for k in keys) for slot in family_slots(family))


@dataclass(frozen=True)
class KeyReport:
    """How a checkpoint's keys match a family's text encoders (all lists hold full single-file keys)."""

    expected: list[str]  # what the encoders read
    missing: list[str]  # expected but absent
    unexpected: list[str]  # under a text-encoder prefix, read by nothing and not known-ignorable
    ignored: list[str]  # known extras (position_ids, logit_scale) that are present


def check_keys(family: str, sd: Mapping[str, torch.Tensor]) -> KeyReport:
    """Compare the keys of a single-file checkpoint ``sd`` with what ``family``'s text encoders need.

    The architecture is read from ``sd`` itself; if an encoder's token embedding is absent its
    expected keys are those of the full-size model. OpenCLIP's ``text_projection`` is required
    where the family pools through it (SD2, SDXL, refiner).
    """
    keys = set(sd.keys())
    expected, ignored, unexpected = [], [], []
    for slot in family_slots(family):
        view = _PrefixView(sd, _prefix_in(slot, keys), keys)
        try:
            config = config_from_state_dict(view)
        except ValueError:
            config = full_config(slot.kind)
        if slot.pooled == "projected" and config.projection_dim is None:
            config = replace(config, projection_dim=config.width)  # the family needs it: report it missing
        names = _parameter_names(config)
        own = set(view)
        expected += sorted(view.prefix + k for k in names)
        ignored += sorted(view.prefix + k for k in own - names if k in IGNORED_KEYS)
        unexpected += sorted(view.prefix + k for k in own - names if k not in IGNORED_KEYS)
    return KeyReport(expected, sorted(set(expected) - keys), unexpected, ignored)


def expected_keys(family: str, sd) -> list[str]:
    """The full single-file keys ``family``'s text encoders read from ``sd`` (see :func:`check_keys`)."""
    return check_keys(family, sd).expected


def _few(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f", … ({len(keys) - n} more)" if len(keys) > n else "")


class TextEncoderKeyError(NodeError, ValueError):
    """A checkpoint's text-encoder weights do not match the architecture they describe."""


# ----------------------------------------------------------------------------------- random weights

def random_state_dict(config: TextEncoderConfig, seed: int = 0, dtype: torch.dtype = torch.float32
                      ) -> dict[str, torch.Tensor]:
    """Random weights for ``config`` in the layout's own key names (prefix stripped), reproducible by seed.

    Scales are CLIP-like (embeddings 0.02, linear weights 1/sqrt(fan-in)), and LayerNorm gains and
    biases are perturbed so that a test notices a norm applied in the wrong place.
    """
    gen = torch.Generator().manual_seed(seed)
    shapes = {k: v.shape for k, v in on_meta(lambda: build_model(config)).state_dict().items()}
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        noise = torch.randn(shape, generator=gen)
        if "norm" in name or "ln_" in name:
            value = noise * 0.1 + (1.0 if name.endswith("weight") else 0.0)
        elif "embedding" in name:
            value = noise * (0.02 if "token" in name else 0.01)
        elif name.endswith("bias"):
            value = noise * 0.02
        else:  # linear weights [out, in] and text_projection [in, out]
            fan_in = shape[0] if name == "text_projection" else shape[-1]
            value = noise * fan_in ** -0.5
        out[name] = value.to(dtype)
    return out


def text_encoder_state_dicts(family: str, tiny: bool = True, seed: int = 0, full: bool = False,
                             dtype: torch.dtype = torch.float32, **tiny_overrides) -> dict[str, torch.Tensor]:
    """Random text-encoder weights of ``family`` under their full single-file keys.

    ``tiny`` (the default) uses :func:`tiny_config` sizes (``tiny_overrides`` are passed on, e.g.
    ``width=64``); ``full=True`` (or ``tiny=False``) the real sizes. Each encoder gets its own seed
    (``seed``, ``seed + 1``), so SDXL's two encoders differ.
    """
    out: dict[str, torch.Tensor] = {}
    for i, slot in enumerate(family_slots(family)):
        config = full_config(slot.kind) if full or not tiny else tiny_config(slot.kind, **tiny_overrides)
        for key, value in random_state_dict(config, seed + i, dtype).items():
            out[slot.prefix + key] = value
    return out


# ------------------------------------------------------------------------------------- the wrapper

class SDTextEncoder:
    """A family's text encoders behind one call: prompt → (cross-attention context, pooled output).

    ``encode`` does what ComfyUI's ``CLIPTextEncode`` does: tokenise into weighted 77-token windows
    (:meth:`tokenize`), run each encoder on all windows at once, apply token weights as
    ``z = (z − z_empty)·w + z_empty`` where ``z_empty`` encodes an empty prompt, concatenate the
    windows along tokens (and SDXL's two encoders along channels), and take the pooled output of the
    first window. Outputs are float32 on the encoders' device.

    ``weight_patches`` (nodes/sd/patches.py's WeightPatch, keyed by slot: "l", "h", "g") apply in place
    while this value encodes, and are undone after: clones sharing the encoders can carry different ones.
    """

    weight_patches: tuple = ()

    def __init__(self, family: str, models: dict[str, _TextTransformer], last_layer: int | None = None,
                 square_brackets: bool = True):
        self.family = family
        self.slots = family_slots(family)
        self.models = models
        self.last_layer = last_layer
        self.square_brackets = square_brackets

    def with_last_layer(self, last_layer: int | None) -> SDTextEncoder:
        """A copy sharing the weights whose context comes from ``last_layer`` (CLIPSetLastLayer's
        ``stop_at_clip_layer``: -1 last, -2 penultimate, …; None restores each encoder's default)."""
        clone = copy.copy(self)
        clone.last_layer = last_layer
        return clone

    def with_weight_patches(self, patches) -> SDTextEncoder:
        """A copy sharing the weights that carries ``patches`` (WeightPatch) after this value's own."""
        clone = copy.copy(self)
        clone.weight_patches = tuple(self.weight_patches) + tuple(patches)
        return clone

    def tokenize(self, text: str, square_brackets: bool | None = None,
                 embeddings: EmbeddingLibrary | None = None) -> dict[str, Windows]:
        """Weighted windows of ``text`` for each encoder, keyed by ComfyUI's names ("l", "h", "g").

        ``square_brackets`` (default: the encoder's setting, True) makes ``[text]`` weigh 1/1.1;
        False reads square brackets as text, exactly as ComfyUI does. With ``embeddings``,
        ``embedding:name`` inserts that embedding's vectors for each encoder (names not found are
        recorded in ``embeddings.missing``); without, the words are plain text.
        """
        brackets = self.square_brackets if square_brackets is None else square_brackets
        tokenizer = get_tokenizer()
        if embeddings is not None and EMBEDDING_PREFIX in text:
            return {slot.name: tokenizer.tokenize_weighted(
                text, slot.pad_token, brackets, missing=embeddings.note_missing,
                embeddings=embeddings.lookup(slot.name, self.models[slot.name].config.width)) for slot in self.slots}
        by_pad: dict[int, Windows] = {}
        for slot in self.slots:
            if slot.pad_token not in by_pad:
                by_pad[slot.pad_token] = tokenizer.tokenize_weighted(text, slot.pad_token, brackets)
        return {slot.name: by_pad[slot.pad_token] for slot in self.slots}

    def encode(self, text: str, square_brackets: bool | None = None, embeddings: EmbeddingLibrary | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(context [1, 77·windows, C], pooled [1, P] or None)`` for ``text`` (see :meth:`tokenize`)."""
        return self.encode_tokens(self.tokenize(text, square_brackets, embeddings))

    def encode_tokens(self, tokens: dict[str, Windows]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encode what :meth:`tokenize` returned (with this value's weight patches applied meanwhile)."""
        from .patches import weights_applied

        with weights_applied(self.models, self.weight_patches):
            return self._encode_tokens(tokens)

    @torch.inference_mode()
    def _encode_tokens(self, tokens: dict[str, Windows]) -> tuple[torch.Tensor, torch.Tensor | None]:
        contexts, pooled = [], None
        for slot in self.slots:
            layer = slot.layer if self.last_layer is None else self.last_layer
            context, slot_pooled = _encode_windows(self.models[slot.name], slot, tokens[slot.name], layer)
            contexts.append(context)
            if slot_pooled is not None:
                pooled = slot_pooled
        length = min(c.shape[1] for c in contexts)
        return torch.cat([c[:, :length] for c in contexts], dim=-1), pooled

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> SDTextEncoder:
        """Move (in place) every encoder's weights; returns ``self``."""
        for model in self.models.values():
            model.to(device=device, dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        return next(iter(self.models.values())).token_embedding_weight.device

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.models.values())).token_embedding_weight.dtype


def _encode_windows(model: _TextTransformer, slot: EncoderSlot, windows: Windows, layer: int | None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One encoder's weighted context ``[1, 77·n, C]`` and first-window pooled output."""
    device = model.token_embedding_weight.device
    vectors = [(i, j, t) for i, w in enumerate(windows) for j, (t, _) in enumerate(w) if isinstance(t, torch.Tensor)]
    # An embedding's vector stands where a token id would; its id slot holds 0, which keeps the
    # end token the highest id (the pooled state is read at the first end token).
    ids = torch.tensor([[0 if isinstance(t, torch.Tensor) else t for t, _ in w] for w in windows], dtype=torch.long)
    weights = torch.tensor([[x for _, x in w] for w in windows], dtype=torch.float32)
    weighted = bool((weights != 1.0).any())
    n, length = ids.shape
    if weighted:
        empty = [START_TOKEN, END_TOKEN] + [slot.pad_token] * (length - 2)
        ids = torch.cat([ids, torch.tensor([empty])])
    ids = ids.to(device)
    token_embeds = None
    if vectors:
        table = model.token_embedding_weight
        token_embeds = table[ids]
        for i, j, t in vectors:
            token_embeds[i, j] = t.to(device=device, dtype=table.dtype)
    hidden, pooled = model(ids, layer, slot.norm_hidden, slot.pooled, token_embeds)
    hidden = hidden.float()
    z = hidden[:n]
    if weighted:
        z_empty = hidden[n]
        w = weights.to(device).unsqueeze(-1)
        z = torch.where(w != 1.0, (z - z_empty) * w + z_empty, z)
    return z.reshape(1, n * length, -1), None if pooled is None else pooled[:1].float()


def build_text_encoder(family: str, checkpoint_sd: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None,
                       device: torch.device | str | None = None, mapping: FileMapping | None = None
                       ) -> SDTextEncoder:
    """The text encoders of ``family`` filled from a single-file checkpoint's state dict.

    ``checkpoint_sd`` maps full keys (``cond_stage_model.…``/``conditioner.…``) to tensors; other
    components' keys are ignored. The architecture comes from the tensors' shapes. Weights keep
    the dtype of the token embedding unless ``dtype`` is given; ``mapping`` is the memory-mapped
    file the tensors come from, if any (see :func:`nodes.sd.build.convert`). Raises
    :class:`TextEncoderKeyError` naming missing or unexpected keys.
    """
    report = check_keys(family, checkpoint_sd)
    if report.missing or report.unexpected:
        problems = []
        if report.missing:
            problems.append(f"{len(report.missing)} missing: {_few(report.missing)}")
        if report.unexpected:
            problems.append(f"{len(report.unexpected)} unexpected: {_few(report.unexpected)}")
        raise TextEncoderKeyError(f"{family} text encoder weights do not fit the architecture their shapes "
                                  f"describe ({'; '.join(problems)}); the checkpoint is incomplete or not {family}")
    keys = set(checkpoint_sd.keys())
    models = {}
    for slot in family_slots(family):
        view = _PrefixView(checkpoint_sd, _prefix_in(slot, keys), keys)
        config = config_from_state_dict(view)
        model = on_meta(lambda: build_model(config))
        weights = {k: view[k] for k in model.state_dict()}
        convert(weights, dtype or view[_TABLE[config.layout]].dtype, device, mapping)
        assign(model, weights)
        models[slot.name] = model.eval().requires_grad_(False)
    return SDTextEncoder(family, models)


class _PrefixView(Mapping):
    """The keys of ``sd`` under ``prefix``, prefix stripped, read lazily (tensors are not copied)."""

    def __init__(self, sd: Mapping[str, torch.Tensor], prefix: str, keys: set[str]):
        self.sd, self.prefix = sd, prefix
        self.keys_ = {k[len(prefix):] for k in keys if k.startswith(prefix)}

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self.keys_:
            raise KeyError(key)
        return self.sd[self.prefix + key]

    def __iter__(self):
        return iter(sorted(self.keys_))

    def __len__(self) -> int:
        return len(self.keys_)


@lru_cache(maxsize=16)
def _parameter_names(config: TextEncoderConfig) -> frozenset[str]:
    return frozenset(on_meta(lambda: build_model(config)).state_dict())
