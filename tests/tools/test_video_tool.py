"""answer_about_video on real PyAV clips with the random-weight model: frames by seeking, chunking and merging,
and bad videos (corrupt, empty, huge) giving a MediaError that names the handle and the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emu_agent.errors import MediaError, ToolError
from emu_agent.model.prompting import VideoFrames
from emu_agent.tools.base import ToolContext
from emu_agent.tools.inputs import BUILTIN_SPECS
from emu_agent.tools.video import NO_ANSWER, AnswerAboutVideo, ChunkAnswer, merge_chunk_answers, video_prompt

pytest.importorskip("av")


@pytest.fixture
def video(context: ToolContext, make_clip: Any, tmp_path: Path) -> str:
    ref = context.media_store.add_video(make_clip(tmp_path / "clip.mp4", seconds=2.0, fps=10))
    return context.handles.handle("video", ref)


class Recorder:
    """Wraps the model's generate_text to record the prompts (and optionally script the answers)."""

    def __init__(self, model: Any, answers: list[str] | None = None) -> None:
        self.model = model
        self.answers = answers
        self.prompts: list[Any] = []

    def generate_text(self, prompt: Any, **kwargs: Any) -> str:
        self.prompts.append(prompt)
        text = self.model.generate_text(prompt, **kwargs)  # the real model runs either way
        return self.answers[len(self.prompts) - 1] if self.answers else text


def test_frames_enter_the_model_as_video_frames(context: ToolContext, video: str, progress: list) -> None:
    recorder = Recorder(context.model)
    tool = AnswerAboutVideo(recorder, max_new_tokens=4)
    assert tool.spec == BUILTIN_SPECS["answer_about_video"]
    out = tool(video=video, question="what happened?", max_frames=4, context=context)
    [prompt] = recorder.prompts
    assert prompt == video_prompt(prompt[0][1][0], "what happened?")
    frames = prompt[0][1][0]
    assert isinstance(frames, VideoFrames) and len(frames.frames) == 4
    assert frames.timestamps == pytest.approx([0.0, 0.6, 1.3, 1.9], abs=0.051)
    levels = [float(np.asarray(f).mean()) / 4 for f in frames.frames]
    assert levels == pytest.approx([t * 10 for t in frames.timestamps], abs=0.6)  # each frame at its timestamp
    [chunk] = out.data["chunks"]
    assert chunk["timestamps"] == frames.timestamps and out.text == chunk["answer"]
    assert progress[-1] == (1.0, "done")


def test_scene_sampling_and_default_frames(context: ToolContext, video: str) -> None:
    recorder = Recorder(context.model)
    AnswerAboutVideo(recorder, max_new_tokens=2, max_frames=3)(
        video=video, question="what changed?", sampling="scene", context=context
    )
    frames = recorder.prompts[0][0][1][0]
    assert len(frames.frames) == 3 and frames.timestamps[0] == 0.0


def test_long_video_is_chunked_and_answers_merged(context: ToolContext, make_clip: Any, tmp_path: Path) -> None:
    ref = context.media_store.add_video(make_clip(tmp_path / "long.mp4", seconds=12.0, fps=5, gop=5))
    handle = context.handles.handle("video", ref)
    script = ["A red circle.", "a red circle", "It turned blue.", "a red circle", "A red circle", "a red circle."]
    recorder = Recorder(context.model, answers=script)
    tool = AnswerAboutVideo(recorder, max_new_tokens=2, max_gap_seconds=1.0)  # 2 frames x 1 s -> 2 s chunks
    out = tool(video=handle, question="what is there?", max_frames=2, context=context)
    assert len(recorder.prompts) == 6  # 12 s in 2 s chunks
    chunks = out.data["chunks"]
    assert [(c["start"], c["end"]) for c in chunks] == [(2.0 * i, 2.0 * i + 2.0) for i in range(6)]
    times = [t for c in chunks for t in c["timestamps"]]
    assert times == sorted(set(times))  # no frame in two chunks
    assert out.text == "0.0-4.0 s: A red circle.\n4.0-6.0 s: It turned blue.\n6.0-12.0 s: a red circle"


def test_merge_rule() -> None:
    def a(start: float, end: float, text: str) -> ChunkAnswer:
        return ChunkAnswer(start, end, text)

    assert merge_chunk_answers([a(0, 5, "Blue."), a(5, 10, " blue "), a(10, 15, "BLUE!")]) == "Blue."
    assert merge_chunk_answers([a(0, 5, "red"), a(5, 10, "red"), a(10, 15, "blue")]) == (
        "0.0-10.0 s: red\n10.0-15.0 s: blue"
    )
    assert merge_chunk_answers([a(0, 5, "red"), a(5, 10, ""), a(10, 15, "red.")]) == "red"
    assert merge_chunk_answers([a(0, 5, "  ")]) == NO_ANSWER
    assert merge_chunk_answers([a(0, 5, "red"), a(5, 10, "blue"), a(10, 15, "red")]).count("\n") == 2


def test_corrupt_empty_and_huge_videos_name_the_file(context: ToolContext, video: str) -> None:
    tool = AnswerAboutVideo(max_new_tokens=2)
    ref = context.handles.resolve(video)
    path = context.media_store.path_of(ref)
    good = path.read_bytes()

    path.write_bytes(good[: len(good) // 3])  # truncated on disk
    with pytest.raises(MediaError, match=rf"^{video}: .*{path.name}"):
        tool(video=video, question="what happened?", context=context)
    path.write_bytes(b"\x00garbage" * 50)  # corrupt
    with pytest.raises(MediaError, match=rf"^{video}: .*{path.name}.*(corrupt|can't)"):
        tool(video=video, question="what happened?", context=context)
    path.write_bytes(b"")  # empty
    with pytest.raises(MediaError, match=rf"^{video}: video file .*{path.name} is empty"):
        tool(video=video, question="what happened?", context=context)
    path.unlink()  # gone
    with pytest.raises(MediaError, match=rf"^{video}: .*not in the media store"):
        tool(video=video, question="what happened?", context=context)
    path.write_bytes(good)
    with pytest.raises(MediaError, match=rf"^{video}: .*lasts 2.0 s, over this tool's limit of 1 s"):
        AnswerAboutVideo(max_video_seconds=1.0)(video=video, question="q", context=context)
    context.media_store.max_pixels = 1000
    with pytest.raises(MediaError, match=rf"^{video}: .*64x48 = 3,072 pixels per frame, over the limit of 1,000"):
        tool(video=video, question="q", context=context)


def test_unknown_handle_and_too_many_frames(context: ToolContext, video: str) -> None:
    with pytest.raises(ToolError, match="unknown video 'video_7'; the videos in this conversation are: video_1"):
        AnswerAboutVideo()(video="video_7", question="q", context=context)

    class TooLong:
        def generate_text(self, prompt: Any, **kwargs: Any) -> str:
            from emu_agent.errors import ContextLengthError

            raise ContextLengthError("the prompt is 5000 tokens; the context window is 1024")

    with pytest.raises(ToolError, match=r"4 frames of video_1 don't fit .* smaller max_frames"):
        AnswerAboutVideo(TooLong())(video=video, question="q", max_frames=4, context=context)
