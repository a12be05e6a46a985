"""emu-tiny's agent dialogues: real Messages, rendered by the agent's own code, with valid tool calls."""

from __future__ import annotations

import random

import pytest

from emu_agent.agent.prompt import conversation_for_model
from emu_agent.model.message_rendering import messages_to_turns
from emu_agent.tools.inputs import _DESCRIPTIONS, BUILTIN_SPECS
from emu_agent.world.checker import check_image
from emu_agent.world.dialogues import DIALOGUES, dialogue_examples, sample_dialogue


@pytest.mark.parametrize("kind", sorted(DIALOGUES))
@pytest.mark.parametrize("split", ["train", "eval"])
def test_every_kind_builds_valid_calls_and_examples(kind: str, split: str) -> None:
    rng = random.Random(f"dialogue/{kind}/{split}")
    for _ in range(5):
        dialogue = sample_dialogue(rng, split=split, kind=kind)
        assert dialogue.kind == kind
        images = [ref for m in dialogue.messages for ref in m.images]  # tool results' images included
        handles = {f"image_{i + 1}" for i in range(len(images))}
        for message in dialogue.messages:
            for call in message.tool_calls:
                _DESCRIPTIONS[call.name][1].model_validate(call.arguments)  # a valid call of a built-in tool
                if "image" in call.arguments:
                    assert call.arguments["image"] in handles
        examples = dialogue_examples(dialogue)
        assert len(examples) == sum(1 for m in dialogue.messages if m.role == "assistant")
        for example in examples:
            turn = example.meta["turn"]
            assert example.prompt == conversation_for_model(
                dialogue.messages[:turn], tools=list(BUILTIN_SPECS.values())
            )
        if dialogue.final_scene is not None:  # the last image shows the scene the dialogue ends on
            last = images[-1]
            assert check_image(dialogue.pil_by_sha[last.sha256], dialogue.final_scene).ok


def test_follow_up_edits_the_earlier_picture_by_its_handle() -> None:
    rng = random.Random(0)
    edits = 0
    for _ in range(40):
        dialogue = sample_dialogue(rng, kind="follow_up")
        users = [m for m in dialogue.messages if m.role == "user"]
        calls = [c for m in dialogue.messages for c in m.tool_calls]
        assert len(users) == 2 and not users[1].images  # the second request names no image: it refers back
        assert calls[0].name == "generate_image"
        if calls[1].name == "edit_image":
            edits += 1
            assert calls[1].arguments["image"] == "image_1"
            results = [ref for m in dialogue.messages for r in m.tool_results for ref in r.images]
            assert results[1].derived_from == results[0].sha256
        else:
            assert calls[1].name == "generate_image"
        second_turn = dialogue_examples(dialogue)[2]  # the second request's tool call sees the first exchange
        turns = messages_to_turns(second_turn.prompt)
        rendered = " ".join(x for _, items in turns for x in items if isinstance(x, str))
        assert "image_1:" in rendered and users[0].text in rendered
    assert 15 < edits < 40


def test_make_it_colour_requests_carry_the_colour_into_the_instruction() -> None:
    rng = random.Random(1)
    seen = 0
    for _ in range(200):
        dialogue = sample_dialogue(rng, kind="multi_step")
        request = dialogue.messages[0].text
        if ", then make it " not in request:
            continue
        seen += 1
        colour = request.split(", then make it ")[1].split(",")[0].rstrip(".")
        instruction = [c for m in dialogue.messages for c in m.tool_calls][1].arguments["instruction"]
        assert instruction.rstrip(".").endswith(colour), (request, instruction)
    assert seen > 5
