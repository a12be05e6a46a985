"""Fakes for testing code built on emu-agent, without a model: :class:`ScriptedModel`.

::

    model = ScriptedModel([ScriptedModel.call("generate_image", prompt="a red circle"), "Here it is."])
    agent = Agent(model=model, tools=[...])
    result = agent.run("draw a red circle")
    assert model.prompts[0][-1].text == "draw a red circle"
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from emu_agent.messages import Message
from emu_agent.model.message_rendering import render_tool_call

__all__ = ["ScriptedModel"]

Reply = str | Callable[[Sequence[Message]], str]


class ScriptedModel:
    """A chat backend that answers with scripted replies, in order (an agent's model for tests).

    Args:
        replies: each a reply text (tool calls written as ``<tool_call>...</tool_call>``, see :meth:`call`) or a
            function of the messages the model was shown.
        chunk_size: characters per streamed piece (None: whole words).
        delay: seconds to sleep per piece (to test cancellation and timing).
        model: what tools get as ``context.model`` (e.g. a real EmuModel for image tools).
        repeat_last: keep answering with the last reply once the script runs out (else raise).

    ``prompts`` records the messages shown at every call. Tokens are counted as whitespace-separated words.
    """

    supports_constraints = False

    def __init__(
        self,
        replies: Iterable[Reply],
        *,
        chunk_size: int | None = None,
        delay: float = 0.0,
        model: Any | None = None,
        repeat_last: bool = False,
    ) -> None:
        self.replies = list(replies)
        self.chunk_size = chunk_size
        self.delay = delay
        self.model = model
        self.repeat_last = repeat_last
        self.prompts: list[list[Message]] = []
        self._lock = threading.Lock()

    @staticmethod
    def call(name: str, /, **arguments: Any) -> str:
        """The text of one tool call, exactly as the agent's prompt contract writes it."""
        return render_tool_call(name, arguments)

    def _next(self, messages: Sequence[Message]) -> str:
        with self._lock:
            index = len(self.prompts)
            self.prompts.append(list(messages))
        if index >= len(self.replies):
            if not (self.repeat_last and self.replies):
                raise RuntimeError(f"ScriptedModel ran out of replies after {len(self.replies)} call(s)")
            index = len(self.replies) - 1
        reply = self.replies[index]
        return reply(messages) if callable(reply) else reply

    def _pieces(self, text: str) -> list[str]:
        if self.chunk_size:
            return [text[i : i + self.chunk_size] for i in range(0, len(text), self.chunk_size)]
        pieces, word = [], ""
        for ch in text:
            word += ch
            if ch.isspace():
                pieces.append(word)
                word = ""
        return [*pieces, word] if word else pieces

    def stream_reply(
        self,
        messages: Sequence[Message],
        *,
        constraint: Any | None = None,
        options: dict[str, Any] | None = None,
        usage: Any | None = None,
        cancelled: threading.Event | None = None,
    ) -> Iterator[str]:
        """Yield the next scripted reply in pieces (the ChatBackend protocol)."""
        text = self._next(messages)
        if usage is not None:
            usage.input_text_tokens += sum(len(m.text.split()) for m in messages)
            usage.input_image_tokens += sum(len(m.images) for m in messages)
        for piece in self._pieces(text):
            if cancelled is not None and cancelled.is_set():
                return
            if self.delay:
                time.sleep(self.delay)
            if usage is not None:
                usage.output_tokens += 1
            yield piece
