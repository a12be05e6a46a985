"""Edits keep scenes valid; clips' events agree with their frames."""

from __future__ import annotations

import random

import numpy as np
import pytest

from emu_agent.errors import InputError
from emu_agent.world.checker import check_image
from emu_agent.world.edits import EDIT_KINDS, Edit, apply_edit, possible_edits, sample_edit
from emu_agent.world.scene import Scene, SceneObject, is_heldout_scene, sample_scene
from emu_agent.world.video import Clip, describe_event, direction, render_clip, sample_clip
from emu_agent.world.vocab import CELL_POSITIONS


def _valid(scene: Scene) -> bool:
    pairs = [(o.colour, o.shape) for o in scene.objects]
    return 1 <= len(scene.objects) <= 3 and len(set(pairs)) == len(pairs)


def test_edits_keep_scenes_valid_and_do_what_they_say() -> None:
    rng = random.Random(0)
    kinds = set()
    for _ in range(1000):
        scene = sample_scene(rng)
        edit, after = sample_edit(scene, rng)
        kinds.add(edit.kind)
        assert _valid(after) and after != scene and after.background == scene.background
        assert apply_edit(scene, edit) == after
        assert not is_heldout_scene(after)  # train edits never create held-out compositions
        others = set(scene.objects) - {edit.target}
        assert others <= set(after.objects)
        if edit.kind == "recolour":
            assert SceneObject(edit.colour, edit.target.shape, edit.target.cell) in after.objects
        elif edit.kind == "move":
            assert scene.at(edit.cell) is None and after.at(edit.target.cell) is None
            assert after.at(edit.cell) == SceneObject(edit.target.colour, edit.target.shape, edit.cell)
        elif edit.kind == "remove":
            assert len(after.objects) == len(scene.objects) - 1
        else:
            assert edit.target in after.objects and len(after.objects) == len(scene.objects) + 1
    assert kinds == set(EDIT_KINDS)


def test_impossible_edits() -> None:
    one = Scene((SceneObject("red", "circle", "top"),))
    assert possible_edits(one, "remove") == []
    with pytest.raises(InputError):
        sample_edit(one, random.Random(0), kinds=("remove",))
    with pytest.raises(InputError):
        apply_edit(one, Edit("remove", SceneObject("blue", "circle", "top")))
    with pytest.raises(InputError):
        apply_edit(one, Edit("add", SceneObject("blue", "circle", "top")))
    with pytest.raises(InputError):
        apply_edit(one, Edit("add", SceneObject("red", "circle", "left")))  # duplicate colour + shape
    with pytest.raises(InputError):
        Edit("recolour", SceneObject("red", "circle", "top"))


def test_sample_edit_is_deterministic() -> None:
    scene = sample_scene(random.Random(1), n_objects=2)
    assert sample_edit(scene, random.Random(9)) == sample_edit(scene, random.Random(9))


def test_video_events_consistent_with_frames() -> None:
    rng = random.Random(2)
    kinds = set()
    for _ in range(400):
        split = rng.choice(["train", "heldout"])
        clip = sample_clip(rng, split=split)
        event = clip.event
        kinds.add(event.kind)
        n = len(clip.frames)
        assert 4 <= n <= 8 and len(clip.timestamps) == n
        assert 1 <= event.frame < n
        before, after = clip.frames[0], clip.frames[-1]
        assert all(f == before for f in clip.frames[: event.frame])
        assert all(f == after for f in clip.frames[event.frame :])
        assert apply_edit(before, event.edit) == after
        assert clip.heldout == (split == "heldout")
        if event.kind == "move":
            assert event.obj in before.objects
            moved = SceneObject(event.obj.colour, event.obj.shape, event.to_cell)
            assert moved in after.objects
            (r0, c0), (r1, c1) = CELL_POSITIONS[event.obj.cell], CELL_POSITIONS[event.to_cell]
            assert r0 == r1 or c0 == c1
            assert direction(event.obj.cell, event.to_cell) in {"up", "down", "left", "right"}
        elif event.kind == "appear":
            assert event.obj not in before.objects and event.obj in after.objects
        elif event.kind == "disappear":
            assert event.obj in before.objects and event.obj not in after.objects
        else:
            assert event.obj in before.objects
            assert SceneObject(event.to_colour, event.obj.shape, event.obj.cell) in after.objects
    assert kinds == {"move", "appear", "disappear", "recolour"}


def test_describe_event_and_direction() -> None:
    clip = sample_clip(random.Random(0), kinds=("move",))
    assert describe_event(clip.event) == (
        f"the {clip.event.obj.colour} {clip.event.obj.shape} moved from {clip.event.obj.cell} to {clip.event.to_cell}"
    )
    assert direction("left", "right") == "right" and direction("bottom", "top") == "up"
    with pytest.raises(InputError):
        direction("top left", "bottom right")
    with pytest.raises(InputError):
        Clip([clip.frames[0]] * 3, clip.events)


@pytest.mark.parametrize("style", ["train", "alt"])
def test_rendered_clip_frames_show_their_scenes(style: str) -> None:
    rng = random.Random(3)
    for _ in range(20):
        clip = sample_clip(rng)
        frames = render_clip(clip, rng, style=style)
        assert len(frames) == len(clip.frames)
        for image, scene in zip(frames, clip.frames, strict=True):
            assert check_image(image, scene, check_background=True).ok
    a = render_clip(clip, random.Random(0))
    b = render_clip(clip, random.Random(0))
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b, strict=True))


def test_static_objects_keep_their_look_across_frames() -> None:
    clip = sample_clip(random.Random(4), kinds=("recolour",), n_frames=4)
    frames = [np.asarray(f, dtype=np.int16) for f in render_clip(clip, random.Random(0))]
    # frames before the event differ only by pixel noise
    assert np.abs(frames[0] - frames[clip.event.frame - 1]).mean() < 8
