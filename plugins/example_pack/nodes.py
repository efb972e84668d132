"""The example pack's nodes (torch-free: InvertImage works on any array type with ``1 - x``)."""
from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from nodegraph import RunContext, String, node

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@node("PromptTemplate", display_name="Prompt Template", category="text",
      params=[String("template", "a photo of {subject}, {style}", multiline=True),
              String("subject", "a red fox"),
              String("style", "golden hour")],
      outputs={"text": "STRING"})
def prompt_template(template: str, subject: str, style: str) -> str:
    """Fill ``{subject}`` and ``{style}`` into a template; other braces are left as they are."""
    values = {"subject": subject, "style": style}
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


@node("InvertImage", display_name="Invert Image", category="image",
      inputs={"image": "IMAGE"}, outputs={"IMAGE": "IMAGE"})
def invert_image(image: Any) -> Any:
    """Invert the colours of images in 0..1 (IMAGE is [B,H,W,C]): each value becomes 1 - value."""
    return 1.0 - image


def safe_output_path(output_dir: Path, prefix: str, suffix: str) -> Path:
    """``<output_dir>/<prefix>_<counter><suffix>`` with the first free counter; the prefix may
    name sub-folders but may not leave the output folder."""
    if not prefix or PurePosixPath(prefix).is_absolute() or PureWindowsPath(prefix).drive \
            or PureWindowsPath(prefix).is_absolute() or ".." in re.split(r"[\\/]", prefix):
        raise ValueError(f"filename_prefix {prefix!r} must be a relative name inside the output "
                         "folder (no '..', no absolute path or drive)")
    base = (output_dir / prefix).resolve()
    if not base.is_relative_to(output_dir.resolve()):
        raise ValueError(f"filename_prefix {prefix!r} leaves the output folder {output_dir}")
    base.parent.mkdir(parents=True, exist_ok=True)
    counter = 1
    while True:
        path = base.parent / f"{base.name}_{counter:05d}{suffix}"
        try:
            with open(path, "x"):
                return path
        except FileExistsError:
            counter += 1


@node("SaveText", display_name="Save Text", category="text", output_node=True,
      inputs={"text": "STRING"}, params=[String("filename_prefix", "nodegraph")])
def save_text(text: str, filename_prefix: str, ctx: RunContext) -> None:
    """Write the text to ``<output>/<prefix>_00001.txt`` (the next free number; never overwrites)."""
    path = safe_output_path(ctx.options.output_dir, filename_prefix, ".txt")
    path.write_text(text + "\n", encoding="utf-8")
    ctx.ui["files"] = [str(path)]
    ctx.ui["text"] = [text]


NODES = [prompt_template, invert_image, save_text]
