"""Done-when: a conversation held in one process; a second process recalls an image from it by a text query."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emu_agent.memory import HashingEmbedder, MultimodalMemory

_CONVERSATION_RANDOM = """
import json, runpy
from emu_agent.media import MediaStore
from emu_agent.memory import HashingEmbedder, MultimodalMemory
from emu_agent.messages import Message
from emu_agent.model.random_model import random_emu_model
kit = runpy.run_path({conftest!r})
model = random_emu_model(seed=0)
media = MediaStore({media!r})
red = media.add_image(kit["draw"]("red", "circle", "top left"))
blue = media.add_image(kit["draw"]("blue", "square", "bottom right"))
with MultimodalMemory({path!r}, model=model, text_embedder=HashingEmbedder(256),
                      captioner=kit["SceneCaptioner"]()) as memory:
    history = [Message.user("What do you see?", red)]
    history.append(Message.assistant(model.generate_text(history, max_new_tokens=8)))
    history.append(Message.user("And in this one?", blue))
    history.append(Message.assistant(model.generate_text(history, max_new_tokens=8)))
    memory.add(history, session="chat-1")
print(json.dumps({{"red": red.sha256, "blue": blue.sha256}}))
"""


def test_second_process_recalls_an_image_by_text_random_model(tmp_path: Path, kit: Any, random_model: Any) -> None:
    code = _CONVERSATION_RANDOM.format(
        conftest=str(kit.CONFTEST), media=str(tmp_path / "uploads"), path=str(tmp_path / "mem")
    )
    proc = kit.run_python(code)
    assert proc.returncode == 0, proc.stderr
    shas = json.loads(proc.stdout.strip().splitlines()[-1])
    with MultimodalMemory(
        tmp_path / "mem", model=random_model, text_embedder=HashingEmbedder(256), captioner=kit.SceneCaptioner(),
        create=False,
    ) as memory:  # fmt: skip
        for query, colour in (("the red circle", "red"), ("a blue square picture", "blue")):
            hit = memory.search(query, k=1)[0]
            assert hit.image is not None and hit.image.sha256 == shas[colour] and hit.matched == "caption"
            assert hit.image.load().size == (64, 64)  # the bytes came along in the memory's media store
        context = memory.context_for("the red circle", token_budget=2000)
        assert any(getattr(x, "sha256", None) == shas["red"] for x in context.items)


_CONVERSATION_TINY = """
import json, random
from emu_agent.media import MediaStore
from emu_agent.memory import MultimodalMemory
from emu_agent.messages import Message
from emu_agent.model.emu import EmuModel
from emu_agent.world.render import render_scene
from emu_agent.world.scene import Scene, SceneObject, caption
model = EmuModel.from_pretrained("emu-tiny")
media = MediaStore({media!r})
scenes = [Scene((SceneObject("red", "circle", "top left"),)), Scene((SceneObject("blue", "square", "bottom right"),))]
refs = [media.add_image(render_scene(s, random.Random(i))) for i, s in enumerate(scenes)]
with MultimodalMemory({path!r}, model=model) as memory:
    history = []
    for ref in refs:
        history.append(Message.user("describe the image.", ref))
        history.append(Message.assistant(model.generate_text(history, max_new_tokens=32)))
    memory.add(history, session="chat-1")
    captions = [memory.image_info(r).caption for r in refs]
print(json.dumps({{"shas": [r.sha256 for r in refs], "queries": [caption(s) for s in scenes], "captions": captions}}))
"""


def _emu_tiny_available() -> bool:
    from emu_agent.model.loading import builtin_model_dir

    return builtin_model_dir("emu-tiny").exists()


@pytest.mark.slow
@pytest.mark.skipif(not _emu_tiny_available(), reason="emu-tiny is not built yet (emu_agent/weights/emu-tiny missing)")
def test_second_process_recalls_an_image_by_text_emu_tiny(tmp_path: Path, kit: Any) -> None:
    from emu_agent.model.emu import EmuModel

    proc = kit.run_python(_CONVERSATION_TINY.format(media=str(tmp_path / "uploads"), path=str(tmp_path / "mem")))
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    model = EmuModel.from_pretrained("emu-tiny")
    with MultimodalMemory(tmp_path / "mem", model=model, create=False) as memory:
        for sha, query in zip(found["shas"], found["queries"], strict=True):
            hit = memory.search(query, k=1, modalities=["image"])[0]
            assert hit.image is not None and hit.image.sha256 == sha, (query, found["captions"])
