"""ControlNet and LoRA costs against references measured in the same run (issue 18).

Run: ``flock /tmp/ng-heavy.lock .venv/bin/python bench/controlnet.py`` (a few minutes, ~8 GB RAM).

- ControlNet on a full-size SD1.5 U-Net (random weights, fp32, batch 2, 32×32 latent, 77-token
  context): one model call without control, one with a ControlNet applied (our whole path: hint
  resize, the ControlNet's forward, the residuals added in the U-Net), and diffusers' ControlNetModel
  (converted from the same weights) on the same inputs, interleaved, medians →
  ``controlnet_overhead_over_diffusers_forward`` = (with control − without) / diffusers' forward
  (target ≤ 1.1), plus ``controlnet_forward_ratio`` (our ControlNet forward alone over diffusers').
- LoRA: a rank-32 kohya LoRA over the layers sd-scripts' default LoRA trains on SD1.5 (the U-Net's
  transformer blocks: proj_in/out, attention q/k/v/out, feed-forward; CLIP-L's attention and MLP),
  read from disk and put onto a loaded full-size fp16 SD1.5 U-Net and CLIP-L as Load LoRA does (the
  file read and parsed, one weight patch per adapted weight on values sharing the loaded model;
  nothing merged yet) → ``lora_load_s`` (target ≤ 1.0 s); the same with every conv and linear of the
  U-Net's blocks (LoCon-style) → ``locon_all_layers_load_s``. The merge moved to when the model runs:
  ``lora_first_apply_s`` is what the first sampling run (and prompt encode) of fresh LoRA values pays
  for it (the patched weights computed, swapped in and out: ``in_use`` entered and left on both
  values; timed as load + first use, minus the load's median), ``lora_apply_s`` what every later run
  of the same values pays (the patched weights are kept: a swap; timed after the interleaved runs,
  which leave other values' weights behind). Interleaved with them, a plain copy
  of every weight the LoRA changes (the least an eager merge must move) →
  ``lora_first_apply_over_weight_copy``: how far computing the patched weights is from memory-bound,
  whatever the machine's load.

The machine is shared: the summary records the load average before and after.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # numerics (the tolerances the reference tests use)
sys.path.insert(0, str(ROOT / "tests" / "sd"))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from models import _median_interleaved  # noqa: E402  (bench/models.py: interleaved runs, medians)


def bench_controlnet(runs: int = 5, warmup: int = 1) -> dict[str, float]:
    from test_controlnet import diffusers_controlnet

    from nodes.sd.control import Control, ControlModel
    from nodes.sd.control.cldm import ControlNetConfig
    from nodes.sd.control.testing import random_controlnet
    from nodes.sd.diffusion_model import DiffusionModel
    from nodes.sd.testing import random_unet
    from nodes.sd.unet import full_config

    cfg = full_config("sd1")
    model = DiffusionModel.for_family(random_unet(cfg, seed=0), "sd1")
    net = random_controlnet(ControlNetConfig(cfg), seed=1)
    ref = diffusers_controlnet(net)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 32, 32, generator=g)
    context = torch.randn(2, 77, 768, generator=g)
    image = torch.rand(1, 3, 256, 256, generator=g)
    sigma = torch.tensor([3.0, 3.0])
    control = Control(ControlModel(Path("bench_cn.safetensors"), "controlnet", net), image)
    ms = model.model_sampling
    x_in, t = ms.calculate_input(sigma, x), ms.timestep(sigma).float()
    hint = image.expand(2, -1, -1, -1)

    def with_control():
        return model.apply_model(x, sigma, context, control=control.residuals(model, x, sigma, context, None, 2))

    with torch.inference_mode():
        times = _median_interleaved({
            "unet": lambda: model.apply_model(x, sigma, context),
            "unet+control": with_control,
            "ours_controlnet": lambda: net(x_in, hint, t, context),
            "diffusers_controlnet": lambda: ref(x_in, t, encoder_hidden_states=context, controlnet_cond=hint,
                                                return_dict=False),
        }, runs, warmup)
    print("controlnet sd1.5 fp32 [2,4,32,32]: " + ", ".join(f"{k} {v:.3f}s" for k, v in times.items()), flush=True)
    overhead = times["unet+control"] - times["unet"]
    return {"controlnet_overhead_over_diffusers_forward": round(overhead / times["diffusers_controlnet"], 4),
            "controlnet_forward_ratio": round(times["ours_controlnet"] / times["diffusers_controlnet"], 4),
            "unet_step_s": round(times["unet"], 3), "diffusers_controlnet_s": round(times["diffusers_controlnet"], 3)}


def _sd15_lora(unet, encoder, rank: int = 32, all_layers: bool = False) -> dict[str, torch.Tensor]:
    """kohya names of what an SD1.5 LoRA trains (transformer blocks and CLIP attention/MLP; with
    ``all_layers`` every conv and linear of the U-Net's blocks too)."""
    from nodes.sd.lora import text_targets, unet_targets

    g = torch.Generator().manual_seed(3)
    params = dict(unet.named_parameters())
    blocks = ("_down_blocks_", "_up_blocks_", "_mid_block_") if all_layers else ("_attentions_",)
    targets = {k: params[v.param].shape for k, v in unet_targets(unet, unet.config).items()
               if k.startswith("lora_unet_") and any(b in k for b in blocks)
               and not k.endswith(("_norm", "_norm1", "_norm2", "_norm3"))}
    te = dict(encoder.models["l"].named_parameters())
    targets.update({k: te[v.param].shape for k, v in text_targets(encoder.models["l"], "lora_te_").items()})
    tensors = {}
    for key, shape in targets.items():
        out_ch, in_ch, *kernel = shape
        tensors[f"{key}.lora_down.weight"] = (torch.randn(rank, in_ch, *kernel, generator=g) * 0.01).half()
        tensors[f"{key}.lora_up.weight"] = (torch.randn(out_ch, rank, *[1] * len(kernel), generator=g) * 0.01).half()
        tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    return tensors


def bench_lora(runs: int = 3) -> dict[str, float]:
    from safetensors.torch import save_file

    from nodes.sd import lora as lora_module
    from nodes.sd.diffusion_model import DiffusionModel
    from nodes.sd.testing import random_unet
    from nodes.sd.text_encoders import build_text_encoder, text_encoder_state_dicts
    from nodes.sd.unet import full_config

    model = DiffusionModel.for_family(random_unet(full_config("sd1"), seed=4, dtype=torch.float16), "sd1")
    encoder = build_text_encoder("sd1", text_encoder_state_dicts("sd1", full=True), dtype=torch.float16)
    out: dict[str, float] = {}
    for key, all_layers in (("lora_load_s", False), ("locon_all_layers_load_s", True)):
        tensors = _sd15_lora(model.unet, encoder, all_layers=all_layers)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "lora.safetensors"
            save_file(tensors, str(path))
            values = _load_lora(lora_module, model, encoder, path)
            times = _median_interleaved({"lora": lambda: _load_lora(lora_module, model, encoder, path),
                                         "first": lambda: _apply(*_load_lora(lora_module, model, encoder, path)),
                                         "copy": lambda: _copy_targets(lora_module, model, encoder, path)}, runs, 1)
            _apply(*values)  # the values' first run (the interleaved runs above used other values)
            times["apply"] = _median_interleaved({"apply": lambda: _apply(*values)}, runs, 0)["apply"]
        layers = len(lora_module.layer_names(tensors))
        first = max(0.0, times["first"] - times["lora"])
        print(f"{key}: rank 32, {layers} layers onto a loaded fp16 SD1.5 U-Net + CLIP-L: {times['lora']:.3f}s; "
              f"first run: +{first:.3f}s; later runs: {times['apply']:.3f}s; copying the weights it changes: "
              f"{times['copy']:.3f}s", flush=True)
        out[key] = round(times["lora"], 3)
        out[key.replace("_load_s", "_first_apply_s")] = round(first, 3)
        out[key.replace("_load_s", "_apply_s")] = round(times["apply"], 3)
        out[key.replace("_load_s", "_first_apply_over_weight_copy")] = round(first / times["copy"], 3)
        out[key.replace("_load_s", "_layers")] = layers
    return out


def _load_lora(lora_module, model, encoder, path: Path) -> tuple:
    """What Load LoRA does: read the file, values sharing the U-Net and the text encoder that carry
    the layers as weight patches."""
    lora = lora_module.layers_of(lora_module.read_lora(path), path)
    patched, done_unet = lora_module.model_with_lora(model, lora, 1.0, path)
    patched_text, done_text = lora_module.text_encoder_with_lora(encoder, lora, 1.0, path)
    assert len(done_unet) + len(done_text) == len(lora)
    return patched, patched_text


def _apply(model, encoder) -> None:
    """What a run pays for the LoRA: its patched weights swapped in (computed on the values' first run)
    and swapped out after."""
    from nodes.sd.patches import weights_applied

    with model.in_use():
        pass
    with weights_applied(encoder.models, encoder.weight_patches):
        pass


def _copy_targets(lora_module, model, encoder, path: Path) -> list:
    """The reference: a plain copy (clone) of every weight the LoRA changes, the least any eager merge
    must do (read each weight once, write a new one)."""
    lora = lora_module.layers_of(lora_module.read_lora(path), path)
    targets = {**lora_module.unet_targets(model.unet, model.unet.config),
               **lora_module.text_targets(encoder.models["l"], "lora_te_")}
    params = dict(model.unet.named_parameters()) | dict(encoder.models["l"].named_parameters())
    return [params[targets[name].param].detach().clone() for name in lora if name in targets]


def main() -> None:
    from nodes.sd.memory import tune_cpu_allocator

    tune_cpu_allocator()  # as the app does on its first model load
    torch.manual_seed(0)
    load_before = os.getloadavg()
    parts = sys.argv[1:] or ["lora", "controlnet"]  # run one part alone: bench/controlnet.py lora
    out: dict[str, object] = {"threads": torch.get_num_threads()}
    if "lora" in parts:
        out.update(bench_lora())
    if "controlnet" in parts:
        out.update(bench_controlnet())
    out["loadavg_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
