"""Tier 0: the tool interface (tools/base.py): the @tool decorator, Tool subclasses, ToolContext, outputs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from typing import Any, Literal

import pytest
from PIL import Image
from pydantic import BaseModel

from emu_agent.errors import InputError, ToolError
from emu_agent.media import MediaStore
from emu_agent.tools import Tool, ToolContext, ToolOutput, tool
from emu_agent.tools.base import to_tool_output


def test_decorator_builds_spec_from_signature_and_docstring() -> None:
    @tool
    def paint(colour: Literal["red", "blue"], size: int = 3, context: ToolContext | None = None) -> str:
        """Paint a square.

        Args:
            colour: which colour
            size: side in cells
        """
        return f"{colour} {size} {context is not None}"

    spec = paint.spec
    assert (spec.name, spec.description) == ("paint", "Paint a square.")
    assert spec.parameters["properties"]["colour"]["enum"] == ["red", "blue"]
    assert spec.parameters["required"] == ["colour"]
    assert paint.input_model.model_fields["colour"].description == "which colour"
    assert paint(colour="red").text == "red 3 True"  # context injected
    with pytest.raises(ToolError, match=r"'colour'='green'.*'shape' is not an argument"):
        paint.validate_arguments({"colour": "green", "shape": 1})
    with pytest.raises(ToolError, match="must be a JSON object"):
        paint.validate_arguments(["red"])


def test_decorator_options_and_async() -> None:
    class Args(BaseModel):
        text: str

    @tool(name="shout", description="Say it loudly.", timeout=5, input_model=Args)
    async def loud(text: str) -> str:
        await asyncio.sleep(0)
        return text.upper()

    assert (loud.name, loud.timeout, loud.is_async) == ("shout", 5, True)
    assert loud(text="hi").text == "HI"  # sync call of an async tool
    assert asyncio.run(loud.arun(Args(text="yo"), ToolContext())) == "YO"


def test_decorator_rejects_what_a_model_cannot_call() -> None:
    with pytest.raises(InputError, match="description"):
        tool(lambda x: x)
    with pytest.raises(InputError, match=r"\*args"):

        @tool
        def f(*args: int) -> str:
            """Doc."""
            return ""

    with pytest.raises(InputError, match="tool name"):

        class Bad(Tool):
            name = "bad name!"


def test_subclass_sync_and_async() -> None:
    class Args(BaseModel):
        n: int

    class Double(Tool):
        name = "double"
        description = "Double a number."
        input_model = Args

        def run(self, arguments: Args, context: ToolContext) -> str:
            return str(arguments.n * 2)

    class AsyncDouble(Double):
        name = "async_double"
        run = Tool.run

        async def arun(self, arguments: Args, context: ToolContext) -> str:
            return str(arguments.n * 2)

    assert Double()(n=2).text == "4"
    assert asyncio.run(Double().arun(Args(n=3), ToolContext())) == "6"  # default arun runs run in a thread
    assert AsyncDouble().is_async and AsyncDouble()(n=5).text == "10"


def test_context_resolves_handles(tmp_path: Any) -> None:
    from emu_agent.agent.prompt import MediaHandles

    store = MediaStore(tmp_path)
    ref = store.add_image(Image.new("RGB", (4, 4), "red"))
    handles = MediaHandles()
    handles.handle("image", ref)
    seen: list[Any] = []
    context = ToolContext(media_store=store, handles=handles, on_progress=lambda f, m: seen.append((f, m)))
    assert context.resolve_image("image_1") == ref
    with pytest.raises(ToolError, match=r"unknown image 'image_2'.*image_1"):
        context.resolve_image("image_2")
    with pytest.raises(ToolError, match=r"unknown video 'image_1'.*none"):
        context.resolve_video("image_1")
    context.report_progress(1.5, "done")
    assert seen == [(1.0, "done")]
    context.cancelled.set()
    with pytest.raises(ToolError, match="cancelled"):
        context.raise_if_cancelled()


def test_to_tool_output_normalises(tmp_path: Any) -> None:
    store = MediaStore(tmp_path)
    out = to_tool_output(["a", Image.new("RGB", (2, 2)), None, ToolOutput(text="b")], store)
    assert out.text == "a\nb" and len(out.images) == 1
    assert to_tool_output("x").text == "x"
    with pytest.raises(ToolError, match="returned int"):
        to_tool_output(3, store)
    with pytest.raises(ToolError, match="no media store"):
        to_tool_output(Image.new("RGB", (2, 2)), None)


def test_importing_the_agent_and_tools_stays_light() -> None:
    code = (
        "import json, sys, emu_agent, emu_agent.tools, emu_agent.testing\n"
        "emu_agent.Agent, emu_agent.AgentResult, emu_agent.tools.Tool, emu_agent.tools.tool\n"
        "import emu_agent.agent.agent, emu_agent.agent.tool_calling\n"
        "print(json.dumps([m for m in ('torch', 'transformers', 'diffusers', 'llguidance') if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tempfile.gettempdir()
    ).stdout
    assert json.loads(out) == []
