"""The Chroma side: clients, collection naming and caching, batch splitting, error translation.

Collections (all named ``<prefix>-...``; Chroma allows 3-63 characters of ``[a-zA-Z0-9._-]``)::

    <prefix>-n-<hash(namespace)>-t            text vectors of a namespace (turn and caption records)
    <prefix>-n-<hash(namespace)>-v            visual vectors of a namespace (image records)
    <prefix>-h-<hash(namespace)>-<shard>-t    text vectors of the sessions hashed to that shard (session_shards > 0)
    <prefix>-h-<hash(namespace)>-<shard>-v
    <prefix>-s-<hash(namespace, session)>-t   or: text vectors of one session (session_shards = 0)
    <prefix>-s-<hash(namespace, session)>-v
    <prefix>-media                            one record per image: its caption and visual vector (a cache)

Scoping a search to a session therefore queries a small collection (with a ``where`` on the session when it is
a shard), never a ``where`` over the whole namespace. Each collection's metadata names its namespace/session
and the embedder and dimension of its vectors, which are checked on every open.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emu_agent.errors import EmuAgentError, MemoryStoreError, MissingDependencyError

__all__ = ["ChromaBackend", "collection_name", "open_http_client", "open_persistent_client", "shard_of"]

MEDIA = "media"
TEXT, VISUAL = "t", "v"


def _chromadb() -> Any:
    try:
        import chromadb
    except ImportError as exc:
        raise MissingDependencyError("chromadb", "chromadb", "emu_agent.memory") from exc
    return chromadb


def _settings() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False)


def open_persistent_client(folder: Path) -> Any:
    """``chromadb.PersistentClient`` with telemetry off; a store that can't be opened is a MemoryStoreError."""
    chromadb = _chromadb()
    try:
        client = chromadb.PersistentClient(path=str(folder), settings=_settings())
        client.heartbeat()
        client.list_collections(limit=1)
    except Exception as exc:
        _forget_failed_system(str(folder))
        raise MemoryStoreError(f"the Chroma database in {folder} can't be opened (corrupt?): {exc}") from exc
    return client


def _forget_failed_system(identifier: str) -> None:
    """chromadb caches a System per path before starting it; drop one that failed so a retry starts afresh."""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient
    except ImportError:  # pragma: no cover
        return
    SharedSystemClient._identifier_to_system.pop(identifier, None)
    SharedSystemClient._identifier_to_refcount.pop(identifier, None)


def open_http_client(host: str, port: int, *, ssl: bool = False, headers: dict[str, str] | None = None) -> Any:
    """``chromadb.HttpClient`` with telemetry off, checked with a heartbeat."""
    chromadb = _chromadb()
    try:
        client = chromadb.HttpClient(host=host, port=port, ssl=ssl, headers=headers, settings=_settings())
        client.heartbeat()
    except Exception as exc:
        raise MemoryStoreError(f"can't reach a Chroma server at {host}:{port}: {exc}") from exc
    return client


def open_ephemeral_client() -> Any:
    """``chromadb.EphemeralClient`` (in memory; every one in a process shares the same data)."""
    return _chromadb().EphemeralClient(settings=_settings())


def _hash(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:20]


def collection_name(
    prefix: str, kind: str, namespace: str | None = None, session: str | None = None, shard: int | None = None
) -> str:
    """The collection of a scope: ``kind`` is ``"t"`` (text) or ``"v"`` (visual), or ``"media"``.

    A namespace's own index; with ``shard``, one of the namespace's session shards; with ``session``, the
    session's own index.
    """
    if kind == MEDIA:
        return f"{prefix}-media"
    if shard is not None:
        return f"{prefix}-h-{_hash(str(namespace))}-{shard}-{kind}"
    if session is None:
        return f"{prefix}-n-{_hash(str(namespace))}-{kind}"
    return f"{prefix}-s-{_hash(str(namespace), session)}-{kind}"


def shard_of(namespace: str, session: str, shards: int) -> int:
    """Which of ``shards`` session shards holds a session (stable across processes and versions)."""
    return int(_hash(namespace, session)[:8], 16) % shards


