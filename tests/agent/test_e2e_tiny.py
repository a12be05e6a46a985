"""Tier 2: the real agent on emu-tiny, a multi-step request, the final image checked by the world's checker."""

from __future__ import annotations

from typing import Any

import pytest

from emu_agent.model.loading import builtin_model_dir

pytestmark = pytest.mark.skipif(
    not builtin_model_dir("emu-tiny").is_dir(),
    reason="emu-tiny is not shipped in this build yet (emu_agent/weights/emu-tiny is missing)",
)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: Any) -> Any:
    from emu_agent.agent import Agent
    from emu_agent.model.emu import EmuModel
    from emu_agent.tools import builtin_tools

    model = EmuModel.from_pretrained("emu-tiny")
    store = tmp_path_factory.mktemp("media")
    return Agent(model, tools=builtin_tools(), media_store=store, max_steps=4)  # the toolset emu-tiny was trained with


def test_draw_then_recolour(agent: Any) -> None:
    from emu_agent.world.checker import check_image
    from emu_agent.world.scene import Scene, SceneObject

    result = agent.run("draw a red circle at top left, then make it blue.")
    calls = [call.name for step in result.steps for call in step.tool_calls]
    assert calls == ["generate_image", "edit_image"], result.steps
    assert result.images[1].derived_from == result.images[0].sha256
    first = check_image(result.images[0].load(), Scene((SceneObject("red", "circle", "top left"),)))
    final = check_image(result.images[-1].load(), Scene((SceneObject("blue", "circle", "top left"),)))
    assert first.ok, first
    assert final.ok, final
    usage = result.usage
    assert usage.image_tokens > 0 and usage.model_time_s > 0 and usage.tool_time_s > 0


def test_conversation_continues_with_handles(agent: Any) -> None:
    conv = agent.conversation()
    first = conv.run("can you draw a green square at center?")
    assert first.images, first.steps
    second = conv.run("make it yellow")
    assert [c.name for s in second.steps for c in s.tool_calls][:1] == ["edit_image"]
    assert second.steps[0].tool_calls[0].arguments["image"] == conv.handle_of(first.images[-1])
