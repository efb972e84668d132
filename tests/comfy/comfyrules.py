"""An independent UI-workflow → API-prompt converter, written from ComfyUI's rules, to check our
importer and exporter against (imported as ``comfyrules``).

It knows nothing of NodeGraph's node specs: the widget names below were written by hand from ComfyUI's
``INPUT_TYPES`` (nodes.py, comfy_extras/nodes_post_processing.py, nodes_upscale_model.py) and its
frontend, which serialises a workflow for the ``/prompt`` endpoint like this:

- Note, MarkdownNote, Reroute and PrimitiveNode are frontend-only and never sent; muted (mode 2) and
  bypassed (mode 4) nodes are not sent either;
- each widget goes in by name — except "control after generate", which follows a seed widget and
  is not an input — and a widget the workflow has no value for gets its default;
- a widget fed by a PrimitiveNode takes the primitive's value;
- a linked input becomes ``[origin id as a string, origin slot]``, where the origin is found by
  walking back through Reroutes and bypassed nodes (a bypassed node hands over the input at the same
  slot index if its type matches, else its first input of that type).
"""
from __future__ import annotations

from typing import Any

CONTROL = object()  # marks the "control after generate" widget
VIRTUAL = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}

WIDGETS: dict[str, list[Any]] = {
    "CheckpointLoaderSimple": ["ckpt_name"],
    "CLIPTextEncode": ["text"],
    "CLIPSetLastLayer": ["stop_at_clip_layer"],
    "EmptyLatentImage": ["width", "height", "batch_size"],
    "KSampler": ["seed", CONTROL, "steps", "cfg", "sampler_name", "scheduler", "denoise"],
    "KSamplerAdvanced": ["add_noise", "noise_seed", CONTROL, "steps", "cfg", "sampler_name", "scheduler",
                         "start_at_step", "end_at_step", "return_with_leftover_noise"],
    "VAEDecode": [],
    "VAEEncode": [],
    "SaveImage": ["filename_prefix"],
    "PreviewImage": [],
    "LoadImage": ["image", "upload"],
    "ImageScaleToTotalPixels": ["upscale_method", "megapixels", ("resolution_steps", 1)],
    "LatentUpscale": ["upscale_method", "width", "height", "crop"],
    "LatentUpscaleBy": ["upscale_method", "scale_by"],
    "ImageScale": ["upscale_method", "width", "height", "crop"],
    "UpscaleModelLoader": ["model_name"],
    "ImageUpscaleWithModel": [],
    "VAELoader": ["vae_name"],
    "ConditioningCombine": [],
    "ConditioningSetArea": ["width", "height", "x", "y", "strength"],
    "VAEEncodeForInpaint": ["grow_mask_by"],
    "ImagePadForOutpaint": ["left", "top", "right", "bottom", "feathering"],
}

