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
}


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
