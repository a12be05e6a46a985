"""The memory's shared machinery: scopes and collections, the image registry, and writing turns (prepare, commit).

Writing a batch of turns has two phases:

1. :meth:`MemoryCore._prepare` computes everything outside the lock: text vectors (turn text, captions), and for
   each image not seen before its visual vector (the model's encoder, mean-pooled) and its caption;
2. :meth:`MemoryCore._commit` writes under the lock, in an order a crash can't break: the journal entry, the
   media bytes, the image registry, then the Chroma records of every scope; then it closes the journal entry.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from emu_agent.errors import InputError
from emu_agent.media import ImageRef, MediaStore, VideoRef
from emu_agent.memory.records import (
    KIND_CAPTION,
    KIND_IMAGE,
    KIND_TURN,
    MemoryTurn,
    caption_id,
    image_id,
    record_metadata,
    turn_document,
    turn_text,
)

if TYPE_CHECKING:
    from PIL import Image

    from emu_agent.memory.chroma import ChromaBackend
    from emu_agent.memory.config import MemoryConfig
    from emu_agent.memory.embeddings import TextEmbedder, VisualEmbedder
    from emu_agent.memory.storage import Journal

__all__ = ["ImageInfo", "MemoryCore"]

_REGISTRY_DIM = 8


@dataclass
class ImageInfo:
    """What the memory knows of one image: its caption, caption vector, visual vector, and lineage."""

    sha: str
    caption: str = ""
    visual: np.ndarray | None = None
    caption_vector: np.ndarray | None = None
    width: int = 0
    height: int = 0
    thumb_of: str = ""
    registered: bool = False  # already in the registry


@dataclass
class Prepared:
    """A batch of turns with every vector computed, ready to commit."""

    turns: list[MemoryTurn]
    text_vectors: dict[str, np.ndarray] = field(default_factory=dict)  # turn id -> vector
    images: dict[str, ImageInfo] = field(default_factory=dict)  # sha -> info
    sources: dict[str, MediaStore] = field(default_factory=dict)  # sha -> store to copy bytes from (images, videos)


def encode_vector(vector: np.ndarray | None) -> str:
    if vector is None:
        return ""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def decode_vector(text: str | None) -> np.ndarray | None:
    if not text:
        return None
    return np.frombuffer(base64.b64decode(text), dtype="<f4").copy()


def _registry_vector(sha: str) -> np.ndarray:
    """A distinct placeholder vector per image (the registry is never searched by vector)."""
    raw = np.frombuffer(hashlib.sha256(sha.encode()).digest()[: _REGISTRY_DIM * 4], dtype="<u4")
    return (raw.astype(np.float32) / 2**32 - 0.5)[None, :]


class MemoryCore:
    """Attributes and internals shared by :class:`~emu_agent.memory.MultimodalMemory` and its parts."""

    config: MemoryConfig
    media: MediaStore
    backend: ChromaBackend
    embedder: TextEmbedder
    visual: VisualEmbedder | None
    captioner: Callable[[Image.Image], str] | None
    model: Any
    journal: Journal | None
    _lock: threading.RLock

    # ------------------------------------------------------------------------------------------ scopes

    def _ns(self, namespace: str | None) -> str:
        ns = self.config.namespace if namespace is None else namespace
        if not isinstance(ns, str) or not ns:
            raise InputError(f"namespace must be a non-empty string, got {namespace!r}")
        return ns

    @staticmethod
    def _session(session: str | None) -> str | None:
        if session is not None and (not isinstance(session, str) or not session):
            raise InputError(f"session must be a non-empty string or None, got {session!r}")
        return session

    def _scopes(self, namespace: str, session: str | None) -> list[tuple[str, str | None]]:
        """The indexes a turn of this scope is written to: its namespace's, and its session's if indexed."""
        if session is not None and self.config.session_index:
            return [(namespace, None), (namespace, session)]
        return [(namespace, None)]

    def _index_session(self, session: str | None) -> str | None:
        """The session whose index answers for ``session`` (``None``: the namespace's index)."""
        return session if self.config.session_index else None

    def _session_where(self, session: str | None) -> dict[str, Any] | None:
        """The filter a session needs in its index: none in its own collection, the session in a shared one."""
        if session is None or (self.config.session_index and not self.config.session_shards):
            return None
        return {"session": session}

    def _scope_name(self, kind: str, namespace: str, session: str | None) -> str:
        from emu_agent.memory.chroma import collection_name, shard_of

        shards = self.config.session_shards
        if session is not None and shards:
            return collection_name(self.backend.prefix, kind, namespace, shard=shard_of(namespace, session, shards))
        return collection_name(self.backend.prefix, kind, namespace, session)

    def _col_meta(self, kind: str, namespace: str, session: str | None) -> dict[str, Any]:
        embedder = self.embedder if kind == "t" else self.visual
        assert embedder is not None
        shards = self.config.session_shards
        return {
            "kind": "text" if kind == "t" else "visual",
            "layout": f"sessions={'off' if not self.config.session_index else shards or 'own'}",
            "scope": "namespace" if session is None else "shard" if shards else "session",
            "namespace": namespace,
            "session": "" if session is None or shards else session,
            "embedder": embedder.name,
            "dim": int(embedder.dim),
        }

    def _col(self, kind: str, namespace: str, session: str | None = None, *, create: bool = False) -> Any | None:
        """The text (``"t"``) or visual (``"v"``) index of a namespace or a session; ``None`` if absent.

        A session's index is its shard (``session_shards > 0``) or its own collection.
        """
        if kind == "v" and self.visual is None:
            return None
        if session is not None:
            self._col("t", namespace)  # opening the namespace's index checks that the session layout agrees
        name = self._scope_name(kind, namespace, session)
        return self.backend.collection(name, self._col_meta(kind, namespace, session), create=create)

    def _registry(self, *, create: bool = False) -> Any | None:
        from emu_agent.memory.chroma import MEDIA, collection_name

        meta = {"kind": "media", "scope": "", "namespace": "", "session": "", "embedder": "sha", "dim": _REGISTRY_DIM}
        return self.backend.collection(collection_name(self.backend.prefix, MEDIA), meta, create=create)

    def _namespace_collections(self) -> dict[str, Any]:
        """namespace -> its text collection, for every namespace in the store."""
        out: dict[str, Any] = {}
        for col in self.backend.list_collections():
            meta = col.metadata or {}
            if meta.get("kind") == "text" and meta.get("scope") == "namespace":
                out[str(meta["namespace"])] = col
        return out

    # ------------------------------------------------------------------------------------------ image registry

    def _registered(self, shas: Iterable[str]) -> dict[str, ImageInfo]:
        shas = list(dict.fromkeys(shas))
        registry = self._registry() if shas else None
        if registry is None:
            return {}
        with self._lock:
            got = self.backend.get(registry, shas)
        out: dict[str, ImageInfo] = {}
        for sha, meta, doc in zip(got["ids"], got["metadatas"], got["documents"], strict=True):
            meta = meta or {}
            out[sha] = ImageInfo(
                sha=sha,
                caption=doc or "",
                visual=decode_vector(meta.get("visual")),
                width=int(meta.get("w") or 0),
                height=int(meta.get("h") or 0),
                thumb_of=str(meta.get("thumb_of") or ""),
                registered=True,
            )
        return out

    def _register(self, infos: Sequence[ImageInfo], timestamp: float) -> None:
        if not infos:
            return
        registry = self._registry(create=True)
        self.backend.upsert(
            registry,
            [i.sha for i in infos],
            np.concatenate([_registry_vector(i.sha) for i in infos]),
            [i.caption for i in infos],
            [
                {
                    "w": i.width,
                    "h": i.height,
                    "visual": encode_vector(i.visual),
                    "thumb_of": i.thumb_of,
                    "ts": timestamp,
                }
                for i in infos
            ],
        )

    def image_info(self, image: ImageRef | str) -> ImageInfo | None:
        """The registry entry of an image (caption, visual vector), or ``None`` if the memory never saw it."""
        sha = image.sha256 if isinstance(image, ImageRef) else image
        return self._registered([sha]).get(sha)

    # ------------------------------------------------------------------------------------------ prepare

    def _source_of(self, ref: ImageRef | VideoRef, sources: dict[str, MediaStore]) -> MediaStore:
        """The store to read media from: the memory's own, else the one its ref is bound to (noted for copying)."""
        if self.media.has(ref.sha256):
            return self.media
        store = ref.store
        if store is None or not store.has(ref.sha256):
            kind = "image" if isinstance(ref, ImageRef) else "video"
            raise InputError(
                f"{kind} {ref.sha256[:12]} is not in the memory's media store ({self.media.root}) and its ref is not "
                "bound to a store it can be read from; add it with MediaStore.add_image/add_video and pass the ref"
            )
        sources[ref.sha256] = store
        return store

    def _analyse_images(
        self, refs: dict[str, ImageRef], prep: Prepared, hints: dict[str, ImageInfo] | None = None
    ) -> None:
        """Fill ``prep.images``: registry entries (else ``hints``) reused, anything missing computed now."""
        known = self._registered(refs)
        todo: list[tuple[ImageInfo, Image.Image]] = []
        for sha, ref in refs.items():
            info = known.get(sha) or (hints or {}).get(sha) or ImageInfo(sha=sha, width=ref.width, height=ref.height)
            prep.images[sha] = info
            store = self._source_of(ref, prep.sources)
            if (self.visual is not None and info.visual is None) or (self.captioner is not None and not info.caption):
                todo.append((info, store.load_image(sha)))
        if self.visual is not None:
            missing = [(info, im) for info, im in todo if info.visual is None]
            for (info, _), vector in zip(missing, self.visual.embed([im for _, im in missing]), strict=True):
                info.visual = vector
        for info, im in todo:
            if self.captioner is not None and not info.caption:
                info.caption = self.captioner(im).strip()
            info.registered = False  # changed: write it back

    def _prepare(
        self,
        turns: list[MemoryTurn],
        *,
        image_hints: dict[str, ImageInfo] | None = None,
        text_hints: dict[str, np.ndarray] | None = None,
    ) -> Prepared:
        """Compute every vector of a batch (``*_hints``: vectors already known, e.g. from an export)."""
        prep = Prepared(turns=turns)
        refs: dict[str, ImageRef] = {}
        for turn in turns:
            for ref in turn.message.images:
                refs.setdefault(ref.sha256, ref)
        self._analyse_images(refs, prep, image_hints)
        for turn in turns:  # videos are stored, not embedded
            for video in turn.message.videos:
                self._source_of(video, prep.sources)
        hints = text_hints or {}
        texts = {t.id: self._embedding_text(t, prep.images) for t in turns if t.id not in hints}
        captions = {
            sha: info.caption for sha, info in prep.images.items() if info.caption and info.caption_vector is None
        }
        unique = list(dict.fromkeys([*texts.values(), *captions.values()]))
        vectors = dict(zip(unique, self.embedder.embed(unique), strict=True)) if unique else {}
        prep.text_vectors = {t.id: hints[t.id] if t.id in hints else vectors[texts[t.id]] for t in turns}
        for sha, caption in captions.items():
            prep.images[sha].caption_vector = vectors[caption]
        return prep

    @staticmethod
    def _embedding_text(turn: MemoryTurn, images: dict[str, ImageInfo]) -> str:
        """The turn's own text; an image-only turn is embedded from its captions."""
        text = turn_text(turn.message)
        if text:
            return text
        captions = [images[r.sha256].caption for r in turn.message.images if images.get(r.sha256)]
        return "; ".join(c for c in captions if c) or ("an image" if turn.message.images else "(empty turn)")

    # ------------------------------------------------------------------------------------------ commit

    def _records(self, prep: Prepared) -> dict[tuple[str, str, str | None], list[tuple[str, np.ndarray, str, dict]]]:
        """(kind, namespace, session) -> records ``(id, vector, document, metadata)`` for every scope."""
        out: dict[tuple[str, str, str | None], list[tuple[str, np.ndarray, str, dict]]] = {}
        for turn in prep.turns:
            doc = turn_document(turn)
            base = record_metadata(turn)
            text_records = [
                (
                    turn.id,
                    prep.text_vectors[turn.id],
                    doc,
                    {**base, "kind": KIND_TURN, "txt": bool(turn_text(turn.message))},
                )
            ]
            visual_records = []
            for index, ref in enumerate(turn.message.images):
                info = prep.images[ref.sha256]
                meta = {**base, "sha": ref.sha256}
                if info.caption and info.caption_vector is not None:
                    text_records.append(
                        (caption_id(turn.id, index), info.caption_vector, doc, {**meta, "kind": KIND_CAPTION})
                    )
                if info.visual is not None and self.visual is not None:
                    visual_records.append((image_id(turn.id, index), info.visual, doc, {**meta, "kind": KIND_IMAGE}))
            for ns, session in self._scopes(turn.namespace, turn.session):
                out.setdefault(("t", ns, session), []).extend(text_records)
                if visual_records:
                    out.setdefault(("v", ns, session), []).extend(visual_records)
        return out

    def _commit(self, prep: Prepared, timestamp: float) -> None:
        """Write a prepared batch: journal entry, media bytes, registry, every scope's records; then close the entry.

        If a write fails, what this batch wrote is rolled back before the error propagates; if the process dies,
        the journal entry lets the next open do the same (turns that existed before, i.e. replaced ones, are never
        rolled back).
        """
        records = self._records(prep)
        by_turn: dict[str, dict[str, list[str]]] = {t.id: {} for t in prep.turns}
        for (kind, ns, session), recs in records.items():
            name = self._scope_name(kind, ns, session)
            for rid, *_ in recs:
                by_turn[rid.split("#", 1)[0]].setdefault(name, []).append(rid)
        with self._lock:
            existed = self._existing_turns(prep.turns)
            entry = {
                "turns": [{"id": tid, "records": recs} for tid, recs in by_turn.items() if tid not in existed],
                "media": [sha for sha in dict.fromkeys([*prep.images, *prep.sources]) if not self.media.has(sha)],
            }
            path = self.journal.begin(entry) if self.journal is not None else None
            try:
                for sha in entry["media"]:
                    self._copy_media(sha, prep.sources.get(sha))
                self._register([i for i in prep.images.values() if not i.registered], timestamp)
                for (kind, ns, session), recs in records.items():
                    col = self._col(kind, ns, session, create=True)
                    ids, vectors, docs, metas = zip(*recs, strict=True)
                    self.backend.upsert(col, ids, np.stack(vectors), docs, metas)
            except Exception:
                self._undo(entry)  # if this fails too, the journal entry stays for the next open
                if path is not None:
                    self.journal.end(path)  # type: ignore[union-attr]
                raise
            if path is not None:
                self.journal.end(path)  # type: ignore[union-attr]

    def _existing_turns(self, turns: Sequence[MemoryTurn]) -> set[str]:
        """Ids of these turns already stored (a commit replaces them; rollback must leave them alone)."""
        found: set[str] = set()
        by_ns: dict[str, list[str]] = {}
        for turn in turns:
            by_ns.setdefault(turn.namespace, []).append(turn.id)
        for ns, ids in by_ns.items():
            col = self._col("t", ns)
            if col is not None:
                found.update(self.backend.get(col, ids, include=[])["ids"])
        return found

    def _undo(self, entry: dict[str, Any]) -> int:
        """Roll back a journal entry (implemented with the lifecycle operations)."""
        raise NotImplementedError

    def _copy_media(self, sha: str, source: MediaStore | None) -> None:
        if source is None:
            raise InputError(f"image {sha[:12]} is not in the memory's media store and has no source store")
        self.media.copy_from(source, sha)

    # ------------------------------------------------------------------------------------------ reading

    def _scan_turns(
        self, col: Any, where: dict[str, Any] | None = None, where_document: dict[str, Any] | None = None
    ) -> list[MemoryTurn]:
        """Every turn in a text collection matching the filters, oldest first."""
        from emu_agent.memory.records import turn_from_record

        clause: dict[str, Any] = {"kind": KIND_TURN} if where is None else {"$and": [{"kind": KIND_TURN}, where]}
        turns: list[MemoryTurn] = []
        with self._lock:
            pages = list(self.backend.scan(col, where=clause, where_document=where_document))
        for page in pages:
            turns.extend(turn_from_record(doc, self.media) for doc in page["documents"])
        turns.sort(key=lambda t: (t.timestamp, t.id))
        return turns
