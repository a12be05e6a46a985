"""The scale-out path: a real ``chroma run`` server on a loopback port, several clients and processes."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from emu_agent.errors import MemoryStoreError
from emu_agent.memory import HashingEmbedder, MemoryConfig, MultimodalMemory
from emu_agent.messages import Message


def _chroma_cli() -> str | None:
    beside = Path(sys.executable).with_name("chroma")
    return str(beside) if beside.is_file() else shutil.which("chroma")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    cli = _chroma_cli()
    if cli is None:
        pytest.skip("the `chroma` CLI (from the chromadb package) is not installed")
    folder = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen(
        [cli, "run", "--path", str(folder / "data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(folder),
    )
    import httpx

    deadline = time.time() + 300  # generous: on a loaded 2-core machine the server can take a minute to start
    while True:
        if proc.poll() is not None:  # the only reason to skip: the CLI can't run here
            pytest.skip(f"`chroma run` exited with {proc.returncode}: {(folder / 'server.log').read_text()[-500:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            proc.kill()
            pytest.fail(
                f"`chroma run` started but did not answer in 300 s: {(folder / 'server.log').read_text()[-500:]}"
            )
        time.sleep(0.3)
    yield {"host": "127.0.0.1", "port": port, "folder": folder}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _connect(server: dict, media: Path, prefix: str, **kwargs: Any) -> MultimodalMemory:
    kwargs.setdefault("text_embedder", HashingEmbedder(256))
    return MultimodalMemory.connect(
        server["host"], server["port"], media_store=media, config=MemoryConfig(collection_prefix=prefix), **kwargs
    )


def test_two_clients_share_one_server(chroma_server: dict, tmp_path: Path, random_model: Any, kit: Any) -> None:
    media = tmp_path / "shared-media"
    a = _connect(chroma_server, media, "two", model=random_model, captioner=kit.SceneCaptioner())
    b = _connect(chroma_server, media, "two", model=random_model, captioner=kit.SceneCaptioner())
    red = a.media.add_image(kit.draw("red", "circle", "top left"))
    ids = a.add([Message.user("look", red), Message.assistant("a circle")], session="s1")
    hit = b.search("red circle", k=1, session="s1")[0]
    assert hit.turn.id == ids[0] and hit.image == red and hit.image.load().size == (64, 64)
    assert b.search(red, k=1, modalities=["image"])[0].turn.id == ids[0]
    assert b.count() == 2 and b.delete(session="s1") == 2 and a.count() == 0
    assert a.search("red circle", k=1, session="s1") == []  # a's cached handle of the dropped session is stale
    assert a.backend.max_batch >= 1000  # asked from the server


def test_another_process_writes_through_the_server(chroma_server: dict, tmp_path: Path, kit: Any) -> None:
    media = tmp_path / "shared-media"
    proc = kit.run_python(
        f"""
        from emu_agent.memory import HashingEmbedder, MemoryConfig, MultimodalMemory
        from emu_agent.messages import Message
        memory = MultimodalMemory.connect({chroma_server["host"]!r}, {chroma_server["port"]},
            media_store={str(media)!r}, text_embedder=HashingEmbedder(256),
            config=MemoryConfig(collection_prefix="procs"))
        print(memory.add(Message.user("written by another process about lighthouses"), session="p")[0])
        """
    )
    assert proc.returncode == 0, proc.stderr
    memory = _connect(chroma_server, media, "procs")
    assert memory.search("lighthouses", k=1)[0].turn.id == proc.stdout.strip()
    # no file lock is involved: a second server client in this process works at the same time
    assert _connect(chroma_server, media, "procs").count(session="p") == 1


def test_split_batches_against_the_server(chroma_server: dict, tmp_path: Path) -> None:
    memory = _connect(chroma_server, tmp_path / "m", "batches", text_embedder=HashingEmbedder(32))
    memory.backend._max_batch = 50
    memory.add([Message.user(f"note {i}") for i in range(180)])
    assert memory.count() == 180


def test_unreachable_server_is_a_memory_store_error(tmp_path: Path) -> None:
    with pytest.raises(MemoryStoreError, match="can't reach a Chroma server"):
        MultimodalMemory.connect("127.0.0.1", _free_port(), media_store=tmp_path / "m", text_embedder=HashingEmbedder())
