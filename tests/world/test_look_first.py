"""Looking first (measured, not shipped): one description per distinct image, every question after its image's
description; the eval rows pair with the direct rows' examples and use the model's own descriptions.

The models here are stand-ins: these test the orchestration and the harness. emu-tiny's own look-first scores
are in docs/emu-tiny-history.md (Phase 13)."""

from __future__ import annotations

import pytest
from PIL import Image

from emu_agent.errors import InputError
from emu_agent.tools.describe import DESCRIBE_PROMPT as DESCRIBE_REQUEST
from emu_agent.world.eval import TARGETS, draw_examples
from emu_agent.world.look_first import (
    LOOK_FIRST_TASKS,
    answer_looking_first,
    look_first_prompt,
    score_look_first,
)
from emu_agent.world.scene import caption


class ReadingOracle:
    """Describes each eval image with its true caption (or a wrong one) and answers a question right only when
    the description it is shown is the true one: a harness test, not a model."""

    def __init__(self, seed: int, limit: int, describe_wrong: bool = False) -> None:
        self.describe_wrong = describe_wrong
        self.captions: dict[bytes, str] = {}
        self.answers: dict[tuple[bytes, str], str] = {}
        for task in LOOK_FIRST_TASKS:
            for ex in draw_examples(task, seed=seed, limit=limit):
                image, question = ex.prompt[0][1]
                self.captions[image.tobytes()] = caption(ex.meta["scene"])
                self.answers[(image.tobytes(), question)] = ex.answer

    def generate_texts(self, prompts: list, max_new_tokens: int) -> list[str]:
        out = []
        for turns in prompts:
            key = turns[0][1][0].tobytes()
            if len(turns) == 1:
                out.append("a red circle at nowhere" if self.describe_wrong else self.captions[key])
            else:
                shown, question = turns[1][1][0], turns[2][1][0]
                out.append(self.answers[(key, question)] if shown == self.captions[key] else "?")
        return out


def test_rows_pair_with_the_direct_tasks_and_use_the_models_own_descriptions() -> None:
    rows = {r.task: r for r in score_look_first(ReadingOracle(3, 6), seed=3, limit=6)}
    assert set(rows) == {f"look_first_{t}" for t in LOOK_FIRST_TASKS}
    for task in LOOK_FIRST_TASKS:
        row = rows[f"look_first_{task}"]
        assert row.n == 6 and row.score == 1.0 and row.target == TARGETS[task], row
        examples = draw_examples(task, seed=3, limit=6)
        assert row.heldout_n == sum(bool(ex.meta["heldout"]) for ex in examples)  # splits carry over
        assert row.paraphrase_n == sum(ex.meta["template_split"] == "eval" for ex in examples)
        assert "6/6 descriptions exact" in row.note
    wrong = {r.task: r for r in score_look_first(ReadingOracle(3, 6, describe_wrong=True), seed=3, limit=6)}
    assert all(r.score == 0.0 and "0/6 descriptions exact" in r.note for r in wrong.values())


class RecordingModel:
    """Describes an image by its colour; answers with the description it was shown, plus the question."""

    def __init__(self) -> None:
        self.calls: list[list] = []

    def generate_texts(self, prompts: list, max_new_tokens: int) -> list[str]:
        self.calls.append(prompts)
        out = []
        for turns in prompts:
            if len(turns) == 1:
                image, request = turns[0][1]
                assert request == DESCRIBE_REQUEST
                out.append(f" a {image.getpixel((0, 0))} image ")
            else:
                (_, [_, _]), (role, [description]), (_, [question]) = turns
                assert role == "assistant"
                out.append(f"{description} | {question}")
        return out


def test_each_distinct_image_is_described_once_and_its_description_precedes_the_question() -> None:
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    model = RecordingModel()
    answers, descriptions = answer_looking_first(model, [red, blue, red], ["q1", "q2", "q3"])
    assert len(model.calls) == 2 and len(model.calls[0]) == 2  # two images described, in one batch
    assert descriptions == ["a (255, 0, 0) image", "a (0, 0, 255) image", "a (255, 0, 0) image"]
    assert answers == ["a (255, 0, 0) image | q1", "a (0, 0, 255) image | q2", "a (255, 0, 0) image | q3"]


def test_the_prompt_and_bad_input() -> None:
    image = Image.new("RGB", (8, 8))
    prompt = look_first_prompt(image, "where is it?", "  a red circle at top  ")
    assert prompt == [
        ("user", [image, DESCRIBE_REQUEST]),
        ("assistant", ["a red circle at top"]),
        ("user", ["where is it?"]),
    ]
    with pytest.raises(InputError, match="''"):
        look_first_prompt(image, "", "x")
    with pytest.raises(InputError, match="2 images but 1 questions"):
        answer_looking_first(RecordingModel(), [image, image], ["q"])
    assert answer_looking_first(RecordingModel(), [], []) == ([], [])
