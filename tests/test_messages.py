"""Tier 0 tests of messages: constructors, views, role rules and JSON round trips that keep media refs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from emu_agent.errors import InputError
from emu_agent.media import ImageRef, MediaStore, VideoRef
from emu_agent.messages import (
    ImagePart,
    Message,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    VideoPart,
)


def image_ref(n: int = 1, **kwargs: object) -> ImageRef:
    return ImageRef(sha256=f"{n:x}" * 64, size_bytes=100 + n, width=8 * n, height=4 * n, **kwargs)


def video_ref(n: int = 9) -> VideoRef:
    return VideoRef(
        sha256=f"{n:x}" * 64,
        mime_type="video/mp4",
        size_bytes=5000,
        duration_seconds=1.0,
        n_frames=25,
        fps=25.0,
        width=64,
        height=64,
    )


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    return MediaStore(tmp_path / "media")


def every_part_conversation() -> list[Message]:
    a, b = image_ref(1), image_ref(2, derived_from="1" * 64, n_frames=3)
    return [
        Message.system("You are a visual assistant."),
        Message.user("Compare", a, "with", b, video_ref(), "please"),
        Message.assistant(
            "Let me edit it.",
            ToolCallPart(id="call_1", name="edit_image", arguments={"image": a.sha256, "prompt": "add a hat"}),
        ),
        Message.tool(
            ToolResultPart(tool_call_id="call_1", name="edit_image", content=["done", b]),
            ToolResultPart(tool_call_id="call_2", name="fetch_image", content="timeout", is_error=True),
        ),
        Message.assistant("Here it is:", b),
    ]


# ------------------------------------------------------------------ constructors and views


def test_user_interleaves_text_and_media_in_order() -> None:
    a, b, v = image_ref(1), image_ref(2), video_ref()
    m = Message.user("What changed between", a, "and", b, TextPart(text="?"), v)
    assert m.role == "user"
    assert [p.type for p in m.parts] == ["text", "image", "text", "image", "text", "video"]
    assert isinstance(m.parts[1], ImagePart) and m.parts[1].image == a
    assert isinstance(m.parts[5], VideoPart) and m.parts[5].video == v
    assert m.text == "What changed betweenand?"
    assert m.images == [a, b]
    assert m.videos == [v]
    assert m.tool_calls == [] and m.tool_results == []


def test_system_and_empty_messages() -> None:
    assert Message.system("be brief").text == "be brief"
    assert Message.system("be brief").role == "system"
    empty = Message.assistant()
    assert empty.parts == [] and empty.text == "" and empty.images == []


def test_assistant_with_tool_calls() -> None:
    call = ToolCallPart(id="c1", name="generate_image", arguments={"prompt": "a red circle", "seed": 3})
    m = Message.assistant("Generating.", call)
    assert m.tool_calls == [call]
    assert m.text == "Generating."
    assert ToolCallPart(id="c2", name="noop").arguments == {}


def test_tool_message_and_result_views() -> None:
    img = image_ref(3)
    result = ToolResultPart(tool_call_id="c1", name="generate_image", content=["made ", img, "it"])
    assert [p.type for p in result.content] == ["text", "image", "text"]
    assert result.text == "made it" and result.images == [img] and result.is_error is False
    m = Message.tool(result, ToolResultPart(tool_call_id="c2", name="x", content=img))
    assert m.tool_results[0] == result
    assert m.images == [img, img]  # images inside tool results count
    assert m.text == "made it"


def test_parts_field_accepts_plain_items() -> None:
    a = image_ref()
    assert Message(role="user", parts="hi") == Message.user("hi")
    assert Message(role="user", parts=["hi", a]) == Message.user("hi", a)


# ------------------------------------------------------------------ validation


def test_bad_content_type_raises_input_error_naming_it() -> None:
    with pytest.raises(InputError, match="not int"):
        Message.user("hello", 42)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="ndarray"):
        Message.user(np.zeros((2, 2)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Message.user(ToolCallPart(id="1", name="edit_image")), "only 'assistant' may call"),
        (lambda: Message.system(ToolCallPart(id="1", name="edit_image")), "only 'assistant' may call"),
        (lambda: Message.assistant(ToolResultPart(tool_call_id="1", name="x")), "use a 'tool' message"),
        (lambda: Message.of("tool", "just text"), "only tool results"),
    ],
)
def test_role_rules(build: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        build()  # type: ignore[operator]


def test_role_rules_also_apply_when_parsing() -> None:
    data = {"role": "user", "parts": [{"type": "tool_call", "id": "1", "name": "x", "arguments": {}}]}
    with pytest.raises(ValidationError, match="only 'assistant' may call"):
        Message.model_validate(data)


def test_unknown_role_part_type_and_extra_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Message.model_validate({"role": "robot", "parts": []})
    with pytest.raises(ValidationError, match="audio"):
        Message.model_validate({"role": "user", "parts": [{"type": "audio", "data": "..."}]})
    with pytest.raises(ValidationError):
        Message.model_validate({"role": "user", "parts": [{"type": "text", "text": "x", "bold": True}]})
    with pytest.raises(ValidationError):
        Message.model_validate({"role": "user", "parts": [], "extra": 1})


def test_media_refs_validate_their_fields() -> None:
    with pytest.raises(ValidationError, match="sha256"):
        ImageRef(sha256="abc", size_bytes=1, width=1, height=1)
    with pytest.raises(ValidationError):
        ImageRef(sha256="a" * 64, size_bytes=1, width=0, height=1)
    with pytest.raises(ValidationError):
        ImageRef(sha256="a" * 64, size_bytes=1, width=1, height=1, derived_from="../x")


def test_tool_results_hold_only_text_and_images() -> None:
    with pytest.raises(ValidationError):
        ToolResultPart(tool_call_id="c", name="x", content=[video_ref()])  # type: ignore[list-item]
    with pytest.raises(ValidationError):
        ToolResultPart(tool_call_id="", name="x")


def test_discriminated_union_builds_the_right_part() -> None:
    data = {
        "role": "assistant",
        "parts": [
            {"type": "text", "text": "hi"},
            {"type": "image", "image": image_ref().model_dump()},
            {"type": "video", "video": video_ref().model_dump()},
            {"type": "tool_call", "id": "1", "name": "f", "arguments": {"a": [1, 2]}},
        ],
    }
    m = Message.model_validate(data)
    assert [type(p) for p in m.parts] == [TextPart, ImagePart, VideoPart, ToolCallPart]


# ------------------------------------------------------------------ JSON round trips


@pytest.mark.parametrize("index", range(5))
def test_json_round_trip_of_every_part(index: int) -> None:
    m = every_part_conversation()[index]
    assert Message.model_validate_json(m.model_dump_json()) == m
    assert Message.model_validate(json.loads(m.model_dump_json())) == m
    assert Message.model_validate(m.model_dump()) == m


def test_json_keeps_references_not_pixels(store: MediaStore) -> None:
    rng = np.random.default_rng(0)
    big = store.add_image(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    edit = store.add_image(Image.new("RGB", (16, 16), "red"), derived_from=big)
    m = Message.user("edit this", big, "into", edit)
    text = m.model_dump_json()
    assert len(text) < 1000  # 256x256 noise would be ~260 KB as base64
    assert "iVBOR" not in text  # no base64 PNG
    payload = json.loads(text)["parts"][3]["image"]
    assert payload == {
        "sha256": edit.sha256,
        "mime_type": "image/png",
        "size_bytes": edit.size_bytes,
        "derived_from": big.sha256,
        "width": 16,
        "height": 16,
        "n_frames": None,
    }
    again = Message.model_validate_json(text)
    assert again == m
    assert again.images[1].derived_from == big.sha256


def test_parsed_refs_bind_to_a_store_through_context(store: MediaStore) -> None:
    ref = store.add_image(Image.new("RGB", (5, 3), (1, 2, 3)))
    text = Message.user("look", ref).model_dump_json()

    unbound = Message.model_validate_json(text)
    with pytest.raises(InputError, match="not bound"):
        unbound.images[0].load()
    assert unbound.images[0].load(store).getpixel((0, 0)) == (1, 2, 3)

    bound = Message.model_validate_json(text, context={"media_store": store})
    assert bound == unbound  # binding is not part of the value
    assert bound.images[0].load().getpixel((0, 0)) == (1, 2, 3)

    by_path = Message.model_validate_json(text, context={"media_store": store.root})
    assert by_path.images[0].load().size == (5, 3)


def test_messages_from_a_real_store_round_trip(store: MediaStore) -> None:
    ref = store.add_image(Image.new("RGBA", (6, 6), (0, 0, 0, 0)))
    result = ToolResultPart(tool_call_id="c", name="generate_image", content=["ok", ref])
    conversation = [
        Message.user("draw", ref),
        Message.assistant(ToolCallPart(id="c", name="generate_image", arguments={"prompt": "x"})),
        Message.tool(result),
    ]
    for m in conversation:
        assert Message.model_validate_json(m.model_dump_json()) == m
