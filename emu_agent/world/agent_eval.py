"""Tool-calling scores for ``emu-agent eval``: validity of the model's own tool calls, and routing.

Every assistant turn of held-out agent dialogues (eval-only phrasings and held-out compositions included) is
generated greedily, without any decoding constraint, so the scores measure the model itself:

- ``tool_call_validity``: of the turns where the model wrote a tool call, the share whose every
  ``<tool_call>`` block parses as ``{"name", "arguments"}``, names a built-in tool and validates against its
  input model. (The agent's constrained decoder makes this 100% by construction; this is the model alone.)
- ``tool_routing``: the share of turns where the model chose what the dialogue needs: the right tool, or no
  tool for a final or plain answer.
- ``tool_arguments``: of the turns that need a tool call, the share whose first call has the right tool *and*
  exactly the reference arguments (e.g. ``edit_image(image="image_1", instruction="make the red circle blue.")``
  for "draw a red circle at top left, then make it blue"). No target in the issue; it explains failures that
  routing alone does not show.

The same three rows with an ``agent_`` prefix score the same turns decoded as :class:`~emu_agent.Agent` decodes
them with a local model: greedily under the JSON-schema grammar of the built-in tools. That is what a user of the
agent gets; the difference between the two sets of rows is what the grammar adds.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from emu_agent.model.message_rendering import TOOL_CALL_END, TOOL_CALL_START
from emu_agent.world.report import TaskScore

__all__ = ["parse_tool_calls", "score_tool_calls"]

_MAX_NEW_TOKENS = 96
_CALL = re.compile(re.escape(TOOL_CALL_START) + r"(.*?)" + re.escape(TOOL_CALL_END), re.S)


def parse_tool_calls(text: str) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """``([(name, arguments)...], all_valid)`` for the tool-call blocks in ``text``."""
    from pydantic import ValidationError

    from emu_agent.tools.inputs import _DESCRIPTIONS

    calls: list[tuple[str, dict[str, Any]]] = []
    valid = True
    blocks = _CALL.findall(text)
    if TOOL_CALL_START in text and len(blocks) != text.count(TOOL_CALL_START):
        valid = False  # an unterminated call
    for block in blocks:
        try:
            payload = json.loads(block)
            name, arguments = payload["name"], payload["arguments"]
            _DESCRIPTIONS[name][1].model_validate(arguments)
        except (ValueError, KeyError, TypeError, ValidationError):
            valid = False
            continue
        calls.append((name, arguments))
    return calls, valid


def score_tool_calls(
    model: Any, *, seed: int = 0, limit: int = 50, batch_size: int = 16, constrained: bool = True
) -> list[TaskScore]:
    """The three rows over the assistant turns of ``limit`` held-out dialogues, for the model's own output;
    with ``constrained``, three more (``agent_...``) for the same turns decoded as the agent decodes them, under
    the tool-call grammar of :class:`~emu_agent.agent.tool_calling.ToolCallConstraint` (one turn at a time)."""
    from emu_agent.world.dialogues import dialogue_examples, sample_dialogue

    rng = random.Random(f"{seed}:agent")
    examples = [ex for _ in range(limit) for ex in dialogue_examples(sample_dialogue(rng, split="eval"))]
    outputs: list[str] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        prompts = [_with_pixels(ex) for ex in chunk]
        outputs += model.generate_texts(prompts, max_new_tokens=_MAX_NEW_TOKENS, skip_special_tokens=False)
    rows = _score_rows(examples, outputs, prefix="", note="unconstrained decoding")
    if constrained:
        from emu_agent.agent.tool_calling import ToolCallConstraint
        from emu_agent.tools.inputs import BUILTIN_SPECS

        constraint = ToolCallConstraint(tuple(BUILTIN_SPECS.values()), "auto")  # the agent's default tool_choice
        agent_outputs = [_constrained_reply(model, ex, constraint) for ex in examples]
        rows += _score_rows(examples, agent_outputs, prefix="agent_", note="the agent's grammar-constrained decoding")
    return rows


def _constrained_reply(model: Any, example: Any, constraint: Any) -> str:
    """One assistant turn decoded greedily under ``constraint`` (a fresh grammar processor per turn)."""
    processor = constraint.logits_processor(model.tokenizer, max_new_tokens=_MAX_NEW_TOKENS)
    return model.generate_text(
        _with_pixels(example), max_new_tokens=_MAX_NEW_TOKENS, skip_special_tokens=False, logits_processor=processor
    )


def _score_rows(examples: list[Any], outputs: list[str], *, prefix: str, note: str) -> list[TaskScore]:
    routed, valid_flags, argued = [], [], []
    for example, output in zip(examples, outputs, strict=True):
        calls, valid = parse_tool_calls(output)
        wrote_call = TOOL_CALL_START in output
        if wrote_call:
            valid_flags.append(valid)
        chosen = calls[0][0] if calls else (None if not wrote_call else "<invalid>")
        routed.append(chosen == example.meta["expected_tool"])
        if example.meta["expected_tool"] is not None:
            expected = (example.meta["expected_tool"], example.meta["expected_arguments"])
            argued.append(bool(calls) and calls[0] == expected)
    validity = sum(valid_flags) / len(valid_flags) if valid_flags else None
    return [
        TaskScore(f"{prefix}tool_call_validity", len(valid_flags), validity, target=1.0, note=note),
        TaskScore(
            f"{prefix}tool_routing", len(routed), sum(routed) / len(routed) if routed else None, target=0.98, note=note
        ),
        TaskScore(
            f"{prefix}tool_arguments",
            len(argued),
            sum(argued) / len(argued) if argued else None,
            note=f"{note}; right tool and exactly the reference arguments; no target",
        ),
    ]


def _with_pixels(example: Any) -> list[tuple[str, list[Any]]]:
    """The dialogue prompt as chat turns, its image refs swapped for the PIL images they stand for."""
    from emu_agent.model.message_rendering import messages_to_turns

    pil = example.meta["pil_by_sha"]
    return [
        (role, [pil.get(getattr(x, "sha256", None), x) for x in items])
        for role, items in messages_to_turns(example.prompt)
    ]
