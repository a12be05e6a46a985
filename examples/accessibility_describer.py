"""An accessibility describer: alt text (<= 125 characters) and a detailed description with spatial language,
spoken through espeak-ng when it is installed.

    python examples/accessibility_describer.py [IMAGE] [--model emu-tiny] [--out DIR] [--play]

Without IMAGE it describes a generated scene. The speech is written to ``description.wav`` in the output folder
(``--play`` also plays it through espeak-ng's own audio output). When the model is unsure, the tool abstains
("I can't tell") instead of guessing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from _shared import load_model, out_dir, parser, scene

from emu_agent.agent.prompt import MediaHandles
from emu_agent.media import MediaStore
from emu_agent.tools.base import ToolContext
from emu_agent.tools.describe import DescribeImage


def speak(text: str, wav: Path, *, play: bool) -> str:
    """Speak ``text`` with espeak-ng into ``wav`` (and aloud with ``play``); says what happened."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return "espeak-ng is not installed; skipping speech (apt-get install espeak-ng)"
    subprocess.run([espeak, "-w", str(wav), text], check=True, capture_output=True, timeout=60)
    if play:
        subprocess.run([espeak, text], check=False, capture_output=True, timeout=60)
    return f"spoke the description into {wav}"


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("image", nargs="?", type=Path, default=None)
    p.add_argument("--play", action="store_true", help="also play the speech")
    args = p.parse_args(argv)
    model, _ = load_model(args.model)
    out = out_dir(args.out, "describe")
    store = MediaStore(out / "media")
    if args.image is None:
        args.image = out / "scene.png"
        scene([("circle", "red", (10, 10)), ("square", "blue", (54, 54))]).save(args.image)
    ref = store.add_image(args.image)
    handles = MediaHandles()
    handles.handle("image", ref)
    context = ToolContext(model=model, media_store=store, handles=handles)
    tool = DescribeImage(clock_positions=True)
    results = {}
    for label, arguments in {
        "alt text": {"image": "image_1", "purpose": "alt_text"},
        "detailed": {"image": "image_1", "purpose": "scene", "detail": "detailed"},
    }.items():
        output = tool.run(tool.validate_arguments(arguments), context)
        results[label] = output.text
        confidence = output.data.get("confidence")
        print(f"{label} ({len(output.text)} chars, confidence {confidence}): {output.text}")
    assert len(results["alt text"]) <= 125
    print(speak(f"{results['alt text']} {results['detailed']}", out / "description.wav", play=args.play))
    return 0


if __name__ == "__main__":
    sys.exit(main())
