"""What an agent run reports: streamed events, the steps, usage and the final result.

Events are pydantic models told apart by ``type`` (``token``, ``tool_call``, ``tool_progress``, ``tool_result``,
``final``, ``error``), so a UI can switch on ``event.type`` and a server can send ``event.model_dump_json()``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from emu_agent.media import ImageRef
from emu_agent.messages import Message, ToolCallPart, ToolResultPart

__all__ = [
    "AgentEvent",
    "AgentResult",
    "ErrorEvent",
    "ErrorKind",
    "FinalEvent",
    "Step",
    "TokenEvent",
    "ToolCallEvent",
    "ToolProgressEvent",
    "ToolResultEvent",
    "Usage",
]

#: Why something went wrong: each maps to one clear cause.
ErrorKind = Literal[
    "parse_error",  # the model's reply held a tool call that could not be read (retried when possible)
    "unknown_tool",  # the model called a tool that does not exist
    "invalid_arguments",  # the arguments did not validate against the tool's input model
    "tool_error",  # the tool raised
    "tool_timeout",  # the tool ran past its timeout
    "tool_output",  # the tool returned something that is not text or images
    "flagged",  # the call was flagged by the safety rule and not run
    "step_limit",  # the run reached max_steps
    "cancelled",  # the run was cancelled
    "memory_error",  # the memory hook failed (the run goes on without it)
    "model_error",  # the model failed
]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    step: int = Field(0, description="1-based index of the model call this event belongs to")


class TokenEvent(_Event):
    """A piece of the model's reply as it is generated (tool-call markup included)."""

    type: Literal["token"] = "token"
    text: str


class ToolCallEvent(_Event):
    """The model asked for a tool. ``flagged`` calls are not run unless the agent is configured to."""

    type: Literal["tool_call"] = "tool_call"
    call: ToolCallPart
    flagged: bool = False
    flag_reason: str | None = None
    will_run: bool = True
    repairs: list[str] = Field(default_factory=list, description="what had to be fixed to read the call")


class ToolProgressEvent(_Event):
    """Progress reported by a running tool (``fraction`` in [0, 1])."""

    type: Literal["tool_progress"] = "tool_progress"
    tool_call_id: str
    name: str
    fraction: float
    message: str = ""


class ToolResultEvent(_Event):
    """What a tool call produced (or why it failed: ``result.is_error``), as the model will see it."""

    type: Literal["tool_result"] = "tool_result"
    result: ToolResultPart
    data: dict[str, Any] = Field(default_factory=dict, description="the tool's structured extras (not shown)")
    duration_s: float = 0.0
    skipped: bool = Field(False, description="the call was not run (flagged, step limit or cancelled)")


class ErrorEvent(_Event):
    """Something went wrong. ``fatal`` errors end the run; the others become observations the model sees."""

    type: Literal["error"] = "error"
    kind: ErrorKind
    message: str
    tool_call_id: str | None = None
    name: str | None = None
    fatal: bool = False


class Usage(BaseModel):
    """Resources a run used. Token counts are the model's own (prompt tokens are counted at every step)."""

    model_config = ConfigDict(extra="forbid")

    input_text_tokens: int = 0
    input_image_tokens: int = 0
    output_tokens: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    model_time_s: float = 0.0
    tool_time_s: float = 0.0
    total_time_s: float = 0.0

    @property
    def text_tokens(self) -> int:
        """Text tokens read and written (prompt text plus reply)."""
        return self.input_text_tokens + self.output_tokens

    @property
    def image_tokens(self) -> int:
        """Visual tokens read (image and video-frame slots)."""
        return self.input_image_tokens

    @property
    def overhead_time_s(self) -> float:
        """Time spent in neither the model nor the tools (the agent's own bookkeeping)."""
        return max(0.0, self.total_time_s - self.model_time_s - self.tool_time_s)

    def add(self, other: Usage) -> None:
        """Accumulate ``other`` into this one."""
        for name in type(self).model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class Step(BaseModel):
    """One model call and the tool calls it led to."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    index: int
    reply: str = Field("", description="the model's raw reply text")
    tool_calls: list[ToolCallPart] = Field(default_factory=list)
    tool_results: list[ToolResultPart] = Field(default_factory=list)
    flagged: list[str] = Field(default_factory=list, description="ids of the calls the safety rule flagged")
    retries: int = Field(0, description="replies rejected and asked again (unconstrained decoding)")
    usage: Usage = Field(default_factory=Usage)


class AgentResult(BaseModel):
    """The outcome of one run.

    ``text`` is the final answer, ``images`` the images the run produced (tool outputs, in order), ``messages``
    the messages the run added to the conversation, ``stop_reason`` why it ended.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    text: str = ""
    images: list[ImageRef] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    stop_reason: Literal["final", "step_limit", "cancelled", "parse_error"] = "final"
    conversation_id: str | None = None

    @property
    def image(self) -> ImageRef | None:
        """The last image the run produced, if any."""
        return self.images[-1] if self.images else None


class FinalEvent(_Event):
    """The run ended; ``result`` holds everything."""

    type: Literal["final"] = "final"
    result: AgentResult


AgentEvent = Annotated[
    TokenEvent | ToolCallEvent | ToolProgressEvent | ToolResultEvent | ErrorEvent | FinalEvent,
    Field(discriminator="type"),
]
