"""The project's error tree.

Every error the library raises on purpose derives from :class:`EmuAgentError`, so one ``except`` catches them
all. Where a builtin base helps callers, it is kept::

    EmuAgentError
     ├── InputError (ValueError)            bad user input: images, videos, prompts, arguments
     │    ├── MediaError                     an image or video that can't be read or is too large
     │    └── PromptError                    a prompt the model can't take
     │         └── ContextLengthError        longer than the context window
     ├── ConfigError (ValueError)            an unknown preset or inconsistent dimensions
     ├── ModelLoadError                      a checkpoint that can't be loaded (missing/unexpected/mis-shaped keys)
     ├── DeviceError                         a device or dtype that can't run
     ├── MissingDependencyError (ImportError) an optional package is not installed; names the pip line
     ├── ToolError                           a tool failed (inside the agent loop this becomes an observation)
     ├── StepLimitError                      the agent hit its step limit
     └── MemoryStoreError                    the memory store is missing, corrupt or locked

Library errors are translated at the boundary with ``raise ... from exc`` so the cause stays visible.
"""

from __future__ import annotations

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
]


class EmuAgentError(Exception):
    """Root of every error emu-agent raises on purpose."""


class InputError(EmuAgentError, ValueError):
    """User input that can't be used; the message names the offending value."""


class MediaError(InputError):
    """An image or video that is corrupt, empty, truncated, of an unknown type, or too large."""


class PromptError(InputError):
    """A prompt the model can't take: placeholder/image mismatch, empty prompt, unknown part."""


class ContextLengthError(PromptError):
    """The prompt is longer than the model's context window."""


class ConfigError(EmuAgentError, ValueError):
    """An unknown preset, an unknown field, or dimensions that don't fit together."""


class ModelLoadError(EmuAgentError):
    """A checkpoint that can't be loaded. The message names the folder or the keys involved."""


class DeviceError(EmuAgentError):
    """A device or dtype this machine can't run (e.g. float16 on a CPU without support, cuda without a GPU)."""


class MissingDependencyError(EmuAgentError, ImportError):
    """An optional dependency is missing. The message holds the exact ``pip install`` line."""

    def __init__(self, package: str, pip_name: str | None = None, purpose: str = "") -> None:
        self.package = package
        self.pip_line = f"pip install {pip_name or package}"
        why = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"{package} is not installed{why}. Install it with: {self.pip_line}")


class ToolError(EmuAgentError):
    """A tool failed. Inside the agent loop this becomes an observation unless configured to raise."""


class StepLimitError(EmuAgentError):
    """The agent reached its step limit without a final answer."""


class MemoryStoreError(EmuAgentError):
    """The memory store is missing, corrupt or locked. User data is never re-created over silently."""
