"""Tier 0: parsing replies, JSON repair and call validation (the unconstrained path)."""

from __future__ import annotations

import pytest

from emu_agent.agent.tool_calling import ParsedCall, loads_lenient, parse_reply, retry_message, validate_call
from emu_agent.errors import ToolError
from emu_agent.tools.base import tool


@tool
def generate_image(prompt: str, seed: int | None = None) -> str:
    """Draw a new image from a text prompt."""
    return prompt


TOOLS = {"generate_image": generate_image}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1,}', {"a": 1}),
        ("{'a': 'it''s', 'b': True, 'c': None}", None),
        ("{a: 1, 'b': [1, 2,]}", {"a": 1, "b": [1, 2]}),
        ('```json\n{"a": {"b": "x"\n```', {"a": {"b": "x"}}),
        ('sure: {"a": "unterminated', {"a": "unterminated"}),
    ],
)
def test_loads_lenient_repairs_common_damage(text: str, expected: object) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            loads_lenient(text)
        return
    value, repairs = loads_lenient(text)
    assert value == expected
    assert repairs


def test_loads_lenient_python_literals_and_quotes() -> None:
    value, _ = loads_lenient("{'a': 'x', 'b': True, 'c': None}")
    assert value == {"a": "x", "b": True, "c": None}


def test_parse_reply_splits_text_and_several_calls() -> None:
    text = (
        'Sure. <tool_call>{"name": "generate_image", "arguments": {"prompt": "a"}}</tool_call>'
        '<tool_call>{"name": "generate_image", "arguments": {"prompt": "b"}}</tool_call>'
    )
    reply = parse_reply(text)
    assert reply.text == "Sure."
    assert [c.arguments["prompt"] for c in reply.calls] == ["a", "b"]
    assert not reply.errors


def test_parse_reply_tolerates_spaced_markers_and_a_missing_close() -> None:
    reply = parse_reply('<tool_call> {"name": "generate_image", "arguments": {"prompt": "a"}} </tool_call>')
    assert reply.calls[0].name == "generate_image"
    reply = parse_reply('<tool_call>{"name": "generate_image", "arguments": {"prompt": "a"}}')
    assert reply.calls[0].arguments == {"prompt": "a"}


def test_parse_reply_reads_other_shapes() -> None:
    reply = parse_reply('<tool_call>{"function": {"name": "x", "parameters": "{\\"p\\": 1}"}}</tool_call>')
    call = reply.calls[0]
    assert (call.name, call.arguments) == ("x", {"p": 1})
    assert any("parameters" in r for r in call.repairs)


def test_parse_reply_bare_json_only_when_it_names_a_tool() -> None:
    fenced = '```json\n{"name": "generate_image", "arguments": {"prompt": "x"}}\n```'
    assert parse_reply(fenced, tool_names=TOOLS).calls[0].name == "generate_image"
    assert not parse_reply('{"name": "other", "arguments": {}}', tool_names=TOOLS).calls
    assert not parse_reply("just text", tool_names=TOOLS).calls


def test_parse_reply_reports_unreadable_calls() -> None:
    reply = parse_reply("<tool_call>not json at all</tool_call> done")
    assert not reply.calls
    assert "can't read the tool call" in reply.errors[0]
    assert reply.text == "done"


def test_validate_call_repairs_name_and_drops_unknown_arguments() -> None:
    call = ParsedCall(name="Generate-Image", arguments={"prompt": "a", "style": "x"}, raw="")
    found, arguments = validate_call(call, TOOLS)
    assert found is generate_image
    assert arguments.prompt == "a"
    assert call.name == "generate_image"
    assert any("style" in r for r in call.repairs)


def test_validate_call_names_the_problem() -> None:
    with pytest.raises(ToolError, match=r"unknown tool 'generate_imag'.*Did you mean 'generate_image'"):
        validate_call(ParsedCall(name="generate_imag", arguments={}, raw=""), TOOLS)
    with pytest.raises(ToolError, match=r"'prompt' is required"):
        validate_call(ParsedCall(name="generate_image", arguments={"seed": 1}, raw=""), TOOLS)
    with pytest.raises(ToolError, match=r"'seed'='x'"):
        validate_call(ParsedCall(name="generate_image", arguments={"prompt": "a", "seed": "x"}, raw=""), TOOLS)


def test_retry_message_states_problem_and_format() -> None:
    text = retry_message(["it has no tool call"], tool_choice="generate_image")
    assert "it has no tool call" in text and "generate_image" in text and "<tool_call>" in text
