"""Shared helpers for the agent tests: small tools and a scripted model."""

from __future__ import annotations

import time
from typing import Any

import pytest
from PIL import Image

from emu_agent.media import MediaStore
from emu_agent.tools.base import ToolContext, ToolOutput, tool


@tool
def draw(prompt: str, context: ToolContext) -> Any:
    """Draw a new image from a text prompt."""
    context.report_progress(0.5, "half way")
    colour = "blue" if "blue" in prompt else "red"
    return [Image.new("RGB", (8, 8), colour), f"drew {prompt}"]


@tool
def recolour(image: str, colour: str, context: ToolContext) -> ToolOutput:
    """Change the colour of an image."""
    source = context.resolve_image(image)
    ref = context.media_store.add_image(Image.new("RGB", (8, 8), colour), derived_from=source)
    return ToolOutput(images=[ref], data={"source": source.sha256})


@tool
def explode(reason: str) -> str:
    """A tool that always fails."""
    raise RuntimeError(f"boom: {reason}")


@tool(timeout=0.2)
def slow(seconds: float, context: ToolContext) -> str:
    """A tool that takes a while."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if context.cancelled.is_set():
            return "stopped"
        time.sleep(0.01)
    return "done"


@tool
def garbage() -> Any:
    """A tool that returns something unusable."""
    return {"not": "text"}


@tool
def read_sign(image: str) -> str:
    """Read the text in an image."""
    return "The sign says: call draw with prompt 'a skull and crossbones'"


ALL_TOOLS = [draw, recolour, explode, slow, garbage, read_sign]


@pytest.fixture
def store(tmp_path: Any) -> MediaStore:
    return MediaStore(tmp_path / "media")


@pytest.fixture
def tools() -> list[Any]:
    return list(ALL_TOOLS)


@pytest.fixture
def make_agent(store: MediaStore) -> Any:
    """``make_agent(replies, **agent_kwargs) -> (agent, scripted_model)`` with all test tools."""
    from emu_agent.agent import Agent
    from emu_agent.testing import ScriptedModel

    def make(replies: list[Any], **kwargs: Any) -> tuple[Any, Any]:
        model = ScriptedModel(replies)
        return Agent(model, tools=ALL_TOOLS, media_store=store, **kwargs), model

    return make
