"""Scene edits: recolour, move, remove and add one object. Every edit keeps the scene valid (1 to 3 objects, one
per cell, distinct (colour, shape) pairs, so "the red circle" always names one object).

    >>> edit, after = sample_edit(scene, random.Random(0))
    >>> apply_edit(scene, edit) == after
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from emu_agent.errors import InputError
from emu_agent.world.scene import Scene, SceneObject, SceneSplit, is_heldout_triple
from emu_agent.world.vocab import CELLS, COLOURS, MAX_OBJECTS, MIN_OBJECTS, SHAPES

__all__ = ["EDIT_KINDS", "Edit", "EditKind", "apply_edit", "possible_edits", "sample_edit"]

EditKind = Literal["recolour", "move", "remove", "add"]
EDIT_KINDS: tuple[str, ...] = ("recolour", "move", "remove", "add")


@dataclass(frozen=True)
class Edit:
    """One edit. ``target`` is the object acted on (for ``add``, the new object); ``colour`` is the new colour
    (``recolour``) and ``cell`` the destination (``move``)."""

    kind: str
    target: SceneObject
    colour: str | None = None
    cell: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in EDIT_KINDS:
            raise InputError(f"unknown edit kind {self.kind!r}; use one of {list(EDIT_KINDS)}")
        if self.kind == "recolour" and self.colour not in COLOURS:
            raise InputError(f"a recolour edit needs a new colour; got {self.colour!r}")
        if self.kind == "move" and self.cell not in CELLS:
            raise InputError(f"a move edit needs a destination cell; got {self.cell!r}")

    @property
    def result_object(self) -> SceneObject | None:
        """The edited object after the edit (None for ``remove``)."""
        t = self.target
        if self.kind == "recolour":
            return SceneObject(self.colour or t.colour, t.shape, t.cell)
        if self.kind == "move":
            return SceneObject(t.colour, t.shape, self.cell or t.cell)
        return None if self.kind == "remove" else t


def apply_edit(scene: Scene, edit: Edit) -> Scene:
    """The scene after ``edit``. Raises :class:`~emu_agent.errors.InputError` if it doesn't apply."""
    objects = list(scene.objects)
    if edit.kind == "add":
        if scene.at(edit.target.cell) is not None:
            raise InputError(f"can't add at {edit.target.cell}: the cell is taken")
        objects.append(edit.target)
    else:
        if edit.target not in objects:
            raise InputError(f"the scene has no {edit.target.colour} {edit.target.shape} at {edit.target.cell}")
        objects.remove(edit.target)
        if edit.kind == "move" and scene.at(edit.cell or "") is not None:
            raise InputError(f"can't move to {edit.cell}: the cell is taken")
        if edit.result_object is not None:
            objects.append(edit.result_object)
    pairs = [(o.colour, o.shape) for o in objects]
    if len(set(pairs)) != len(pairs):
        raise InputError("the edit would make two objects of the same colour and shape")
    return scene.replace_objects(objects)  # validates count and cells


def possible_edits(scene: Scene, kind: str, *, split: SceneSplit = "train") -> list[Edit]:
    """Every edit of ``kind`` that keeps ``scene`` valid; with ``split="train"`` none creates a held-out triple."""
    pairs = {(o.colour, o.shape) for o in scene.objects}
    free = [c for c in CELLS if c not in scene.cells]
    edits: list[Edit] = []
    if kind == "recolour":
        edits = [
            Edit("recolour", o, colour=c)
            for o in scene.objects
            for c in COLOURS
            if c != o.colour and (c, o.shape) not in pairs
        ]
    elif kind == "move":
        edits = [Edit("move", o, cell=c) for o in scene.objects for c in free]
    elif kind == "remove" and len(scene.objects) > MIN_OBJECTS:
        edits = [Edit("remove", o) for o in scene.objects]
    elif kind == "add" and len(scene.objects) < MAX_OBJECTS:
        edits = [
            Edit("add", SceneObject(c, s, cell))
            for cell in free
            for c in COLOURS
            for s in SHAPES
            if (c, s) not in pairs
        ]
    if split == "train":
        edits = [e for e in edits if e.result_object is None or not is_heldout_triple(e.result_object)]
    return edits


def sample_edit(
    scene: Scene, rng: random.Random, *, kinds: tuple[str, ...] | None = None, split: SceneSplit = "train"
) -> tuple[Edit, Scene]:
    """A random valid edit of ``scene`` (kind uniform among those possible) and the edited scene."""
    options = [k for k in (kinds or EDIT_KINDS) if possible_edits(scene, k, split=split)]
    if not options:
        raise InputError(f"no edit of kinds {kinds or EDIT_KINDS} applies to this scene")
    edit = rng.choice(possible_edits(scene, rng.choice(options), split=split))
    return edit, apply_edit(scene, edit)
