"""Export and import: a folder of JSONL plus the media files, portable between stores and machines.

Layout::

    folder/
      manifest.json   format, version, the text embedder and visual encoder the vectors came from, counts
      turns.jsonl     one turn per line: id, namespace, session, timestamp, message (parts, images as refs),
                      tool names, and (unless include_vectors=False) its text vector
      images.jsonl    one image per line: sha256, caption, size, thumbnail lineage, visual and caption vectors
      media/          the image files, in the MediaStore layout (<sha[:2]>/<sha>.png)

Importing reuses the vectors when they come from the same embedder and encoder, and recomputes them otherwise
(the visual ones only when a model is attached). Every media file is checked against its sha256.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emu_agent.errors import InputError, MemoryStoreError
from emu_agent.media import MediaStore
from emu_agent.memory.core import ImageInfo, MemoryCore
from emu_agent.memory.records import KIND_CAPTION, KIND_TURN, MemoryTurn, turn_from_json, turn_from_record, turn_to_json

__all__ = ["EXPORT_FORMAT", "TransferMixin"]

EXPORT_FORMAT = "emu-agent-memory-export"
EXPORT_VERSION = 1


class TransferMixin(MemoryCore):
    """``export`` and ``import_from``."""

    def export(
        self,
        folder: str | Path,
        *,
        namespace: str | Sequence[str] | None = None,
        session: str | None = None,
        include_vectors: bool = True,
    ) -> int:
        """Write the memory (or one namespace / session of it) to ``folder``; returns how many turns.

        ``namespace=None`` exports every namespace. ``folder`` must be new or empty.
        """
        out = Path(folder)
        if out.exists() and any(out.iterdir()):
            raise InputError(f"export folder {out} is not empty")
        (out / "media").mkdir(parents=True, exist_ok=True)
        namespaces = self._export_namespaces(namespace)
        images: dict[str, dict[str, Any]] = {}
        count = 0
        with (out / "turns.jsonl").open("w") as f:
            for ns in namespaces:
                for turn, vector, captions in self._export_turns(ns, session):
                    line = turn_to_json(turn)
                    if include_vectors:
                        line["vector"] = vector.tolist()
                    f.write(json.dumps(line, ensure_ascii=False) + "\n")
                    count += 1
                    for ref in turn.message.images:
                        images.setdefault(
                            ref.sha256, {"sha256": ref.sha256, "caption_vector": captions.get(ref.sha256)}
                        )
        infos = self._registered(images)
        with (out / "images.jsonl").open("w") as f:
            for sha, row in images.items():
                f.write(json.dumps(self._image_row(sha, row, infos.get(sha), include_vectors)) + "\n")
                self._export_file(sha, out / "media")
        manifest = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "exported_at": time.time(),
            "text_embedder": self.embedder.name,
            "text_dim": int(self.embedder.dim),
            "visual_embedder": self.visual.name if self.visual is not None else None,
            "visual_dim": int(self.visual.dim) if self.visual is not None else None,
            "turns": count,
            "images": len(images),
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return count

    def _export_namespaces(self, namespace: str | Sequence[str] | None) -> list[str]:
        if namespace is None:
            return sorted(self._namespace_collections())
        return [self._ns(namespace)] if isinstance(namespace, str) else [self._ns(n) for n in namespace]

    def _export_turns(self, ns: str, session: str | None) -> Iterator[tuple[MemoryTurn, np.ndarray, dict[str, list]]]:
        col = self._col("t", ns, self._index_session(session))
        if col is None:
            return
        where = self._session_where(session)
        captions: dict[str, list] = {}
        with self._lock:
            for page in self.backend.scan(
                col, where=_and_kind(KIND_CAPTION, where), include=["metadatas", "embeddings"]
            ):
                for meta, vec in zip(page["metadatas"], page["embeddings"], strict=True):
                    captions.setdefault(str(meta["sha"]), np.asarray(vec, dtype=np.float32).tolist())
            pages = list(
                self.backend.scan(
                    col, where=_and_kind(KIND_TURN, where), include=["metadatas", "documents", "embeddings"]
                )
            )
        rows = [
            (turn_from_record(doc, self.media), np.asarray(vec, dtype=np.float32))
            for page in pages
            for doc, vec in zip(page["documents"], page["embeddings"], strict=True)
        ]
        rows.sort(key=lambda r: (r[0].timestamp, r[0].id))
        for turn, vector in rows:
            yield turn, vector, captions

    def _image_row(self, sha: str, row: dict[str, Any], info: ImageInfo | None, vectors: bool) -> dict[str, Any]:
        info = info or ImageInfo(sha=sha)
        out = {"sha256": sha, "caption": info.caption, "width": info.width, "height": info.height}
        out["thumb_of"] = info.thumb_of or None
        if vectors:
            out["visual"] = info.visual.tolist() if info.visual is not None else None
            out["caption_vector"] = row.get("caption_vector")
        return out

    def _export_file(self, sha: str, media_root: Path) -> None:
        if not self.media.has(sha):
            raise MemoryStoreError(f"image {sha} is referenced by a turn but missing from the media store")
        src = self.media.path_of(sha)
        dest = media_root / sha[:2] / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)

    # ------------------------------------------------------------------------------------------ import

    def import_from(self, folder: str | Path, *, namespace: str | None = None) -> int:
        """Import an export folder; returns how many turns. Turns keep their ids (re-importing replaces them).

        ``namespace`` moves every imported turn into that namespace (default: each keeps its own).

        Raises:
            MemoryStoreError: the folder is not an export, or a media file does not match its sha256.
        """
        src = Path(folder)
        manifest = _read_manifest(src)
        same_text = (
            manifest.get("text_embedder") == self.embedder.name and manifest.get("text_dim") == self.embedder.dim
        )
        same_visual = self.visual is not None and manifest.get("visual_embedder") == self.visual.name
        source = MediaStore(src / "media")
        hints = {row["sha256"]: _image_hint(row, same_text, same_visual) for row in _read_jsonl(src / "images.jsonl")}
        for sha in hints:
            _check_file(source, sha)
        count = 0
        batch: list[MemoryTurn] = []
        vectors: dict[str, np.ndarray] = {}
        for row in _read_jsonl(src / "turns.jsonl"):
            turn = turn_from_json(row, source)
            if namespace is not None:
                turn = turn.model_copy(update={"namespace": self._ns(namespace)})
            batch.append(turn)
            if same_text and row.get("vector") is not None:
                vectors[turn.id] = np.asarray(row["vector"], dtype=np.float32)
            if len(batch) >= self.config.ingest_batch:
                count += self._import_batch(batch, hints, vectors)
                batch, vectors = [], {}
        if batch:
            count += self._import_batch(batch, hints, vectors)
        return count

    def _import_batch(
        self, turns: list[MemoryTurn], hints: dict[str, ImageInfo], vectors: dict[str, np.ndarray]
    ) -> int:
        prep = self._prepare(turns, image_hints=hints, text_hints=vectors)
        self._commit(prep, time.time())
        return len(turns)


def _and_kind(kind: str, where: dict[str, Any] | None) -> dict[str, Any]:
    return {"kind": kind} if where is None else {"$and": [{"kind": kind}, where]}


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise MemoryStoreError(f"{folder} is not a memory export (no manifest.json)") from exc
    except (OSError, ValueError) as exc:
        raise MemoryStoreError(f"{path} is unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise MemoryStoreError(f"{path} is not an emu-agent memory export manifest")
    if int(manifest.get("version", 0)) > EXPORT_VERSION:
        raise MemoryStoreError(
            f"{folder} is export version {manifest.get('version')}; this emu-agent reads {EXPORT_VERSION}"
        )
    return manifest


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with path.open() as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError as exc:
                        raise MemoryStoreError(f"{path}:{number} is not valid JSON: {exc}") from exc
    except FileNotFoundError as exc:
        raise MemoryStoreError(f"memory export is missing {path.name}") from exc


def _image_hint(row: dict[str, Any], same_text: bool, same_visual: bool) -> ImageInfo:
    visual = row.get("visual") if same_visual else None
    caption_vector = row.get("caption_vector") if same_text else None
    return ImageInfo(
        sha=row["sha256"],
        caption=row.get("caption") or "",
        visual=np.asarray(visual, dtype=np.float32) if visual is not None else None,
        caption_vector=np.asarray(caption_vector, dtype=np.float32) if caption_vector is not None else None,
        width=int(row.get("width") or 0),
        height=int(row.get("height") or 0),
        thumb_of=row.get("thumb_of") or "",
    )


def _check_file(source: MediaStore, sha: str) -> None:
    if not source.has(sha):
        raise MemoryStoreError(f"memory export is missing the media file of image {sha}")
    digest = hashlib.sha256(source.path_of(sha).read_bytes()).hexdigest()
    if digest != sha:
        raise MemoryStoreError(f"memory export's media file {source.path_of(sha)} does not match its sha256 (corrupt)")
