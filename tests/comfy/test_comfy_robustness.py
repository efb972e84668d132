"""Importing damaged ComfyUI files raises nothing but GraphLoadError: real workflows and prompts with
fields deleted or replaced by values of the wrong kind (seeded, reproducible), and whatever imports
can be saved, reloaded and exported (or refused with UnmappedNodesError)."""
from __future__ import annotations

import copy
import random

import pytest
from comfykit import fixture, template

from nodegraph import GraphLoadError
from nodegraph.opening import from_data
from nodegraph.comfy.export import UnmappedNodesError, export_prompt
from nodegraph.format import dumps, loads

SOURCES = ["default", "sdxl_simple_example", "controlnet_example", "area_composition", "lora",
           "01_qwen_t2i_subgraphed"]
JUNK = [None, 0, -1, 2.5, "x", "", [], {}, [1], [1, 2], ["3", 0], {"a": 1}, True, 10**30]


def places(obj, path=()):
    yield path
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        yield from places(value, path + (key,))


def damaged(data, rng):
    data = copy.deepcopy(data)
    spots = [p for p in places(data) if p]
    for _ in range(rng.randint(1, 4)):
        *parents, last = rng.choice(spots)
        holder = data
        try:
            for key in parents:
                holder = holder[key]
            holder[last]  # noqa: B018 - the place must still exist (JSON objects have string keys)
            if isinstance(holder, dict) and rng.random() < 0.3:
                del holder[last]
            else:
                holder[last] = copy.deepcopy(rng.choice(JUNK))
        except (KeyError, IndexError, TypeError):
            pass  # an earlier change removed that place
    return data


@pytest.mark.parametrize("seed", range(4))
def test_damaged_files_import_or_raise_a_load_error(seed, specs):
    rng = random.Random(seed)
    sources = [template(n) for n in SOURCES] + [fixture("comfyui_basic_api_example.json"),
                                               fixture("sdxl_simple_example.api.json")]
    imported = 0
    for _ in range(300):
        data = damaged(rng.choice(sources), rng)
        try:
            graph = from_data(data, specs, "damaged.json").graph
        except GraphLoadError:
            continue
        imported += 1
        assert loads(dumps(graph)) == graph
        try:
            export_prompt(graph, specs)
        except UnmappedNodesError:
            pass
    assert imported > 150  # most damage is survivable
