"""Agent overhead per step with a zero-time scripted model, against calling the tool directly.

    python bench/agent_overhead.py [--runs 300] [--json] [--write-docs]

Each run is one user message -> a model step that calls a tool -> the tool (returns "ok" at once) -> a model
step that answers: 2 steps, 1 tool call. The model answers instantly (no tokens are generated), so what is
timed is the agent itself: rendering the model's view (tool block, media handles), parsing the reply,
validating arguments, the safety check, running the tool in a worker thread under its timeout, events,
messages and usage. Baselines: (a) the tool function called directly; (b) a minimal hand-written loop (find the
marker, ``json.loads``, call the function). Goal: <= 2 ms p50 per step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class ZeroTimeModel:
    """A chat backend that answers instantly: a tool call after a user turn, a final answer after a result."""

    supports_constraints = False
    CALL = '<tool_call>{"name": "lookup", "arguments": {"key": "colour of the circle"}}</tool_call>'

    def stream_reply(self, messages: Any, *, constraint: Any, options: Any, usage: Any, cancelled: Any) -> Any:
        yield self.CALL if messages[-1].role == "user" else "The circle is red."


def lookup(key: str) -> str:
    """Look a key up."""
    return "ok"


def bench(runs: int, history_turns: int) -> dict[str, Any]:
    from emu_agent.agent import Agent
    from emu_agent.media import MediaStore
    from emu_agent.tools.base import tool

    agent = Agent(ZeroTimeModel(), tools=[tool(lookup)], media_store=MediaStore(tempfile.mkdtemp()))
    conv = agent.conversation()
    for _ in range(history_turns):  # a conversation that already has some history
        conv.run("what colour is the circle?")
    per_step: list[float] = []
    own: list[float] = []
    overhead_share: list[float] = []
    for _ in range(runs):
        fresh = agent.conversation(list(conv.messages))
        started = time.perf_counter()
        result = fresh.run("what colour is the circle?")
        elapsed = time.perf_counter() - started
        assert len(result.steps) == 2 and result.text == "The circle is red."
        per_step.append(elapsed / len(result.steps))
        own.append(result.usage.overhead_time_s / len(result.steps))
        overhead_share.append(result.usage.overhead_time_s / max(result.usage.total_time_s, 1e-9))
    return {
        "history_messages": len(conv.messages),
        "p50_ms_per_step": statistics.median(per_step) * 1e3,
        "p90_ms_per_step": sorted(per_step)[int(0.9 * len(per_step))] * 1e3,
        "min_ms_per_step": min(per_step) * 1e3,
        "agent_python_p50_ms_per_step": statistics.median(own) * 1e3,
        "overhead_share_p50": statistics.median(overhead_share),
    }


def baselines(runs: int) -> dict[str, float]:
    """(a) the function directly, (b) a minimal hand-written loop (parse + call), per step (a run = 2 steps)."""
    call = ZeroTimeModel.CALL
    direct, loop = [], []
    for _ in range(runs):
        started = time.perf_counter()
        lookup("colour of the circle")
        direct.append((time.perf_counter() - started) / 2)
        started = time.perf_counter()
        body = call[call.index(">") + 1 : call.rindex("</")]
        payload = json.loads(body)
        lookup(**payload["arguments"])
        loop.append((time.perf_counter() - started) / 2)
    return {
        "direct_ms_per_step": statistics.median(direct) * 1e3,
        "minimal_loop_ms_per_step": statistics.median(loop) * 1e3,
    }


def write_docs(results: dict[str, Any], command: str) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    rows = [
        "| conversation | agent p50 ms/step | min | p90 | vs direct call | vs minimal loop | agent's own Python p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    base = results["baselines"]
    for case in results["cases"]:
        rows.append(
            f"| {case['history_messages']} messages before | **{case['p50_ms_per_step']:.3f}** | "
            f"{case['min_ms_per_step']:.3f} | {case['p90_ms_per_step']:.3f} | "
            f"{case['p50_ms_per_step'] / base['direct_ms_per_step']:.0f}x | "
            f"{case['p50_ms_per_step'] / base['minimal_loop_ms_per_step']:.0f}x | "
            f"{case['agent_python_p50_ms_per_step']:.3f} ms |"
        )
    worst = max(c["p50_ms_per_step"] for c in results["cases"])
    section = "\n".join(
        [
            "## Agent",
            "",
            "### Agent overhead per step (zero-time scripted model)",
            "",
            f"Command: `{command}` (CPU, {results['environment']}).",
            "",
            "One run = user message -> model step with a tool call -> tool -> model step with the answer (2 steps). "
            "The model and the tool take no time, so this is the agent's own cost per step: the model's view "
            "(tool block, media handles), parsing, validation, the safety check, the tool's worker thread and "
            "timeout, events, messages, usage. Baselines: the tool function called directly, and a minimal "
            "hand-written loop (find the marker, `json.loads`, call).",
            "",
            *rows,
            "",
            f"Direct call {base['direct_ms_per_step'] * 1e3:.2f} µs/step, minimal loop "
            f"{base['minimal_loop_ms_per_step'] * 1e3:.2f} µs/step. **Goal (<= 2 ms p50 per step): "
            f"{'met' if worst <= 2 else 'NOT met'}, worst case {worst:.3f} ms.** The ratios are large because "
            "the baselines do almost nothing; what matters is the absolute cost next to a model step (tens of "
            "ms for emu-tiny on a CPU, seconds for Emu2). The view is re-rendered every step, so the cost grows "
            "slowly with the history. On a loaded machine (see the load above) the tail (p90) is the scheduling "
            "of the tool's worker thread, not the agent's Python: the last column is the run's time outside the "
            "model and the tool call (which includes handing the call to its worker thread and back).",
            "",
        ]
    )
    if "## Agent" in text:
        head, _, rest = text.partition("## Agent")
        tail = rest[rest.find("\n## ") :] if "\n## " in rest else ""
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write-docs", action="store_true", help="update the '## Agent' section of docs/benchmarks.md")
    args = parser.parse_args(argv)
    import os
    import platform

    bench(20, 0)  # warm up imports and caches
    results = {
        "environment": f"python {platform.python_version()}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}, {threading.active_count()} threads",
        "cases": [bench(args.runs, turns) for turns in (0, 10)],
        "baselines": baselines(args.runs * 10),
    }
    if args.write_docs:
        write_docs(results, f"python bench/agent_overhead.py --runs {args.runs} --write-docs")
    print(json.dumps(results, indent=2) if args.json else results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
