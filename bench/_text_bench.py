"""Text encoder speed: our CLIP-L vs transformers' CLIPTextModel on the same weights.

Full SD1.5 CLIP-L config, fp32 on CPU, batch 2 × 77 tokens (a prompt and the empty prompt, as a
weighted CLIPTextEncode runs it); both return the final-normed last layer and the pooled state.
Called by bench/models.py; runnable alone:
``flock /tmp/ng-heavy.lock .venv/bin/python bench/_text_bench.py``.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from nodes.sd.text_encoders import build_text_encoder, full_config, text_encoder_state_dicts  # noqa: E402
from nodes.sd.tokenizer import END_TOKEN, get_tokenizer  # noqa: E402


def _reference(sd: dict[str, torch.Tensor]):
    """transformers' CLIPTextModel at CLIP-L size, filled by diffusers' single-file converter."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = full_config("clip_l")
    model = CLIPTextModel(CLIPTextConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=cfg.mlp_width,
        num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads, max_position_embeddings=cfg.context_length,
        hidden_act=cfg.activation, layer_norm_eps=1e-5, projection_dim=cfg.width)).eval()
    converted = {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(sd).items()}
    model.load_state_dict(converted, strict=True)
    return model


def bench_text(runs: int = 15, warmup: int = 3) -> dict[str, float]:
    """Median seconds of interleaved forwards after warm-up; returns ``{"text_ratio": ours / reference}``
    (plus the two medians in milliseconds and the largest relative difference of their outputs)."""
    sd = text_encoder_state_dicts("sd1", full=True, seed=0)
    ours = build_text_encoder("sd1", sd).models["l"]
    ref = _reference(sd)
    windows = [get_tokenizer().tokenize_weighted(text, END_TOKEN)[0] for text in ("a photo of a cat", "")]
    ids = torch.tensor([[t for t, _ in w] for w in windows])

    def run_ours():
        return ours(ids, None, True, "plain")

    def run_ref():
        out = ref(ids)
        return out.last_hidden_state, out.pooler_output

    times: dict[str, list[float]] = {"ours": [], "ref": []}
    with torch.inference_mode():
        (a, pa), (b, pb) = run_ours(), run_ref()
        rel = max(((a - b).norm() / b.norm()).item(), ((pa - pb).norm() / pb.norm()).item())
        for _ in range(warmup):
            run_ours(), run_ref()
        for i in range(runs):
            order = [("ours", run_ours), ("ref", run_ref)]
            for name, fn in order if i % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    ours_s, ref_s = statistics.median(times["ours"]), statistics.median(times["ref"])
    return {"text_ratio": round(ours_s / ref_s, 4), "text_ours_ms": round(ours_s * 1e3, 2),
            "text_ref_ms": round(ref_s * 1e3, 2), "text_rel_err": rel}


if __name__ == "__main__":
    print(json.dumps(bench_text()))
