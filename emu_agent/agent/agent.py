"""``Agent`` and ``Conversation``: the public face of the agent loop.

::

    agent = Agent(model=EmuModel.from_pretrained(...), tools=[GenerateImage(), EditImage()])
    result = agent.run("draw a red circle at top left, then make it blue")
    result.text, result.images, result.usage

    conv = agent.conversation()          # a thread: handles and history carry over between calls
    conv.run(["what is this?", Path("photo.png")])
    for event in conv.stream("make it brighter"):
        ...                              # token / tool_call / tool_progress / tool_result / error / final

``run`` / ``stream`` / ``arun`` / ``astream`` take a string, an interleaved list (str, PIL images, paths,
:class:`~emu_agent.media.ImageRef`, :class:`~emu_agent.media.VideoRef`, parts) or messages. Without a
``conversation`` each call starts a fresh one.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from emu_agent.agent.backends import resolve_backend, tool_model_of
from emu_agent.agent.events import AgentResult, FinalEvent
from emu_agent.agent.loop import run_events
from emu_agent.agent.prompt import MediaHandles
from emu_agent.agent.tool_calling import TOOL_CHOICES
from emu_agent.errors import InputError
from emu_agent.media import ImageRef, MediaStore, VideoRef
from emu_agent.messages import Message, ToolCallPart
from emu_agent.tools.base import Tool, tool

__all__ = ["Agent", "AgentMemory", "Conversation", "to_messages"]

_VIDEO_SUFFIXES = {".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v", ".gif_video"}


@runtime_checkable
class AgentMemory(Protocol):
    """What the agent calls on ``memory=``: recall before a run, store after it.

    ``context_for`` may return messages or an object with ``to_message()`` (MultimodalMemory's MemoryContext);
    if it takes ``exclude_session``, the conversation's own id is passed. Storing calls ``add_turns`` when the
    memory has it, else ``add`` (MultimodalMemory), with the same arguments.
    """

    def context_for(self, input: Sequence[Message], *, token_budget: int) -> Any:
        """Messages to put before the conversation (recalled turns), within ``token_budget`` tokens."""
        ...


def _is_memory(memory: Any) -> bool:
    return callable(getattr(memory, "context_for", None)) and (
        callable(getattr(memory, "add_turns", None)) or callable(getattr(memory, "add", None))
    )


def _coerce_item(item: Any, store: MediaStore) -> Any:
    if isinstance(item, (os.PathLike, Path)):
        path = Path(item)
        return store.add_video(path) if path.suffix.lower() in _VIDEO_SUFFIXES else store.add_image(path)
    if type(item).__module__.startswith("PIL.") and hasattr(item, "getpixel"):
        return store.add_image(item)
    return item


def to_messages(input: Any, store: MediaStore) -> list[Message]:
    """Normalise agent input to messages: a str, an interleaved list, a Message, or a list of Messages.

    PIL images and paths (``pathlib.Path``; videos by suffix) are stored in ``store`` first. Plain ``str`` items
    are always text, never paths.

    Raises:
        InputError: empty input or an item of an unsupported type.
    """
    if isinstance(input, Message):
        return [input]
    if isinstance(input, str):
        if not input.strip():
            raise InputError("the agent's input is empty")
        return [Message.user(input)]
    if isinstance(input, (list, tuple)):
        if not input:
            raise InputError("the agent's input is an empty list")
        if all(isinstance(x, Message) for x in input):
            return list(input)
        return [Message.user(*[_coerce_item(x, store) for x in input])]
    if isinstance(input, (ImageRef, VideoRef, os.PathLike)) or hasattr(input, "getpixel"):
        return [Message.user(_coerce_item(input, store))]
    raise InputError(f"the agent takes a str, a list of content items or messages, not {type(input).__name__}")


def _as_tool(item: Any) -> Tool:
    if isinstance(item, Tool):
        return item
    if isinstance(item, type) and issubclass(item, Tool):
        return item()
    if callable(item):
        return tool(item)
    raise InputError(f"a tool must be a Tool, a Tool subclass or a function, not {type(item).__name__}")


class Agent:
    """A tool-using assistant over one model.

    Args:
        model: an :class:`~emu_agent.model.emu.EmuModel` (constrained decoding), or any
            :class:`~emu_agent.agent.backends.ChatBackend` (e.g. :class:`emu_agent.testing.ScriptedModel`).
        tools: :class:`~emu_agent.tools.base.Tool` instances or classes, or plain functions (wrapped with
            :func:`~emu_agent.tools.base.tool`).
        memory: anything with ``context_for`` / ``add_turns`` (:class:`AgentMemory`), e.g. MultimodalMemory.
        system_prompt: text put before the tool block of the system message.
        tool_choice: ``"auto"``, ``"none"``, ``"required"`` or a tool name; it applies to the first model call
            of a run (later calls are ``"auto"`` so the model can answer).
        max_steps: most model calls per run.
        on_step_limit: ``"raise"`` (:class:`~emu_agent.errors.StepLimitError`, with ``.result``) or ``"final"``
            (the last allowed call must answer in text).
        run_flagged_tool_calls: run calls the safety rule flags (True), or ask a callable
            ``approve(call, reason) -> bool``; default: don't run them (docs/safety.md).
        raise_tool_errors: raise :class:`~emu_agent.errors.ToolError` instead of showing the model the error.
        media_store: where input and generated media are stored (default: a temporary folder).
        constrained: use grammar-constrained decoding when the model supports it.
        max_retries: re-asks per step when an unconstrained reply can't be read.
        max_calls_per_step: most tool calls one reply may make (constrained decoding).
        memory_token_budget: tokens of recalled context asked of ``memory``.
        max_tool_output_chars: tool text longer than this is cut before the model sees it.
        **generation: text generation options for each step (``max_new_tokens``, ``temperature``...).
    """

    def __init__(
        self,
        model: Any,
        tools: Iterable[Any] = (),
        *,
        memory: Any | None = None,
        system_prompt: str | None = None,
        tool_choice: str = "auto",
        max_steps: int = 8,
        on_step_limit: Literal["raise", "final"] = "raise",
        run_flagged_tool_calls: bool | Callable[[ToolCallPart, str], bool] = False,
        raise_tool_errors: bool = False,
        media_store: MediaStore | str | os.PathLike[str] | None = None,
        constrained: bool = True,
        max_retries: int = 2,
        max_calls_per_step: int = 4,
        memory_token_budget: int = 512,
        max_tool_output_chars: int = 4000,
        **generation: Any,
    ) -> None:
        if media_store is None:
            media_store = MediaStore(tempfile.mkdtemp(prefix="emu-agent-media-"))
        self.media_store = media_store if isinstance(media_store, MediaStore) else MediaStore(media_store)
        self.backend = resolve_backend(model, self.media_store)
        self.model = model
        self.tool_model = tool_model_of(self.backend)
        self.tools: dict[str, Tool] = {}
        for item in tools:
            t = _as_tool(item)
            if t.name in self.tools:
                raise InputError(f"two tools are named {t.name!r}")
            self.tools[t.name] = t
        self.specs = [t.spec for t in self.tools.values()]
        if tool_choice not in TOOL_CHOICES and tool_choice not in self.tools:
            raise InputError(f"tool_choice must be auto, none, required or a tool name; got {tool_choice!r}")
        if max_steps < 1:
            raise InputError(f"max_steps must be >= 1, got {max_steps}")
        if on_step_limit not in ("raise", "final"):
            raise InputError(f"on_step_limit must be 'raise' or 'final', got {on_step_limit!r}")
        if memory is not None and not _is_memory(memory):
            raise InputError("memory needs context_for(input, token_budget=...) and add_turns(...) or add(...)")
        self.memory = memory
        self.system_prompt = system_prompt
        self.tool_choice = tool_choice
        self.max_steps = max_steps
        self.on_step_limit = on_step_limit
        self.run_flagged_tool_calls = run_flagged_tool_calls
        self.raise_tool_errors = raise_tool_errors
        self.constrained = constrained
        self.max_retries = max_retries
        self.max_calls_per_step = max_calls_per_step
        self.memory_token_budget = memory_token_budget
        self.max_tool_output_chars = max_tool_output_chars
        self.generation = dict(generation)

    def __repr__(self) -> str:
        return f"Agent(tools={list(self.tools)}, tool_choice={self.tool_choice!r}, max_steps={self.max_steps})"

    def approve(self, call: ToolCallPart, reason: str) -> bool:
        """Whether a flagged call may run (see ``run_flagged_tool_calls``)."""
        policy = self.run_flagged_tool_calls
        return bool(policy(call, reason)) if callable(policy) else bool(policy)

    def conversation(self, messages: Sequence[Message] = ()) -> Conversation:
        """A new conversation (thread) with this agent, optionally seeded with ``messages``."""
        return Conversation(self, messages)

    # ------------------------------------------------------------------ running

    def stream(
        self, input: Any, *, conversation: Conversation | None = None, cancel: threading.Event | None = None
    ) -> Iterator[Any]:
        """Run on ``input`` and yield :data:`~emu_agent.agent.events.AgentEvent` s; the last is ``final``.

        Raises:
            StepLimitError: the step limit was reached (``on_step_limit="raise"``); ``.result`` has the run so far.
            ToolError: a tool failed and ``raise_tool_errors`` is set.
        """
        conv = conversation if conversation is not None else self.conversation()
        if conv.agent is not self:
            conv = Conversation(self, conv.messages, handles=conv.handles, id=conv.id)
        messages = to_messages(input, self.media_store)
        cancel = cancel if cancel is not None else threading.Event()
        with conv.lock(cancel):
            yield from run_events(self, conv, messages, cancel)

    def run(
        self, input: Any, *, conversation: Conversation | None = None, cancel: threading.Event | None = None
    ) -> AgentResult:
        """Run on ``input`` until a final answer and return the :class:`AgentResult`."""
        result = None
        for event in self.stream(input, conversation=conversation, cancel=cancel):
            if isinstance(event, FinalEvent):
                result = event.result
        assert result is not None  # the loop always ends with a final event or an exception
        return result

    async def astream(
        self, input: Any, *, conversation: Conversation | None = None, cancel: threading.Event | None = None
    ) -> AsyncIterator[Any]:
        """:meth:`stream` for asyncio: the loop runs in a worker thread, so the event loop never blocks.

        Cancelling the consuming task cancels the run.
        """
        cancel = cancel if cancel is not None else threading.Event()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()
        done = object()

        def produce() -> None:
            try:
                for event in self.stream(input, conversation=conversation, cancel=cancel):
                    loop.call_soon_threadsafe(events.put_nowait, event)
            except BaseException as exc:
                loop.call_soon_threadsafe(events.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(events.put_nowait, done)

        worker = loop.run_in_executor(None, produce)
        try:
            while True:
                item = await events.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set() if not worker.done() else None
            await asyncio.shield(worker)

    async def arun(
        self, input: Any, *, conversation: Conversation | None = None, cancel: threading.Event | None = None
    ) -> AgentResult:
        """:meth:`run` for asyncio."""
        result = None
        async for event in self.astream(input, conversation=conversation, cancel=cancel):
            if isinstance(event, FinalEvent):
                result = event.result
        assert result is not None
        return result


class Conversation:
    """A thread of messages with one agent; media handles (``image_1``...) stay stable across calls.

    One run at a time: a second concurrent run raises :class:`~emu_agent.errors.InputError`.
    """

    def __init__(
        self,
        agent: Agent,
        messages: Sequence[Message] = (),
        *,
        handles: MediaHandles | None = None,
        id: str | None = None,
    ) -> None:
        self.agent = agent
        self.messages: list[Message] = list(messages)
        self.handles = handles if handles is not None else MediaHandles()
        self.id = id or uuid.uuid4().hex
        self.flagged_ids: set[str] = set()
        self._lock = threading.Lock()
        self._cancel: threading.Event | None = None

    def __repr__(self) -> str:
        return f"Conversation(id={self.id[:8]!r}, messages={len(self.messages)})"

    def lock(self, cancel: threading.Event) -> _RunLock:
        """Internal: held by a run."""
        return _RunLock(self, cancel)

    def run(self, input: Any, *, cancel: threading.Event | None = None) -> AgentResult:
        """``agent.run(input, conversation=self)``."""
        return self.agent.run(input, conversation=self, cancel=cancel)

    def stream(self, input: Any, *, cancel: threading.Event | None = None) -> Iterator[Any]:
        """``agent.stream(input, conversation=self)``."""
        return self.agent.stream(input, conversation=self, cancel=cancel)

    async def arun(self, input: Any, *, cancel: threading.Event | None = None) -> AgentResult:
        """``agent.arun(input, conversation=self)``."""
        return await self.agent.arun(input, conversation=self, cancel=cancel)

    def astream(self, input: Any, *, cancel: threading.Event | None = None) -> AsyncIterator[Any]:
        """``agent.astream(input, conversation=self)``."""
        return self.agent.astream(input, conversation=self, cancel=cancel)

    def cancel(self) -> bool:
        """Cancel the run in progress, if any (it stops at the next token or tool boundary)."""
        if self._cancel is None:
            return False
        self._cancel.set()
        return True

    @property
    def images(self) -> list[ImageRef]:
        """Every image in the conversation (inputs and tool outputs), in order."""
        return [ref for message in self.messages for ref in message.images]

    def handle_of(self, ref: ImageRef | VideoRef) -> str:
        """The handle (``image_3``) the model knows ``ref`` by."""
        return self.handles.handle("video" if isinstance(ref, VideoRef) else "image", ref)

    def to_json(self) -> str:
        """The messages as JSON (media by reference)."""
        import json

        return json.dumps({"id": self.id, "messages": [m.model_dump(mode="json") for m in self.messages]})

    @classmethod
    def from_json(cls, agent: Agent, data: str) -> Conversation:
        """A conversation saved with :meth:`to_json`, its media bound to ``agent.media_store``."""
        import json

        payload = json.loads(data)
        context = {"media_store": agent.media_store}
        messages = [Message.model_validate(m, context=context) for m in payload["messages"]]
        return cls(agent, messages, id=payload.get("id"))


class _RunLock:
    def __init__(self, conv: Conversation, cancel: threading.Event) -> None:
        self.conv = conv
        self.cancel = cancel

    def __enter__(self) -> None:
        if not self.conv._lock.acquire(blocking=False):
            raise InputError(f"conversation {self.conv.id[:8]} is already running; wait for it or cancel it")
        self.conv._cancel = self.cancel

    def __exit__(self, *exc: Any) -> None:
        self.conv._cancel = None
        self.conv._lock.release()
