"""Looking first, measured (session 12; not how emu-tiny answers, see docs/emu-tiny-history.md, "Phase 13").

The idea: a small LM answers "where is the red triangle?" in one step only if it binds colour and shape to one
place among the image's tokens at once, while its captions, written one object at a time, are right far more
often (emu-tiny v10: captions 98.8%, "where is ..." 90.8%, "how many ..." 90.5%). So let it describe the image
first and ask the question as a follow-up about text it just wrote:

    [USER] <image> describe the image. [ASSISTANT] a red circle at top left and a red triangle at center
    [USER] where is the red triangle? [ASSISTANT] center

The model writes both turns; nothing is parsed outside it. Trained on such conversations (the mixture entries
``look_first`` and ``look_first_blind``), emu-tiny answered the follow-up no better than the direct question,
with its description right 97-98% of the time: the misses are in its reading, not in its looking. The eval rows
stay available (``emu-agent eval --tasks look_first``) to measure the next model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emu_agent.errors import InputError
from emu_agent.tools.describe import DESCRIBE_PROMPT
from emu_agent.world.eval import TARGETS, TaskScore, _max_new_tokens, _row, draw_examples, score_text
from emu_agent.world.scene import caption
from emu_agent.world.tasks import TextExample

__all__ = ["LOOK_FIRST_TASKS", "answer_looking_first", "look_first_prompt", "score_look_first"]

DESCRIPTION_TOKENS = 48  # emu-tiny's longest caption (three objects) with room to spare
#: The single-image questions that can be answered by looking first.
LOOK_FIRST_TASKS: tuple[str, ...] = ("vqa_colour", "vqa_shape", "vqa_where", "count", "exists")
PREFIX = "look_first_"


def look_first_prompt(
    image: Any, question: str, description: str, *, describe_request: str = DESCRIBE_PROMPT
) -> list[tuple[str, list[Any]]]:
    """The two-turn chat prompt: the image with a description request (by default the ``describe_image``
    tool's, which emu-tiny trains its captions on), ``description`` as the assistant's answer, then ``question``
    as the next user turn."""
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"look first: the question must be non-empty text; got {question!r}")
    return [
        ("user", [image, describe_request]),
        ("assistant", [description.strip()]),
        ("user", [question]),
    ]


def answer_looking_first(
    model: Any,
    images: Sequence[Any],
    questions: Sequence[str],
    *,
    max_new_tokens: int = 16,
    description_tokens: int = DESCRIPTION_TOKENS,
) -> tuple[list[str], list[str]]:
    """Answer ``questions[i]`` about ``images[i]`` by looking first; returns ``(answers, descriptions)``.

    Two batched greedy passes of ``model.generate_texts``: one description per distinct image object, then
    every question after its image's description."""
    if len(images) != len(questions):
        raise InputError(f"look first: {len(images)} images but {len(questions)} questions")
    if not images:
        return [], []
    unique = list({id(image): image for image in images}.values())
    index = {id(image): i for i, image in enumerate(unique)}
    described = model.generate_texts(
        [[("user", [image, DESCRIBE_PROMPT])] for image in unique], max_new_tokens=description_tokens
    )
    descriptions = [described[index[id(image)]].strip() for image in images]
    prompts = [look_first_prompt(im, q, d) for im, q, d in zip(images, questions, descriptions, strict=True)]
    answers = [answer.strip() for answer in model.generate_texts(prompts, max_new_tokens=max_new_tokens)]
    return answers, descriptions


def score_look_first(
    model: Any, *, seed: int = 0, limit: int = 50, tasks: tuple[str, ...] = LOOK_FIRST_TASKS
) -> list[TaskScore]:
    """One row ``look_first_<task>`` per task, on the direct row's examples (same seed, same draw) and with its
    target: greedy description, greedy answer, exact match. The note counts the exact descriptions."""
    rows = []
    for task in tasks:
        examples = [ex for ex in draw_examples(task, seed=seed, limit=limit) if isinstance(ex, TextExample)]
        images = [ex.prompt[0][1][0] for ex in examples]
        questions = [ex.prompt[0][1][1] for ex in examples]
        answers, descriptions = answer_looking_first(
            model, images, questions, max_new_tokens=_max_new_tokens(model, task)
        )
        results = [score_text(answer, ex.answer) for answer, ex in zip(answers, examples, strict=True)]
        row = _row(PREFIX + task, examples, results)  # held-out and eval-only splits: the examples' own
        row.target = TARGETS.get(task)
        exact = sum(d == caption(ex.meta["scene"]) for d, ex in zip(descriptions, examples, strict=True))
        row.note = f"described first, then answered; {exact}/{len(examples)} descriptions exact"
        rows.append(row)
    return rows
