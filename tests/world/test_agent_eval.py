"""The tool-calling rows of ``emu-agent eval``: parsing, validity, routing and argument accuracy.

The scorer is tested here with stand-in models that answer from the dialogues' reference turns (the real model is
scored in tests/world/test_emu_tiny.py and by ``emu-agent eval``).
"""

from __future__ import annotations

import json
import random
from typing import Any

from emu_agent.model.message_rendering import TOOL_CALL_END, TOOL_CALL_START
from emu_agent.world.agent_eval import parse_tool_calls, score_tool_calls
from emu_agent.world.dialogues import dialogue_examples, sample_dialogue


def _call(name: str, arguments: dict[str, Any]) -> str:
    return f"{TOOL_CALL_START}{json.dumps({'name': name, 'arguments': arguments})}{TOOL_CALL_END}"


def test_parse_tool_calls_validates_every_block() -> None:
    good = _call("generate_image", {"prompt": "a red circle at top left"})
    assert parse_tool_calls(good) == ([("generate_image", {"prompt": "a red circle at top left"})], True)
    assert parse_tool_calls("a red circle at top left.") == ([], True)
    assert parse_tool_calls(_call("paint", {"prompt": "x"}))[1] is False  # not a built-in tool
    assert parse_tool_calls(_call("generate_image", {"colour": "red"}))[1] is False  # fails the input model
    assert parse_tool_calls(f"{TOOL_CALL_START}{{not json{TOOL_CALL_END}")[1] is False
    assert parse_tool_calls(good + TOOL_CALL_START + '{"name": "generate_image"')[1] is False  # unterminated


class _Replay:
    """Answers each prompt with a function of the reference turn that follows it."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers

    def generate_texts(self, prompts: list[Any], **_: Any) -> list[str]:
        return [self.answers[_key(p)] for p in prompts]


def _key(prompt: list[tuple[str, list[Any]]]) -> str:
    return repr([(role, [x if isinstance(x, str) else type(x).__name__ for x in items]) for role, items in prompt])


def _reference_answers(seed: int, limit: int, change: Any = None) -> dict[str, str]:
    from emu_agent.world.agent_eval import _with_pixels

    rng = random.Random(f"{seed}:agent")
    answers = {}
    for _ in range(limit):
        for ex in dialogue_examples(sample_dialogue(rng, split="eval")):
            answers[_key(_with_pixels(ex))] = change(ex) if change else ex.answer
    return answers


def test_reference_turns_score_perfectly() -> None:
    rows = {r.task: r for r in score_tool_calls(_Replay(_reference_answers(3, 6)), seed=3, limit=6, constrained=False)}
    assert rows["tool_call_validity"].score == 1.0 and rows["tool_routing"].score == 1.0
    assert rows["tool_arguments"].score == 1.0 and rows["tool_arguments"].n > 0


def test_wrong_arguments_count_against_arguments_but_not_routing() -> None:
    def wrong_colour(ex: Any) -> str:
        if ex.meta["expected_tool"] is None:
            return ex.answer
        arguments = {k: (v + " please" if isinstance(v, str) and k != "image" else v)
                     for k, v in ex.meta["expected_arguments"].items()}  # fmt: skip
        return _call(ex.meta["expected_tool"], arguments)

    rows = {
        r.task: r
        for r in score_tool_calls(_Replay(_reference_answers(3, 6, wrong_colour)), seed=3, limit=6, constrained=False)
    }
    assert rows["tool_routing"].score == 1.0
    assert rows["tool_arguments"].score == 0.0
