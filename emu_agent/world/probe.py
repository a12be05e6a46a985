"""``probe_encoder(model)``: how much of a scene a model's frozen visual embeddings show, read by a linear probe.

A fresh linear head (per cell: shape and colour) is trained on the frozen 16-token embeddings
(``model.encode_images``) of *training-split* scenes only, then read on held-out scenes of three kinds:

- ``train``: more training-split scenes (the probe's own distribution);
- ``alt``: training-split scenes drawn by the second renderer;
- ``heldout``: scenes holding at least one (colour, shape, cell) triple that no training data ever shows.

The ``heldout`` read tells whether the embeddings carry shape apart from colour and cell: a head trained only on
seen compositions reads an unseen one right only if the shape is in the features on its own. Everything built on
those embeddings (the LM above all) inherits the gap between ``train`` and ``heldout``. This is how emu-tiny's
caption and counting misses were traced to its encoder (docs/emu-tiny-history.md).
"""

from __future__ import annotations

import random
from typing import Any

from emu_agent.errors import InputError

__all__ = ["PROBE_SPLITS", "probe_encoder"]

PROBE_SPLITS = ("train", "alt", "heldout")


def _targets(scenes: list[Any]) -> Any:
    import torch

    from emu_agent.world.train import _attribute_targets

    return torch.stack([_attribute_targets(s) for s in scenes])  # (B, 19): 9 shapes, 9 colours, background


def _scenes(split: str, rng: random.Random, n: int) -> tuple[list[Any], list[Any]]:
    from emu_agent.world.render import render_scene
    from emu_agent.world.scene import sample_scene

    scenes = [sample_scene(rng, split="heldout" if split == "heldout" else "train") for _ in range(n)]
    style = "alt" if split == "alt" else "train"
    return scenes, [render_scene(s, rng, style=style) for s in scenes]  # type: ignore[arg-type]


def probe_encoder(
    model: Any, *, steps: int = 300, batch: int = 128, n_eval: int = 500, seed: int = 0, lr: float = 3e-3
) -> dict[str, float]:
    """Train a linear probe on ``model``'s frozen image embeddings and read it on each of :data:`PROBE_SPLITS`.

    Returns ``{"{split}_shape": ..., "{split}_colour": ..., "{split}_scene": ...}``: per-object shape and colour
    accuracy, and the share of scenes whose every cell (shape and colour, empty cells included) reads right.
    ``model`` is anything with ``encode_images(images) -> (B, 16, width)`` (an :class:`EmuModel`).
    """
    import torch
    import torch.nn.functional as F

    from emu_agent.world.vocab import CELLS, COLOURS, SHAPES

    if steps < 1 or batch < 1 or n_eval < 1:
        raise InputError(f"probe_encoder: steps, batch and n_eval must be >= 1; got {steps}, {batch}, {n_eval}")
    n_cells, n_shape, n_colour = len(CELLS), 1 + len(SHAPES), 1 + len(COLOURS)

    def features(images: list[Any]) -> torch.Tensor:
        with torch.no_grad():
            return model.encode_images(images).float().flatten(1)  # (B, 16 * width)

    def split_logits(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shapes = out[:, : n_cells * n_shape].reshape(-1, n_cells, n_shape)  # (B, 9, 4)
        colours = out[:, n_cells * n_shape :].reshape(-1, n_cells, n_colour)  # (B, 9, 7)
        return shapes, colours

    width = features(_scenes("train", random.Random(f"probe/{seed}/width"), 1)[1]).shape[1]
    with torch.random.fork_rng():  # a seeded head without touching the caller's random state
        torch.manual_seed(seed)
        head = torch.nn.Sequential(torch.nn.LayerNorm(width), torch.nn.Linear(width, n_cells * (n_shape + n_colour)))
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr)
    for step in range(steps):
        scenes, images = _scenes("train", random.Random(f"probe/{seed}/{step}"), batch)
        targets = _targets(scenes)
        shapes, colours = split_logits(head(features(images)))
        loss = F.cross_entropy(shapes.transpose(1, 2), targets[:, :n_cells]) + F.cross_entropy(
            colours.transpose(1, 2), targets[:, n_cells : 2 * n_cells]
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    scores: dict[str, float] = {}
    for split in PROBE_SPLITS:
        scenes, images = _scenes(split, random.Random(f"probe-eval/{seed}/{split}"), n_eval)
        targets = _targets(scenes)
        with torch.no_grad():
            shapes, colours = split_logits(head(features(images)))
        shape_ok = shapes.argmax(-1) == targets[:, :n_cells]  # (B, 9)
        colour_ok = colours.argmax(-1) == targets[:, n_cells : 2 * n_cells]
        occupied = targets[:, :n_cells] > 0
        scores[f"{split}_shape"] = round(float(shape_ok[occupied].float().mean()), 4)
        scores[f"{split}_colour"] = round(float(colour_ok[occupied].float().mean()), 4)
        scores[f"{split}_scene"] = round(float((shape_ok.all(1) & colour_ok.all(1)).float().mean()), 4)
    return scores
