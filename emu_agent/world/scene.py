"""Scenes: 1 to 3 coloured shapes on a 3x3 grid, their canonical captions, and the seeded scene sampler.

A :class:`Scene` keeps its objects sorted in reading order (by cell), so two scenes with the same objects are
equal and :func:`caption` is canonical::

    >>> caption(Scene((SceneObject("blue", "square", "bottom right"), SceneObject("red", "circle", "top left"))))
    'a red circle at top left and a blue square at bottom right'

Held-out compositions: a fixed ~10% of (colour, shape, cell) triples (chosen by crc32 of the triple's words)
never occur in ``split="train"`` scenes; every ``split="heldout"`` scene holds at least one.
"""

from __future__ import annotations

import itertools
import random
import re
import zlib
from dataclasses import dataclass
from typing import Literal

from emu_agent.errors import InputError
from emu_agent.world.vocab import BACKGROUNDS, CELLS, COLOURS, MAX_OBJECTS, MIN_OBJECTS, SHAPES

__all__ = [
    "HELDOUT_TRIPLES",
    "Scene",
    "SceneObject",
    "SceneSplit",
    "caption",
    "is_heldout_scene",
    "is_heldout_triple",
    "object_phrase",
    "parse_caption",
    "parse_object_phrase",
    "sample_object",
    "sample_scene",
]

SceneSplit = Literal["train", "heldout"]
_CELL_INDEX = {name: i for i, name in enumerate(CELLS)}


@dataclass(frozen=True, order=True)
class SceneObject:
    """One shape: its colour, its shape and the cell it sits in (names from :mod:`emu_agent.world.vocab`)."""

    colour: str
    shape: str
    cell: str

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise InputError(f"unknown colour {self.colour!r}; use one of {sorted(COLOURS)}")
        if self.shape not in SHAPES:
            raise InputError(f"unknown shape {self.shape!r}; use one of {list(SHAPES)}")
        if self.cell not in _CELL_INDEX:
            raise InputError(f"unknown cell {self.cell!r}; use one of {list(CELLS)}")

    @property
    def triple(self) -> tuple[str, str, str]:
        return (self.colour, self.shape, self.cell)


@dataclass(frozen=True)
class Scene:
    """1 to 3 objects, at most one per cell, kept in reading order, on a named background."""

    objects: tuple[SceneObject, ...]
    background: str = "white"

    def __post_init__(self) -> None:
        objects = tuple(sorted(self.objects, key=lambda o: _CELL_INDEX[o.cell]))
        object.__setattr__(self, "objects", objects)
        if not MIN_OBJECTS <= len(objects) <= MAX_OBJECTS:
            raise InputError(f"a scene holds {MIN_OBJECTS} to {MAX_OBJECTS} objects; got {len(objects)}")
        if len({o.cell for o in objects}) != len(objects):
            raise InputError(f"at most one object per cell; got {[o.cell for o in objects]}")
        if self.background not in BACKGROUNDS:
            raise InputError(f"unknown background {self.background!r}; use one of {list(BACKGROUNDS)}")

    @property
    def cells(self) -> frozenset[str]:
        """The occupied cells."""
        return frozenset(o.cell for o in self.objects)

    def at(self, cell: str) -> SceneObject | None:
        """The object in ``cell``, or None."""
        return next((o for o in self.objects if o.cell == cell), None)

    def replace_objects(self, objects: tuple[SceneObject, ...] | list[SceneObject]) -> Scene:
        """The same background with other objects."""
        return Scene(tuple(objects), self.background)


def object_phrase(obj: SceneObject) -> str:
    """``"a red circle at top left"``."""
    return f"a {obj.colour} {obj.shape} at {obj.cell}"


def caption(scene: Scene | tuple[SceneObject, ...]) -> str:
    """The canonical caption: objects in reading order joined with ``" and "``."""
    objects = scene.objects if isinstance(scene, Scene) else tuple(sorted(scene, key=lambda o: _CELL_INDEX[o.cell]))
    return " and ".join(object_phrase(o) for o in objects)


_ALT = "|".join
_PHRASE = re.compile(
    rf"a ({_ALT(COLOURS)}) ({_ALT(SHAPES)}) at ({_ALT(sorted(CELLS, key=len, reverse=True))})",
)


