"""Lifecycle and privacy: delete, forget an image, retention TTL, compaction, crash recovery, consistency checks."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from emu_agent.errors import InputError
from emu_agent.media import ImageRef, MediaStore
from emu_agent.memory.core import ImageInfo, MemoryCore
from emu_agent.memory.records import MemoryTurn, caption_id, image_id, turn_text, when
from emu_agent.messages import ImagePart, Message, TextPart, ToolResultPart

__all__ = ["ConsistencyReport", "LifecycleMixin", "Summarizer"]

#: Turns -> summary text, for :meth:`LifecycleMixin.compact`.
Summarizer = Callable[[Sequence[MemoryTurn]], str]
FORGOTTEN = "[image removed]"


@dataclass
class ConsistencyReport:
    """Whether the media store and the vectors agree (see :meth:`LifecycleMixin.verify`)."""

    turns: int = 0
    images: int = 0
    missing_media: list[str] = field(default_factory=list)  # referenced by a turn, no bytes in the media store
    orphan_media: list[str] = field(default_factory=list)  # bytes no turn references
    stale_registry: list[str] = field(default_factory=list)  # registry entries no turn references
    pending_writes: int = 0  # journal entries not yet recovered

    @property
    def ok(self) -> bool:
        return not (self.missing_media or self.orphan_media or self.stale_registry or self.pending_writes)


class LifecycleMixin(MemoryCore):
    """``delete``, ``forget``, ``expire``, ``compact``, ``recover`` and ``verify``."""

    # ------------------------------------------------------------------------------------------ delete

    def delete(
        self, ids: str | Iterable[str] | None = None, *, session: str | None = None, namespace: str | None = None
    ) -> int:
        """Delete turns by id, a whole session, or a whole namespace; returns how many turns were deleted.

        ``ids`` are looked up in ``namespace`` (or in every namespace when none is given). ``session`` deletes
        that session of ``namespace`` (default namespace if none). ``namespace`` alone deletes the namespace.
        Images that no remaining turn references lose their registry entry and (``delete_media``) their bytes.
        """
        if ids is not None:
            ids = [ids] if isinstance(ids, str) else list(ids)
            cols = self._pick_namespaces(namespace)
            found: list[MemoryTurn] = []
            for col in cols:
                with self._lock:
                    got = self.backend.get(col, ids)
                found.extend(self._turns_of(got))
            return self._remove(found)
        if session is not None:
            return self._delete_session(self._ns(namespace), self._session(session))  # type: ignore[arg-type]
        if namespace is not None:
            return self._delete_namespace(self._ns(namespace))
        raise InputError("delete needs ids, a session or a namespace")

    def _pick_namespaces(self, namespace: str | None) -> list[Any]:
        if namespace is not None:
            col = self._col("t", self._ns(namespace))
            return [col] if col is not None else []
        return list(self._namespace_collections().values())

    def _turns_of(self, got: dict[str, Any]) -> list[MemoryTurn]:
        from emu_agent.memory.records import KIND_TURN, turn_from_record

        return [
            turn_from_record(doc, self.media)
            for rid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
            if meta and meta.get("kind") == KIND_TURN and "#" not in rid
        ]

    def _delete_session(self, ns: str, session: str) -> int:
        col = self._col("t", ns, self._index_session(session))
        where = self._session_where(session)
        turns = self._scan_turns(col, where) if col is not None else []
        count = self._remove(turns, gc=False)
        if where is None:  # the session's own collections
            self._drop_scope(ns, session)
        self._gc(_shas(turns))
        return count

    def _delete_namespace(self, ns: str) -> int:
        col = self._col("t", ns)
        turns = self._scan_turns(col) if col is not None else []
        count = len(turns)
        for c in self.backend.list_collections():
            if (c.metadata or {}).get("namespace") == ns:
                with self._lock:
                    self.backend.drop(c.name)
        self._gc(_shas(turns))
        return count

    def _drop_scope(self, ns: str, session: str) -> None:
        from emu_agent.memory.chroma import TEXT, VISUAL

        with self._lock:
            for kind in (TEXT, VISUAL):
                self.backend.drop(self._scope_name(kind, ns, session))

    def _record_ids(self, turn: MemoryTurn) -> tuple[list[str], list[str]]:
        n = len(turn.message.images)
        return [turn.id, *(caption_id(turn.id, i) for i in range(n))], [image_id(turn.id, i) for i in range(n)]

    def _remove(self, turns: Sequence[MemoryTurn], *, gc: bool = True) -> int:
        """Delete every record of these turns from every scope; then collect unreferenced images."""
        by_col: dict[tuple[str, str, str | None], list[str]] = {}
        for turn in turns:
            text_ids, visual_ids = self._record_ids(turn)
            for ns, session in self._scopes(turn.namespace, turn.session):
                by_col.setdefault(("t", ns, session), []).extend(text_ids)
                by_col.setdefault(("v", ns, session), []).extend(visual_ids)
        with self._lock:
            for (kind, ns, session), ids in by_col.items():
                col = self._col(kind, ns, session)
                if col is not None and ids:
                    self.backend.delete(col, ids)
        if gc:
            self._gc(_shas(turns))
        return len({t.id for t in turns})

    def _gc(self, shas: Iterable[str], *, force: bool = False) -> list[str]:
        """Drop registry entries (and, with ``delete_media`` or ``force``, bytes) of images no turn references."""
        shas = list(dict.fromkeys(shas))
        if not shas:
            return []
        cols = list(self._namespace_collections().values())
        dropped = []
        with self._lock:
            for sha in shas:
                needle = {"$contains": f'"sha256":"{sha}"'}
                if any(self.backend.exists(col, where_document=needle) for col in cols):
                    continue
                registry = self._registry()
                if registry is not None:
                    self.backend.delete(registry, [sha])
                if force or self.config.delete_media:
                    self.media.delete(sha)
                dropped.append(sha)
        return dropped

    # ------------------------------------------------------------------------------------------ forget

    def forget(self, image: ImageRef | str, *, namespace: str | None = None, session: str | None = None) -> int:
        """Forget an image: remove its vectors and registry record, take it out of stored turns, delete its bytes.

        Each turn that shows the image keeps its text, with the image replaced by ``"[image removed]"``. Scoped
        to ``namespace`` (every namespace by default) and ``session``; the bytes are deleted once no turn anywhere
        references the image (always, whatever ``delete_media`` says). Thumbnails made from it by compaction are
        forgotten too. Returns how many turns changed.
        """
        sha = image.sha256 if isinstance(image, ImageRef) else image
        if not isinstance(sha, str) or len(sha) != 64:
            raise InputError(f"forget takes an ImageRef or a sha256, got {image!r:.80}")
        changed = 0
        for col in self._pick_namespaces(namespace):
            turns = self._scan_turns(col, where_document={"$contains": f'"sha256":"{sha}"'})
            for turn in turns:
                if session is None or turn.session == session:
                    self._rewrite(turn, _without_image(turn.message, sha))
                    changed += 1
        for thumb in self._thumbnails_of(sha):
            changed += self.forget(thumb, namespace=namespace, session=session)
        self._gc([sha], force=True)
        return changed

    def _thumbnails_of(self, sha: str) -> list[str]:
        registry = self._registry()
        if registry is None:
            return []
        with self._lock:
            pages = list(self.backend.scan(registry, where={"thumb_of": sha}, include=[]))
        return [tid for page in pages for tid in page["ids"]]

    def _rewrite(self, turn: MemoryTurn, message: Message) -> None:
        """Replace a turn's message in place (same id and time): new records first, then stale ones removed."""
        new = turn.model_copy(update={"message": message})
        old_text, old_visual = self._record_ids(turn)
        new_text, new_visual = self._record_ids(new)
        self._commit(self._prepare([new]), time.time())
        with self._lock:
            for ns, session in self._scopes(turn.namespace, turn.session):
                for kind, old, keep in (("t", old_text, new_text), ("v", old_visual, new_visual)):
                    col = self._col(kind, ns, session)
                    gone = [i for i in old if i not in set(keep)]
                    if col is not None and gone:
                        self.backend.delete(col, gone)

    # ------------------------------------------------------------------------------------------ retention

    def expire(self, now: float | None = None) -> int:
        """Delete every turn older than the retention TTL (``MemoryConfig.retention_s``); returns how many."""
        if self.config.retention_s is None:
            return 0
        cutoff = (now or time.time()) - self.config.retention_s
        expired: list[MemoryTurn] = []
        for col in self._namespace_collections().values():
            expired.extend(self._scan_turns(col, {"ts": {"$lt": cutoff}}))
        return self._remove(expired) if expired else 0

    # ------------------------------------------------------------------------------------------ compaction

    def compact(
        self,
        older_than: float | timedelta,
        *,
        namespace: str | None = None,
        session: str | None = None,
        summarizer: Summarizer | None = None,
        now: float | None = None,
    ) -> int:
        """Fold turns older than ``older_than`` (seconds or a timedelta) into summary turns; returns turns folded.

        Per session (or only ``session``), old turns are taken oldest first in groups of
        ``compaction.turns_per_summary``; each group becomes one ``system`` turn holding ``summarizer(turns)``
        (default: an extractive digest of the turns' text) and their images as ``compaction.keep_images`` says:
        the originals, a caption plus a thumbnail, or the caption only. The summary keeps the group's session and
        its last timestamp, and is recalled like any turn; images that nothing references any more are removed.
        """
        seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else float(older_than)
        cutoff = (now or time.time()) - seconds
        ns = self._ns(namespace)
        col = self._col("t", ns)
        if col is None:
            return 0
        old = self._scan_turns(col, {"ts": {"$lt": cutoff}})
        folded = 0
        groups: dict[str | None, list[MemoryTurn]] = {}
        for turn in old:
            if session is None or turn.session == session:
                groups.setdefault(turn.session, []).append(turn)
        size = self.config.compaction.turns_per_summary
        for turns in groups.values():
            for start in range(0, len(turns), size):
                chunk = turns[start : start + size]
                if len(chunk) >= 2:
                    self._fold(chunk, summarizer or self._digest)
                    folded += len(chunk)
        return folded

    def _fold(self, chunk: list[MemoryTurn], summarizer: Summarizer) -> None:
        mode = self.config.compaction.keep_images
        refs = list({r.sha256: r for t in chunk for r in t.message.images}.values())
        infos = self._registered(r.sha256 for r in refs)
        parts: list[Any] = [TextPart(text=summarizer(chunk))]
        extra: dict[str, ImageInfo] = {}
        scratch = MediaStore(tempfile.mkdtemp(prefix="emu-thumbs-")) if mode == "thumbnail" and refs else None
        try:
            for ref in refs:
                info = infos.get(ref.sha256) or ImageInfo(sha=ref.sha256)
                note = f"(image: {info.caption})" if info.caption else "(an image)"
                if mode == "full":
                    parts.append(ImagePart(image=ref))
                elif mode == "caption":
                    parts.append(TextPart(text=note))
                else:
                    assert scratch is not None
                    thumb = self.media.load_image(ref.sha256)
                    side = self.config.compaction.thumbnail_size
                    thumb.thumbnail((side, side))
                    tref = scratch.add_image(thumb, derived_from=ref.sha256)
                    extra[tref.sha256] = ImageInfo(
                        sha=tref.sha256, caption=info.caption, visual=info.visual, width=tref.width,
                        height=tref.height, thumb_of=ref.sha256,
                    )  # fmt: skip
                    parts.extend([TextPart(text=note), ImagePart(image=tref)])
            summary = MemoryTurn(
                id=f"summary-{uuid.uuid4().hex}",
                namespace=chunk[-1].namespace,
                session=chunk[-1].session,
                timestamp=chunk[-1].timestamp,
                message=Message(role="system", parts=parts),
                summarised_turns=sum(max(1, t.summarised_turns) for t in chunk),
            )
            self._commit(self._prepare([summary], image_hints=extra), time.time())
        finally:
            if scratch is not None:
                shutil.rmtree(scratch.root, ignore_errors=True)
        self._remove(chunk)

    def _digest(self, turns: Sequence[MemoryTurn]) -> str:
        """The built-in summariser: one line per turn (role and the start of its text), capped in length."""
        cap = self.config.compaction.max_summary_chars
        head = f"Summary of {len(turns)} earlier turns ({when(turns[0].timestamp)} to {when(turns[-1].timestamp)}):"
        lines = [head]
        for turn in turns:
            text = turn_text(turn.message) or ("(an image)" if turn.message.images else "")
            lines.append(f"- {turn.message.role}: {text[:160]}")
        out = "\n".join(lines)
        return out if len(out) <= cap else out[: cap - 1] + "…"

    # ------------------------------------------------------------------------------------------ recovery

    def recover(self) -> int:
        """Finish what a crash cut short (run on open): returns how many half-written turns were rolled back.

        Turns of a journal entry whose records are all present are kept; partial ones are removed from every
        collection; media files added by the entry that no turn references are deleted.
        """
        if self.journal is None:
            return 0
        rolled = 0
        for path, entry in self.journal.pending():
            if entry is not None:
                rolled += self._undo(entry)
            self.journal.end(path)
        return rolled

    def _undo(self, entry: dict[str, Any]) -> int:
        rolled = self._roll_back(entry)
        self._gc(entry.get("media", []), force=True)
        return rolled

    def _roll_back(self, entry: dict[str, Any]) -> int:
        rolled = 0
        with self._lock:
            for turn in entry.get("turns", []):
                cols = {name: self.backend.collection(name) for name in turn["records"]}
                present = {
                    name: set(self.backend.get(col, ids, include=[])["ids"]) if col is not None else set()
                    for (name, ids), col in zip(turn["records"].items(), cols.values(), strict=True)
                }
                if all(set(ids) <= present[name] for name, ids in turn["records"].items()):
                    continue
                for name, col in cols.items():
                    if col is not None and present[name]:
                        self.backend.delete(col, sorted(present[name]))
                rolled += 1
        return rolled

    def verify(self) -> ConsistencyReport:
        """Check that the media store and the vectors agree: every referenced image has bytes, and (when the
        memory owns its media store, ``delete_media``) every stored image is referenced."""
        report = ConsistencyReport(pending_writes=len(self.journal.pending()) if self.journal is not None else 0)
        referenced: set[str] = set()
        for col in self._namespace_collections().values():
            turns = self._scan_turns(col)
            report.turns += len(turns)
            referenced |= set(_shas(turns))
        report.images = len(referenced)
        report.missing_media = sorted(s for s in referenced if not self.media.has(s))
        if self.config.delete_media:
            stored = {p.stem for p in self.media.root.glob("??/*") if p.is_file() and not p.name.startswith(".")}
            report.orphan_media = sorted(stored - referenced)
        registry = self._registry()
        if registry is not None:
            with self._lock:
                ids = {i for page in self.backend.scan(registry, include=[]) for i in page["ids"]}
            report.stale_registry = sorted(ids - referenced)
        return report


def _shas(turns: Iterable[MemoryTurn]) -> list[str]:
    """Every image and video the turns reference."""
    return list(dict.fromkeys(r.sha256 for t in turns for r in [*t.message.images, *t.message.videos]))


def _without_image(message: Message, sha: str) -> Message:
    """The message with every occurrence of the image replaced by a text note."""

    def swap(part: Any) -> Any:
        if isinstance(part, ImagePart) and part.image.sha256 == sha:
            return TextPart(text=FORGOTTEN)
        if isinstance(part, ToolResultPart):
            return part.model_copy(update={"content": [swap(p) for p in part.content]})
        return part

    return Message(role=message.role, parts=[swap(p) for p in message.parts])
