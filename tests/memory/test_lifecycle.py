"""Lifecycle and privacy: delete, forget, retention TTL, compaction, export/import round trip."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emu_agent.errors import InputError, MemoryStoreError
from emu_agent.memory import CompactionConfig, HashingEmbedder, MemoryConfig
from emu_agent.messages import Message, ToolResultPart

DAY = 86_400.0


def _two_sessions(memory: Any, media: Any, kit: Any) -> dict[str, Any]:
    red = media.add_image(kit.draw("red", "circle"))
    blue = media.add_image(kit.draw("blue", "square"))
    s1 = memory.add([Message.user("first", red), Message.assistant("ok")], session="s1")
    s2 = memory.add([Message.user("second", blue), Message.user("again the red one", red)], session="s2")
    return {"red": red, "blue": blue, "s1": s1, "s2": s2}


def test_delete_by_id(memory: Any, media: Any, kit: Any) -> None:
    data = _two_sessions(memory, media, kit)
    assert memory.delete(data["s2"][0]) == 1
    assert memory.get(data["s2"][0]) is None and memory.count() == 3
    assert memory.count(session="s2") == 1
    assert not memory.media.has(data["blue"]) and memory.image_info(data["blue"]) is None  # nothing refers to it
    assert memory.media.has(data["red"])
    assert all(h.turn.id != data["s2"][0] for h in memory.search("second", k=10))
    assert memory.verify().ok


def test_delete_session_and_namespace(memory: Any, media: Any, kit: Any) -> None:
    data = _two_sessions(memory, media, kit)
    memory.add(Message.user("in another namespace", data["red"]), namespace="bob", session="s1")
    assert memory.delete(session="s1") == 2
    assert memory.sessions() == ["s2"] and memory.count() == 2 and memory.count(namespace="bob") == 1
    assert memory.delete(namespace="default") == 2
    assert memory.namespaces() == ["bob"] and not memory.media.has(data["blue"])
    assert memory.media.has(data["red"])  # bob still refers to it
    assert memory.verify().ok
    with pytest.raises(InputError):
        memory.delete()


def test_forget_image_removes_vectors_records_and_bytes(memory: Any, media: Any, kit: Any) -> None:
    data = _two_sessions(memory, media, kit)
    memory.add(Message.tool(ToolResultPart(tool_call_id="c", name="describe", content=["it is red", data["red"]])))
    assert memory.forget(data["red"]) == 3
    assert not memory.media.has(data["red"]) and memory.image_info(data["red"]) is None
    texts = [t.message.text for t in memory.turns()]
    assert "first[image removed]" in texts and "it is red[image removed]" in texts
    assert all(data["red"] not in t.message.images for t in memory.turns())
    assert all(h.image != data["red"] for h in memory.search("red circle", k=10))
    assert all(h.image != data["red"] for h in memory.search(kit.draw("red", "circle"), k=10))
    assert memory.search("blue square", k=1)[0].image == data["blue"]  # other images untouched
    assert memory.verify().ok


def test_forget_in_one_namespace_keeps_bytes_used_elsewhere(memory: Any, media: Any, kit: Any) -> None:
    red = media.add_image(kit.draw("red", "circle"))
    memory.add(Message.user("mine", red), namespace="alice")
    memory.add(Message.user("also mine", red), namespace="bob")
    assert memory.forget(red, namespace="alice") == 1
    assert memory.media.has(red) and memory.image_info(red) is not None
    assert memory.turns(namespace="bob")[0].message.images == [red]
    assert memory.forget(red) == 1
    assert not memory.media.has(red)


def test_retention_ttl_expires_on_open_and_on_demand(make_memory: Any, tmp_path: Path, media: Any, kit: Any) -> None:
    config = MemoryConfig(retention_s=7 * DAY)
    memory = make_memory(tmp_path / "ttl", config=config)
    old = media.add_image(kit.draw("green", "triangle"))
    memory.add(Message.user("old", old), timestamp=time.time() - 8 * DAY)
    memory.add(Message.user("fresh"))
    assert memory.expire() == 1
    assert [t.message.text for t in memory.turns()] == ["fresh"] and not memory.media.has(old)
    memory.add(Message.user("soon stale"), timestamp=time.time() - 6.9 * DAY)
    assert memory.expire(now=time.time() + DAY) == 1
    memory.add(Message.user("stale at the next open"), timestamp=time.time() - 30 * DAY)
    memory.close()
    reopened = make_memory(tmp_path / "ttl", config=config)
    assert [t.message.text for t in reopened.turns()] == ["fresh"]


def _history(memory: Any, media: Any, kit: Any, start: float) -> list[Any]:
    refs = [media.add_image(kit.draw(c, "circle")) for c in ("red", "blue")]
    memory.add(
        [
            Message.user("Look at this", refs[0]),
            Message.assistant("A red circle."),
            Message.user("And this", refs[1]),
            Message.assistant("A blue circle."),
        ],
        session="old",
        timestamp=[start + i for i in range(4)],
    )
    memory.add(Message.user("today's question"), session="old")
    return refs


@pytest.mark.parametrize("mode", ["full", "thumbnail", "caption"])
def test_compaction_summarises_old_turns(make_memory: Any, media: Any, kit: Any, mode: str) -> None:
    config = MemoryConfig(compaction=CompactionConfig(keep_images=mode, turns_per_summary=10, thumbnail_size=16))
    memory = make_memory(config=config)
    refs = _history(memory, media, kit, time.time() - 30 * DAY)
    assert memory.compact(7 * DAY) == 4
    turns = memory.turns(session="old")
    assert len(turns) == 2 and turns[0].summarised_turns == 4 and turns[0].role == "system"
    assert "Summary of 4 earlier turns" in turns[0].message.text and "A blue circle." in turns[0].message.text
    assert turns[1].message.text == "today's question"
    images = turns[0].message.images
    if mode == "full":
        assert images == refs
    elif mode == "thumbnail":
        assert [im.derived_from for im in images] == [r.sha256 for r in refs]
        assert max(images[0].load().size) == 16
        assert "(image: a red circle at center)" in turns[0].message.text
        assert not memory.media.has(refs[0])  # originals dropped once nothing references them
    else:
        assert images == [] and "(image: a blue circle at center)" in turns[0].message.text
    hit = memory.search("red circle", k=1, modalities=["image"] if mode != "caption" else ["text"])[0]
    assert hit.turn.id == turns[0].id
    assert memory.verify().ok


def test_compaction_with_a_custom_summarizer(make_memory: Any, media: Any, kit: Any) -> None:
    memory = make_memory()
    _history(memory, media, kit, time.time() - 30 * DAY)
    assert memory.compact(7 * DAY, summarizer=lambda turns: f"{len(turns)} turns about circles") == 4
    assert memory.turns()[0].message.text == "4 turns about circles"


def test_forget_reaches_thumbnails(make_memory: Any, media: Any, kit: Any) -> None:
    memory = make_memory(config=MemoryConfig(compaction=CompactionConfig(keep_images="thumbnail")))
    memory.add(Message.user("second copy keeps the original alive", media.add_image(kit.draw("red", "circle"))))
    refs = _history(memory, media, kit, time.time() - 30 * DAY)
    memory.compact(7 * DAY, session="old")
    thumb = memory.turns(session="old")[0].message.images[0]
    assert thumb.derived_from == refs[0].sha256 and memory.media.has(refs[0])
    memory.forget(refs[0])
    assert not memory.media.has(refs[0]) and not memory.media.has(thumb)
    assert memory.verify().ok


def _snapshot(memory: Any, namespace: str) -> list[tuple]:
    turns = memory.turns(namespace=namespace)
    return [(t.id, t.namespace, t.session, t.timestamp, t.message, t.tool_names) for t in turns]


def test_export_import_round_trip(make_memory: Any, tmp_path: Path, media: Any, kit: Any, captioner: Any) -> None:
    source = make_memory(tmp_path / "a")
    data = _two_sessions(source, media, kit)
    source.add(Message.user("elsewhere", data["blue"]), namespace="bob")
    assert source.export(tmp_path / "export") == 5
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert manifest["turns"] == 5 and manifest["images"] == 2
    assert len((tmp_path / "export" / "turns.jsonl").read_text().splitlines()) == 5
    calls = captioner.calls
    target = make_memory(tmp_path / "b")
    assert target.import_from(tmp_path / "export") == 5
    assert captioner.calls == calls  # vectors and captions were reused, not recomputed
    for ns in ("default", "bob"):
        assert _snapshot(target, ns) == _snapshot(source, ns) != []
    for query in ("red circle", data["blue"]):
        got = [(h.turn.id, round(h.score, 4)) for h in target.search(query, k=4, now=2e9)]
        assert got == [(h.turn.id, round(h.score, 4)) for h in source.search(query, k=4, now=2e9)]
    info_a, info_b = source.image_info(data["red"]), target.image_info(data["red"])
    assert info_a.caption == info_b.caption and np.array_equal(info_a.visual, info_b.visual)
    target.export(tmp_path / "export2")
    for name in ("turns.jsonl", "images.jsonl"):
        a = sorted((tmp_path / "export" / name).read_text().splitlines())
        b = sorted((tmp_path / "export2" / name).read_text().splitlines())
        assert a == b
    assert target.verify().ok


def test_import_re_embeds_with_another_embedder(make_memory: Any, tmp_path: Path, media: Any, kit: Any) -> None:
    source = make_memory(tmp_path / "a")
    _two_sessions(source, media, kit)
    source.export(tmp_path / "export", session="s1")
    target = make_memory(tmp_path / "b", text_embedder=HashingEmbedder(64))
    assert target.import_from(tmp_path / "export", namespace="moved") == 2
    assert target.search("red circle", k=1, namespace="moved")[0].turn.message.text == "first"


def test_import_rejects_corrupt_exports(make_memory: Any, tmp_path: Path, media: Any, kit: Any) -> None:
    source = make_memory(tmp_path / "a")
    _two_sessions(source, media, kit)
    source.export(tmp_path / "export")
    with pytest.raises(InputError, match="not empty"):
        source.export(tmp_path / "export")
    png = next((tmp_path / "export" / "media").glob("*/*.png"))
    png.write_bytes(png.read_bytes() + b"tampered")
    target = make_memory(tmp_path / "b")
    with pytest.raises(MemoryStoreError, match="does not match its sha256"):
        target.import_from(tmp_path / "export")
    with pytest.raises(MemoryStoreError, match="not a memory export"):
        target.import_from(tmp_path / "nothing-here")
    assert target.count() == 0
