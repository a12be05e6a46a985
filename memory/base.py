"""``MultimodalMemory``: every turn of every conversation in ChromaDB, images stored once, recalled across modalities.

Quick start::

    from emu_agent.memory import MultimodalMemory

    memory = MultimodalMemory("~/.emu-memory", model=model)           # embedded, persistent (chromadb)
    memory.add(Message.user("Look at this", ref), session="chat-1")
    hits = memory.search("the red circle", k=3)                      # text -> image, text -> text
    hits = memory.search(ref)                                        # image -> image, image -> text
    context = memory.context_for(user_message, token_budget=512)     # what the agent prepends

Clients: ``MultimodalMemory(path)`` (embedded PersistentClient, locked to one process),
``MultimodalMemory.connect(host, port, media_store=...)`` (a Chroma server: ``chroma run --path ...``; the
scale-out path, any number of processes), ``MultimodalMemory.ephemeral()`` (in memory, for tests). Telemetry is
off in all three.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emu_agent.errors import InputError, MemoryStoreError
from emu_agent.media import MediaStore
from emu_agent.memory.config import MemoryConfig
from emu_agent.memory.embeddings import ModelCaptioner, TextEmbedder, VisualEmbedder, as_text_embedder
from emu_agent.memory.lifecycle import LifecycleMixin
from emu_agent.memory.recall import RecallMixin
from emu_agent.memory.records import MemoryTurn, tool_names
from emu_agent.memory.storage import CHROMA_DIR, JOURNAL_DIR, MEDIA_DIR, Journal, StoreLock, check_layout, mark_ready
from emu_agent.memory.transfer import TransferMixin
from emu_agent.messages import Message

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["MultimodalMemory"]

Timestamp = float | datetime


class MultimodalMemory(RecallMixin, LifecycleMixin, TransferMixin):
    """Interleaved multimodal memory on ChromaDB.

    Args:
        path: folder of an embedded store (created if absent and ``create``; see :mod:`emu_agent.memory.storage`
            for its layout). With ``client``, the folder only holds the media store and the write journal.
        client: a chromadb client to use instead of an embedded one (e.g. ``chromadb.HttpClient``).
        media_store: where images are stored once (a :class:`MediaStore` or a folder). Default: ``path/media``.
        model: the Emu model: its visual encoder embeds images (image->image recall), it captions them (text<->
            image recall) and its tokenizer counts context tokens. ``None``: images are stored but not embedded.
        text_embedder: a :class:`TextEmbedder` or a callable ``list[str] -> vectors``. Default: the offline
            all-MiniLM-L6-v2 (:class:`MiniLMEmbedder`).
        captioner: ``PIL image -> caption``, replacing the model's own captioning (``config.caption_prompt``).
        config: :class:`MemoryConfig`.
        create: make a new store when ``path`` holds none; with ``False`` a missing store is an error.
        token_counter: ``text -> token count`` for :meth:`context_for` (default: the model's tokenizer).

    Raises:
        MemoryStoreError: the store is missing (``create=False``), corrupt, not a memory store, or locked by
            another process. A store is never re-created over existing data.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        client: Any = None,
        media_store: MediaStore | str | os.PathLike[str] | None = None,
        model: Any = None,
        text_embedder: TextEmbedder | Callable[[list[str]], Any] | None = None,
        captioner: Callable[[Image.Image], str] | None = None,
        config: MemoryConfig | None = None,
        create: bool = True,
        token_counter: Callable[[str], int] | None = None,
    ) -> None:
        from emu_agent.memory.chroma import ChromaBackend, open_persistent_client

        self.config = config or MemoryConfig()
        self.model = model
        self.embedder = as_text_embedder(text_embedder)
        self.visual = VisualEmbedder(model) if model is not None and hasattr(model, "encode_images") else None
        if captioner is None and model is not None and self.config.caption_images:
            captioner = ModelCaptioner(
                model,
                prompt=self.config.caption_prompt,
                max_new_tokens=self.config.caption_max_new_tokens,
                chat=self.config.caption_chat,
            )
        self.captioner = captioner if self.config.caption_images else None
        self._token_counter = token_counter
        self._lock = threading.RLock()
        self._store_lock: StoreLock | None = None
        self._scratch_media: str | None = None
        self._owns_client = client is None
        self.root = Path(path).expanduser() if path is not None else None
        self.journal = Journal(self.root / JOURNAL_DIR) if self.root is not None else None
        if client is None and self.root is None:
            raise InputError("MultimodalMemory needs a path (embedded store) or a client; see .ephemeral() for tests")
        if client is None:
            assert self.root is not None
            client = self._open_embedded(self.root, create, open_persistent_client)
        elif self.root is not None:
            self.root.mkdir(parents=True, exist_ok=True)
        if media_store is None:
            if self.root is None:
                raise InputError("pass media_store= (a MediaStore or folder) when the memory has no path")
            media_store = self.root / MEDIA_DIR
        self.media = media_store if isinstance(media_store, MediaStore) else MediaStore(media_store)
        self.backend = ChromaBackend(client, prefix=self.config.collection_prefix, hnsw=self.config.hnsw)
        try:
            self.recover()
            self.expire()
        except BaseException:
            self.close()
            raise

    def _open_embedded(self, root: Path, create: bool, opener: Callable[[Path], Any]) -> Any:
        if not root.exists():
            if not create:
                raise MemoryStoreError(f"no memory store at {root} (pass create=True to make a new one)")
            root.mkdir(parents=True, exist_ok=True)
        self._store_lock = StoreLock(root, self.config.lock_timeout_s)
        try:
            creating = check_layout(root, create=create)
            client = opener(root / CHROMA_DIR)
            if creating:
                mark_ready(root)
            return client
        except BaseException:
            self._store_lock.release()
            self._store_lock = None
            raise

    @classmethod
    def ephemeral(
        cls, *, media_store: MediaStore | str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> MultimodalMemory:
        """An in-memory memory (``chromadb.EphemeralClient``) for tests and notebooks.

        Every ephemeral client in a process shares one Chroma instance, so each memory gets its own collection
        prefix (unless ``config`` sets one). Images go to ``media_store`` or a temporary folder removed by
        :meth:`close`.
        """
        from emu_agent.memory.chroma import open_ephemeral_client

        config = kwargs.pop("config", None) or MemoryConfig()
        if "collection_prefix" not in config.model_fields_set:
            config = config.model_copy(update={"collection_prefix": f"eph{uuid.uuid4().hex[:12]}"})
        scratch = None if media_store is not None else tempfile.mkdtemp(prefix="emu-memory-media-")
        memory = cls(client=open_ephemeral_client(), media_store=media_store or scratch, config=config, **kwargs)
        memory._scratch_media = scratch  # removed by close()
        return memory

    @classmethod
    def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = 8000,
        *,
        media_store: MediaStore | str | os.PathLike[str],
        ssl: bool = False,
        headers: dict[str, str] | None = None,
        path: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> MultimodalMemory:
        """A memory on a Chroma server (start one with ``chroma run --path DIR --host 127.0.0.1 --port 8000``).

        Any number of processes may connect. ``media_store`` must be shared by them (e.g. a common folder);
        ``path`` optionally holds this client's write journal.
        """
        from emu_agent.memory.chroma import open_http_client

        client = open_http_client(host, port, ssl=ssl, headers=headers)
        return cls(path, client=client, media_store=media_store, **kwargs)

    def close(self) -> None:
        """Release the store (its process lock and, for an embedded store, the Chroma client). Idempotent."""
        if getattr(self, "backend", None) is not None:
            self.backend.close()
            if self._owns_client and hasattr(self.backend.client, "close"):
                self.backend.client.close()
        if self._store_lock is not None:
            self._store_lock.release()
            self._store_lock = None
        if self._scratch_media is not None:
            shutil.rmtree(self._scratch_media, ignore_errors=True)
            self._scratch_media = None

    def __enter__(self) -> MultimodalMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = str(self.root) if self.root is not None else type(self.backend.client).__name__
        return f"MultimodalMemory({where!r}, namespace={self.config.namespace!r})"

    # ------------------------------------------------------------------------------------------ writing

    def add(
        self,
        messages: Message | Iterable[Message],
        *,
        session: str | None = None,
        namespace: str | None = None,
        timestamp: Timestamp | Sequence[Timestamp] | None = None,
        ids: str | Sequence[str] | None = None,
    ) -> list[str]:
        """Store turns (one per message, in order); returns their ids.

        Every image is stored once in the media store (copied from the store its ref is bound to when needed),
        embedded with the model's visual encoder and captioned, once per distinct image. ``timestamp`` is one time
        for all (the turns keep their order) or one per message; default now. Turns with an existing id replace it.
        Large lists are written in commits of ``config.ingest_batch`` turns; a crash loses at most the commit in
        flight.
        """
        batch = [messages] if isinstance(messages, Message) else list(messages)
        for m in batch:
            if not isinstance(m, Message):
                raise InputError(f"add takes Message objects, not {type(m).__name__}: {m!r:.80}")
        turns = self._make_turns(batch, self._ns(namespace), self._session(session), timestamp, ids)
        for start in range(0, len(turns), self.config.ingest_batch):
            chunk = turns[start : start + self.config.ingest_batch]
            self._commit(self._prepare(chunk), time.time())
        return [t.id for t in turns]

    def _make_turns(
        self,
        messages: list[Message],
        namespace: str,
        session: str | None,
        timestamp: Timestamp | Sequence[Timestamp] | None,
        ids: str | Sequence[str] | None,
    ) -> list[MemoryTurn]:
        n = len(messages)
        id_list = (
            [ids] if isinstance(ids, str) else list(ids) if ids is not None else [uuid.uuid4().hex for _ in range(n)]
        )
        if len(id_list) != n or len(set(id_list)) != n:
            raise InputError(f"ids must be {n} distinct strings, got {id_list!r:.120}")
        for turn_id in id_list:
            if not isinstance(turn_id, str) or not turn_id or "#" in turn_id:
                raise InputError(f"a turn id must be a non-empty string without '#', got {turn_id!r}")
        if timestamp is None or isinstance(timestamp, (int, float, datetime)):
            start = _seconds(timestamp) if timestamp is not None else time.time()
            times = [start + i * 1e-6 for i in range(n)]  # keeps the order of turns added together
        else:
            times = [_seconds(t) for t in timestamp]
            if len(times) != n:
                raise InputError(f"{len(times)} timestamps for {n} messages")
        return [
            MemoryTurn(id=i, namespace=namespace, session=session, timestamp=t, message=m, tool_names=tool_names(m))
            for i, t, m in zip(id_list, times, messages, strict=True)
        ]

    # ------------------------------------------------------------------------------------------ reading

    def turns(self, *, namespace: str | None = None, session: str | None = None) -> list[MemoryTurn]:
        """Every stored turn of a namespace (or one session of it), oldest first."""
        ns, session = self._ns(namespace), self._session(session)
        col = self._col("t", ns, self._index_session(session))
        return self._scan_turns(col, self._session_where(session)) if col is not None else []

    def get(self, turn_id: str, *, namespace: str | None = None) -> MemoryTurn | None:
        """One turn by id (searched in ``namespace``, or every namespace), or ``None``."""
        for col in self._pick_namespaces(namespace):
            with self._lock:
                found = self._turns_of(self.backend.get(col, [turn_id]))
            if found:
                return found[0]
        return None

    def count(self, *, namespace: str | None = None, session: str | None = None) -> int:
        """How many turns a namespace (or a session of it) holds."""
        ns, session = self._ns(namespace), self._session(session)
        col = self._col("t", ns, self._index_session(session))
        if col is None:
            return 0
        where: dict[str, Any] = {"kind": "turn"}
        if (extra := self._session_where(session)) is not None:
            where = {"$and": [where, extra]}
        with self._lock:
            return sum(len(page["ids"]) for page in self.backend.scan(col, where=where, include=[]))

    def namespaces(self) -> list[str]:
        """Every namespace with stored turns."""
        return sorted(self._namespace_collections())

    def sessions(self, *, namespace: str | None = None) -> list[str]:
        """Every session of a namespace (with session shards, this reads the metadata of every turn)."""
        ns = self._ns(namespace)
        found: set[str] = set()
        for col in self.backend.list_collections():
            meta = col.metadata or {}
            if meta.get("kind") != "text" or meta.get("namespace") != ns:
                continue
            if meta.get("scope") == "session":
                found.add(str(meta["session"]))
            elif meta.get("scope") == "shard" or (meta.get("scope") == "namespace" and not self.config.session_index):
                with self._lock:
                    pages = list(self.backend.scan(col, where={"kind": "turn"}, include=["metadatas"]))
                found.update(str(m["session"]) for page in pages for m in page["metadatas"] if m.get("session"))
        return sorted(found)


def _seconds(value: Timestamp) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise InputError(f"a timestamp must be seconds since the epoch or a datetime, not {value!r}")
