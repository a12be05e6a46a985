"""The on-disk side of an embedded store: its folder layout and marker, the process lock, and the write journal.

Layout of ``MultimodalMemory(path)``::

    path/
      emu-memory.json   marker: format, version, creation time (a folder without it is never written into)
      chroma/           chromadb PersistentClient folder
      media/            the MediaStore of images (unless another store is passed)
      journal/          one JSON file per write in flight (see :class:`Journal`)
      LOCK              held (flock) by the one process that has the store open

Embedded Chroma is not safe for several processes (concurrent writers corrupt the HNSW segments), so the
store is locked for as long as a memory has it open; a second process gets a :class:`MemoryStoreError` that
points to the server mode (``chroma run`` + ``MultimodalMemory.connect``). Memories opened on the same path
inside one process share the lock.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from emu_agent.errors import MemoryStoreError

__all__ = ["MARKER", "Journal", "StoreLock", "check_layout", "mark_ready"]

MARKER = "emu-memory.json"
FORMAT = "emu-agent-memory"
VERSION = 1
CHROMA_DIR = "chroma"
MEDIA_DIR = "media"
JOURNAL_DIR = "journal"
LOCK_FILE = "LOCK"


def check_layout(root: Path, *, create: bool) -> bool:
    """Validate (or create) the store folder; returns whether it was created now.

    Raises:
        MemoryStoreError: the folder is missing (``create=False``), is not a store, has an unreadable marker, or
            has lost its Chroma database. Nothing is ever created over existing data.
    """
    marker = root / MARKER
    if not root.exists() or (root.is_dir() and not any(p.name != LOCK_FILE for p in root.iterdir())):
        if not create:
            raise MemoryStoreError(f"no memory store at {root} (pass create=True to make a new one)")
        root.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(marker, {"format": FORMAT, "version": VERSION, "created": time.time(), "ready": False})
        (root / CHROMA_DIR).mkdir(exist_ok=True)
        return True
    if not root.is_dir():
        raise MemoryStoreError(f"memory store path {root} is a file, not a folder")
    if not marker.is_file():
        raise MemoryStoreError(
            f"{root} is not empty and is not an emu-agent memory store (no {MARKER}); refusing to create a store "
            "over existing files. Pick an empty or new folder."
        )
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError) as exc:
        raise MemoryStoreError(f"memory store marker {marker} is unreadable or corrupt: {exc}") from exc
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise MemoryStoreError(f"{marker} is not an emu-agent memory marker (format {info!r:.80})")
    if int(info.get("version", 0)) > VERSION:
        raise MemoryStoreError(
            f"memory store {root} has format version {info.get('version')}; this emu-agent reads {VERSION}"
        )
    if info.get("ready") is False:
        return True  # a creation cut short before the database existed: finish it (nothing of the user's is there)
    if not (root / CHROMA_DIR / "chroma.sqlite3").is_file():
        raise MemoryStoreError(
            f"memory store {root} has lost its Chroma database ({root / CHROMA_DIR / 'chroma.sqlite3'} is missing); "
            "not re-creating it over your data. Restore the folder from a backup, or move it away to start afresh."
        )
    return False


def mark_ready(root: Path) -> None:
    """Record that a new store's database exists (until then an interrupted creation may simply be redone)."""
    marker = root / MARKER
    info = json.loads(marker.read_text())
    if info.get("ready") is False:
        info["ready"] = True
        _write_json_atomic(marker, info)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class StoreLock:
    """An exclusive advisory lock on ``root/LOCK``, shared by every holder inside this process.

    ``fcntl.flock`` where available (released by the kernel when the process dies, even by kill -9), else the
    ``filelock`` package.
    """

    _held: ClassVar[dict[str, tuple[Any, int]]] = {}  # real path -> (handle, users in this process)
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, root: Path, timeout_s: float = 0.0) -> None:
        self.path = (root / LOCK_FILE).resolve()
        self._key = str(self.path)
        self._owned = False
        with StoreLock._guard:
            held = StoreLock._held.get(self._key)
            if held is not None:
                StoreLock._held[self._key] = (held[0], held[1] + 1)
            else:
                StoreLock._held[self._key] = (self._acquire(timeout_s), 1)
        self._owned = True

    def _acquire(self, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self._acquire_filelock(timeout_s)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                    os.close(fd)
                    raise self._locked_error(holder) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _acquire_filelock(self, timeout_s: float) -> Any:  # pragma: no cover - not POSIX
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.path), timeout=timeout_s)
        try:
            lock.acquire()
        except Timeout:
            raise self._locked_error("") from None
        return lock

    def _locked_error(self, holder: str) -> MemoryStoreError:
        who = f"process {holder}" if holder else "another process"
        root = self.path.parent
        return MemoryStoreError(
            f"memory store {root} is in use by {who}. Embedded Chroma is safe for one process only. Close the other "
            f"process, or share the store through a Chroma server: `chroma run --path {root / CHROMA_DIR}` and "
            f"MultimodalMemory.connect(host, port, media_store={str(root / MEDIA_DIR)!r})."
        )

    def release(self) -> None:
        """Give up this holder's share; the lock is released when the last holder in the process lets go."""
        if not self._owned:
            return
        self._owned = False
        with StoreLock._guard:
            handle, users = StoreLock._held[self._key]
            if users > 1:
                StoreLock._held[self._key] = (handle, users - 1)
                return
            del StoreLock._held[self._key]
        if isinstance(handle, int):
            os.close(handle)  # closing the descriptor drops the flock
        else:  # pragma: no cover - not POSIX
            handle.release()


class Journal:
    """Write intents, so that a write cut short (kill -9, power loss of the process) can be rolled back.

    Before a batch of turns is written, :meth:`begin` records which Chroma records it will create and which media
    files it adds; :meth:`end` removes the entry once every record is written. On the next open, any entry left
    over is replayed by the memory: turns whose records are all present are kept, partial ones are removed, and
    media files that only the lost turns referenced are deleted. So a crash loses at most the turns in flight and
    leaves the vectors and the media store in agreement.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def begin(self, entry: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        _write_json_atomic(path, entry)
        return path

    def end(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def pending(self) -> list[tuple[Path, dict[str, Any] | None]]:
        """Entries left by writes that never finished, oldest first (``None`` for an unreadable entry)."""
        if not self.folder.is_dir():
            return []
        out: list[tuple[Path, dict[str, Any] | None]] = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                out.append((path, json.loads(path.read_text())))
            except (OSError, ValueError):
                out.append((path, None))
        for stray in self.folder.glob(".*.tmp"):  # an entry whose own write was cut short: nothing followed it
            stray.unlink(missing_ok=True)
        return out