R = 16384  # ComfyUI's MAX_RESOLUTION
PARAMS: dict[str, list[tuple[Any, ...]]] = {
    # Widgets of the mask, compositing, image, latent and regional-prompt nodes, written by hand from
    # ComfyUI's nodes.py and comfy_extras/nodes_{mask,compositing,images,post_processing,latent,
    # morphology,canny,clip_sdxl}.py: (name, default, min, max) for numbers, (name, default, choices) for
    # lists, (name, default) otherwise, (name,) where only the name is compared, in ComfyUI's input order
    # (sockets left out). LoadImageMask's upload button comes after its params, as LoadImage's does.
    "LoadImageMask": [("image",), ("channel", "alpha", ("alpha", "red", "green", "blue"))],
    "MaskToImage": [],
    "ImageToMask": [("channel", "red", ("red", "green", "blue", "alpha"))],
    "ImageColorToMask": [("color", 0, 0, 0xFFFFFF)],
    "SolidMask": [("value", 1.0, 0.0, 1.0), ("width", 512, 1, R), ("height", 512, 1, R)],
    "InvertMask": [],
    "CropMask": [("x", 0, 0, R), ("y", 0, 0, R), ("width", 512, 1, R), ("height", 512, 1, R)],
    "MaskComposite": [("x", 0, 0, R), ("y", 0, 0, R),
                      ("operation", "multiply", ("multiply", "add", "subtract", "and", "or", "xor"))],
    "FeatherMask": [("left", 0, 0, R), ("top", 0, 0, R), ("right", 0, 0, R), ("bottom", 0, 0, R)],
    "GrowMask": [("expand", 0, -R, R), ("tapered_corners", True)],
    "ThresholdMask": [("value", 0.5, 0.0, 1.0)],
    "MaskPreview": [],
    "LatentCompositeMasked": [("x", 0, 0, R), ("y", 0, 0, R), ("resize_source", False)],
    "ImageCompositeMasked": [("x", 0, 0, R), ("y", 0, 0, R), ("resize_source", False)],
    "LatentComposite": [("x", 0, 0, R), ("y", 0, 0, R), ("feather", 0, 0, R)],
    "LatentBlend": [("blend_factor", 0.5, 0.0, 1.0)],
    "LatentAdd": [],
    "LatentSubtract": [],
    "LatentMultiply": [("multiplier", 1.0, -10.0, 10.0)],
    "LatentInterpolate": [("ratio", 1.0, 0.0, 1.0)],
    "LatentBatch": [],
    "LatentBatchSeedBehavior": [("seed_behavior", "fixed", ("random", "fixed"))],
    "LatentRotate": [("rotation", "none", ("none", "90 degrees", "180 degrees", "270 degrees"))],
    "LatentFlip": [("flip_method", "x-axis: vertically", ("x-axis: vertically", "y-axis: horizontally"))],
    "LatentCrop": [("width", 512, 64, R), ("height", 512, 64, R), ("x", 0, 0, R), ("y", 0, 0, R)],
    "RepeatLatentBatch": [("amount", 1, 1, 64)],
    "ImageCrop": [("width", 512, 1, R), ("height", 512, 1, R), ("x", 0, 0, R), ("y", 0, 0, R)],
    "ImageInvert": [],
    "ImageBatch": [],
    "RepeatImageBatch": [("amount", 1, 1, 4096)],
    "ImageFromBatch": [("batch_index", 0, -R, R), ("length", 1, 1, 4096)],
    "ImageBlend": [("blend_factor", 0.5, 0.0, 1.0),
                   ("blend_mode", "normal", ("normal", "multiply", "screen", "overlay", "soft_light", "difference"))],
    "ImageBlur": [("blur_radius", 1, 1, 31), ("sigma", 1.0, 0.1, 10.0)],
    "ImageSharpen": [("sharpen_radius", 1, 1, 31), ("sigma", 1.0, 0.1, 10.0), ("alpha", 1.0, 0.0, 5.0)],
    "ImageQuantize": [("colors", 256, 1, 256),
                      ("dither", "none", ("none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16"))],
    "ImageFlip": [("flip_method", "x-axis: vertically", ("x-axis: vertically", "y-axis: horizontally"))],
    "ImageRotate": [("rotation", "none", ("none", "90 degrees", "180 degrees", "270 degrees"))],
    "EmptyImage": [("width", 512, 1, R), ("height", 512, 1, R), ("batch_size", 1, 1, 4096), ("color", 0, 0, 0xFFFFFF)],
    "GetImageSize": [],
    "Canny": [("low_threshold", 0.4, 0.01, 0.99), ("high_threshold", 0.8, 0.01, 0.99)],
    "Morphology": [("operation", "erode", ("erode", "dilate", "open", "close", "gradient", "bottom_hat", "top_hat")),
                   ("kernel_size", 3, 3, 999)],
    "PorterDuffImageComposite": [("mode", "DST", ("ADD", "CLEAR", "DARKEN", "DST", "DST_ATOP", "DST_IN", "DST_OUT",
                                                  "DST_OVER", "LIGHTEN", "MULTIPLY", "OVERLAY", "SCREEN", "SRC",
                                                  "SRC_ATOP", "SRC_IN", "SRC_OUT", "SRC_OVER", "XOR"))],
    "SplitImageWithAlpha": [],
    "JoinImageWithAlpha": [],
    "SaveAnimatedWEBP": [("filename_prefix",), ("fps", 6.0, 0.01, 1000.0), ("lossless", True), ("quality", 80, 0, 100),
                         ("method", "default", ("default", "fastest", "slowest"))],
    "SaveAnimatedPNG": [("filename_prefix",), ("fps", 6.0, 0.01, 1000.0), ("compress_level", 4, 0, 9)],
    "ImagePadForOutpaint": [("left", 0, 0, R), ("top", 0, 0, R), ("right", 0, 0, R), ("bottom", 0, 0, R),
                            ("feathering", 40, 0, R)],
    # the inpainting nodes (nodes.py, comfy_extras/nodes_ip2p.py)
    "VAEEncodeForInpaint": [("grow_mask_by", 6, 0, 64)],
    "SetLatentNoiseMask": [],
    "InpaintModelConditioning": [("noise_mask", True)],
    "InstructPixToPixConditioning": [],
    "ConditioningSetArea": [("width", 64, 64, R), ("height", 64, 64, R), ("x", 0, 0, R), ("y", 0, 0, R),
                            ("strength", 1.0, 0.0, 10.0)],
    "ConditioningSetAreaPercentage": [("width", 1.0, 0.0, 1.0), ("height", 1.0, 0.0, 1.0), ("x", 0.0, 0.0, 1.0),
                                      ("y", 0.0, 0.0, 1.0), ("strength", 1.0, 0.0, 10.0)],
    "ConditioningSetAreaStrength": [("strength", 1.0, 0.0, 10.0)],
    "ConditioningSetMask": [("strength", 1.0, 0.0, 10.0), ("set_cond_area", "default", ("default", "mask bounds"))],
    "ConditioningAverage": [("conditioning_to_strength", 1.0, 0.0, 1.0)],
    "ConditioningConcat": [],
    "ConditioningSetTimestepRange": [("start", 0.0, 0.0, 1.0), ("end", 1.0, 0.0, 1.0)],
    "CLIPTextEncodeSDXL": [("width", 1024, 0, R), ("height", 1024, 0, R), ("crop_w", 0, 0, R), ("crop_h", 0, 0, R),
                           ("target_width", 1024, 0, R), ("target_height", 1024, 0, R), ("text_g", ""),
                           ("text_l", "")],
    "CLIPTextEncodeSDXLRefiner": [("ascore", 6.0, 0.0, 1000.0), ("width", 1024, 0, R), ("height", 1024, 0, R),
                                  ("text", "")],
}
"""(The image file is listed from the input folder; "filename_prefix" defaults to "ComfyUI" there and
"NodeGraph" here, as on SaveImage.)"""


