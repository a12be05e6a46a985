"""Video QA: answer questions about a short clip; frames are sampled by seeking and keep their timestamps.

    python examples/video_qa.py [VIDEO] [--model emu-tiny] [--out DIR]

Without VIDEO it writes a 3-second clip of a purple square moving from left to right (PyAV).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from _shared import load_model, out_dir, parser, scene

from emu_agent.agent.prompt import MediaHandles
from emu_agent.media import MediaStore
from emu_agent.tools.base import ToolContext
from emu_agent.tools.video import AnswerAboutVideo


def write_clip(path: Path, seconds: float = 3.0, fps: int = 8) -> Path:
    """A clip of a purple square moving left to right."""
    import av

    frames = int(seconds * fps)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            x = 10 + round(44 * i / max(frames - 1, 1))
            image = scene([("square", "purple", (x, 32))])
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("video", nargs="?", type=Path, default=None)
    args = p.parse_args(argv)
    model, _ = load_model(args.model)
    out = out_dir(args.out, "video")
    store = MediaStore(out / "media")
    video = store.add_video(args.video or write_clip(out / "clip.mp4"))
    print(f"video: {video.duration_seconds:.1f} s, {video.n_frames} frames at {video.fps:g} fps")
    handles = MediaHandles()
    handles.handle("video", video)
    progress = []
    context = ToolContext(
        model=model, media_store=store, handles=handles, on_progress=lambda f, m: progress.append((f, m))
    )
    tool = AnswerAboutVideo()
    for question in ("where did the square move?", "what colour is the square?"):
        arguments = tool.validate_arguments({"video": "video_1", "question": question, "max_frames": 6})
        output = tool.run(arguments, context)
        stamps = [round(t, 2) for chunk in output.data["chunks"] for t in chunk["timestamps"]]
        print(f"Q: {question}\nA: {output.text}\n   (frames at {stamps} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
