"""Robustness: Chroma's batch limit, threads, failed and interrupted writes, kill -9 in the middle of an ingest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emu_agent.errors import MemoryStoreError
from emu_agent.memory import HashingEmbedder, MemoryConfig, MultimodalMemory
from emu_agent.messages import Message


def test_writes_are_split_to_chromas_max_batch(make_memory: Any, media: Any, kit: Any) -> None:
    memory = make_memory(config=MemoryConfig(ingest_batch=1000))
    memory.backend._max_batch = 7  # as if the server allowed only 7 records per call
    sizes: list[int] = []
    real = memory.backend.upsert.__func__

    def spy(self: Any, col: Any, ids: Any, *args: Any) -> None:
        sizes.append(len(ids))
        real(self, col, ids, *args)

    memory.backend.upsert = spy.__get__(memory.backend)
    red = media.add_image(kit.draw("red", "circle"))
    ids = memory.add([Message.user(f"turn {i}", red) for i in range(30)], session="s")
    assert memory.count() == 30 == memory.count(session="s")
    assert {t.id for t in memory.turns()} == set(ids)
    assert max(sizes) > 7  # the memory hands over whole batches; the backend splits them
    got = memory.backend.get(memory._col("t", "default"), ids)  # reads are split too
    assert len(got["ids"]) == 30


def test_more_records_than_chromas_real_limit_in_one_add(tmp_path: Path) -> None:
    memory = MultimodalMemory(
        tmp_path / "big", text_embedder=HashingEmbedder(32), config=MemoryConfig(ingest_batch=10_000)
    )
    try:
        limit = memory.backend.max_batch
        n = limit + 40
        memory.add([Message.user(f"note number {i}") for i in range(n)])
        assert memory.count() == n
    finally:
        memory.close()


def test_threads_add_and_search_concurrently(make_memory: Any, media: Any, kit: Any) -> None:
    memory = make_memory()
    refs = [media.add_image(kit.draw(c, s)) for c in ("red", "blue") for s in ("circle", "square")]
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        try:
            for i in range(12):
                memory.add(Message.user(f"writer {w} turn {i}", refs[(w + i) % len(refs)]), session=f"w{w}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            while not stop.is_set():
                memory.search("red circle", k=3)
                memory.search(refs[0], k=3, session="w1")
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors
    assert memory.count() == 48 and all(memory.count(session=f"w{w}") == 12 for w in range(4))
    assert memory.verify().ok


class _Crash(BaseException):
    """Stands for the process dying: not an Exception, so no in-process rollback runs."""


def _fail_after(memory: Any, calls: int, error: BaseException) -> None:
    real = memory.backend.upsert
    count = {"n": 0}

    def upsert(*args: Any, **kwargs: Any) -> None:
        count["n"] += 1
        if count["n"] > calls:
            raise error
        real(*args, **kwargs)

    memory.backend.upsert = upsert


def test_a_failed_write_is_rolled_back_in_process(make_memory: Any, media: Any, kit: Any) -> None:
    memory = make_memory()
    memory.add(Message.user("kept"), session="s")
    new = media.add_image(kit.draw("green", "square"))
    _fail_after(memory, 2, MemoryStoreError("disk full"))  # registry + namespace index written, then a failure
    with pytest.raises(MemoryStoreError, match="disk full"):
        memory.add(Message.user("lost", new), session="s")
    del memory.backend.upsert
    assert [t.message.text for t in memory.turns()] == ["kept"] and memory.count(session="s") == 1
    assert not memory.media.has(new) and memory.verify().ok


def test_an_interrupted_write_is_recovered_at_the_next_open(
    make_memory: Any, tmp_path: Path, media: Any, kit: Any
) -> None:
    memory = make_memory(tmp_path / "store")
    memory.add(Message.user("kept"), session="s")
    new = media.add_image(kit.draw("green", "square"))
    _fail_after(memory, 2, _Crash())
    with pytest.raises(_Crash):
        memory.add(Message.user("in flight", new), session="s")
    assert memory.media.has(new) and len(memory.journal.pending()) == 1  # half written, as after a crash
    memory.close()
    reopened = make_memory(tmp_path / "store")
    assert [t.message.text for t in reopened.turns()] == ["kept"]
    assert reopened.count(session="s") == 1 and not reopened.media.has(new)
    report = reopened.verify()
    assert report.ok, report


def test_replacing_a_turn_that_fails_keeps_the_old_one(make_memory: Any) -> None:
    memory = make_memory()
    memory.add(Message.user("version one"), ids="t1")
    _fail_after(memory, 0, MemoryStoreError("boom"))
    with pytest.raises(MemoryStoreError):
        memory.add(Message.user("version two"), ids="t1")
    del memory.backend.upsert
    assert memory.get("t1").message.text == "version one"


_INGEST = """
import runpy, sys, numpy as np
from emu_agent.media import MediaStore
from emu_agent.memory import HashingEmbedder, MultimodalMemory
from emu_agent.messages import Message
from emu_agent.model.random_model import random_emu_model
kit = runpy.run_path({conftest!r})
media = MediaStore({media!r})
memory = MultimodalMemory({path!r}, model=random_emu_model(seed=0), text_embedder=HashingEmbedder(256),
                          captioner=kit["SceneCaptioner"]())
