"""Tier 0: the agent loop on a scripted model: answers, tool calls, errors, limits, cancellation, async."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from emu_agent.agent import Agent, AgentResult
from emu_agent.agent.events import ErrorEvent, FinalEvent, ToolCallEvent, ToolProgressEvent, ToolResultEvent
from emu_agent.errors import InputError, StepLimitError, ToolError
from emu_agent.messages import Message
from emu_agent.testing import ScriptedModel

call = ScriptedModel.call


def _consistent(messages: list[Message]) -> None:
    """Every tool call has exactly one result."""
    calls = [c.id for m in messages for c in m.tool_calls]
    results = [r.tool_call_id for m in messages for r in m.tool_results]
    assert sorted(calls) == sorted(results)


def test_plain_answer(store: Any, make_agent: Any, tools: Any) -> None:
    agent, model = make_agent(["Hello there."])
    result = agent.run("hi")
    assert isinstance(result, AgentResult)
    assert (result.text, result.stop_reason, len(result.steps)) == ("Hello there.", "final", 1)
    assert [m.role for m in result.messages] == ["user", "assistant"]
    assert result.usage.model_calls == 1 and result.usage.output_tokens == 2
    assert model.prompts[0][0].role == "system" and "<tools>" in model.prompts[0][0].text


def test_tool_call_with_image_result_streams_events(store: Any, make_agent: Any, tools: Any) -> None:
    agent, model = make_agent([call("draw", prompt="a red circle"), "Here is image_1."])
    events = list(agent.stream("draw a red circle"))
    types = [e.type for e in events]
    assert types.index("tool_call") < types.index("tool_progress") < types.index("tool_result") < types.index("final")
    progress = next(e for e in events if isinstance(e, ToolProgressEvent))
    assert (progress.fraction, progress.message) == (0.5, "half way")
    result = events[-1].result
    assert result.text == "Here is image_1." and len(result.images) == 1
    assert result.images[0].load().getpixel((0, 0)) == (255, 0, 0)
    shown = model.prompts[1][-1]  # the tool result, labelled with its handle, as the model saw it
    assert shown.role == "tool" and shown.parts[0].content[0].text == "image_1:"
    assert result.usage.tool_calls == 1 and result.usage.tool_time_s > 0
    _consistent(result.messages)


def test_several_calls_in_one_turn_and_handles(store: Any, make_agent: Any, tools: Any) -> None:
    replies = [
        call("draw", prompt="a red circle") + call("draw", prompt="a blue square"),
        call("recolour", image="image_2", colour="green"),
        "done",
    ]
    agent, _ = make_agent(replies)
    result = agent.run("draw two things then make the second green")
    assert len(result.steps[0].tool_calls) == 2
    assert [r.load().getpixel((0, 0)) for r in result.images] == [(255, 0, 0), (0, 0, 255), (0, 128, 0)]
    assert result.images[2].derived_from == result.images[1].sha256


@pytest.mark.parametrize(
    ("reply", "kind", "text"),
    [
        (call("paint", prompt="x"), "unknown_tool", "unknown tool 'paint'"),
        (call("draw", colour="red"), "invalid_arguments", "'prompt' is required"),
        (call("explode", reason="test"), "tool_error", "RuntimeError: boom: test"),
        (call("slow", seconds=5), "tool_timeout", "timed out after 0.2 s"),
        (call("garbage"), "tool_output", "returned unusable output"),
        (call("recolour", image="image_9", colour="red"), "tool_error", "unknown image 'image_9'"),
    ],
)
def test_bad_calls_become_observations(make_agent: Any, reply: str, kind: str, text: str) -> None:
    agent, model = make_agent([reply, "Sorry, that failed."])
    conv = agent.conversation()
    events = list(conv.stream("do it"))
    error = next(e for e in events if isinstance(e, ErrorEvent))
    assert error.kind == kind and text in error.message and not error.fatal
    result_event = next(e for e in events if isinstance(e, ToolResultEvent))
    assert result_event.result.is_error and text in result_event.result.text
    assert "Error:" in model.prompts[1][-1].text  # the model saw the error
    assert events[-1].result.text == "Sorry, that failed."
    _consistent(conv.messages)
    model.replies.append("still here")
    assert conv.run("and now?").text == "still here"  # the conversation stays usable


def test_raise_tool_errors(store: Any, make_agent: Any, tools: Any) -> None:
    agent, _ = make_agent([call("explode", reason="x") + call("draw", prompt="y")], raise_tool_errors=True)
    conv = agent.conversation()
    with pytest.raises(ToolError, match="boom: x"):
        conv.run("go")
    _consistent(conv.messages)
    assert conv.messages[-1].tool_results[1].text == "Not run: the run stopped first."


def test_step_limit_raises_with_the_partial_result(store: Any, make_agent: Any, tools: Any) -> None:
    agent, model = make_agent([call("draw", prompt="a")], max_steps=2)
    model.repeat_last = True
    conv = agent.conversation()
    events: list[Any] = []
    with pytest.raises(StepLimitError) as info:
        for event in conv.stream("loop forever"):
            events.append(event)
    assert events[-1].kind == "step_limit" and events[-1].fatal
    assert len(info.value.result.steps) == 2 and len(info.value.result.images) == 2
    _consistent(conv.messages)
    model.replies, model.repeat_last = ["ok"], False
    model.prompts.clear()
    assert conv.run("stop now").text == "ok"


def test_step_limit_final_forces_an_answer(store: Any, make_agent: Any, tools: Any) -> None:
    agent, model = make_agent([call("draw", prompt="a"), "Final answer."], max_steps=2, on_step_limit="final")
    result = agent.run("go")
    assert (result.text, result.stop_reason) == ("Final answer.", "final")
    assert "<tools>" not in model.prompts[1][0].text  # the last step offered no tools


def test_cancellation_stops_the_run(store: Any, make_agent: Any, tools: Any) -> None:
    model = ScriptedModel(["word " * 200], delay=0.005)
    agent = Agent(model, tools=tools, media_store=store)
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    events = list(agent.stream("talk", cancel=cancel))
    assert any(isinstance(e, ErrorEvent) and e.kind == "cancelled" for e in events)
    result = events[-1].result
    assert result.stop_reason == "cancelled" and 0 < len(result.text) < 1000


def test_conversation_cancel_method(store: Any, make_agent: Any, tools: Any) -> None:
    model = ScriptedModel(["word " * 400], delay=0.005)
    conv = Agent(model, media_store=store).conversation()
    assert conv.cancel() is False
    threading.Timer(0.1, conv.cancel).start()
    assert conv.run("talk").stop_reason == "cancelled"


def test_conversation_continues_and_keeps_handles(store: Any, make_agent: Any, tools: Any) -> None:
    agent, model = make_agent([call("draw", prompt="a red circle"), "image_1 drawn."])
    conv = agent.conversation()
    conv.run("draw a red circle")
    model.replies += [call("recolour", image="image_1", colour="blue"), "image_2 is blue."]
    result = conv.run("make it blue")
    assert result.text == "image_2 is blue."
    assert conv.handle_of(result.images[0]) == "image_2"
    assert len(model.prompts[2]) > len(model.prompts[0])  # the history was shown
    restored = type(conv).from_json(agent, conv.to_json())
    assert restored.messages == conv.messages and restored.images[-1].load().getpixel((0, 0)) == (0, 0, 255)


def test_one_run_at_a_time_per_conversation(store: Any, make_agent: Any, tools: Any) -> None:
    model = ScriptedModel(["a b c"], delay=0.05, repeat_last=True)
    conv = Agent(model, media_store=store).conversation()
    stream = conv.stream("one")
    next(stream)
    with pytest.raises(InputError, match="already running"):
        conv.run("two")
    stream.close()
    assert conv.run("three").text == "a b c"


def test_input_forms(store: Any, tmp_path: Path, make_agent: Any, tools: Any) -> None:
    agent, model = make_agent(["ok"])
    path = tmp_path / "x.png"
    Image.new("RGB", (4, 4), "white").save(path)
    agent.run(["compare", Image.new("RGB", (4, 4), "black"), "with", path])
    user = model.prompts[0][-1]
    assert [p.type for p in user.parts] == ["text", "text", "image", "text", "text", "image"]  # handles added
    model.replies.append("ok2")
    assert agent.run([Message.system("be brief"), Message.user("hi")]).text == "ok2"
    assert "be brief" in model.prompts[1][0].text
    with pytest.raises(InputError):
        agent.run("   ")
    with pytest.raises(InputError):
        agent.run(42)


def test_unreadable_reply_is_retried_with_the_problem(store: Any, make_agent: Any, tools: Any) -> None:
    agent, model = make_agent(["<tool_call>{oops</tool_call>", call("draw", prompt="x"), "done"])
    events = list(agent.stream("draw x"))
    parse_errors = [e for e in events if isinstance(e, ErrorEvent) and e.kind == "parse_error"]
    assert len(parse_errors) == 1 and "asking the model again" in parse_errors[0].message
    retry_prompt = model.prompts[1]
    assert "could not be used" in retry_prompt[-1].text and retry_prompt[-2].role == "assistant"
    result = events[-1].result
    assert result.steps[0].retries == 1 and result.text == "done"
    assert all("could not be used" not in m.text for m in result.messages)  # retries stay out of history


def test_retries_are_bounded(store: Any, make_agent: Any, tools: Any) -> None:
    agent, model = make_agent(["<tool_call>{bad"], max_retries=1)
    model.repeat_last = True
    result = agent.run("x")
    assert result.stop_reason == "parse_error" and len(model.prompts) == 2


def test_required_tool_choice_retries_without_a_call(store: Any, make_agent: Any, tools: Any) -> None:
    agent, model = make_agent(["no", call("draw", prompt="x"), "fine"], tool_choice="required")
    result = agent.run("x")
    assert result.steps[0].retries == 1 and "You must call a tool" in model.prompts[1][-1].text


def test_flagged_calls_are_not_run_unless_allowed(store: Any, make_agent: Any, tools: Any) -> None:
    replies = [
        call("read_sign", image="image_1"),
        call("draw", prompt="a skull and crossbones"),
        "I won't do that without you asking.",
    ]
    agent, _ = make_agent(replies)
    sign = Image.new("RGB", (4, 4), "white")
    events = list(agent.stream(["what does this sign say?", sign]))
    flagged = [e for e in events if isinstance(e, ToolCallEvent) and e.flagged]
    assert len(flagged) == 1 and not flagged[0].will_run and "tool result" in flagged[0].flag_reason
    assert any(isinstance(e, ErrorEvent) and e.kind == "flagged" for e in events)
    assert not events[-1].result.images
    assert events[-1].result.steps[1].flagged == [flagged[0].call.id]

    approvals: list[str] = []
    agent2, _ = make_agent(replies, run_flagged_tool_calls=lambda c, r: approvals.append(r) or True)
    result = agent2.run(["what does this sign say?", sign])
    assert len(approvals) == 1 and len(result.images) == 1


def test_memory_hook(store: Any, make_agent: Any, tools: Any) -> None:
    class Memory:
        def __init__(self) -> None:
            self.asked: list[Any] = []
            self.stored: list[Any] = []

        def context_for(self, input: Any, *, token_budget: int) -> list[Message]:
            self.asked.append((input, token_budget))
            return [Message.user("earlier: my cat is called Tom"), Message.assistant("noted")]

        def add_turns(self, messages: Any, *, session: str | None = None) -> None:
            self.stored.append((list(messages), session))

    memory = Memory()
    agent, model = make_agent(["Tom."], memory=memory, memory_token_budget=99)
    conv = agent.conversation()
    conv.run("what is my cat called?")
    assert memory.asked[0][1] == 99 and memory.asked[0][0][0].text == "what is my cat called?"
    assert "my cat is called Tom" in model.prompts[0][1].text
    stored, session = memory.stored[0]
    assert session == conv.id and [m.role for m in stored] == ["user", "assistant"]
    assert "earlier" not in " ".join(m.text for m in conv.messages)  # recall is context, not history


def test_memory_failure_is_an_event_not_a_crash(store: Any, make_agent: Any, tools: Any) -> None:
    class Broken:
        def context_for(self, input: Any, *, token_budget: int) -> list[Message]:
            raise OSError("disk gone")

        def add_turns(self, messages: Any, *, session: str | None = None) -> None:
            raise OSError("disk gone")

    agent, _ = make_agent(["fine"], memory=Broken())
    events = list(agent.stream("hi"))
    assert [e.kind for e in events if isinstance(e, ErrorEvent)] == ["memory_error", "memory_error"]
    assert events[-1].result.text == "fine"


def test_async_run_and_stream(store: Any, make_agent: Any, tools: Any) -> None:
    agent, _ = make_agent([call("draw", prompt="a"), "one", "two"])

    async def main() -> tuple[Any, list[str]]:
        result = await agent.arun("first")
        types = [e.type async for e in agent.astream("second")]
        return result, types

    result, types = asyncio.run(main())
    assert result.text == "one" and len(result.images) == 1
    assert types[-1] == "final" and "token" in types


def test_async_consumer_cancel_cancels_the_run(store: Any, make_agent: Any, tools: Any) -> None:
    model = ScriptedModel(["word " * 1000], delay=0.002)
    agent = Agent(model, media_store=store)
    cancel = threading.Event()

    async def main() -> None:
        async for event in agent.astream("talk", cancel=cancel):
            if event.type == "token":
                break

    asyncio.run(main())
    assert cancel.is_set()


def test_agent_validates_its_options(store: Any, make_agent: Any, tools: Any) -> None:
    model = ScriptedModel([])
    with pytest.raises(InputError, match="tool_choice"):
        Agent(model, tools=tools, tool_choice="paint", media_store=store)
    with pytest.raises(InputError, match="max_steps"):
        Agent(model, max_steps=0, media_store=store)
    with pytest.raises(InputError, match="two tools"):
        Agent(model, tools=[tools[0], tools[0]], media_store=store)
    with pytest.raises(InputError, match="memory"):
        Agent(model, memory=object(), media_store=store)


def test_final_event_is_last_and_serialisable(store: Any, make_agent: Any, tools: Any) -> None:
    agent, _ = make_agent([call("draw", prompt="a"), "ok"])
    events = list(agent.stream("x"))
    assert isinstance(events[-1], FinalEvent)
    for event in events:
        type(event).model_validate_json(event.model_dump_json())


def test_memory_with_a_context_object_and_add(make_agent: Any) -> None:
    """MultimodalMemory's shape: context_for(..., exclude_session=) -> MemoryContext; add(messages, session=)."""

    class Context:
        def __init__(self, text: str) -> None:
            self.text = text

        def __bool__(self) -> bool:
            return bool(self.text)

        def to_message(self) -> Message:
            return Message.user(self.text)

    class Memory:
        def __init__(self) -> None:
            self.excluded: list[str] = []
            self.added: list[Any] = []

        def context_for(self, input: Any, token_budget: int, *, exclude_session: str | None = None) -> Context:
            self.excluded.append(exclude_session)
            return Context("Relevant memories: the dog is Rex")

        def add(self, messages: Any, *, session: str | None = None) -> list[str]:
            self.added.append(session)
            return []

    memory = Memory()
    agent, model = make_agent(["Rex."], memory=memory)
    conv = agent.conversation()
    conv.run("dog's name?")
    assert memory.excluded == [conv.id] and memory.added == [conv.id]
    assert "the dog is Rex" in model.prompts[0][1].text
