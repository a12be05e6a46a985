"""``answer_about_video``: answer a question about a video from frames sampled by seeking.

Frames are sampled with :func:`emu_agent.video_sampling.sample_frames` (PyAV, seeking, timestamps kept) and enter
the model as video frames in a chat prompt, ``[("user", [VideoFrames(frames, timestamps), question])]``, the form
emu-tiny's video QA trains on (:func:`video_prompt`).

Long videos are chunked (:func:`~emu_agent.video_sampling.plan_chunks`): when ``max_frames`` frames over the
whole clip would be more than ``max_gap_seconds`` apart, the clip is cut into equal chunks (at most
``max_chunks``), each chunk gets its own ``max_frames`` frames and its own answer, and the answers are merged by
:func:`merge_chunk_answers`:

1. answers are compared after normalisation (case, surrounding whitespace and final punctuation ignored);
   empty answers are dropped;
2. consecutive chunks with the same answer are joined into one time range;
3. one range left: that answer alone (the whole video agrees);
4. several: one line per range, ``"0.0-15.0 s: <answer>"``, in time order, so the model (and the user) see
   what happened when.

Bad input gives a :class:`~emu_agent.errors.MediaError` naming the handle and the file: a corrupt, truncated or
empty file, a file without a video stream or decodable frame, a video longer than ``max_video_seconds`` or with
frames larger than the media store's ``max_pixels``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from emu_agent.errors import MediaError, PromptError, ToolError
from emu_agent.model.prompting import VideoFrames
from emu_agent.tools.base import Tool, ToolContext, ToolOutput
from emu_agent.tools.image_generation import require_model
from emu_agent.tools.inputs import AnswerAboutVideoInput, builtin_spec
from emu_agent.video_sampling import plan_chunks, probe, sample_frames

__all__ = ["DEFAULT_MAX_FRAMES", "NO_ANSWER", "AnswerAboutVideo", "ChunkAnswer", "merge_chunk_answers", "video_prompt"]

_SPEC = builtin_spec("answer_about_video")
DEFAULT_MAX_FRAMES = 8  # per chunk; BAAI's demo and emu-tiny's clips use up to 8 frames
NO_ANSWER = "I can't tell from the video."


def video_prompt(frames: VideoFrames, question: str) -> list[tuple[str, list[Any]]]:
    """The chat prompt of one video question: the frames, then the question, in the user's turn."""
    return [("user", [frames, question])]


@dataclass
class ChunkAnswer:
    """The answer for one chunk of a video."""

    start: float
    end: float
    answer: str
    timestamps: list[float] = field(default_factory=list)


def _normalise(answer: str) -> str:
    return re.sub(r"\s+", " ", answer.strip().rstrip(".!").strip().lower())


def merge_chunk_answers(answers: Sequence[ChunkAnswer]) -> str:
    """Merge per-chunk answers (see the module docstring for the rule)."""
    groups: list[list[ChunkAnswer]] = []
    for item in answers:
        if not _normalise(item.answer):
            continue
        if groups and _normalise(groups[-1][-1].answer) == _normalise(item.answer):
            groups[-1].append(item)
        else:
            groups.append([item])
    if not groups:
        return NO_ANSWER
    if len(groups) == 1:
        return groups[0][0].answer.strip()
    return "\n".join(f"{g[0].start:.1f}-{g[-1].end:.1f} s: {g[0].answer.strip()}" for g in groups)


class AnswerAboutVideo(Tool):
    """``answer_about_video``: sample frames by seeking, ask the model per chunk, merge the answers.

    Args:
        model: the model to ask; by default the agent's model (``context.model``).
        max_frames: frames per chunk when the call gives none.
        max_gap_seconds, max_chunks: chunking (see :func:`~emu_agent.video_sampling.plan_chunks`).
        max_side: frames are downscaled in the decoder to at most this many pixels on their longer side.
        max_video_seconds: longest video accepted (None: no limit beyond the media store's).
        max_new_tokens: answer length per chunk.
        exact_frames: decode the exact evenly spaced frames instead of snapping to nearby keyframes.
        timeout: seconds before the agent cancels the call.
    """

    name = "answer_about_video"
    description = _SPEC.description
    input_model = AnswerAboutVideoInput

    def __init__(
        self,
        model: Any = None,
        *,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_gap_seconds: float = 4.0,
        max_chunks: int = 8,
        max_side: int | None = 512,
        max_video_seconds: float | None = 3600.0,
        max_new_tokens: int = 48,
        exact_frames: bool = False,
        timeout: float | None = 300.0,
    ) -> None:
        self.model = model
        self.max_frames = max_frames
        self.max_gap_seconds = max_gap_seconds
        self.max_chunks = max_chunks
        self.max_side = max_side
        self.max_video_seconds = max_video_seconds
        self.max_new_tokens = max_new_tokens
        self.exact_frames = exact_frames
        self.timeout = timeout

    def run(self, arguments: AnswerAboutVideoInput, context: ToolContext) -> ToolOutput:  # type: ignore[override]
        model = require_model(self.model, context, self.name)
        handle = arguments.video
        ref = context.resolve_video(handle)
        max_frames = arguments.max_frames or self.max_frames
        try:
            info = probe(ref, store=context.media_store)
            if self.max_video_seconds is not None and info.duration_seconds > self.max_video_seconds:
                raise MediaError(
                    f"video file {info.label} lasts {info.duration_seconds:.1f} s, over this tool's limit of "
                    f"{self.max_video_seconds:.0f} s"
                )
            chunks = plan_chunks(
                info.duration_seconds, max_frames, max_gap_seconds=self.max_gap_seconds, max_chunks=self.max_chunks
            )
            answers = []
            for chunk in chunks:
                context.raise_if_cancelled()
                context.report_progress(chunk.index / len(chunks), f"chunk {chunk.index + 1}/{len(chunks)}")
                start, end = (None, None) if len(chunks) == 1 else (chunk.start, chunk.end)
                if chunk.index and start is not None and info.fps:
                    start += 0.5 / info.fps  # the boundary frame belongs to the previous chunk
                frames = sample_frames(
                    ref,
                    max_frames,
                    arguments.sampling,
                    start,
                    end,
                    store=context.media_store,
                    max_side=self.max_side,
                    max_pixels=context.media_store.max_pixels,
                    exact=self.exact_frames,
                )
                answer = self._ask(model, frames, arguments.question, handle)
                answers.append(ChunkAnswer(chunk.start, chunk.end, answer, list(frames.timestamps or [])))
        except MediaError as exc:
            raise MediaError(f"{handle}: {exc}") from exc
        context.report_progress(1.0, "done")
        return ToolOutput(
            text=merge_chunk_answers(answers),
            data={
                "video": ref.sha256,
                "sampling": arguments.sampling,
                "max_frames": max_frames,
                "chunks": [vars(a) for a in answers],
            },
        )

    def _ask(self, model: Any, frames: VideoFrames, question: str, handle: str) -> str:
        try:
            return model.generate_text(video_prompt(frames, question), max_new_tokens=self.max_new_tokens).strip()
        except PromptError as exc:
            raise ToolError(
                f"{len(frames.frames)} frames of {handle} don't fit the model's prompt ({exc}); "
                "ask again with a smaller max_frames"
            ) from exc
