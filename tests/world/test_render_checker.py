"""Renderers and the checker: determinism, speed, and checker accuracy on both renderers."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from PIL import ImageFilter

from emu_agent.world.checker import check_image, detect_objects
from emu_agent.world.render import render_scene
from emu_agent.world.scene import Scene, SceneObject, sample_scene
from emu_agent.world.vocab import CELLS, COLOURS, SHAPES


def test_render_is_deterministic_and_sized() -> None:
    scene = sample_scene(random.Random(0), n_objects=3)
    for style in ("train", "alt"):
        a = render_scene(scene, random.Random(5), style=style)
        b = render_scene(scene, random.Random(5), style=style)
        assert a.size == (64, 64) and a.mode == "RGB"
        assert np.array_equal(np.asarray(a), np.asarray(b))
        c = render_scene(scene, random.Random(6), style=style)
        assert not np.array_equal(np.asarray(a), np.asarray(c))  # jitter and noise follow the seed


def test_renderers_differ() -> None:
    scene = sample_scene(random.Random(1), n_objects=2)
    train = np.asarray(render_scene(scene, random.Random(0), style="train"), dtype=np.int16)
    alt = np.asarray(render_scene(scene, random.Random(0), style="alt"), dtype=np.int16)
    assert np.abs(train - alt).mean() > 1


def test_render_speed() -> None:
    rng = random.Random(0)
    scenes = [sample_scene(rng) for _ in range(500)]
    start = time.perf_counter()
    for scene in scenes:
        render_scene(scene, rng)
    per_image_ms = (time.perf_counter() - start) / len(scenes) * 1000
    print(f"render_scene(train): {per_image_ms:.3f} ms/image")
    assert per_image_ms < 5


def _accuracy(style: str, blur: float, n: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    scenes_ok = colour_cell = shape = total = 0
    for _ in range(n):
        scene = sample_scene(rng)
        image = render_scene(scene, rng, style=style)
        if blur:
            image = image.filter(ImageFilter.GaussianBlur(blur))
        check = check_image(image, scene, check_background=True)
        scenes_ok += check.ok
        found = {(o.colour, o.cell): o.shape for o in check.detected.objects}
        for obj in scene.objects:
            total += 1
            if (obj.colour, obj.cell) in found:
                colour_cell += 1
                shape += found[obj.colour, obj.cell] == obj.shape
    return {"scene": scenes_ok / n, "colour+cell": colour_cell / total, "shape": shape / total}


@pytest.mark.parametrize("style", ["train", "alt"])
def test_checker_accuracy_clean(style: str) -> None:
    acc = _accuracy(style, 0.0, 500, seed=11)
    print(f"checker on 500 clean {style} renders: {acc}")
    assert acc["colour+cell"] == 1.0
    assert acc["shape"] >= 0.99
    assert acc["scene"] >= 0.98


@pytest.mark.parametrize("style", ["train", "alt"])
def test_checker_accuracy_blurred(style: str) -> None:
    acc = _accuracy(style, 1.0, 200, seed=12)
    print(f"checker on 200 {style} renders blurred (gaussian r=1): {acc}")
    assert acc["colour+cell"] >= 0.99
    assert acc["shape"] >= 0.97


def _mutate(scene: Scene, rng: random.Random) -> Scene:
    objects = list(scene.objects)
    i = rng.randrange(len(objects))
    obj = objects[i]
    kind = rng.choice(["colour", "shape", "cell", "drop", "add"])
    free = [c for c in CELLS if c not in scene.cells]
    if kind == "colour":
        objects[i] = SceneObject(rng.choice([c for c in COLOURS if c != obj.colour]), obj.shape, obj.cell)
    elif kind == "shape":
        objects[i] = SceneObject(obj.colour, rng.choice([s for s in SHAPES if s != obj.shape]), obj.cell)
    elif kind == "cell":
        objects[i] = SceneObject(obj.colour, obj.shape, rng.choice(free))
    elif kind == "drop" and len(objects) > 1:
        objects.pop(i)
    elif len(objects) < 3:
        objects.append(SceneObject(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(free)))
    else:
        objects[i] = SceneObject(obj.colour, obj.shape, rng.choice(free))
    return scene.replace_objects(objects)


def test_checker_rejects_mismatched_expectations() -> None:
    rng = random.Random(13)
    accepted = 0
    n = 300
    for _ in range(n):
        scene = sample_scene(rng)
        image = render_scene(scene, rng, style=rng.choice(["train", "alt"]))
        wrong = _mutate(scene, rng)
        assert wrong != scene
        accepted += check_image(image, wrong).ok
    print(f"false accepts: {accepted}/{n}")
    assert accepted / n <= 0.01


def test_checker_reports_missing_extra_and_background() -> None:
    scene = Scene((SceneObject("red", "circle", "top left"), SceneObject("blue", "square", "center")), "black")
    image = render_scene(scene, random.Random(0))
    expected = Scene((SceneObject("red", "circle", "top left"), SceneObject("green", "triangle", "bottom")), "white")
    check = check_image(image, expected, check_background=True)
    assert not check.ok
    assert check.missing == (SceneObject("green", "triangle", "bottom"),)
    assert check.extra == (SceneObject("blue", "square", "center"),)
    assert check.background_ok is False
    assert detect_objects(image).background == "black"
    assert check_image(image, scene, check_background=True).ok


def test_checker_accepts_arrays_and_larger_images() -> None:
    scene = sample_scene(random.Random(4))
    image = render_scene(scene, random.Random(4))
    assert check_image(np.asarray(image), scene).ok
    assert check_image(image.resize((256, 256)), scene).ok


def test_checker_finds_nothing_on_blank() -> None:
    from PIL import Image

    assert detect_objects(Image.new("RGB", (64, 64), (255, 255, 255))).objects == ()
