"""Multimodal conversation memory on ChromaDB (installed as ``emu_agent.memory``).

Every turn (user, assistant, tool) is stored with its interleaved parts; images are stored once in a
:class:`~emu_agent.media.MediaStore`, embedded with the model's own visual encoder and captioned by the model;
text goes through a pluggable embedder (default: offline all-MiniLM-L6-v2). Recall works across modalities
(text->image, image->image, image->text) with a hybrid semantic + recency score. See :class:`MultimodalMemory`.

Importing this package is light: chromadb, torch and transformers load only when a memory is opened or an
embedder first runs.
"""

from __future__ import annotations

from emu_agent.memory.base import MultimodalMemory
from emu_agent.memory.config import CompactionConfig, MemoryConfig, ScoreWeights
from emu_agent.memory.core import ImageInfo
from emu_agent.memory.embeddings import (
    CallableEmbedder,
    HashingEmbedder,
    MiniLMEmbedder,
    ModelCaptioner,
    TextEmbedder,
    VisualEmbedder,
)
from emu_agent.memory.lifecycle import ConsistencyReport, Summarizer
from emu_agent.memory.records import MemoryContext, MemoryHit, MemoryTurn

__all__ = [
    "CallableEmbedder",
    "CompactionConfig",
    "ConsistencyReport",
    "HashingEmbedder",
    "ImageInfo",
    "MemoryConfig",
    "MemoryContext",
    "MemoryHit",
    "MemoryTurn",
    "MiniLMEmbedder",
    "ModelCaptioner",
    "MultimodalMemory",
    "ScoreWeights",
    "Summarizer",
    "TextEmbedder",
    "VisualEmbedder",
]