def to_prompt(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The API prompt ComfyUI's frontend would queue for a 0.4 UI workflow."""
    nodes = {str(n["id"]): n for n in workflow["nodes"]}
    links = {lk[0]: lk for lk in workflow["links"]}
    prompt = {}
    for node_id, node in nodes.items():
        if node["type"] in VIRTUAL or node.get("mode", 0) in (2, 4):
            continue
        inputs: dict[str, Any] = {}
        values = list(node.get("widgets_values") or [])
        for name in WIDGETS[node["type"]]:
            if isinstance(name, tuple):
                name, default = name
                inputs[name] = values.pop(0) if values else default
            elif name is CONTROL:
                values.pop(0)
            else:
                inputs[name] = values.pop(0)
        for inp in node.get("inputs") or []:
            if inp.get("link") is None:
                continue
            origin_id, slot = _origin(nodes, links, links[inp["link"]], inp["type"])
            origin = nodes[origin_id]
            if origin["type"] == "PrimitiveNode":
                inputs[inp["name"]] = origin["widgets_values"][0]
            else:
                inputs[inp["name"]] = [origin_id, slot]
        prompt[node_id] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def _origin(nodes: dict[str, Any], links: dict[int, Any], link: list[Any], want: Any) -> tuple[str, int]:
    while True:
        origin_id, slot = str(link[1]), link[2]
        origin = nodes[origin_id]
        if origin["type"] == "Reroute":
            link = links[origin["inputs"][0]["link"]]
        elif origin.get("mode", 0) == 4:
            ins = origin.get("inputs") or []
            order = ([slot] if slot < len(ins) else []) + list(range(len(ins)))
            link = next(links[ins[i]["link"]] for i in order if ins[i]["type"] == want)
        else:
            return origin_id, slot
