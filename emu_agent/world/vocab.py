"""The fixed vocabulary of the scenes world: canvas, backgrounds, shapes, colours and the 3x3 grid of cells.

Other parts of the project (the trainer, the eval harness, outside checks) rely on these exact names and values.
"""

from __future__ import annotations

__all__ = [
    "BACKGROUNDS",
    "CANVAS_SIZE",
    "CELLS",
    "CELL_POSITIONS",
    "COLOURS",
    "GRID",
    "MAX_OBJECTS",
    "MAX_VIDEO_FRAMES",
    "MIN_OBJECTS",
    "MIN_VIDEO_FRAMES",
    "SHAPES",
    "cell_at",
    "cell_center",
]

CANVAS_SIZE = 64  # images are CANVAS_SIZE x CANVAS_SIZE RGB
GRID = 3  # the canvas is a GRID x GRID grid of cells

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")  # triangles point up

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 20, 20),
    "green": (20, 180, 20),
    "blue": (20, 60, 230),
    "yellow": (240, 220, 20),
    "purple": (150, 40, 200),
    "orange": (250, 140, 0),
}

# cell names in reading order; CELL_POSITIONS maps each to its (row, col)
CELLS: tuple[str, ...] = (
    "top left",
    "top",
    "top right",
    "left",
    "center",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
CELL_POSITIONS: dict[str, tuple[int, int]] = {name: divmod(i, GRID) for i, name in enumerate(CELLS)}

MIN_OBJECTS, MAX_OBJECTS = 1, 3  # objects per scene, at most one per cell
MIN_VIDEO_FRAMES, MAX_VIDEO_FRAMES = 4, 8


def cell_center(cell: str, size: int = CANVAS_SIZE) -> tuple[float, float]:
    """The (x, y) pixel centre of ``cell`` on a ``size`` x ``size`` canvas."""
    row, col = CELL_POSITIONS[cell]
    step = size / GRID
    return (col + 0.5) * step, (row + 0.5) * step


def cell_at(x: float, y: float, size: int = CANVAS_SIZE) -> str:
    """The name of the cell that holds pixel position ``(x, y)``."""
    step = size / GRID
    col = min(GRID - 1, max(0, int(x // step)))
    row = min(GRID - 1, max(0, int(y // step)))
    return CELLS[row * GRID + col]
