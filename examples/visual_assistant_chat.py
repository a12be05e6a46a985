"""A visual assistant: a multi-turn chat where the agent draws, edits and describes images with its tools.

    python examples/visual_assistant_chat.py [--model emu-tiny] [--out DIR]

Streams the agent's events (tool calls, progress, results) and saves every image the conversation produced.
"""

from __future__ import annotations

import sys

from _shared import load_model, out_dir, parser

from emu_agent import Agent
from emu_agent.tools.describe import DescribeImage
from emu_agent.tools.image_editing import EditImage
from emu_agent.tools.image_generation import GenerateImage


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    model, trained = load_model(args.model)
    out = out_dir(args.out, "chat")
    tools = [GenerateImage(seed=0), EditImage(seed=0), DescribeImage()]
    turns = ["draw a red circle at top left", "make it blue", "describe image_2"]
    if not trained:  # the random model's 1024-token context holds two tool specs and one turn; it must be told to
        tools, turns = tools[:2], turns[:1]  # call generate_image since it can't decide
    agent = Agent(
        model, tools=tools, media_store=out / "media", max_steps=3, on_step_limit="final", max_new_tokens=96,
        tool_choice="auto" if trained else "generate_image",
    )  # fmt: skip
    conv = agent.conversation()
    for text in turns:
        print(f"you> {text}")
        for event in conv.stream(text):
            if event.type == "tool_call":
                print(f"  -> {event.call.name}({event.call.arguments})")
            elif event.type == "tool_result":
                print(f"  <- {event.result.name}: {event.result.text[:80]} {len(event.result.images)} image(s)")
            elif event.type == "error":
                print(f"  !! {event.kind}: {event.message[:120]}")
            elif event.type == "final":
                usage = event.result.usage
                print(f"assistant> {event.result.text[:200]!r}")
                print(f"  ({usage.model_calls} model call(s), {usage.text_tokens} text + {usage.image_tokens} image "
                      f"tokens, model {usage.model_time_s:.2f}s, tools {usage.tool_time_s:.2f}s)")  # fmt: skip
    for ref in conv.images:
        path = out / f"{conv.handle_of(ref)}.png"
        ref.load().save(path)
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
