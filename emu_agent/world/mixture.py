"""The training mixture of emu-tiny: world tasks plus agent dialogues, drawn by weight."""

from __future__ import annotations

import random

from emu_agent.world.dialogues import dialogue_examples, sample_dialogue
from emu_agent.world.tasks import ImageExample, TextExample, sample_example

__all__ = ["DEFAULT_MIXTURE", "sample_training_example"]

DEFAULT_MIXTURE: dict[str, float] = {
    "caption": 0.11,
    "vqa_colour": 0.04,
    "vqa_shape": 0.04,
    "vqa_where": 0.04,
    "count": 0.04,
    "exists": 0.04,
    "video_qa": 0.1,
    "few_shot": 0.07,
    "t2i": 0.14,
    "edit": 0.14,
    "agent": 0.24,
}


def sample_training_example(rng: random.Random, weights: dict[str, float] | None = None) -> TextExample | ImageExample:
    """One training example; ``"agent"`` draws a dialogue and one of its assistant turns."""
    weights = weights or DEFAULT_MIXTURE
    names = list(weights)
    task = rng.choices(names, weights=[weights[n] for n in names])[0]
    if task == "agent":
        return rng.choice(dialogue_examples(sample_dialogue(rng)))
    return sample_example(task, rng, split="train")
