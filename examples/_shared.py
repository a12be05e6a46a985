"""Helpers shared by the examples: pick the model and an output folder."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--model`` and ``--out``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default=None, help="emu-tiny (default when shipped) or a checkpoint folder")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one)")
    return p


def load_model(spec: str | None = None) -> tuple[Any, bool]:
    """The model and whether it is a trained one: emu-tiny (or ``spec``), else a random-weight stand-in."""
    from emu_agent.model.emu import EmuModel
    from emu_agent.model.loading import builtin_model_dir

    if spec:
        return EmuModel.from_pretrained(spec), True
    if builtin_model_dir("emu-tiny").is_dir():
        return EmuModel.from_pretrained("emu-tiny"), True
    from emu_agent.model.random_model import random_emu_model

    print("NOTE: emu-tiny is not shipped yet; running a RANDOM-WEIGHT model (its text and images are noise).",
          file=sys.stderr)  # fmt: skip
    return random_emu_model(seed=0), False


def out_dir(path: Path | None, name: str) -> Path:
    """``path`` (created), or a fresh temporary folder."""
    folder = path or Path(tempfile.mkdtemp(prefix=f"emu-{name}-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def scene(shapes: list[tuple[str, str, tuple[int, int]]], size: int = 64) -> Any:
    """A white canvas with coloured shapes (``("circle", "red", (cx, cy))``), like emu-tiny's world."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for shape, colour, (cx, cy) in shapes:
        box = (cx - 8, cy - 8, cx + 8, cy + 8)
        if shape == "circle":
            draw.ellipse(box, fill=colour)
        elif shape == "triangle":
            draw.polygon([(cx, cy - 8), (cx - 8, cy + 8), (cx + 8, cy + 8)], fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    return image
