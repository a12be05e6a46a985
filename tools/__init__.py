"""Built-in tools and the tool interface (installed as ``emu_agent.tools``).

``Tool``, ``tool``, ``ToolOutput`` and ``ToolContext`` are resolved lazily, so importing this package stays light
(no torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emu_agent._lazy import lazy_attributes

_LAZY: dict[str, str] = {
    "Tool": "emu_agent.tools.base",
    "ToolContext": "emu_agent.tools.base",
    "ToolOutput": "emu_agent.tools.base",
    "tool": "emu_agent.tools.base",
    "ToolSpec": "emu_agent.tools.spec",
    "BUILTIN_SPECS": "emu_agent.tools.inputs",
}

__all__ = [*_LAZY, "builtin_tools"]

if TYPE_CHECKING:
    from emu_agent.tools.base import Tool, ToolContext, ToolOutput, tool
    from emu_agent.tools.inputs import BUILTIN_SPECS
    from emu_agent.tools.spec import ToolSpec


def builtin_tools(model: Any = None, *, fetch: bool = True) -> list[Any]:
    """One instance of each built-in tool (Emu-backed; ``model`` defaults to the agent's model at run time).

    ``fetch=False`` leaves out ``fetch_image`` (the only tool that touches the network).
    """
    from emu_agent.tools.describe import DescribeImage
    from emu_agent.tools.image_editing import EditImage
    from emu_agent.tools.image_generation import GenerateImage
    from emu_agent.tools.video import AnswerAboutVideo

    tools: list[Any] = [GenerateImage(model), EditImage(model), AnswerAboutVideo(model), DescribeImage(model)]
    if fetch:
        from emu_agent.tools.fetch import FetchImage

        tools.append(FetchImage())
    return tools


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
