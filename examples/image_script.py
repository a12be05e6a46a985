"""A multi-step image script: generate -> edit -> edit -> compare, tracking lineage.

    python examples/image_script.py [--model emu-tiny] [--out DIR]

Runs the built-in tools directly (no agent loop): every image is stored once in the media store, each edit
records the image it came from (``derived_from``), and the comparison puts the versions side by side with the
mean pixel change between each pair.
"""

from __future__ import annotations

import sys

import numpy as np
from _shared import load_model, out_dir, parser
from PIL import Image

from emu_agent.agent.prompt import MediaHandles
from emu_agent.media import MediaStore
from emu_agent.tools.base import ToolContext, to_tool_output
from emu_agent.tools.describe import DescribeImage
from emu_agent.tools.image_editing import EditImage
from emu_agent.tools.image_generation import GenerateImage


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    model, _ = load_model(args.model)
    out = out_dir(args.out, "script")
    store = MediaStore(out / "media")
    handles = MediaHandles()
    context = ToolContext(model=model, media_store=store, handles=handles)

    def run(tool, **arguments):  # validate, run, and give every new image its handle
        output = to_tool_output(tool.run(tool.validate_arguments(arguments), context), store)
        for ref in output.images:
            print(f"{tool.name}({arguments}) -> {handles.handle('image', ref)}")
        return output

    first = run(GenerateImage(), prompt="a red circle at top left", seed=0).images[0]
    second = run(EditImage(), image="image_1", instruction="make it blue", seed=0).images[0]
    third = run(EditImage(), image="image_2", instruction="move it to the bottom right", seed=0).images[0]
    versions = [first, second, third]

    assert second.derived_from == first.sha256 and third.derived_from == second.sha256
    pixels = [np.asarray(ref.load(), dtype=np.float32) for ref in versions]
    for (a, b), label in zip([(0, 1), (1, 2), (0, 2)], ["1->2", "2->3", "1->3"], strict=True):
        print(f"mean pixel change {label}: {np.abs(pixels[a] - pixels[b]).mean():.1f} / 255")
    strip = Image.new("RGB", (sum(r.width for r in versions), max(r.height for r in versions)), "white")
    x = 0
    for ref in versions:
        strip.paste(ref.load(), (x, 0))
        x += ref.width
    strip.save(out / "compare.png")
    describe = DescribeImage()
    for handle in ("image_1", "image_3"):
        print(f"{handle}: {run(describe, image=handle, purpose='scene').text}")
    print(f"lineage: {third.sha256[:8]} <- {second.sha256[:8]} <- {first.sha256[:8]}")
    print(f"wrote {out / 'compare.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
