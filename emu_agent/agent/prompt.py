"""How a conversation is shown to the model: the tool block, media handles and the agent's chat turns.

This is the contract between the agent and the model, and emu-tiny's training dialogues are generated with these
same functions, so the model is trained on exactly what the agent shows it at run time:

- the system message advertises the tools, one JSON spec per line, between ``<tools>`` and ``</tools>``, and says
  how to call one: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (several may follow each other);
- every image in the conversation is labelled with a handle (``image_1:`` before the image), assigned in order of
  first appearance, so tool calls can name it; the same image keeps its handle;
- videos are not expanded into frames in the agent's context (too many tokens); they appear as a handle
  ``video_1: (video)``, and the ``answer_about_video`` tool reads their frames;
- tool results come back as ``<tool_result name="...">`` turns on the user side, images as images with handles.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from emu_agent.messages import ImagePart, Message, TextPart, ToolResultPart, VideoPart

__all__ = [
    "TOOL_INSTRUCTIONS",
    "MediaHandles",
    "conversation_for_model",
    "tool_system_prompt",
]

TOOL_INSTRUCTIONS = 'You can use tools. To call one, answer <tool_call>{"name": ..., "arguments": {...}}</tool_call>.'


def tool_system_prompt(specs: Iterable[Any], base: str | None = None) -> str:
    """The system text: ``base`` (if any), the calling instructions and the tool block."""
    lines = [spec.to_json() for spec in specs]
    if not lines:
        return base or ""
    block = "\n".join([TOOL_INSTRUCTIONS, "<tools>", *lines, "</tools>"])
    return f"{base}\n{block}" if base else block


class MediaHandles:
    """Stable handles (``image_1``, ``video_1``...) for the media of one conversation, by content hash."""

    def __init__(self) -> None:
        self._by_sha: dict[tuple[str, str], str] = {}
        self._refs: dict[str, Any] = {}
        self._counts = {"image": 0, "video": 0}

    def handle(self, kind: str, ref: Any) -> str:
        """The handle of ``ref`` (an ImageRef or VideoRef), assigning the next one on first sight."""
        key = (kind, ref.sha256)
        if key not in self._by_sha:
            self._counts[kind] += 1
            name = f"{kind}_{self._counts[kind]}"
            self._by_sha[key] = name
            self._refs[name] = ref
        return self._by_sha[key]

    def resolve(self, handle: str) -> Any | None:
        """The ref behind a handle, or None."""
        return self._refs.get(handle.strip())

    def names(self, kind: str | None = None) -> list[str]:
        """All handles assigned so far (of one kind, if given), in order."""
        return [name for name in self._refs if kind is None or name.startswith(kind + "_")]

    def latest(self, kind: str) -> str | None:
        """The most recently assigned handle of ``kind``."""
        names = self.names(kind)
        return names[-1] if names else None


def _labelled(parts: Sequence[Any], handles: MediaHandles) -> list[Any]:
    out: list[Any] = []
    for part in parts:
        if isinstance(part, ImagePart):
            out.extend([TextPart(text=f"{handles.handle('image', part.image)}:"), part])
        elif isinstance(part, VideoPart):
            out.append(TextPart(text=f"{handles.handle('video', part.video)}: (video) "))
        elif isinstance(part, ToolResultPart):
            content = _labelled(part.content, handles)
            out.append(part.model_copy(update={"content": content}))
        else:
            out.append(part)
    return out


def conversation_for_model(
    messages: Sequence[Message],
    *,
    tools: Iterable[Any] = (),
    system_prompt: str | None = None,
    handles: MediaHandles | None = None,
) -> list[Message]:
    """The messages the model reads: one system message (tools advertised) then labelled turns.

    System messages already in ``messages`` are merged into ``system_prompt``. ``handles`` collects the
    handle -> ref mapping (pass one in to resolve tool-call arguments afterwards).
    """
    handles = handles if handles is not None else MediaHandles()
    extra_system = [m.text for m in messages if m.role == "system"]
    base = "\n".join(x for x in [system_prompt, *extra_system] if x) or None
    system = tool_system_prompt(tools, base)
    out: list[Message] = [Message.system(system)] if system else []
    for message in messages:
        if message.role == "system":
            continue
        out.append(message.model_copy(update={"parts": _labelled(message.parts, handles)}))
    return out
