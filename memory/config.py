"""Runtime options of :class:`~emu_agent.memory.MultimodalMemory` (pydantic, ``extra="forbid"``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CompactionConfig", "MemoryConfig", "ScoreWeights"]

DAY_S = 86_400.0


class ScoreWeights(BaseModel):
    """How a recalled turn is scored: ``semantic * similarity + recency * 0.5 ** (age / half_life_s)``.

    ``similarity`` is the cosine similarity of the best-matching vector of the turn (its text, an image caption,
    or an image's visual vector; a visual match is multiplied by ``visual``). Recency is 1.0 for a turn stored
    now and halves every ``half_life_s`` seconds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    semantic: float = Field(default=1.0, ge=0.0)
    recency: float = Field(default=0.2, ge=0.0)
    half_life_s: float = Field(default=7 * DAY_S, gt=0.0)
    visual: float = Field(default=1.0, ge=0.0, description="multiplier of image->image (visual) similarities")


class CompactionConfig(BaseModel):
    """What :meth:`MultimodalMemory.compact` does with old turns.

    ``keep_images``: ``"full"`` keeps the original images in the summary turn; ``"thumbnail"`` keeps each as its
    caption plus a small thumbnail (a new image whose ``derived_from`` is the original; the original's bytes are
    deleted once nothing references them); ``"caption"`` keeps only the caption text.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keep_images: Literal["full", "thumbnail", "caption"] = "full"
    thumbnail_size: int = Field(default=32, ge=4, le=512, description="longest side of a thumbnail in pixels")
    turns_per_summary: int = Field(default=20, ge=2, description="old turns folded into one summary turn")
    max_summary_chars: int = Field(default=2000, ge=100, description="length cap of the built-in summariser")


class MemoryConfig(BaseModel):
    """Options of a :class:`~emu_agent.memory.MultimodalMemory`.

    Attributes:
        namespace: the namespace (user, tenant) used when a call names none.
        collection_prefix: prefix of every Chroma collection this memory owns (several memories can share one
            Chroma server or in-process client by using different prefixes).
        weights: the hybrid score (semantic + recency).
        candidates: how many records per requested hit are fetched from Chroma and re-ranked by the hybrid
            score (``ceil(k * candidates)``). At 1.0 recency re-orders the ``k`` best semantic matches; higher
            values let a recent turn overtake a slightly closer old one, at ~0.05 ms per extra record.
        session_index: keep session indexes as well as the one per namespace, so that a search scoped to a
            session is one query on a small collection instead of a Chroma ``where`` filter over the whole
            namespace (10-100x slower at 10k-100k records). Costs a second write of each record.
        session_shards: ``0`` (default): one collection per session, the fastest scoped query (about the cost of
            an unfiltered query); but embedded Chroma keeps ~2.6 MiB of RAM for every collection it has opened
            (up to RLIMIT_NOFILE / 5 of them), so a process that touches thousands of sessions grows large.
            ``N > 0``: sessions are hashed into N shard collections per namespace and a scoped search filters
            its shard by session: RAM bounded by N collections, queries ~1.5x slower (Chroma's ``where``).
            Fixed when a namespace is created (a mismatch is reported).
        retention_s: retention TTL in seconds: older turns are never recalled, and :meth:`expire` (also run when
            a store is opened) deletes them. ``None`` keeps everything.
        caption_images: caption every new image with the captioner (needed for text->image recall).
        caption_prompt: the prompt after the image when the model captions it (emu-tiny's own wording).
        caption_chat: caption through the chat template (one user turn: image, prompt) rather than a plain
            interleaved prompt.
        caption_max_new_tokens: cap on a caption's length in tokens.
        image_tokens: what one image costs in :meth:`context_for`'s token budget; ``None``: the model's
            ``n_query`` plus the ``[IMG]``/``[/IMG]`` markers (66 for Emu2 when no model is attached).
        ingest_batch: turns written per Chroma commit (one journal entry each) when ``add`` gets many.
        hnsw: Chroma HNSW configuration of new collections.
        delete_media: delete an image's bytes from the media store when no stored turn references it any more
            (after deletes, forget, expiry, compaction). Turn off when the media store is shared with data that
            the memory does not track.
        lock_timeout_s: how long to wait for another process's lock on an embedded store before failing.
        compaction: see :class:`CompactionConfig`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(default="default", min_length=1)
    collection_prefix: str = Field(default="emu", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,39}$")
    weights: ScoreWeights = Field(default_factory=ScoreWeights)
    candidates: float = Field(default=1.0, ge=1.0, le=50.0)
    session_index: bool = True
    session_shards: int = Field(default=0, ge=0, le=4096)
    retention_s: float | None = Field(default=None, gt=0.0)
    caption_images: bool = True
    caption_prompt: str = "describe the image."
    caption_chat: bool = True
    caption_max_new_tokens: int = Field(default=48, ge=1)
    image_tokens: int | None = Field(default=None, ge=0)
    ingest_batch: int = Field(default=256, ge=1)
    hnsw: dict[str, Any] = Field(
        default_factory=lambda: {"space": "cosine", "ef_construction": 100, "ef_search": 100},
    )
    delete_media: bool = True
    lock_timeout_s: float = Field(default=0.0, ge=0.0)
    compaction: CompactionConfig = Field(default_factory=CompactionConfig)
