"""Recall latency of MultimodalMemory at 10k and 100k stored turns, scoped to a session, vs raw chromadb.

For each size N the store holds N text turns in sessions of ``--session-size`` turns (one namespace), written
through ``MultimodalMemory.add`` with *precomputed* random unit vectors (a lookup embedder that maps each text to
a seeded random 384-d vector): embedding 100k texts with MiniLM would take ~30 min on 2 cores and measures the
embedder, not the store (see bench/memory_ingest.py for that). Then, with ``--queries`` random query vectors:

- ``raw unfiltered``: ``collection.query(query_embeddings=q, n_results=k)`` on the namespace collection holding
  all N turns (chromadb's default include: documents, metadatas, distances) - the baseline;
- ``raw where session``: the same query with ``where={"session": s}`` - what scoping costs in plain Chroma;
- ``memory.search(session=s)``: the whole recall path (query embedding lookup, one query on the session's shard
  collection filtered by session - or on the session's own collection with ``--session-shards 0`` - hybrid
  re-ranking, parsing the k hits into Messages);
- ``memory.search(namespace)``: the same over the whole namespace;
- ``candidates=3``: session-scoped again, re-ranking 3k candidates by recency instead of k (the default).

Goal: session-scoped recall <= 1.3x the unfiltered raw query. Also reports the storing rate of the build and
the process RSS once N turns are stored and queried.

Run: ``OMP_NUM_THREADS=1 python bench/memory_recall.py --sizes 10000 100000 --json``
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
import numpy as np

from emu_agent.memory import MemoryConfig, MultimodalMemory
from emu_agent.messages import Message

WORDS = [
    "red",
    "blue",
    "green",
    "circle",
    "square",
    "triangle",
    "left",
    "right",
    "top",
    "bottom",
    "moved",
    "appeared",
    "colour",
    "shape",
    "scene",
    "picture",
]


class RandomVectors:
    """A lookup 'embedder': each text gets a seeded random unit vector (stands for precomputed embeddings)."""

    name = "precomputed-random-384"
    dim = 384

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            out[i] = np.random.default_rng(seed).standard_normal(self.dim, dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def rss_mib() -> dict[str, float]:
    status = Path("/proc/self/status").read_text()
    fields = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Vm")}
    return {
        "rss_mib": int(fields.get("VmRSS", 0)) / 1024,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def build(memory: MultimodalMemory, n: int, session_size: int, rng: np.random.Generator) -> dict[str, float]:
    start = time.perf_counter()
    base = time.time() - n  # one turn a second, oldest first
    for s in range(n // session_size):
        messages = []
        for i in range(session_size):
            words = " ".join(rng.choice(WORDS, size=8))
            messages.append(Message.user(f"turn {s}-{i}: {words}") if i % 2 == 0 else Message.assistant(words))
        stamps = [base + s * session_size + i for i in range(session_size)]
        memory.add(messages, session=f"session-{s:05d}", timestamp=stamps)
    seconds = time.perf_counter() - start
    return {"build_s": seconds, "store_turns_per_s": n / seconds}


def percentiles(times: list[float]) -> dict[str, float]:
    ms = sorted(t * 1e3 for t in times)
    return {"p50_ms": statistics.median(ms), "p99_ms": ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]}


def measure(memory: MultimodalMemory, n: int, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    """Interleaved timing: each query runs every variant in turn, so machine noise hits all variants alike."""
    col = memory._col("t", memory.config.namespace)  # the namespace collection: all N turns
    sessions = [f"session-{s:05d}" for s in range(n // args.session_size)]
    queries = [f"query {i} " + " ".join(rng.choice(WORDS, size=6)) for i in range(args.queries)]
    picks = [sessions[i] for i in rng.integers(0, len(sessions), size=args.queries)]
    vectors = memory.embedder.embed(queries)
    k = args.k
    wide = memory.config.model_copy(update={"candidates": 3.0})

    def search_wide(i: int) -> Any:
        default, memory.config = memory.config, wide
        try:
            return memory.search(queries[i], k, session=picks[i])
        finally:
            memory.config = default

    variants = {
        "raw unfiltered": lambda i: col.query(query_embeddings=vectors[i : i + 1], n_results=k),
        "raw where session": lambda i: col.query(
            query_embeddings=vectors[i : i + 1], n_results=k, where={"session": picks[i]}
        ),
        "memory.search(session=s)": lambda i: memory.search(queries[i], k, session=picks[i]),
        "memory.search(namespace)": lambda i: memory.search(queries[i], k),
        "memory.search(session=s), candidates=3": search_wide,
    }
    for s in sessions:  # warm: every session's index opened once (an active session is a warm one)
        memory.search("warm up", 1, session=s)
    for i in range(min(20, len(queries))):
        for fn in variants.values():
            fn(i)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(len(queries)):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - t0)
    hits = memory.search(queries[0], k, session=picks[0])
    assert len(hits) == k and all(h.turn.session == picks[0] for h in hits)
    return {name: percentiles(t) for name, t in times.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    _common.setup()
    results: dict[str, Any] = {
        "environment": _common.environment(),
        "k": args.k,
        "queries": args.queries,
        "session_size": args.session_size,
        "session_shards": args.session_shards,
        "sizes": {},
    }
    root = Path(args.path or tempfile.mkdtemp(prefix="emu-memory-bench-"))
    for n in args.sizes:
        folder = root / f"store-{n}"
        shutil.rmtree(folder, ignore_errors=True)
        rng = np.random.default_rng(0)
        before = rss_mib()["rss_mib"]
        config = MemoryConfig(ingest_batch=1000, session_shards=args.session_shards)
        memory = MultimodalMemory(folder, text_embedder=RandomVectors(), config=config)
        try:
            entry: dict[str, Any] = {"rss_before_open_mib": before}
            entry.update(build(memory, n, args.session_size, rng))
            entry["latency"] = measure(memory, n, args, rng)
            raw, scoped = entry["latency"]["raw unfiltered"], entry["latency"]["memory.search(session=s)"]
            entry["ratio_p50"] = scoped["p50_ms"] / raw["p50_ms"]
            entry["ratio_p99"] = scoped["p99_ms"] / raw["p99_ms"]
            entry.update(rss_mib())
            entry["disk_mib"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
        finally:
            memory.close()
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
        results["sizes"][str(n)] = entry
        if not args.json:
            print_size(n, entry)
    if not args.path:
        shutil.rmtree(root, ignore_errors=True)
    return results


def print_size(n: int, entry: dict[str, Any]) -> None:
    print(f"\n{n:,} turns: built in {entry['build_s']:.1f} s ({entry['store_turns_per_s']:.0f} turns/s stored)")
    rows = [(name, v["p50_ms"], v["p99_ms"]) for name, v in entry["latency"].items()]
    _common.print_table(["query", "p50 ms", "p99 ms"], rows)
    print(f"ratio session-scoped / raw unfiltered: p50 {entry['ratio_p50']:.2f}x, p99 {entry['ratio_p99']:.2f}x")
    print(
        f"RSS {entry['rss_mib']:.0f} MiB (peak {entry['peak_rss_mib']:.0f} MiB; {entry['rss_before_open_mib']:.0f} MiB "
        f"before the store was opened), store on disk {entry['disk_mib']:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--session-size", type=int, default=100)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--session-shards", type=int, default=MemoryConfig().session_shards, help="0: one per session")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--path", help="folder for the stores (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    _common.emit(run(args), args.json)


if __name__ == "__main__":
    main()
