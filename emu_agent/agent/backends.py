"""How the agent talks to a model: the :class:`ChatBackend` protocol and the local Emu backend.

The agent loop needs one thing of a model: stream a reply to a list of messages, optionally under a tool-call
constraint, and count what it used. :class:`LocalEmuBackend` does that for an
:class:`~emu_agent.model.emu.EmuModel` (with grammar-constrained decoding); :class:`emu_agent.testing.ScriptedModel`
does it for tests; a remote client implements the same protocol with ``supports_constraints = False``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from emu_agent.errors import ConfigError
from emu_agent.media import ImageRef, MediaStore
from emu_agent.messages import ImagePart, Message, ToolResultPart

__all__ = ["ChatBackend", "LocalEmuBackend", "bind_media", "resolve_backend"]

#: Generation defaults for agent steps (a tool call needs room; greedy for reproducible calls).
DEFAULT_GENERATION: dict[str, Any] = {"max_new_tokens": 256, "do_sample": False}


@runtime_checkable
class ChatBackend(Protocol):
    """A model as the agent sees it."""

    #: whether :meth:`stream_reply` honours ``constraint`` (grammar-constrained decoding)
    supports_constraints: bool

    def stream_reply(
        self,
        messages: Sequence[Message],
        *,
        constraint: Any | None,
        options: dict[str, Any],
        usage: Any,
        cancelled: threading.Event,
    ) -> Iterator[str]:
        """Yield the reply to ``messages`` in pieces; add token counts to ``usage``; stop when ``cancelled``."""
        ...


def bind_media(messages: Sequence[Message], store: MediaStore) -> list[Message]:
    """Messages whose unbound image refs (e.g. parsed from JSON) are bound to ``store`` so pixels can load."""

    def fix(part: Any) -> Any:
        if isinstance(part, ImagePart) and part.image.store is None:
            return ImagePart(image=part.image.bind(store))
        if isinstance(part, ToolResultPart) and any(
            isinstance(p, ImagePart) and p.image.store is None for p in part.content
        ):
            return part.model_copy(update={"content": [fix(p) for p in part.content]})
        return part

    out = []
    for message in messages:
        parts = [fix(p) for p in message.parts]
        changed = any(a is not b for a, b in zip(parts, message.parts, strict=True))
        out.append(message.model_copy(update={"parts": parts}) if changed else message)
    return out


class LocalEmuBackend:
    """An in-process :class:`~emu_agent.model.emu.EmuModel`, with grammar-constrained tool calls.

    Replies are decoded with ``skip_special_tokens=False`` so tool-call markers that are special tokens survive;
    the grammar keeps every other special token out of constrained replies.
    """

    supports_constraints = True

    def __init__(self, model: Any, media_store: MediaStore | None = None) -> None:
        if getattr(model, "tokenizer", None) is None:
            raise ConfigError("the agent's model has no tokenizer; load it with one")
        self.model = model
        self.media_store = media_store

    def count_prompt(self, messages: Sequence[Message]) -> tuple[int, int]:
        """(text tokens, visual tokens) of the prompt ``messages`` make."""
        plan = self.model.plan(list(messages), chat=True)
        vision = self.model.config.vision
        visual = len(plan.images) * vision.n_query + len(plan.frames) * vision.v_query
        total = len(self.model.tokenizer.encode(plan.text))
        return total - visual, visual

    def stream_reply(
        self,
        messages: Sequence[Message],
        *,
        constraint: Any | None,
        options: dict[str, Any],
        usage: Any,
        cancelled: threading.Event,
    ) -> Iterator[str]:
        if self.media_store is not None:
            messages = bind_media(messages, self.media_store)
        text_tokens, visual_tokens = self.count_prompt(messages)
        usage.input_text_tokens += text_tokens
        usage.input_image_tokens += visual_tokens
        options = {**DEFAULT_GENERATION, **options, "skip_special_tokens": False}
        processor = None
        if constraint is not None:
            processor = constraint.logits_processor(self.model.tokenizer, max_new_tokens=options["max_new_tokens"])

        def counting(generated: Any, logits: Any) -> Any:
            usage.output_tokens += 1
            return processor(generated, logits) if processor is not None else logits

        stream = self.model.stream_text(list(messages), logits_processor=counting, **options)
        try:
            for piece in stream:
                yield piece
                if cancelled.is_set():
                    break
        finally:
            stream.close()


def resolve_backend(model: Any, media_store: MediaStore | None = None) -> ChatBackend:
    """The backend for ``model``: itself if it already is one, a :class:`LocalEmuBackend` for an EmuModel.

    Raises:
        ConfigError: ``model`` is neither.
    """
    if isinstance(model, ChatBackend):
        return model
    if hasattr(model, "stream_text") and hasattr(model, "tokenizer"):
        return LocalEmuBackend(model, media_store)
    raise ConfigError(
        f"can't use {type(model).__name__} as the agent's model: pass an EmuModel or an object with "
        "stream_reply(messages, constraint=, options=, usage=, cancelled=) and supports_constraints"
    )


def tool_model_of(model: Any) -> Any:
    """The model tools should use (an EmuModel), given what the agent was built with."""
    inner = getattr(model, "model", None)
    return inner if inner is not None else model


def images_of(messages: Sequence[Message]) -> list[ImageRef]:
    """Every image referenced by ``messages``, tool results included, in order."""
    return [ref for message in messages for ref in message.images]
