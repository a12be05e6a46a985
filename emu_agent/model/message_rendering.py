"""Turn :class:`~emu_agent.messages.Message` lists into the ``(role, items)`` turns of the chat template.

Emu2-Chat's template only knows ``[USER]`` and ``[ASSISTANT]`` turns, so:
- ``system`` messages become the system text;
- ``tool`` messages (tool results) are spoken on the user side, and consecutive turns of one side are merged;
- tool calls and results are written as text markers around their JSON / content, images kept as images::

    <tool_call>{"name": "generate_image", "arguments": {"prompt": "a red circle"}}</tool_call>
    <tool_result name="generate_image">[IMG]...[/IMG]done</tool_result>
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from emu_agent.errors import PromptError

__all__ = ["TOOL_CALL_END", "TOOL_CALL_START", "messages_to_turns", "render_tool_call"]

TOOL_CALL_START = "<tool_call>"
TOOL_CALL_END = "</tool_call>"
TOOL_RESULT_END = "</tool_result>"


def render_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """The canonical text of one tool call (compact JSON, keys in insertion order)."""
    payload = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False, separators=(", ", ": "))
    return f"{TOOL_CALL_START}{payload}{TOOL_CALL_END}"


def _part_items(part: Any) -> list[Any]:
    kind = getattr(part, "type", None)
    if kind == "text":
        return [part.text]
    if kind == "image":
        return [part.image]
    if kind == "video":
        return [part.video]
    if kind == "tool_call":
        return [render_tool_call(part.name, part.arguments)]
    if kind == "tool_result":
        items: list[Any] = [f'<tool_result name="{part.name}"{" error" if part.is_error else ""}>']
        for inner in part.content:
            items.extend(_part_items(inner))
        items.append(TOOL_RESULT_END)
        return items
    raise PromptError(f"can't render message part of type {kind!r}")


def messages_to_turns(messages: Sequence[Any]) -> list[tuple[str, list[Any]]]:
    """Messages (or ``(role, items)`` pairs) -> alternating chat turns; a leading system turn is kept."""
    turns: list[tuple[str, list[Any]]] = []
    for index, message in enumerate(messages):
        if isinstance(message, list):  # BAAI's chat form: rounds alternate user / assistant
            role, items = ("user" if index % 2 == 0 else "assistant"), list(message)
        elif isinstance(message, tuple):
            role, items = message
            items = [items] if isinstance(items, str) else list(items)
        elif hasattr(message, "role") and hasattr(message, "parts"):
            role = message.role
            items = [x for part in message.parts for x in _part_items(part)]
        else:
            raise PromptError(f"message {index} is a {type(message).__name__}, not a Message or (role, items)")
        if role == "system":
            if turns:
                raise PromptError(f"a system message must come first; message {index} is a late system message")
            turns.append(("system", items))
            continue
        side = {"user": "user", "tool": "user", "assistant": "assistant"}.get(role)
        if side is None:
            raise PromptError(f"message {index} has unknown role {role!r}")
        if turns and turns[-1][0] == side:
            turns[-1][1].extend(["\n", *items])
        else:
            turns.append((side, list(items)))
    return turns
