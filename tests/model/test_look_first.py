"""Looking first: one description per distinct image, then every question after its image's description.

The model here is a recording stand-in: this tests the orchestration (batching, the prompt the second pass
sees); emu-tiny answering by looking first is tested in ``tests/world/test_emu_tiny.py``."""

from __future__ import annotations

import pytest
from PIL import Image

from emu_agent.errors import InputError
from emu_agent.model.look_first import DESCRIBE_REQUEST, answer_looking_first, look_first_prompt


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
