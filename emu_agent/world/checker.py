"""Read a scene back out of an image: which colours, which shapes, in which cells (no learning involved).

Per pixel, the nearest palette colour (the six object colours and the three backgrounds). Per cell, the most
common object colour, if it covers enough pixels, is an object; its connected blob (grown from the cell's mass
centre, allowed a few pixels past the cell edge) is measured:

- a triangle (pointing up) fills about half its bounding box and its mass sits low (centroid ~2/3 down);
- a square reaches further along the diagonals than along the axes (by ~sqrt 2); a circle does not.

It works on both renderers (:mod:`emu_agent.world.render`) and on mildly blurred images, such as those a small
diffusion decoder paints. :func:`check_image` compares what it finds with what was asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from emu_agent.errors import InputError
from emu_agent.world.scene import Scene, SceneObject
from emu_agent.world.vocab import BACKGROUNDS, CANVAS_SIZE, CELLS, COLOURS, GRID, cell_at

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["DetectedScene", "ImageCheck", "ShapeFeatures", "check_image", "classify_shape", "detect_objects"]

_COLOUR_NAMES = tuple(COLOURS)
_BACKGROUND_NAMES = tuple(BACKGROUNDS)
_PALETTE = np.array([*COLOURS.values(), *BACKGROUNDS.values()], dtype=np.float32)  # (9, 3)
_N_OBJECT_COLOURS = len(_COLOUR_NAMES)
MIN_MASS = 16  # pixels of one colour in a cell that make an object
MAX_DISTANCE = 110.0  # a pixel further than this from every palette colour is ignored
MARGIN = 3  # px a blob may reach past its cell's edges


@dataclass(frozen=True)
class ShapeFeatures:
    """Measurements of one blob: pixel count, bounding-box fill ratio and how low its mass sits (0.5 = middle)."""

    mass: int
    fill: float
    low: float
    diagonal: float  # extent along the diagonals / extent along the axes: ~1.41 for a square, ~1.0 for a circle
    centroid: tuple[float, float]  # (x, y) in pixels


@dataclass(frozen=True)
class DetectedScene:
    """What :func:`detect_objects` found: objects in reading order, the background name (None if unclear)."""

    objects: tuple[SceneObject, ...]
    background: str | None
    features: tuple[ShapeFeatures, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class ImageCheck:
    """The verdict of :func:`check_image`: ``ok`` when every expected object was found and nothing else."""

    ok: bool
    detected: DetectedScene
    missing: tuple[SceneObject, ...]
    extra: tuple[SceneObject, ...]
    background_ok: bool | None = None  # None when the background was not checked


def classify_shape(features: ShapeFeatures) -> str:
    """Shape name from blob measurements."""
    if features.low > 0.56 and features.fill < 0.8:
        return "triangle"
    if features.diagonal > 1.11:
        return "square"
    return "circle"


def _pixels(image: Any) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"expected an (H, W, 3) array; got shape {image.shape}")
        image = Image.fromarray(image.astype(np.uint8), "RGB")
    if not isinstance(image, Image.Image):
        raise InputError(f"expected a PIL image or an (H, W, 3) array; got {type(image).__name__}")
    image = image.convert("RGB")
    if image.size != (CANVAS_SIZE, CANVAS_SIZE):
        image = image.resize((CANVAS_SIZE, CANVAS_SIZE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32)


def _palette_labels(pixels: np.ndarray) -> np.ndarray:
    """(H, W) index into the palette per pixel, -1 where no palette colour is near."""
    dist = ((pixels[:, :, None, :] - _PALETTE[None, None, :, :]) ** 2).sum(-1)  # (H, W, 9)
    labels = dist.argmin(-1)
    nearest = np.take_along_axis(dist, labels[..., None], -1)[..., 0]
    return np.where(nearest <= MAX_DISTANCE**2, labels, -1)


def _cell_bounds(cell: str) -> tuple[int, int, int, int]:
    index = CELLS.index(cell)
    row, col = divmod(index, GRID)
    edges = [round(i * CANVAS_SIZE / GRID) for i in range(GRID + 1)]
    return edges[row], edges[row + 1], edges[col], edges[col + 1]  # y0, y1, x0, x1


def _grow(mask: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """The 4-connected component of ``mask`` that holds ``seed``."""
    region = np.zeros_like(mask)
    region[seed] = True
    while True:
        grown = region.copy()
        grown[1:, :] |= region[:-1, :]
        grown[:-1, :] |= region[1:, :]
        grown[:, 1:] |= region[:, :-1]
        grown[:, :-1] |= region[:, 1:]
        grown &= mask
        if (grown == region).all():
            return region
        region = grown


def _measure(region: np.ndarray, oy: int, ox: int) -> ShapeFeatures:
    ys, xs = np.nonzero(region)
    h = ys.max() - ys.min() + 1
    w = xs.max() - xs.min() + 1
    low = (ys.mean() - ys.min() + 0.5) / h
    u, v = xs + ys, xs - ys  # diagonal coordinates (times sqrt 2)
    diagonal = (np.ptp(u) + np.ptp(v) + 2) / ((w + h) * np.sqrt(2))
    return ShapeFeatures(
        mass=len(ys),
        fill=float(len(ys) / (h * w)),
        low=float(low),
        diagonal=float(diagonal),
        centroid=(float(xs.mean() + ox + 0.5), float(ys.mean() + oy + 0.5)),
    )


def _detect_in_cell(labels: np.ndarray, cell: str) -> tuple[SceneObject, ShapeFeatures] | None:
    y0, y1, x0, x1 = _cell_bounds(cell)
    inner = labels[y0:y1, x0:x1]
    counts = np.bincount(inner[(inner >= 0) & (inner < _N_OBJECT_COLOURS)], minlength=_N_OBJECT_COLOURS)
    colour = int(counts.argmax())
    if counts[colour] < MIN_MASS:
        return None
    wy0, wy1 = max(0, y0 - MARGIN), min(CANVAS_SIZE, y1 + MARGIN)
    wx0, wx1 = max(0, x0 - MARGIN), min(CANVAS_SIZE, x1 + MARGIN)
    mask = labels[wy0:wy1, wx0:wx1] == colour
    ys, xs = np.nonzero(inner == colour)
    cy, cx = ys.mean() + y0 - wy0, xs.mean() + x0 - wx0
    my, mx = np.nonzero(mask)
    nearest = int(((my - cy) ** 2 + (mx - cx) ** 2).argmin())
    region = _grow(mask, (int(my[nearest]), int(mx[nearest])))
    features = _measure(region, wy0, wx0)
    if features.mass < MIN_MASS or cell_at(*features.centroid) != cell:
        return None  # the edge of a neighbour's blob, not an object of this cell
    return SceneObject(_COLOUR_NAMES[colour], classify_shape(features), cell), features


def detect_objects(image: Any) -> DetectedScene:
    """Find the objects in a scene image (PIL image or (H, W, 3) uint8 array; resized to 64x64 if needed)."""
    labels = _palette_labels(_pixels(image))
    found = [hit for cell in CELLS if (hit := _detect_in_cell(labels, cell)) is not None]
    background_counts = np.bincount(labels[labels >= _N_OBJECT_COLOURS] - _N_OBJECT_COLOURS, minlength=3)
    background = None
    if background_counts.sum() >= labels.size // 2:
        background = _BACKGROUND_NAMES[int(background_counts.argmax())]
    return DetectedScene(tuple(o for o, _ in found), background, tuple(f for _, f in found))


def check_image(image: Any, expected: Scene | Iterable[SceneObject], *, check_background: bool = False) -> ImageCheck:
    """Compare an image with the objects (and, optionally, background) it should show.

    ``ok`` is true when the detected objects are exactly the expected ones: right colour, shape and cell, nothing
    missing, nothing extra (and the right background when ``check_background``).
    """
    detected = detect_objects(image)
    want = set(expected.objects if isinstance(expected, Scene) else expected)
    have = set(detected.objects)
    missing = tuple(sorted(want - have, key=lambda o: CELLS.index(o.cell)))
    extra = tuple(sorted(have - want, key=lambda o: CELLS.index(o.cell)))
    background_ok = None
    if check_background:
        if not isinstance(expected, Scene):
            raise InputError("check_background=True needs the expected Scene (with its background)")
        background_ok = detected.background == expected.background
    ok = not missing and not extra and background_ok is not False
    return ImageCheck(ok, detected, missing, extra, background_ok)
