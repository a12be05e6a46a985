"""Opening stores: persistence, refusal to create over data, corrupt or missing stores, the process lock."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from emu_agent.errors import InputError, MemoryStoreError
from emu_agent.memory import HashingEmbedder, MemoryConfig, MultimodalMemory
from emu_agent.messages import Message


def test_new_store_layout_and_persistence_across_reopen(make_memory: Any, tmp_path: Path, media: Any, kit: Any) -> None:
    path = tmp_path / "store"
    memory = make_memory(path)
    ref = media.add_image(kit.draw("red", "circle"))
    ids = memory.add([Message.user("my drawing", ref), Message.assistant("a fine circle")], session="s1")
    memory.close()
    assert {p.name for p in path.iterdir()} >= {"emu-memory.json", "chroma", "media", "LOCK"}
    reopened = make_memory(path, create=False)
    turns = reopened.turns(session="s1")
    assert [t.id for t in turns] == ids
    assert turns[0].message.images[0].load() is not None  # bytes live in the memory's own media store
    assert reopened.media.has(ref) and reopened.search("red circle", k=1)[0].turn.id == ids[0]


def test_missing_store_with_create_false(tmp_path: Path, hashing: Any) -> None:
    with pytest.raises(MemoryStoreError, match="no memory store"):
        MultimodalMemory(tmp_path / "absent", text_embedder=hashing, create=False)
    assert not (tmp_path / "absent").exists()


def test_refuses_to_create_over_a_folder_with_other_files(tmp_path: Path, hashing: Any) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"user data")
    with pytest.raises(MemoryStoreError, match="not an emu-agent memory store"):
        MultimodalMemory(folder, text_embedder=hashing)
    assert sorted(p.name for p in folder.iterdir()) == ["LOCK", "holiday.jpg"]
    assert (folder / "holiday.jpg").read_bytes() == b"user data"


def test_lost_chroma_database_is_an_error_not_a_fresh_store(make_memory: Any, tmp_path: Path) -> None:
    path = tmp_path / "store"
    make_memory(path).close()
    (path / "chroma" / "chroma.sqlite3").unlink()
    with pytest.raises(MemoryStoreError, match="lost its Chroma database"):
        make_memory(path)
    assert not (path / "chroma" / "chroma.sqlite3").exists()  # nothing re-created over the user's folder


def test_corrupt_chroma_database_is_an_error_and_left_untouched(make_memory: Any, tmp_path: Path) -> None:
    path = tmp_path / "store"
    memory = make_memory(path)
    memory.add(Message.user("something worth keeping"))
    memory.close()
    db = path / "chroma" / "chroma.sqlite3"
    garbage = b"this is not a sqlite database" * 100
    db.write_bytes(garbage)
    with pytest.raises(MemoryStoreError, match="can't be opened"):
        make_memory(path)
    assert db.read_bytes() == garbage
    with pytest.raises(MemoryStoreError):  # a second attempt fails the same way (no half-started cached client)
        make_memory(path)


@pytest.mark.parametrize(
    "content", ["{not json", '{"format": "something-else"}', '{"format": "emu-agent-memory", "version": 99}']
)
def test_corrupt_or_foreign_marker(make_memory: Any, tmp_path: Path, content: str) -> None:
    path = tmp_path / "store"
    make_memory(path).close()
    (path / "emu-memory.json").write_text(content)
    with pytest.raises(MemoryStoreError):
        make_memory(path)


def test_another_process_holding_the_store_gets_a_clear_error(tmp_path: Path, kit: Any, hashing: Any) -> None:
    path = tmp_path / "store"
    ready = tmp_path / "ready"
    code = f"""
        import time
        from pathlib import Path
        from emu_agent.memory import HashingEmbedder, MultimodalMemory
        memory = MultimodalMemory({str(path)!r}, text_embedder=HashingEmbedder(256))
        Path({str(ready)!r}).write_text("ok")
        time.sleep(60)
    """
    import subprocess
    import sys
    import textwrap

    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=str(tmp_path))
    try:
        deadline = time.time() + 300  # a loaded machine can take a minute to import
        while not ready.exists():
            assert holder.poll() is None, "the holder process died"
            assert time.time() < deadline
            time.sleep(0.2)
        with pytest.raises(MemoryStoreError, match=r"in use by process \d+.*chroma run"):
            MultimodalMemory(path, text_embedder=hashing)
    finally:
        holder.kill()
        holder.wait()
    MultimodalMemory(path, text_embedder=hashing).close()  # the kernel dropped the lock with the process


def test_memories_in_one_process_share_the_store(make_memory: Any, tmp_path: Path) -> None:
    first = make_memory(tmp_path / "store")
    second = make_memory(tmp_path / "store")
    first.add(Message.user("written by the first"))
    assert [t.message.text for t in second.turns()] == ["written by the first"]
    first.close()
    second.add(Message.user("still open"))
    assert second.count() == 2


def test_embedder_mismatch_is_reported(make_memory: Any, tmp_path: Path) -> None:
    make_memory(tmp_path / "store").add(Message.user("hello"))
    make_memory(tmp_path / "store").close()
    other = make_memory(tmp_path / "store", text_embedder=HashingEmbedder(64))
    with pytest.raises(MemoryStoreError, match="holds vectors from 'hashing-256'"):
        other.search("hello")


def test_needs_a_path_or_a_client(hashing: Any) -> None:
    with pytest.raises(InputError):
        MultimodalMemory(text_embedder=hashing)


def test_ephemeral_memories_are_isolated(hashing: Any) -> None:
    a = MultimodalMemory.ephemeral(text_embedder=hashing)
    b = MultimodalMemory.ephemeral(text_embedder=hashing)
    a.add(Message.user("only in a"))
    assert a.count() == 1 and b.count() == 0
    shared = MemoryConfig(collection_prefix="sharedprefix")
    c = MultimodalMemory.ephemeral(text_embedder=hashing, config=shared)
    d = MultimodalMemory.ephemeral(text_embedder=hashing, config=shared)
    c.add(Message.user("seen by both"))
    assert d.count() == 1
    scratch = a.media.root
    assert scratch.is_dir()
    for memory in (a, b, c, d):
        memory.close()
    assert not scratch.exists()  # the temporary media folder goes with the memory


def test_an_interrupted_creation_is_finished_not_refused(make_memory: Any, tmp_path: Path) -> None:
    path = tmp_path / "store"
    make_memory(path).close()
    marker = path / "emu-memory.json"
    info = json.loads(marker.read_text())
    assert info["ready"] is True
    shutil.rmtree(path / "chroma")  # as if the process died after the marker, before the database existed
    (path / "chroma").mkdir()
    marker.write_text(json.dumps({**info, "ready": False}))
    memory = make_memory(path)
    memory.add(Message.user("works"))
    assert memory.count() == 1 and json.loads(marker.read_text())["ready"] is True


def test_videos_are_copied_into_the_memorys_media_store(make_memory: Any, media: Any, tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    import numpy as np

    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for level in range(0, 100, 10):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), level, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    video = media.add_video(clip)
    memory = make_memory()
    turn_id = memory.add(Message.user("watch this clip of a fading square", video))[0]
    assert memory.media.has(video)
    stored = memory.get(turn_id)
    assert stored is not None and stored.message.videos == [video] and stored.message.videos[0].store is memory.media
    assert memory.verify().ok
    memory.delete(turn_id)
    assert not memory.media.has(video)


@pytest.mark.parametrize(
    "layout",
    [
        {},  # the default: one collection per session
        {"session_shards": 2},  # several sessions share a shard
        {"session_shards": 64},
        {"session_index": False},  # sessions filtered in the namespace index
    ],
    ids=["own-collection", "2-shards", "64-shards", "no-session-index"],
)
def test_session_layouts_keep_sessions_apart(make_memory: Any, tmp_path: Path, layout: dict) -> None:
    memory = make_memory(config=MemoryConfig(**layout))
    for s in range(5):
        memory.add([Message.user(f"session {s} talks about topic{s}"), Message.assistant("noted")], session=f"s{s}")
    memory.add(Message.user("no session at all, topic3"))
    assert memory.sessions() == [f"s{s}" for s in range(5)]
    assert memory.count() == 11 and all(memory.count(session=f"s{s}") == 2 for s in range(5))
    for s in range(5):
        hits = memory.search("talks about topic3", k=10, session=f"s{s}")
        assert {h.turn.session for h in hits} == {f"s{s}"} and len(hits) == 2
    assert memory.delete(session="s3") == 2
    assert memory.sessions() == ["s0", "s1", "s2", "s4"] and memory.count() == 9
    assert memory.search("topic3", k=1)[0].turn.session is None
    assert memory.export(tmp_path / "export", session="s1") == 2
    memory.close()
    with pytest.raises(MemoryStoreError, match="session layout"):
        other = {"session_shards": 7} if layout != {"session_shards": 7} else {"session_shards": 0}
        make_memory(config=MemoryConfig(**other)).search("x", session="s1")
