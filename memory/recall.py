"""Recall: hybrid search across modalities, and the token-budgeted context the agent prepends.

A query is text, images, or both. Its vectors:

- the text, embedded with the text embedder -> the text index: turn texts (text->text) and image captions
  (text->image);
- each image's caption (from the registry when the memory has seen the image, else captioned now), embedded as
  text -> the text index: turn texts (image->text) and captions (image->image by description);
- each image's visual vector (the model's encoder) -> the visual index (image->image by pixels).

Per scope that is one Chroma query on the text index (all text-side vectors at once) plus one on the visual
index when the query has an image. The nearest ``k * candidates`` records are grouped by turn (best match wins;
more are fetched when that leaves fewer than ``k`` turns) and re-ranked by
``semantic * similarity + recency * 0.5 ** (age / half_life)``; only the final ``k`` are parsed into messages.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from emu_agent.errors import InputError
from emu_agent.media import ImageRef
from emu_agent.memory.core import MemoryCore
from emu_agent.memory.records import (
    KIND_CAPTION,
    MatchKind,
    MemoryContext,
    MemoryHit,
    Modality,
    render_items,
    turn_from_record,
)
from emu_agent.messages import ImagePart, Message, TextPart, ToolResultPart

if TYPE_CHECKING:
    from emu_agent.memory.config import ScoreWeights

__all__ = ["QueryInput", "RecallMixin"]

#: What :meth:`RecallMixin.search` takes as a query.
QueryInput = Any  # str | ImageRef | PIL image | Message | a sequence of those

_ALL_MODALITIES: tuple[Modality, ...] = ("text", "image")
_MAX_CANDIDATES = 4096
_DEFAULT_IMAGE_TOKENS = 64 + 2  # Emu2: n_query visual tokens plus [IMG] and [/IMG]


class _Candidate:
    __slots__ = ("document", "kind", "metadata", "sha", "similarity", "turn_id")

    def __init__(
        self, record_id: str, similarity: float, kind: MatchKind, document: str, metadata: dict[str, Any]
    ) -> None:
        self.turn_id = record_id.split("#", 1)[0]
        self.similarity = similarity
        self.kind = kind
        self.document = document
        self.metadata = metadata
        self.sha = metadata.get("sha")


@dataclass(frozen=True)
class _Scope:
    """What a search admits besides the index it queries."""

    session: str | None
    modalities: tuple[Modality, ...]
    cutoff: float | None  # retention: older turns are never recalled
    exclude_session: str | None
    exclude_ids: frozenset[str]
    visual_weight: float

    def admits(self, record_id: str, meta: dict[str, Any]) -> bool:
        if self.cutoff is not None and float(meta["ts"]) < self.cutoff:
            return False
        if self.exclude_ids and record_id.split("#", 1)[0] in self.exclude_ids:
            return False
        return self.exclude_session is None or meta.get("session") != self.exclude_session


class RecallMixin(MemoryCore):
    """``search`` and ``context_for``."""

    _token_counter: Any

    def search(
        self,
        query: QueryInput = None,
        k: int = 5,
        *,
        image: Any = None,
        namespace: str | Sequence[str] | None = None,
        session: str | None = None,
        modalities: Sequence[Modality] = _ALL_MODALITIES,
        exclude_session: str | None = None,
        exclude_ids: Iterable[str] = (),
        weights: ScoreWeights | None = None,
        now: float | None = None,
    ) -> list[MemoryHit]:
        """The ``k`` stored turns most relevant to ``query``, best first.

        Args:
            query: text, an image (``ImageRef`` or PIL image), a ``Message``, or a sequence of those.
            k: how many turns to return.
            image: an image to add to the query (same as putting it in ``query``).
            namespace: the namespace to search (default: the config's); a sequence searches several, e.g.
                ``memory.namespaces()`` for all.
            session: only this session's turns.
            modalities: what may match: ``"text"`` (turn texts) and/or ``"image"`` (captions, visual vectors and
                image-only turns).
            exclude_session: leave out this session's turns (e.g. the conversation already in context).
            exclude_ids: leave out these turns (e.g. the message just stored, when it is also the query).
            weights: override the config's score weights for this call.
            now: the time recency is measured from (default: now).

        Returns:
            :class:`MemoryHit` s (turn with its interleaved message, score, semantic and recency parts, what
            matched). Turns past the retention TTL are never returned.
        """
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}")
        mods = _check_modalities(modalities)
        texts, images = _split_query(query, image)
        if not texts and not images:
            raise InputError("search needs a query: text, an image, or both")
        text_vectors, visual_vectors = self._query_vectors(texts, images)
        namespaces = [self._ns(namespace)] if namespace is None or isinstance(namespace, str) else list(namespace)
        session = self._session(session)
        weights = weights or self.config.weights
        now = now or time.time()
        cutoff = now - self.config.retention_s if self.config.retention_s is not None else None
        scope = _Scope(session, mods, cutoff, exclude_session, frozenset(exclude_ids), weights.visual)
        n = max(k, math.ceil(k * self.config.candidates))
        while True:
            best: dict[str, _Candidate] = {}
            full = False  # did some index return all n asked for (so it may hold more)?
            for ns in namespaces:
                full |= self._collect(best, ns, scope, text_vectors, visual_vectors, n)
            # records of one turn (text, captions, images) collapse into one candidate, and expired or excluded
            # ones are dropped: ask for more when that leaves fewer than k
            if len(best) >= k or not full or n >= _MAX_CANDIDATES:
                return self._rank(best, k, weights, now)
            n *= 2

    def _query_vectors(self, texts: list[str], images: list[Any]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Text-side vectors (the text, each image's caption) and visual vectors of a query."""
        pieces = [" ".join(texts)] if texts else []
        visual: list[np.ndarray] = []
        infos = self._registered(im.sha256 for im in images if isinstance(im, ImageRef)) if images else {}
        for im in images:
            info = infos.get(im.sha256) if isinstance(im, ImageRef) else None
            caption = info.caption if info is not None else ""
            vector = info.visual if info is not None else None
            if (not caption and self.captioner is not None) or (vector is None and self.visual is not None):
                pixels = self._query_pixels(im) if isinstance(im, ImageRef) else im
                if not caption and self.captioner is not None:
                    caption = self.captioner(pixels).strip()
                if vector is None and self.visual is not None:
                    vector = self.visual.embed([pixels])[0]
            if caption:
                pieces.append(caption)
            if vector is not None and self.visual is not None:
                visual.append(vector)
        text_vectors = self.embedder.embed(pieces) if pieces else None
        return text_vectors, (np.stack(visual) if visual else None)

    def _query_pixels(self, ref: ImageRef) -> Any:
        if self.media.has(ref.sha256):
            return self.media.load_image(ref.sha256)
        if ref.store is not None:
            return ref.store.load_image(ref)
        raise InputError(f"query image {ref.sha256[:12]} is not in the media store and its ref is not bound to one")

    def _collect(
        self,
        best: dict[str, _Candidate],
        namespace: str,
        scope: _Scope,
        text_vectors: np.ndarray | None,
        visual_vectors: np.ndarray | None,
        n: int,
    ) -> bool:
        """Add the scope's nearest records to ``best``; returns whether any query came back full (``n`` rows)."""
        session, mods = scope.session, scope.modalities
        scope_session = self._index_session(session)
        where_session = self._session_where(session)
        full = False
        if text_vectors is not None:
            col = self._col("t", namespace, scope_session)
            if col is not None:
                where = _and(where_session, _kind_filter(mods))
                with self._lock:
                    rows = self.backend.query(col, text_vectors, n, where=where)
                for ids, dists, docs, metas in rows:
                    full |= len(ids) >= n
                    for rid, dist, doc, meta in zip(ids, dists, docs, metas, strict=True):
                        kind: MatchKind = "caption" if meta.get("kind") == KIND_CAPTION else "text"
                        if kind == "text" and not meta.get("txt", True):
                            kind = "caption"  # an image-only turn, embedded from its captions
                        if ("image" if kind == "caption" else "text") in mods and scope.admits(rid, meta):
                            _keep(best, _Candidate(rid, 1.0 - float(dist), kind, doc, meta))
        if visual_vectors is not None and "image" in mods:
            col = self._col("v", namespace, scope_session)
            if col is not None:
                with self._lock:
                    rows = self.backend.query(col, visual_vectors, n, where=where_session)
                for ids, dists, docs, metas in rows:
                    full |= len(ids) >= n
                    for rid, dist, doc, meta in zip(ids, dists, docs, metas, strict=True):
                        if scope.admits(rid, meta):
                            _keep(best, _Candidate(rid, scope.visual_weight * (1.0 - float(dist)), "image", doc, meta))
        return full

    def _rank(self, best: dict[str, _Candidate], k: int, weights: ScoreWeights, now: float) -> list[MemoryHit]:
        scored: list[tuple[float, float, float, _Candidate]] = []
        for cand in best.values():
            ts = float(cand.metadata["ts"])
            recency = 0.5 ** (max(0.0, now - ts) / weights.half_life_s)
            score = weights.semantic * cand.similarity + weights.recency * recency
            scored.append((score, cand.similarity, recency, cand))
        scored.sort(key=lambda s: s[0], reverse=True)
        hits = []
        for score, similarity, recency, cand in scored[:k]:
            turn = turn_from_record(cand.document, self.media)
            image = None
            if cand.sha is not None and cand.kind != "text":
                image = next((r for r in turn.message.images if r.sha256 == cand.sha), None)
            hits.append(
                MemoryHit(turn=turn, score=score, semantic=similarity, recency=recency, matched=cand.kind, image=image)
            )
        return hits

    # ------------------------------------------------------------------------------------------ context

    def context_for(
        self,
        input: QueryInput,
        token_budget: int,
        *,
        k: int = 8,
        namespace: str | Sequence[str] | None = None,
        session: str | None = None,
        exclude_session: str | None = None,
        exclude_ids: Iterable[str] = (),
        modalities: Sequence[Modality] = _ALL_MODALITIES,
        header: str = "Relevant memories from earlier conversations:\n",
    ) -> MemoryContext:
        """What the agent should prepend for ``input``: the best recalled turns that fit in ``token_budget``.

        Turns are taken best-first while they fit (text counted with the model's tokenizer, each image as its
        visual tokens, see ``MemoryConfig.image_tokens``), then put back in chronological order. Use
        ``.to_message()`` for one interleaved message (images as refs), or ``.messages`` for the turns themselves.
        """
        if token_budget < 0:
            raise InputError(f"token_budget must be >= 0, got {token_budget}")
        context = MemoryContext(budget=token_budget)
        if token_budget == 0:
            return context
        texts, images = _split_query(input, None)
        if not texts and not images:
            return context
        hits = self.search(
            input,
            k,
            namespace=namespace,
            session=session,
            exclude_session=exclude_session,
            exclude_ids=exclude_ids,
            modalities=modalities,
        )
        used = self.count_tokens(header)
        chosen: list[tuple[MemoryHit, list[str | ImageRef]]] = []
        for hit in hits:
            items = render_items(hit.turn)
            cost = sum(self.count_tokens(x) if isinstance(x, str) else self.image_tokens for x in items)
            if used + cost <= token_budget:
                chosen.append((hit, items))
                used += cost
        if not chosen:
            return context
        chosen.sort(key=lambda c: (c[0].turn.timestamp, c[0].turn.id))
        context.hits = [hit for hit, _ in chosen]
        context.items = [header] + [x for _, items in chosen for x in items]
        context.tokens = used
        return context

    @property
    def image_tokens(self) -> int:
        """What one image costs in a context budget: the model's ``n_query`` + 2 markers, or the config's value."""
        if self.config.image_tokens is not None:
            return self.config.image_tokens
        vision = getattr(getattr(self.model, "config", None), "vision", None)
        n_query = getattr(vision, "n_query", None)
        return int(n_query) + 2 if n_query is not None else _DEFAULT_IMAGE_TOKENS

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text``: the ``token_counter`` given, else the model's tokenizer, else ~4 characters a token."""
        if self._token_counter is not None:
            return int(self._token_counter(text))
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is not None:
            return len(tokenizer.encode(text, add_bos=False))
        return (len(text) + 3) // 4


# ---------------------------------------------------------------------------------------------- helpers


def _keep(best: dict[str, _Candidate], cand: _Candidate) -> None:
    held = best.get(cand.turn_id)
    if held is None or cand.similarity > held.similarity:
        best[cand.turn_id] = cand


def _and(*clauses: dict[str, Any] | None) -> dict[str, Any] | None:
    present = [c for c in clauses if c]
    if not present:
        return None
    return present[0] if len(present) == 1 else {"$and": present}


def _kind_filter(mods: tuple[Modality, ...]) -> dict[str, Any] | None:
    if set(mods) == set(_ALL_MODALITIES):
        return None  # the common case: no filter, one plain query
    if mods == ("text",):
        return {"txt": True}  # turns with text of their own
    return {"$or": [{"kind": KIND_CAPTION}, {"txt": False}]}  # captions and image-only turns


def _check_modalities(modalities: Sequence[Modality]) -> tuple[Modality, ...]:
    if isinstance(modalities, str):
        modalities = (modalities,)  # type: ignore[assignment]
    mods = tuple(dict.fromkeys(modalities))
    bad = [m for m in mods if m not in _ALL_MODALITIES]
    if bad or not mods:
        raise InputError(f"modalities must be a non-empty subset of {_ALL_MODALITIES}, got {modalities!r}")
    return mods  # type: ignore[return-value]


def _split_query(query: QueryInput, image: Any) -> tuple[list[str], list[Any]]:
    """Texts and images of a query (str, ImageRef, PIL image, Message, or a sequence of those)."""
    texts: list[str] = []
    images: list[Any] = []

    def visit(item: Any) -> None:
        if item is None:
            return
        if isinstance(item, str):
            if item.strip():
                texts.append(item)
        elif isinstance(item, ImageRef) or _is_pil(item):
            images.append(item)
        elif isinstance(item, Message):
            for part in item.parts:
                if isinstance(part, TextPart):
                    visit(part.text)
                elif isinstance(part, ImagePart):
                    visit(part.image)
                elif isinstance(part, ToolResultPart):
                    visit(part.text)
                    images.extend(part.images)
        elif isinstance(item, (list, tuple)):
            for x in item:
                visit(x)
        else:
            raise InputError(
                f"can't search with a {type(item).__name__}; use text, an ImageRef, a PIL image or a Message"
            )

    visit(query)
    visit(image)
    return texts, images


def _is_pil(obj: Any) -> bool:
    return "PIL" in type(obj).__module__ and hasattr(obj, "convert")
