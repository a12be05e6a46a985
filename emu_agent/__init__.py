"""emu-agent: an SDK for visual assistants on a self-hosted Emu-family multimodal model.

``import emu_agent`` is light: torch, transformers, diffusers, chromadb and langchain_core are imported only when
a name that needs them is first used. The public names are listed in ``__all__`` and resolved lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emu_agent._lazy import lazy_attributes
from emu_agent.errors import (
    ConfigError,
    ContextLengthError,
    DeviceError,
    EmuAgentError,
    InputError,
    MediaError,
    MemoryStoreError,
    MissingDependencyError,
    ModelLoadError,
    PromptError,
    StepLimitError,
    ToolError,
)

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "EmuModel": "emu_agent.model.emu",
    "EmuConfig": "emu_agent.model.config",
    "VisionConfig": "emu_agent.model.config",
    "TextConfig": "emu_agent.model.config",
    "EmuTokenizer": "emu_agent.model.tokenizer",
    "EmuDecoder": "emu_agent.model.decoder",
    "average_checkpoints": "emu_agent.model.averaging",
    "Message": "emu_agent.messages",
    "TextPart": "emu_agent.messages",
    "ImagePart": "emu_agent.messages",
    "VideoPart": "emu_agent.messages",
    "ToolCallPart": "emu_agent.messages",
    "ToolResultPart": "emu_agent.messages",
    "MediaStore": "emu_agent.media",
    "ImageRef": "emu_agent.media",
    "VideoRef": "emu_agent.media",
    "Agent": "emu_agent.agent.agent",
    "MultimodalMemory": "emu_agent.memory",
    "Conversation": "emu_agent.agent.agent",
    "AgentResult": "emu_agent.agent.events",
    "AgentEvent": "emu_agent.agent.events",
    "Usage": "emu_agent.agent.events",
    "TokenEvent": "emu_agent.agent.events",
    "ToolCallEvent": "emu_agent.agent.events",
    "ToolProgressEvent": "emu_agent.agent.events",
    "ToolResultEvent": "emu_agent.agent.events",
    "ErrorEvent": "emu_agent.agent.events",
    "FinalEvent": "emu_agent.agent.events",
}

__all__ = [
    "ConfigError",
    "ContextLengthError",
    "DeviceError",
    "EmuAgentError",
    "InputError",
    "MediaError",
    "MemoryStoreError",
    "MissingDependencyError",
    "ModelLoadError",
    "PromptError",
    "StepLimitError",
    "ToolError",
    "__version__",
    *_LAZY,
]

if TYPE_CHECKING:
    from emu_agent.agent.agent import Agent, Conversation
    from emu_agent.agent.events import (
        AgentEvent,
        AgentResult,
        ErrorEvent,
        FinalEvent,
        TokenEvent,
        ToolCallEvent,
        ToolProgressEvent,
        ToolResultEvent,
        Usage,
    )
    from emu_agent.media import ImageRef, MediaStore, VideoRef
    from emu_agent.memory import MultimodalMemory
    from emu_agent.messages import ImagePart, Message, TextPart, ToolCallPart, ToolResultPart, VideoPart
    from emu_agent.model.averaging import average_checkpoints
    from emu_agent.model.config import EmuConfig, TextConfig, VisionConfig
    from emu_agent.model.decoder import EmuDecoder
    from emu_agent.model.emu import EmuModel
    from emu_agent.model.tokenizer import EmuTokenizer


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
