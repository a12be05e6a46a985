"""Short clips: 4 to 8 frames of a scene in which one thing happens, an object moves (along its row or column),
appears, disappears or changes colour. Frames before the event show the scene before, frames from the event on
show the scene after.

    >>> clip = sample_clip(random.Random(0))
    >>> describe_event(clip.event)
    'the red circle moved from left to right'
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from emu_agent.errors import InputError
from emu_agent.world.edits import Edit, apply_edit, possible_edits
from emu_agent.world.render import Look, RenderStyle, carry_look, render_scene
from emu_agent.world.scene import Scene, SceneObject, SceneSplit, is_heldout_scene, sample_scene
from emu_agent.world.vocab import CELL_POSITIONS, MAX_VIDEO_FRAMES, MIN_VIDEO_FRAMES

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "EVENT_KINDS",
    "FRAME_SECONDS",
    "Clip",
    "Event",
    "describe_event",
    "direction",
    "render_clip",
    "sample_clip",
]

EVENT_KINDS: tuple[str, ...] = ("move", "appear", "disappear", "recolour")
FRAME_SECONDS = 0.5  # timestamps of frame i: i * FRAME_SECONDS
_EDIT_FOR_EVENT = {"move": "move", "appear": "add", "disappear": "remove", "recolour": "recolour"}


@dataclass(frozen=True)
class Event:
    """What happens in a clip, from frame ``frame`` on. ``obj`` is the object before the event (for ``appear``,
    the new object); ``to_cell`` / ``to_colour`` say where it moved / what colour it turned."""

    kind: str
    obj: SceneObject
    frame: int
    to_cell: str | None = None
    to_colour: str | None = None

    @property
    def edit(self) -> Edit:
        """The same change as a scene edit."""
        return Edit(_EDIT_FOR_EVENT[self.kind], self.obj, colour=self.to_colour, cell=self.to_cell)


@dataclass(frozen=True)
class Clip:
    """Frames (scenes) and the events between them (one main event)."""

    frames: list[Scene]
    events: list[Event]
    timestamps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not MIN_VIDEO_FRAMES <= len(self.frames) <= MAX_VIDEO_FRAMES:
            raise InputError(f"a clip has {MIN_VIDEO_FRAMES} to {MAX_VIDEO_FRAMES} frames; got {len(self.frames)}")
        if not self.timestamps:
            object.__setattr__(self, "timestamps", [i * FRAME_SECONDS for i in range(len(self.frames))])

    @property
    def event(self) -> Event:
        """The main event."""
        return self.events[0]

    @property
    def heldout(self) -> bool:
        """Whether any frame holds a held-out composition."""
        return any(is_heldout_scene(s) for s in self.frames)


def direction(from_cell: str, to_cell: str) -> str:
    """``"up"``, ``"down"``, ``"left"`` or ``"right"`` for a move along a row or column."""
    (r0, c0), (r1, c1) = CELL_POSITIONS[from_cell], CELL_POSITIONS[to_cell]
    if r0 == r1 and c0 != c1:
        return "right" if c1 > c0 else "left"
    if c0 == c1 and r0 != r1:
        return "down" if r1 > r0 else "up"
    raise InputError(f"a move from {from_cell} to {to_cell} is not along a row or column")


def describe_event(event: Event) -> str:
    """The canonical sentence for an event (the answer to "what happened?")."""
    thing = f"{event.obj.colour} {event.obj.shape}"
    if event.kind == "move":
        return f"the {thing} moved from {event.obj.cell} to {event.to_cell}"
    if event.kind == "appear":
        return f"a {thing} appeared at {event.obj.cell}"
    if event.kind == "disappear":
        return f"the {thing} disappeared from {event.obj.cell}"
    return f"the {thing} turned {event.to_colour}"


def _event_options(scene: Scene, kind: str, split: SceneSplit) -> list[Event]:
    edits = possible_edits(scene, _EDIT_FOR_EVENT[kind], split=split)
    if kind == "move":
        edits = [e for e in edits if e.cell is not None and _aligned(e.target.cell, e.cell)]
    return [Event(kind, e.target, 0, to_cell=e.cell, to_colour=e.colour) for e in edits]


def _aligned(a: str, b: str) -> bool:
    (r0, c0), (r1, c1) = CELL_POSITIONS[a], CELL_POSITIONS[b]
    return r0 == r1 or c0 == c1


def sample_clip(
    rng: random.Random,
    *,
    split: SceneSplit = "train",
    kinds: tuple[str, ...] | None = None,
    n_frames: int | None = None,
) -> Clip:
    """A random clip: a start scene, one event (kind uniform among ``kinds`` that apply), 4-8 frames.

    ``split="heldout"`` starts from a scene with a held-out composition; ``"train"`` clips never show one.
    """
    n = n_frames if n_frames is not None else rng.randint(MIN_VIDEO_FRAMES, MAX_VIDEO_FRAMES)
    while True:
        start = sample_scene(rng, split=split)
        options = [k for k in (kinds or EVENT_KINDS) if _event_options(start, k, split)]
        if options:
            break
    kind = rng.choice(options)
    template = rng.choice(_event_options(start, kind, split))
    frame = rng.randint(1, n - 1)  # first frame that shows the change
    event = Event(kind, template.obj, frame, template.to_cell, template.to_colour)
    after = apply_edit(start, event.edit)
    return Clip([start] * frame + [after] * (n - frame), [event])


def render_clip(clip: Clip, rng: random.Random, *, style: RenderStyle = "train") -> list[Image.Image]:
    """Draw every frame; each object keeps its size, offset and shade across frames (noise is per frame)."""
    looks: dict[tuple[str, str], Look] = {}
    images = []
    previous: Scene | None = None
    for scene in clip.frames:
        if previous is not None and scene != previous:
            for event in clip.events:
                if event.kind == "recolour" and event.to_colour is not None:
                    carry_look(looks, event.obj, SceneObject(event.to_colour, event.obj.shape, event.obj.cell))
        images.append(render_scene(scene, rng, style=style, looks=looks))
        previous = scene
    return images
