"""Shared helpers for the memory tests: drawn scenes with known captions, a deterministic captioner, fixtures.

Every test runs on the real chromadb (embedded PersistentClient in a tmp folder, EphemeralClient, or a real
``chroma run`` server). The model side is the random-weight tiny Emu (its visual encoder is real; its captions
are noise, so tests that need known captions inject :class:`SceneCaptioner`). Subprocess scripts load this file
with ``runpy.run_path`` to share the same helpers.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
CONFTEST = Path(__file__).resolve()
COLOURS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 170, 60), "yellow": (235, 200, 20)}
SHAPES = ("circle", "square", "triangle")
CELLS = {"top left": (16, 16), "center": (32, 32), "bottom right": (48, 48)}


def draw(colour: str, shape: str, cell: str = "center", size: int = 64) -> Image.Image:
    """A deterministic picture of one shape on white."""
    im = Image.new("RGB", (size, size), "white")
    pen = ImageDraw.Draw(im)
    x, y = CELLS[cell]
    r = 10
    fill = COLOURS[colour]
    if shape == "circle":
        pen.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    elif shape == "square":
        pen.rectangle((x - r, y - r, x + r, y + r), fill=fill)
    else:
        pen.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
    return im


def caption_of(colour: str, shape: str, cell: str = "center") -> str:
    return f"a {colour} {shape} at {cell}"


def _key(im: Image.Image) -> str:
    return hashlib.md5(im.convert("RGB").tobytes()).hexdigest()


class SceneCaptioner:
    """Captions exactly the pictures :func:`draw` makes (by pixel hash); anything else gets ``fallback``."""

    def __init__(self, fallback: str = "an unknown picture") -> None:
        self.fallback = fallback
        self.calls = 0
        self.known = {_key(draw(c, s, cell)): caption_of(c, s, cell) for c in COLOURS for s in SHAPES for cell in CELLS}

    def __call__(self, im: Image.Image) -> str:
        self.calls += 1
        return self.known.get(_key(im), self.fallback)


def run_python(code: str, *, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter outside the repo root (so the installed package is what gets imported)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tempfile.gettempdir(),
        env=full_env,
        check=False,
    )


@pytest.fixture(scope="session")
def kit() -> Any:
    """This module: drawing helpers, the captioner class, subprocess runner."""
    return sys.modules[__name__]


@pytest.fixture(scope="session")
def random_model() -> Any:
    from emu_agent.model.random_model import random_emu_model

    return random_emu_model(seed=0)


@pytest.fixture(scope="session")
def minilm() -> Any:
    from emu_agent.memory import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    embedder.embed(["warm up"])
    return embedder


@pytest.fixture
def hashing() -> Any:
    from emu_agent.memory import HashingEmbedder

    return HashingEmbedder(256)


@pytest.fixture
def captioner() -> SceneCaptioner:
    return SceneCaptioner()


@pytest.fixture
def media(tmp_path: Path) -> Any:
    from emu_agent.media import MediaStore

    return MediaStore(tmp_path / "user-media")


@pytest.fixture
def make_memory(tmp_path: Path, random_model: Any, hashing: Any, captioner: SceneCaptioner) -> Any:
    """Factory for embedded memories in tmp_path (random model, hashing embedder, scene captioner by default)."""
    from emu_agent.memory import MultimodalMemory

    opened: list[Any] = []

    def make(path: Path | str | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("model", random_model)
        kwargs.setdefault("text_embedder", hashing)
        kwargs.setdefault("captioner", captioner)
        memory = MultimodalMemory(path or tmp_path / "store", **kwargs)
        opened.append(memory)
        return memory

    yield make
    for memory in opened:
        memory.close()


@pytest.fixture
def memory(make_memory: Any) -> Any:
    return make_memory()