def parse_object_phrase(text: str) -> SceneObject | None:
    """``"a red circle at top left"`` -> SceneObject, or None if it is not exactly one such phrase."""
    match = _PHRASE.fullmatch(text)
    return SceneObject(*match.groups()) if match else None


def parse_caption(text: str, *, strict_order: bool = True) -> tuple[SceneObject, ...] | None:
    """Parse a caption back into objects, or None if it is not a valid caption.

    Strict: exact lowercase grammar, single spaces, 1 to 3 objects in distinct cells and, with
    ``strict_order``, in reading order (so a parsed caption is the canonical caption of its objects).
    Surrounding whitespace is ignored.
    """
    parts = text.strip().split(" and ")
    objects = [parse_object_phrase(p) for p in parts]
    if any(o is None for o in objects) or not MIN_OBJECTS <= len(objects) <= MAX_OBJECTS:
        return None
    found: list[SceneObject] = [o for o in objects if o is not None]
    indices = [_CELL_INDEX[o.cell] for o in found]
    if len(set(indices)) != len(indices):
        return None
    if strict_order and indices != sorted(indices):
        return None
    return tuple(sorted(found, key=lambda o: _CELL_INDEX[o.cell]))


def _triple_is_heldout(colour: str, shape: str, cell: str) -> bool:
    return zlib.crc32(f"{colour} {shape} {cell}".encode()) % 10 == 0


HELDOUT_TRIPLES: frozenset[tuple[str, str, str]] = frozenset(
    t for t in itertools.product(COLOURS, SHAPES, CELLS) if _triple_is_heldout(*t)
)  # 19 of the 162 triples


def is_heldout_triple(obj: SceneObject | tuple[str, str, str]) -> bool:
    """Whether a (colour, shape, cell) composition is held out of training."""
    triple = obj.triple if isinstance(obj, SceneObject) else tuple(obj)
    return triple in HELDOUT_TRIPLES


def is_heldout_scene(scene: Scene) -> bool:
    """Whether any object of ``scene`` is a held-out composition."""
    return any(is_heldout_triple(o) for o in scene.objects)


def sample_object(
    rng: random.Random,
    cell: str,
    *,
    split: SceneSplit = "train",
    exclude_pairs: frozenset[tuple[str, str]] | set[tuple[str, str]] = frozenset(),
) -> SceneObject:
    """A random object in ``cell`` whose (colour, shape) is not in ``exclude_pairs``.

    ``split="train"`` never returns a held-out triple; ``split="heldout"`` may return any triple.
    """
    options = [
        (c, s)
        for c in COLOURS
        for s in SHAPES
        if (c, s) not in exclude_pairs and (split != "train" or not _triple_is_heldout(c, s, cell))
    ]
    colour, shape = rng.choice(options)
    return SceneObject(colour, shape, cell)


def sample_scene(
    rng: random.Random,
    *,
    n_objects: int | None = None,
    split: SceneSplit = "train",
    background: str | None = None,
) -> Scene:
    """A random scene: ``n_objects`` (default 1-3 uniformly) in distinct cells with distinct (colour, shape).

    ``split="train"`` scenes contain no held-out triple; ``split="heldout"`` scenes contain at least one.
    """
    if split not in ("train", "heldout"):
        raise InputError(f"split must be 'train' or 'heldout'; got {split!r}")
    n = n_objects if n_objects is not None else rng.randint(MIN_OBJECTS, MAX_OBJECTS)
    if not MIN_OBJECTS <= n <= MAX_OBJECTS:
        raise InputError(f"n_objects must be {MIN_OBJECTS} to {MAX_OBJECTS}; got {n}")
    objects: list[SceneObject] = []
    if split == "heldout":
        objects.append(SceneObject(*rng.choice(sorted(HELDOUT_TRIPLES))))
    free = [c for c in CELLS if c not in {o.cell for o in objects}]
    for cell in rng.sample(free, n - len(objects)):
        pairs = {(o.colour, o.shape) for o in objects}
        objects.append(sample_object(rng, cell, split=split, exclude_pairs=pairs))
    bg = background if background is not None else rng.choice(list(BACKGROUNDS))
    return Scene(tuple(objects), bg)
