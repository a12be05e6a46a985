"""The agent: a tool-using loop over interleaved text, image and video conversations.

Public names are resolved lazily (importing this package does not import torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emu_agent._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "Agent": "emu_agent.agent.agent",
    "AgentMemory": "emu_agent.agent.agent",
    "Conversation": "emu_agent.agent.agent",
    "AgentEvent": "emu_agent.agent.events",
    "AgentResult": "emu_agent.agent.events",
    "ErrorEvent": "emu_agent.agent.events",
    "FinalEvent": "emu_agent.agent.events",
    "Step": "emu_agent.agent.events",
    "TokenEvent": "emu_agent.agent.events",
    "ToolCallEvent": "emu_agent.agent.events",
    "ToolProgressEvent": "emu_agent.agent.events",
    "ToolResultEvent": "emu_agent.agent.events",
    "Usage": "emu_agent.agent.events",
    "ChatBackend": "emu_agent.agent.backends",
    "LocalEmuBackend": "emu_agent.agent.backends",
    "ToolCallConstraint": "emu_agent.agent.tool_calling",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:
    from emu_agent.agent.agent import Agent, AgentMemory, Conversation
    from emu_agent.agent.backends import ChatBackend, LocalEmuBackend
    from emu_agent.agent.events import (
        AgentEvent,
        AgentResult,
        ErrorEvent,
        FinalEvent,
        Step,
        TokenEvent,
        ToolCallEvent,
        ToolProgressEvent,
        ToolResultEvent,
        Usage,
    )
    from emu_agent.agent.tool_calling import ToolCallConstraint


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
