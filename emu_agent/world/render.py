"""Two seeded renderers for scenes: ``"train"`` (what emu-tiny learns from) and ``"alt"`` (eval only).

- ``"train"``: 4x supersampled shapes (radius 7-9 px), position jitter +-2 px inside the cell, shade jitter
  +-12 per channel, gaussian pixel noise (sigma 4).
- ``"alt"``: a second renderer with no anti-aliasing at all (hard, aliased edges), a different size range (6-8
  px), jitter +-3 px, shade jitter +-20 and noise sigma 6. Eval uses it to show the model is not tied to the
  pixels it trained on.

Both are deterministic given the ``random.Random`` passed in. A ``looks`` dict lets a clip keep each object's
size, offset and shade from frame to frame (see :mod:`emu_agent.world.video`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image, ImageDraw

from emu_agent.errors import InputError
from emu_agent.world.scene import Scene, SceneObject
from emu_agent.world.vocab import BACKGROUNDS, CANVAS_SIZE, COLOURS, cell_center

if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping

__all__ = ["RENDER_STYLES", "RGB", "Look", "RenderStyle", "carry_look", "off_palette", "render_scene"]

RGB = tuple[int, int, int]

RenderStyle = Literal["train", "alt"]


@dataclass(frozen=True)
class _StyleSpec:
    supersample: int  # draw at this multiple of the canvas, then box-downsample (1 = aliased)
    radius: tuple[float, float]  # shape "radius" range in px
    jitter: float  # max position offset from the cell centre in px
    shade: int  # max per-channel shade offset
    noise: float  # gaussian pixel noise sigma
    triangle_height: float  # triangle height as a multiple of the radius (width is 2 * radius)


RENDER_STYLES: dict[str, _StyleSpec] = {
    "train": _StyleSpec(supersample=4, radius=(7.0, 9.0), jitter=2.0, shade=12, noise=4.0, triangle_height=2.0),
    "alt": _StyleSpec(supersample=1, radius=(6.0, 8.0), jitter=3.0, shade=20, noise=6.0, triangle_height=1.8),
}


@dataclass(frozen=True)
class Look:
    """How one object is drawn: its offset from the cell centre, its radius and its shade offset."""

    dx: float
    dy: float
    radius: float
    shade: tuple[int, int, int]


def _sample_look(rng: random.Random, spec: _StyleSpec) -> Look:
    return Look(
        dx=rng.uniform(-spec.jitter, spec.jitter),
        dy=rng.uniform(-spec.jitter, spec.jitter),
        radius=rng.uniform(*spec.radius),
        shade=(
            rng.randint(-spec.shade, spec.shade),
            rng.randint(-spec.shade, spec.shade),
            rng.randint(-spec.shade, spec.shade),
        ),
    )


def _fill(obj: SceneObject, look: Look, palette: Mapping[str, RGB] | None = None) -> RGB:
    base = palette[obj.colour] if palette is not None else COLOURS[obj.colour]
    return tuple(min(255, max(0, c + d)) for c, d in zip(base, look.shade, strict=True))  # type: ignore[return-value]


def _draw_object(
    draw: ImageDraw.ImageDraw, obj: SceneObject, look: Look, spec: _StyleSpec, palette: Mapping[str, RGB] | None
) -> None:
    k = spec.supersample
    cx, cy = cell_center(obj.cell)
    cx, cy, r = (cx + look.dx) * k, (cy + look.dy) * k, look.radius * k
    fill = _fill(obj, look, palette)
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif obj.shape == "square":
        a = 0.85 * r
        draw.rectangle((cx - a, cy - a, cx + a, cy + a), fill=fill)
    else:  # triangle pointing up, centred on its bounding box
        h = spec.triangle_height * r / 2
        draw.polygon([(cx, cy - h), (cx + r, cy + h), (cx - r, cy + h)], fill=fill)


def carry_look(looks: MutableMapping[tuple[str, str], Look], old: SceneObject, new: SceneObject) -> None:
    """Let ``new`` (e.g. ``old`` recoloured) be drawn with ``old``'s look, if ``old`` has one."""
    look = looks.get((old.colour, old.shape))
    if look is not None:
        looks[(new.colour, new.shape)] = look


def render_scene(
    scene: Scene,
    rng: random.Random,
    *,
    style: RenderStyle = "train",
    looks: MutableMapping[tuple[str, str], Look] | None = None,
    palette: Mapping[str, RGB] | None = None,
) -> Image.Image:
    """Draw ``scene`` as a 64x64 RGB image.

    ``looks`` (optional) maps (colour, shape) to a :class:`Look`; missing entries are sampled and stored, present
    ones reused, so a video keeps each object's size, offset and shade across frames. ``palette`` (optional) maps
    every colour name to the RGB to paint it with instead of its own (see :func:`off_palette`).
    """
    spec = RENDER_STYLES.get(style)
    if spec is None:
        raise InputError(f"unknown render style {style!r}; use one of {list(RENDER_STYLES)}")
    size = CANVAS_SIZE * spec.supersample
    image = Image.new("RGB", (size, size), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        key = (obj.colour, obj.shape)
        look = looks.get(key) if looks is not None else None
        if look is None:
            look = _sample_look(rng, spec)
            if looks is not None:
                looks[key] = look
        _draw_object(draw, obj, look, spec, palette)
    if spec.supersample > 1:
        image = image.reduce(spec.supersample)
    return _add_noise(image, rng, spec.noise)


def off_palette(rng: random.Random, min_distance: float = 90.0) -> dict[str, RGB]:
    """A palette that paints each colour name in a random RGB at least ``min_distance`` (Euclidean, 0-255) from
    every vocabulary colour and background, so an image drawn with it shows the world's shapes and cells in
    colours the world never names. The encoder trains on such images with their colour targets ignored, which
    teaches it to read a shape apart from its colour without ever showing a held-out (colour, shape, cell)."""
    named = [*COLOURS.values(), *BACKGROUNDS.values()]
    palette: dict[str, RGB] = {}
    for name in COLOURS:
        while True:  # about half of random RGBs qualify at the default distance
            rgb = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            if min(sum((a - b) ** 2 for a, b in zip(rgb, c, strict=True)) for c in named) >= min_distance**2:
                palette[name] = rgb
                break
    return palette


def _add_noise(image: Image.Image, rng: random.Random, sigma: float) -> Image.Image:
    if sigma <= 0:
        return image
    noise_rng = np.random.default_rng(rng.getrandbits(64))
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels + noise_rng.standard_normal(pixels.shape, dtype=np.float32) * sigma
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")
