"""Ingest throughput of MultimodalMemory: turns/s and images/s, split between embedding and storing.

Two workloads into a fresh embedded store (PersistentClient), with the real offline MiniLM text embedder:

- ``text``: ``--turns`` text turns (8-20 words), added one per ``add`` call, in sessions of 50; then the same
  with 10 turns per ``add`` call (an agent storing a whole round at once);
- ``images``: ``--images`` turns that each carry a new 64x64 image, captioned by the model
  (``generate_text([("user", [image, "describe the image."])])``, up to 48 new tokens) and embedded by its
  visual encoder.

Time is split by phase: ``text embedding`` (MiniLM), ``visual encoding`` (the model's encoder, mean-pooled),
``captioning`` (model generation), ``storing`` (journal, media bytes, Chroma writes to the namespace and session
indexes), and ``other`` (preparing records, validation). The model is emu-tiny when it is built, else the
random-weight tiny model (same code path; its captions are noise, so caption lengths and times differ).

Run: ``OMP_NUM_THREADS=1 python bench/memory_ingest.py --json``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _common
import numpy as np

from emu_agent.media import MediaStore
from emu_agent.memory import MemoryConfig, MiniLMEmbedder, MultimodalMemory
from emu_agent.messages import Message

WORDS = [
    "the",
    "a",
    "red",
    "blue",
    "green",
    "circle",
    "square",
    "triangle",
    "at",
    "top",
    "left",
    "right",
    "bottom",
    "center",
    "moved",
    "appeared",
    "is",
    "what",
    "where",
]


def load_model() -> tuple[Any, str]:
    from emu_agent.model.loading import builtin_model_dir

    if builtin_model_dir("emu-tiny").exists():
        from emu_agent.model.emu import EmuModel

        return EmuModel.from_pretrained("emu-tiny"), "emu-tiny"
    from emu_agent.model.random_model import random_emu_model

    return random_emu_model(seed=0), "random-tiny (emu-tiny not built yet)"


class Timers:
    """Wall seconds per phase, collected by wrapping the memory's callables."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - start

        return timed


class TimedEmbedder:
    def __init__(self, inner: Any, timers: Timers) -> None:
        self.name, self.dim = inner.name, inner.dim
        self.embed = timers.wrap("text embedding", inner.embed)


def instrument(memory: MultimodalMemory) -> Timers:
    timers = Timers()
    memory.embedder = TimedEmbedder(memory.embedder, timers)  # type: ignore[assignment]
    if memory.visual is not None:
        memory.visual.embed = timers.wrap("visual encoding", memory.visual.embed)  # type: ignore[method-assign]
    if memory.captioner is not None:
        memory.captioner = timers.wrap("captioning", memory.captioner)
    memory._commit = timers.wrap("storing", memory._commit)  # type: ignore[method-assign]
    return timers


def noisy_scene(rng: np.random.Generator) -> np.ndarray:
    """A distinct 64x64 picture: a coloured block on noise."""
    pixels = rng.integers(200, 256, size=(64, 64, 3), dtype=np.uint8)
    y, x = rng.integers(0, 44, size=2)
    pixels[y : y + 20, x : x + 20] = rng.integers(0, 256, size=3, dtype=np.uint8)
    return pixels


def run_workload(
    name: str, count: int, make: Callable[[int], Message], memory: MultimodalMemory, per_add: int = 1
) -> dict[str, Any]:
    timers = instrument(memory)
    start = time.perf_counter()
    for lo in range(0, count, per_add):
        memory.add([make(i) for i in range(lo, min(lo + per_add, count))], session=f"{name}-{lo // 50}")
    total = time.perf_counter() - start
    phases = dict(timers.seconds)
    phases["other"] = total - sum(phases.values())
    return {"items": count, "per_add": per_add, "total_s": total, "per_s": count / total, "phases_s": phases}


def run(args: argparse.Namespace) -> dict[str, Any]:
    _common.setup()
    model, model_name = load_model()
    embedder = MiniLMEmbedder()
    embedder.embed(["warm up"])
    model.generate_text(["warm up"], max_new_tokens=2)
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="emu-memory-ingest-"))
    uploads = MediaStore(folder / "uploads")
    results: dict[str, Any] = {"environment": _common.environment(), "model": model_name, "embedder": embedder.name}
    try:
        with MultimodalMemory(folder / "store", model=model, text_embedder=embedder, config=MemoryConfig()) as memory:
            texts = [" ".join(rng.choice(WORDS, size=rng.integers(8, 21))) for _ in range(args.turns)]
            results["text"] = run_workload("text", args.turns, lambda i: Message.user(texts[i]), memory)
            results["text, 10 per add"] = run_workload(
                "batched", args.turns, lambda i: Message.user(texts[i]), memory, per_add=10
            )
            images = [uploads.add_image(noisy_scene(rng)) for _ in range(args.images)]
            results["images"] = run_workload(
                "img", args.images, lambda i: Message.user("Here is a picture.", images[i]), memory
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not args.json:
        for key in ("text", "text, 10 per add", "images"):
            entry = results[key]
            print(f"\n{key}: {entry['items']} turns in {entry['total_s']:.1f} s = {entry['per_s']:.1f} /s")
            rows = [(p, s, 1e3 * s / entry["items"], s / entry["total_s"]) for p, s in entry["phases_s"].items()]
            _common.print_table(["phase", "seconds", "ms per turn", "share"], rows)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    _common.emit(run(args), args.json)


if __name__ == "__main__":
    main()
