"""Tier 1: grammar-constrained tool calls on a real (random-weight) Emu model and on tokenizers with and without
tool-call marker tokens: every call parses and validates against the tool's schema."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch

from emu_agent.agent import Agent
from emu_agent.agent.backends import LocalEmuBackend
from emu_agent.agent.events import Usage
from emu_agent.agent.grammar import GrammarLogitsProcessor, compile_matcher
from emu_agent.agent.prompt import conversation_for_model
from emu_agent.agent.tool_calling import ParsedCall, ToolCallConstraint, parse_reply, validate_call
from emu_agent.messages import Message
from emu_agent.model.message_rendering import render_tool_call
from emu_agent.model.tokenizer import EmuTokenizer
from emu_agent.tools.base import Tool
from emu_agent.tools.inputs import _DESCRIPTIONS

pytest.importorskip("llguidance")


def _builtin_tools() -> dict[str, Tool]:
    """Stand-ins for the built-in tools: their real names, descriptions and input models; they just echo."""
    tools = {}
    for name, (description, model) in _DESCRIPTIONS.items():
        cls = type(
            f"Fake_{name}",
            (Tool,),
            {"name": name, "description": description, "input_model": model, "run": lambda self, a, c: "ok"},
        )
        tools[name] = cls()
    return tools


TOOLS = _builtin_tools()
SPECS = tuple(t.spec for t in TOOLS.values())
# the random model's context (1024) and char-level tokenizer fit two tool specs in the prompt
MODEL_SPECS = tuple(TOOLS[n].spec for n in ("generate_image", "describe_image"))


@pytest.fixture(scope="module")
def model() -> Any:
    from emu_agent.model.random_model import random_emu_model

    return random_emu_model(seed=0)


def _reply(model: Any, choice: str, seed: int, prompt: str = "draw a red circle at top left", budget: int = 160) -> str:
    backend = LocalEmuBackend(model)
    view = conversation_for_model([Message.user(prompt)], tools=MODEL_SPECS)
    options = {"max_new_tokens": budget, "do_sample": True, "temperature": 1.0, "seed": seed}
    constraint = ToolCallConstraint(MODEL_SPECS, choice)
    cancel = threading.Event()
    stream = backend.stream_reply(view, constraint=constraint, options=options, usage=Usage(), cancelled=cancel)
    return "".join(stream)


def _valid_calls(text: str) -> list[ParsedCall]:
    reply = parse_reply(text, repair=False)  # strict: no repair needed
    assert not reply.errors, text
    for call in reply.calls:
        validate_call(call, TOOLS, repair=False)
    return reply.calls


@pytest.mark.parametrize("seed", range(4))
def test_required_always_gives_valid_calls(model: Any, seed: int) -> None:
    text = _reply(model, "required", seed)
    calls = _valid_calls(text)
    assert calls, text
    assert parse_reply(text).text == ""  # nothing but calls


@pytest.mark.parametrize("seed", range(4))
def test_a_tight_token_budget_still_closes_the_call(model: Any, seed: int) -> None:
    """Closing pressure: with 112 new tokens (the shortest call is ~80 of this char-level tokenizer's tokens; a
    random model left alone writes strings of hundreds) the call still completes and validates."""
    calls = _valid_calls(_reply(model, "required", seed, budget=112))
    assert calls


@pytest.mark.parametrize(("seed", "name"), [(0, "describe_image"), (1, "generate_image"), (2, "describe_image")])
def test_named_tool_gives_exactly_that_call(model: Any, seed: int, name: str) -> None:
    calls = _valid_calls(_reply(model, name, seed))
    assert [c.name for c in calls] == [name]


@pytest.mark.parametrize("seed", range(2))
def test_none_and_auto_never_leave_a_broken_call(model: Any, seed: int) -> None:
    assert "<tool_call>" not in _reply(model, "none", seed)
    _valid_calls(_reply(model, "auto", seed))  # text, or text then valid calls


def _random_walk(tokenizer: EmuTokenizer, choice: str, seed: int, budget: int = 120) -> str:
    """Decode with random logits under the grammar (no model): the worst case for the constraint."""
    processor = GrammarLogitsProcessor(compile_matcher(SPECS, choice, tokenizer), tokenizer, max_new_tokens=budget)
    generator = torch.Generator().manual_seed(seed)
    ids: list[int] = []
    for _ in range(budget):
        logits = processor(torch.tensor([ids], dtype=torch.long), torch.randn(1, len(tokenizer), generator=generator))
        token = int(torch.distributions.Categorical(logits=logits[0]).sample())
        if token == tokenizer.eos_token_id:
            break
        ids.append(token)
    return tokenizer.decode(ids, skip_special_tokens=False)


@pytest.fixture(scope="module")
def marker_tokenizer() -> EmuTokenizer:
    """A tokenizer where the markers are single special tokens, as in emu-tiny."""
    corpus = [render_tool_call("generate_image", {"prompt": "a red circle"}), "draw a blue square at top left"] * 20
    return EmuTokenizer.train(corpus, vocab_size=320, extra_special_tokens=["<tool_call>", "</tool_call>"])


@pytest.mark.parametrize("seed", range(3))
def test_random_logits_with_marker_tokens(marker_tokenizer: EmuTokenizer, seed: int) -> None:
    text = _random_walk(marker_tokenizer, "required", seed)
    assert _valid_calls(text), text
    assert [c.name for c in _valid_calls(_random_walk(marker_tokenizer, "edit_image", seed))] == ["edit_image"]


def test_canonical_call_is_accepted_token_by_token(marker_tokenizer: EmuTokenizer) -> None:
    """What emu-tiny was trained to write (markers as special tokens) passes the grammar unchanged."""
    text = render_tool_call("edit_image", {"image": "image_1", "instruction": "make it blue"})
    ids = marker_tokenizer.encode(text, add_bos=False)
    assert marker_tokenizer.convert_tokens_to_ids("<tool_call>") in ids
    processor = GrammarLogitsProcessor(compile_matcher(SPECS, "required", marker_tokenizer), marker_tokenizer)
    for index, token in enumerate(ids):
        logits = processor(torch.tensor([ids[:index]]), torch.zeros(1, len(marker_tokenizer)))
        assert logits[0, token] == 0, f"token {index} ({marker_tokenizer.convert_ids_to_tokens(token)}) refused"
    final = processor(torch.tensor([ids]), torch.zeros(1, len(marker_tokenizer)))
    assert final[0, marker_tokenizer.eos_token_id] == 0


def test_agent_on_random_model_runs_a_forced_tool(model: Any, tmp_path: Any) -> None:
    seen: list[Any] = []

    class Draw(Tool):
        name = "generate_image"
        description = _DESCRIPTIONS["generate_image"][0]
        input_model = _DESCRIPTIONS["generate_image"][1]

        def run(self, arguments: Any, context: Any) -> str:
            seen.append(arguments)
            return "drawn"

    agent = Agent(
        model, tools=[Draw()], tool_choice="generate_image", max_steps=2, on_step_limit="final",
        media_store=tmp_path, max_new_tokens=96,
    )  # fmt: skip
    result = agent.run("draw a red circle at top left")
    assert len(seen) == 1 and seen[0].prompt
    assert result.stop_reason == "final" and "<tool_call>" not in result.text
    assert result.usage.output_tokens > 0 and result.usage.input_text_tokens > 0
    assert result.steps[0].tool_calls[0].name == "generate_image"