rng = np.random.default_rng({seed})
base = kit["draw"]("red", "circle")
for i in range(100000):
    pixels = np.asarray(base).copy()
    pixels[rng.integers(0, 64), rng.integers(0, 64)] = rng.integers(0, 255, 3)  # a new image every turn
    ref = media.add_image(pixels)
    turn_id = f"{seed}-{{i}}"
    memory.add([Message.user(f"picture {{i}} of run {seed}", ref)], session=f"run{seed}", ids=[turn_id])
    print("ack", turn_id, flush=True)
"""


def _ingest_and_kill(tmp_path: Path, kit: Any, seed: int, after: int) -> list[str]:
    code = _INGEST.format(
        conftest=str(kit.CONFTEST), media=str(tmp_path / "src"), path=str(tmp_path / "store"), seed=seed
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),  # the repo root would shadow the installed package (emu_agent.memory)
    )
    acked: list[str] = []
    assert child.stdout is not None
    try:
        while len(acked) < after:
            line = child.stdout.readline()
            assert line, f"ingest died: {child.stderr.read() if child.stderr else ''}"
            acked.append(line.split()[1])
        time.sleep(np.random.default_rng(seed).uniform(0.0, 0.05))  # land somewhere inside the next write
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    acked += [line.split()[1] for line in rest.splitlines() if line.startswith("ack")]
    assert child.returncode == -signal.SIGKILL
    return acked


@pytest.mark.slow
def test_kill_9_mid_ingest_loses_at_most_the_turn_in_flight(tmp_path: Path, kit: Any, random_model: Any) -> None:
    acked: list[str] = []
    for seed, after in ((1, 25), (2, 12)):  # twice: the second run also starts by recovering the first's leftovers
        acked += _ingest_and_kill(tmp_path, kit, seed, after)
        memory = MultimodalMemory(
            tmp_path / "store", model=random_model, text_embedder=HashingEmbedder(256), captioner=kit.SceneCaptioner()
        )
        try:
            stored = {t.id for t in memory.turns(session=f"run{seed}")} | {t.id for t in memory.turns(session="run1")}
            assert set(acked) <= stored and len(stored - set(acked)) <= 1
            report = memory.verify()
            assert report.ok, report  # media store and vectors agree
            assert memory.count(session=f"run{seed}") == len([i for i in stored if i.startswith(f"{seed}-")])
            mine = [i for i in acked if i.startswith(f"{seed}-")]
            last = max(mine, key=lambda i: int(i.split("-")[1]))
            hit = memory.search(f"picture {last.split('-')[1]} of run {seed}", k=1, session=f"run{seed}")[0]
            assert hit.turn.id == last and hit.turn.message.images[0].load().size == (64, 64)
        finally:
            memory.close()
