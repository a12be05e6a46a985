"""Few-shot in-context sequences in the style of the Emu2 README's ``[red, white, 3, bottom left]`` example.

A sequence is interleaved (base Emu2 format, no chat template): ``image, "[a, b, ...]", image, "[...]", ...,
image`` and the answer is the bracket for the last image. The attribute schema (which attributes, in which
order) changes from sequence to sequence and is never named: the model must infer it from the shots.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from emu_agent.world.scene import Scene, SceneObject, SceneSplit, is_heldout_triple, sample_scene
from emu_agent.world.vocab import BACKGROUNDS, CELLS, COLOURS, SHAPES

__all__ = ["SCHEMAS", "attribute_values", "format_attributes", "sample_schema_scene"]

# schema -> what kind of scene it describes: "single" (one object) or "same_colour" / "any" (1-3 objects)
SCHEMAS: dict[tuple[str, ...], str] = {
    ("colour", "background", "shape", "cell"): "single",
    ("colour", "shape"): "single",
    ("shape", "cell"): "single",
    ("background", "colour"): "single",
    ("colour", "count", "background"): "same_colour",
    ("count", "background"): "any",
}


def attribute_values(scene: Scene, schema: tuple[str, ...]) -> list[str]:
    """The value of each schema attribute for ``scene`` (colour/shape/cell of its first object)."""
    first = scene.objects[0]
    getters: dict[str, Callable[[], str]] = {
        "colour": lambda: first.colour,
        "shape": lambda: first.shape,
        "cell": lambda: first.cell,
        "background": lambda: scene.background,
        "count": lambda: str(len(scene.objects)),
    }
    return [getters[a]() for a in schema]


def format_attributes(values: list[str]) -> str:
    """``["red", "white", "3", "bottom left"]`` -> ``"[red, white, 3, bottom left]"``."""
    return "[" + ", ".join(values) + "]"


def _same_colour_scene(rng: random.Random, split: SceneSplit) -> Scene:
    while True:
        colour = rng.choice(list(COLOURS))
        n = rng.randint(1, 3)
        objects = tuple(
            SceneObject(colour, shape, cell)
            for shape, cell in zip(rng.sample(SHAPES, n), rng.sample(CELLS, n), strict=True)
        )
        heldout = any(is_heldout_triple(o) for o in objects)
        if heldout == (split == "heldout"):
            return Scene(objects, rng.choice(list(BACKGROUNDS)))


def sample_schema_scene(rng: random.Random, schema: tuple[str, ...], split: SceneSplit) -> Scene:
    """A scene that ``schema`` describes unambiguously."""
    kind = SCHEMAS[schema]
    if kind == "single":
        return sample_scene(rng, n_objects=1, split=split)
    if kind == "same_colour":
        return _same_colour_scene(rng, split)
    return sample_scene(rng, split=split)
