"""End-to-end latency on emu-tiny: "draw a red circle at top left, then make it blue." through the real agent.

Split into model time (the LM choosing tool calls and answering), tool time (the tools; inside them the LM's
visual-embedding regression and the diffusion decoder, timed separately here through the model's decoder), and
agent overhead (everything else). Baseline, side by side: the same two images made by calling the model API
directly (``generate_image`` then ``generate_image([image, instruction])``), i.e. the work with no agent around it.

    python bench/agent_e2e_tiny.py [--reps 3] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common

REQUEST = "draw a red circle at top left, then make it blue."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    _common.setup()

    from emu_agent.agent import Agent
    from emu_agent.model.emu import EmuModel
    from emu_agent.tools.describe import DescribeImage
    from emu_agent.tools.fetch import FetchImage
    from emu_agent.tools.image_editing import EditImage
    from emu_agent.tools.image_generation import GenerateImage
    from emu_agent.tools.video import AnswerAboutVideo

    model = EmuModel.from_pretrained("emu-tiny")
    decoder_time = [0.0]
    decode = model.decoder.decode

    def timed_decode(*a, **k):  # the diffusion decoder's share of the tool time
        start = time.perf_counter()
        try:
            return decode(*a, **k)
        finally:
            decoder_time[0] += time.perf_counter() - start

    model.decoder.decode = timed_decode
    tools = [GenerateImage(seed=0), EditImage(seed=0), AnswerAboutVideo(), DescribeImage(), FetchImage()]
    agent = Agent(model, tools=tools, max_steps=4)
    rows = []
    for _ in range(args.reps + 1):  # the first is a warm-up
        decoder_time[0] = 0.0
        start = time.perf_counter()
        result = agent.run(REQUEST)
        total = time.perf_counter() - start
        usage = result.usage
        rows.append(
            {
                "total_s": total,
                "model_s": usage.model_time_s,
                "tools_s": usage.tool_time_s,
                "decoder_s": decoder_time[0],
                "overhead_s": total - usage.model_time_s - usage.tool_time_s,
                "calls": [c.name for s in result.steps for c in s.tool_calls],
            }
        )
    rows = rows[1:]
    direct = []
    for _ in range(args.reps):
        start = time.perf_counter()
        image = model.generate_image("a red circle at top left", seed=0)
        model.generate_image([image, "make the red circle blue."], seed=0)
        direct.append(time.perf_counter() - start)
    p50 = {
        key: statistics.median(r[key] for r in rows)
        for key in ("total_s", "model_s", "tools_s", "decoder_s", "overhead_s")
    }
    results = {
        "environment": _common.environment(),
        "request": REQUEST,
        "agent_p50": p50,
        "calls": rows[0]["calls"],
        "direct_api_p50_s": statistics.median(direct),
        "ratio_agent_over_direct": p50["total_s"] / statistics.median(direct),
    }
    if args.json:
        _common.emit(results, True)
    else:
        _common.print_table(
            ["part", "p50 s"], [[k, v] for k, v in p50.items()] + [["direct API", results["direct_api_p50_s"]]]
        )
        print(f"agent / direct = {results['ratio_agent_over_direct']:.2f}x; calls {results['calls']}")


if __name__ == "__main__":
    main()