class ChromaBackend:
    """A Chroma client plus the collection cache, batch splitting and error translation the memory needs.

    Every call that touches Chroma goes through here; library errors become :class:`MemoryStoreError` with the
    collection and operation named.
    """

    def __init__(self, client: Any, *, prefix: str, hnsw: dict[str, Any]) -> None:
        self.client = client
        self.prefix = prefix
        self.hnsw = dict(hnsw)
        self._collections: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._max_batch: int | None = None

    @property
    def max_batch(self) -> int:
        """Chroma's maximum records per call (5461 with SQLite's defaults); every write is split to fit."""
        if self._max_batch is None:
            self._max_batch = int(self._call("get_max_batch_size", None, self.client.get_max_batch_size))
        return self._max_batch

    # ------------------------------------------------------------------------------------------ collections

    def collection(self, name: str, meta: dict[str, Any] | None = None, *, create: bool = False) -> Any | None:
        """The named collection (cached), or ``None`` if it does not exist and ``create`` is false.

        ``meta`` is the collection's expected metadata (namespace, embedder, dim): a new collection gets it; an
        existing one must agree on its embedder and dimension.
        """
        with self._lock:
            cached = self._collections.get(name)
            if cached is not None:
                return cached
            from chromadb.errors import NotFoundError

            try:
                col = self.client.get_collection(name, embedding_function=None)
            except NotFoundError:
                if not create:
                    return None
                col = self._call(
                    "create_collection",
                    name,
                    lambda: self.client.get_or_create_collection(
                        name,
                        embedding_function=None,
                        metadata={"emu_memory": 1, **(meta or {})},
                        configuration={"hnsw": self.hnsw},
                    ),
                )
            except Exception as exc:
                raise self._error("get_collection", name, exc) from exc
            self._check_metadata(col, meta)
            self._collections[name] = col
            return col

    def _check_metadata(self, col: Any, expected: dict[str, Any] | None) -> None:
        meta = col.metadata or {}
        if "emu_memory" not in meta:
            raise MemoryStoreError(f"Chroma collection {col.name!r} was not created by emu-agent's memory")
        if not expected:
            return
        if "layout" in expected and "layout" in meta and meta["layout"] != expected["layout"]:
            raise MemoryStoreError(
                f"collection {col.name!r} was built with session layout {meta['layout']!r} but this memory is "
                f"configured for {expected['layout']!r}; open it with the same session_index and session_shards"
            )
        for key in ("embedder", "dim"):
            if key in expected and key in meta and meta[key] != expected[key]:
                raise MemoryStoreError(
                    f"collection {col.name!r} holds vectors from {meta.get('embedder')!r} (dim {meta.get('dim')}), "
                    f"but this memory embeds with {expected.get('embedder')!r} (dim {expected.get('dim')}). Open it "
                    "with the same embedder and model, or export and import the memory to re-embed it."
                )

    def forget_cached(self, name: str) -> None:
        with self._lock:
            self._collections.pop(name, None)

    def list_collections(self) -> list[Any]:
        """Every collection of this prefix."""
        cols = self._call("list_collections", None, self.client.list_collections)
        return [c for c in cols if c.name.startswith(self.prefix + "-")]

    def drop(self, name: str) -> None:
        from chromadb.errors import NotFoundError

        with self._lock:
            self._collections.pop(name, None)
            try:
                self.client.delete_collection(name)
            except NotFoundError:
                pass
            except Exception as exc:
                raise self._error("delete_collection", name, exc) from exc

    # ------------------------------------------------------------------------------------------ records

    def upsert(
        self,
        col: Any,
        ids: Sequence[str],
        embeddings: np.ndarray,
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        """Upsert records, split into batches of at most :attr:`max_batch`."""
        for lo, hi in self._spans(len(ids)):
            self._call(
                "upsert",
                col.name,
                lambda lo=lo, hi=hi: col.upsert(
                    ids=list(ids[lo:hi]),
                    embeddings=embeddings[lo:hi],
                    documents=list(documents[lo:hi]),
                    metadatas=list(metadatas[lo:hi]),
                ),
            )

    def update_documents(self, col: Any, ids: Sequence[str], documents: Sequence[str]) -> None:
        for lo, hi in self._spans(len(ids)):
            self._call(
                "update",
                col.name,
                lambda lo=lo, hi=hi: col.update(ids=list(ids[lo:hi]), documents=list(documents[lo:hi])),
            )

    def delete(self, col: Any, ids: Sequence[str]) -> None:
        for lo, hi in self._spans(len(ids)):
            self._call("delete", col.name, lambda lo=lo, hi=hi: col.delete(ids=list(ids[lo:hi])))

    def get(self, col: Any, ids: Sequence[str], include: Sequence[str] = ("metadatas", "documents")) -> dict[str, Any]:
        """Records by id (missing ids are simply absent), merged over batches."""
        merged: dict[str, list[Any]] = {"ids": [], "metadatas": [], "documents": [], "embeddings": []}
        for lo, hi in self._spans(len(ids)):
            got = self._call("get", col.name, lambda lo=lo, hi=hi: col.get(ids=list(ids[lo:hi]), include=list(include)))
            _extend(merged, got)
        return merged

    def scan(
        self,
        col: Any,
        *,
        where: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        include: Sequence[str] = ("metadatas", "documents"),
        page: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every record matching the filters, in pages."""
        page = page or min(self.max_batch, 2000)
        offset = 0
        while True:
            got = self._call(
                "get",
                col.name,
                lambda offset=offset: col.get(
                    where=where, where_document=where_document, include=list(include), limit=page, offset=offset
                ),
            )
            if not got["ids"]:
                return
            merged: dict[str, list[Any]] = {"ids": [], "metadatas": [], "documents": [], "embeddings": []}
            _extend(merged, got)
            yield merged
            if len(got["ids"]) < page:
                return
            offset += page

    def exists(
        self, col: Any, *, where_document: dict[str, Any] | None = None, where: dict[str, Any] | None = None
    ) -> bool:
        got = self._call(
            "get", col.name, lambda: col.get(where=where, where_document=where_document, limit=1, include=[])
        )
        return bool(got["ids"])

    def count(self, col: Any) -> int:
        return int(self._call("count", col.name, col.count))

    def query(
        self, col: Any, embeddings: np.ndarray, n: int, *, where: dict[str, Any] | None = None
    ) -> list[tuple[list[str], list[float], list[str], list[dict[str, Any]]]]:
        """Nearest ``n`` records for each query vector: per query ``(ids, distances, documents, metadatas)``.

        A collection dropped meanwhile (e.g. a session deleted by another client of the server) has no records.
        """
        try:
            got = col.query(
                query_embeddings=embeddings, n_results=n, where=where, include=["distances", "documents", "metadatas"]
            )
        except Exception as exc:
            if _is_not_found(exc):
                self.forget_cached(col.name)
                return []
            raise self._error("query", col.name, exc) from exc
        return list(zip(got["ids"], got["distances"], got["documents"], got["metadatas"], strict=True))

    # ------------------------------------------------------------------------------------------ helpers

    def _spans(self, n: int) -> Iterator[tuple[int, int]]:
        step = self.max_batch
        for lo in range(0, n, step):
            yield lo, min(lo + step, n)

    def _call(self, op: str, name: str | None, fn: Any) -> Any:
        try:
            return fn()
        except EmuAgentError:
            raise
        except Exception as exc:
            if name is not None and _is_not_found(exc):
                self.forget_cached(name)
            raise self._error(op, name, exc) from exc

    @staticmethod
    def _error(op: str, name: str | None, exc: BaseException) -> MemoryStoreError:
        where = f" on collection {name!r}" if name else ""
        return MemoryStoreError(f"Chroma {op}{where} failed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        with self._lock:
            self._collections.clear()


def _is_not_found(exc: BaseException) -> bool:
    from chromadb.errors import NotFoundError

    return isinstance(exc, NotFoundError) or "does not exist" in str(exc)


def _extend(merged: dict[str, list[Any]], got: dict[str, Any]) -> None:
    merged["ids"].extend(got["ids"])
    for key in ("metadatas", "documents", "embeddings"):
        values = got.get(key)
        if values is not None:
            merged[key].extend(list(values))
