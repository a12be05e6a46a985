"""Shared helpers for the benchmarks in ``bench/``: seeding, timing, the small random-weight model, output.

Not a benchmark itself. Each ``bench/<name>.py`` imports it as ``_common`` (the script's folder is on
``sys.path`` when run as ``python bench/<name>.py``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_TOKENIZER = ROOT / "tests" / "fixtures" / "emu2-reference" / "tokenizer"
THREADS = 2
PROMPT = (
    "A watercolour painting of an old lighthouse on a rocky cliff at sunset, with seagulls flying "
    "over calm blue water and a small red boat"
)  # 25 words


def setup(seed: int = 0) -> None:
    """Deterministic, thread-pinned torch."""
    torch.manual_seed(seed)
    torch.set_num_threads(THREADS)


def environment() -> dict[str, Any]:
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def time_calls(fn: Callable[[], Any], *, warmup: int, reps: int) -> list[float]:
    """Wall-clock seconds of ``reps`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summarise(times: Sequence[float]) -> dict[str, float]:
    """p50 plus spread: min, max and (max - min) / p50."""
    p50 = statistics.median(times)
    return {
        "p50_s": p50,
        "min_s": min(times),
        "max_s": max(times),
        "spread": (max(times) - min(times)) / p50,
        "reps": len(times),
    }


def small_model(
    *,
    hidden: int = 512,
    layers: int = 8,
    heads: int = 8,
    intermediate: int = 1376,
    vision_width: int = 448,
    vision_layers: int = 4,
    n_query: int = 64,
    seed: int = 0,
) -> Any:
    """A random-weight float32 Emu model with the reference LLaMA tokenizer (vocab 32272)."""
    from emu_agent.model.config import EmuConfig, TextConfig, VisionConfig
    from emu_agent.model.emu import EmuModel
    from emu_agent.model.tokenizer import EmuTokenizer

    config = EmuConfig(
        vision=VisionConfig(
            image_size=112, patch_size=14, width=vision_width, layers=vision_layers, head_width=56,
            mlp_ratio=4.0, n_query=n_query, v_query=n_query,
        ),
        text=TextConfig(
            hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
            num_attention_heads=heads, vocab_size=32272,
        ),
    )  # fmt: skip
    tokenizer = EmuTokenizer.from_pretrained(REFERENCE_TOKENIZER, instruct=False)
    return EmuModel.from_config(config, tokenizer=tokenizer, seed=seed)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain fixed-width table."""
    cells = [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def emit(results: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(results, indent=2))
