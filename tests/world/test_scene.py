"""Scenes: vocabulary, canonical captions, parsing, held-out split, seeded sampling."""

from __future__ import annotations

import random

import pytest

from emu_agent.errors import InputError
from emu_agent.world.scene import (
    HELDOUT_TRIPLES,
    Scene,
    SceneObject,
    caption,
    is_heldout_scene,
    is_heldout_triple,
    parse_caption,
    sample_scene,
)
from emu_agent.world.vocab import CELL_POSITIONS, CELLS, COLOURS, SHAPES, cell_at, cell_center


def test_vocabulary_is_fixed() -> None:
    assert COLOURS["red"] == (220, 20, 20) and COLOURS["orange"] == (250, 140, 0)
    assert SHAPES == ("circle", "square", "triangle")
    assert CELLS[0] == "top left" and CELLS[4] == "center" and CELLS[8] == "bottom right"
    assert CELL_POSITIONS["right"] == (1, 2)
    for cell in CELLS:
        assert cell_at(*cell_center(cell)) == cell


def test_caption_is_canonical_reading_order() -> None:
    scene = Scene((SceneObject("blue", "square", "bottom right"), SceneObject("red", "circle", "top left")), "gray")
    assert caption(scene) == "a red circle at top left and a blue square at bottom right"
    assert caption(Scene((SceneObject("green", "triangle", "center"),))) == "a green triangle at center"
    assert scene == Scene(tuple(reversed(scene.objects)), "gray")


def test_scene_validation() -> None:
    obj = SceneObject("red", "circle", "top")
    with pytest.raises(InputError):
        Scene(())
    with pytest.raises(InputError):
        Scene((obj, SceneObject("blue", "square", "top")))
    with pytest.raises(InputError):
        SceneObject("pink", "circle", "top")
    with pytest.raises(InputError):
        Scene((obj,), "beige")


def test_caption_round_trip() -> None:
    rng = random.Random(0)
    for _ in range(300):
        scene = sample_scene(rng, split=rng.choice(["train", "heldout"]))
        assert parse_caption(caption(scene)) == scene.objects
        assert parse_caption("  " + caption(scene) + "\n") == scene.objects


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a red circle",
        "a red circle at top left.",
        "A red circle at top left",
        "a red circle at  top left",
        "a pink circle at top",
        "a red circle at top and a blue square at top",
        "a blue square at bottom right and a red circle at top left",  # not reading order
        "a red circle at top and a red circle at left and a red circle at right and a red circle at center",
    ],
)
def test_parse_caption_is_strict(text: str) -> None:
    assert parse_caption(text) is None


def test_parse_caption_any_order_when_asked() -> None:
    text = "a blue square at bottom right and a red circle at top left"
    assert parse_caption(text, strict_order=False) == (
        SceneObject("red", "circle", "top left"),
        SceneObject("blue", "square", "bottom right"),
    )


def test_sampling_is_deterministic_by_seed() -> None:
    a = [sample_scene(random.Random(7)) for _ in range(3)]
    b = [sample_scene(random.Random(7)) for _ in range(3)]
    assert a == b
    rng1, rng2 = random.Random(1), random.Random(1)
    assert [sample_scene(rng1) for _ in range(20)] == [sample_scene(rng2) for _ in range(20)]
    others = [sample_scene(random.Random(s + 1)) for s in range(20)]
    assert [sample_scene(random.Random(s)) for s in range(20)] != others


def test_heldout_split_separation() -> None:
    assert 12 <= len(HELDOUT_TRIPLES) <= 24  # ~10% of 162
    rng = random.Random(3)
    counts = set()
    for _ in range(2000):
        train = sample_scene(rng, split="train")
        assert not is_heldout_scene(train)
        heldout = sample_scene(rng, split="heldout")
        assert is_heldout_scene(heldout)
        assert any(is_heldout_triple(o.triple) for o in heldout.objects)
        counts.add(len(train.objects))
        for scene in (train, heldout):
            pairs = [(o.colour, o.shape) for o in scene.objects]
            assert len(set(pairs)) == len(pairs)  # (colour, shape) identifies an object
    assert counts == {1, 2, 3}
    # every colour, shape and cell still appears in training
    seen = {o.triple for _ in range(3000) for o in sample_scene(rng).objects}
    assert not seen & HELDOUT_TRIPLES
    assert {t[0] for t in seen} == set(COLOURS) and {t[2] for t in seen} == set(CELLS)
