"""Eval rows for looking first (:mod:`emu_agent.model.look_first`): the VQA and counting questions of the
direct rows, on the same examples, answered after the model has described the image.

Each row is named ``look_first_<task>`` and holds the direct task's target, so the two ways of answering can be
read side by side. The note says how many of the model's own descriptions were the exact caption.
"""

from __future__ import annotations

from typing import Any

from emu_agent.model.look_first import DESCRIBE_REQUEST, answer_looking_first
from emu_agent.world.eval import TARGETS, TaskScore, _max_new_tokens, _row, draw_examples, score_text
from emu_agent.world.mixture import as_look_first
from emu_agent.world.scene import caption
from emu_agent.world.tasks import TextExample

__all__ = ["LOOK_FIRST_TASKS", "score_look_first"]

#: The single-image questions that can be answered by looking first.
LOOK_FIRST_TASKS: tuple[str, ...] = ("vqa_colour", "vqa_shape", "vqa_where", "count", "exists")
PREFIX = "look_first_"


def score_look_first(
    model: Any, *, seed: int = 0, limit: int = 50, tasks: tuple[str, ...] = LOOK_FIRST_TASKS
) -> list[TaskScore]:
    """One :class:`TaskScore` per task in ``tasks``: greedy description, then greedy answer, exact match."""
    rows = []
    for task in tasks:
        examples = [ex for ex in draw_examples(task, seed=seed, limit=limit) if isinstance(ex, TextExample)]
        images = [ex.prompt[0][1][0] for ex in examples]
        questions = [ex.prompt[0][1][1] for ex in examples]
        answers, descriptions = answer_looking_first(
            model, images, questions, max_new_tokens=_max_new_tokens(model, task)
        )
        results = [score_text(answer, ex.answer) for answer, ex in zip(answers, examples, strict=True)]
        # the same examples as asked: held-out and eval-only splits carry over from ``meta``
        asked = [as_look_first(ex, d, DESCRIBE_REQUEST) for ex, d in zip(examples, descriptions, strict=True)]
        row = _row(PREFIX + task, asked, results)
        row.target = TARGETS.get(task)
        exact = sum(d == caption(ex.meta["scene"]) for d, ex in zip(descriptions, examples, strict=True))
        row.note = f"described first, then answered; {exact}/{len(examples)} descriptions exact"
        rows.append(row)
    return rows
