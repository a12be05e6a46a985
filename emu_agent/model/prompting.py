"""Prompt building for Emu2: interleaved prompts and the Emu2-Chat template, with image and video slots.

A prompt becomes a :class:`PromptPlan`: the text to tokenise, with every image already expanded to
``[IMG]`` + n_query x ``<image>`` + ``[/IMG]`` and every video frame to ``[IMG]`` + v_query x ``[gIMG]`` +
``[/IMG]``, plus the images and frames in slot order. This is exactly what BAAI's ``EmuChatGeneration``
(``Emu2/emu/chat.py``) and ``EmuVisualGeneration`` (``Emu2/emu/diffusion.py``) build.

Forms accepted (see :data:`PromptLike`):
- a string;
- an interleaved list of strings, images (PIL, :class:`~emu_agent.media.ImageRef`) and videos
  (:class:`VideoFrames`, :class:`~emu_agent.media.VideoRef`). The reference's own markers work too:
  ``"[VIDEO]"``, frames..., ``"[/VIDEO]"``;
- a list of :class:`~emu_agent.messages.Message` (or ``(role, items)`` pairs): rendered with the chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from emu_agent.errors import PromptError

__all__ = [
    "GROUND_SYSTEM_MESSAGE",
    "SYSTEM_MESSAGE",
    "PromptPlan",
    "VideoFrames",
    "frame_placeholder",
    "image_placeholder",
    "plan_chat",
    "plan_interleaved",
]

SYSTEM_MESSAGE = "You are a helpful assistant, dedicated to delivering comprehensive and meticulous responses."
GROUND_SYSTEM_MESSAGE = "You are a helpful assistant, dedicated to provide concise and efficient answers."
VIDEO_START = "[VIDEO]"
VIDEO_END = "[/VIDEO]"  # a Python-side marker, not a token: dropped from the text
IMAGE_TOKEN = "<image>"
FRAME_TOKEN = "[gIMG]"


def image_placeholder(n_query: int) -> str:
    return "[IMG]" + IMAGE_TOKEN * n_query + "[/IMG]"


def frame_placeholder(v_query: int) -> str:
    return "[IMG]" + FRAME_TOKEN * v_query + "[/IMG]"


@dataclass
class VideoFrames:
    """Sampled video frames (PIL images or image refs), in order, with optional timestamps in seconds."""

    frames: list[Any]
    timestamps: list[float] | None = None

    def __post_init__(self) -> None:
        if not self.frames:
            raise PromptError("a video needs at least one frame; got 0")
        if self.timestamps is not None and len(self.timestamps) != len(self.frames):
            raise PromptError(f"{len(self.timestamps)} timestamps for {len(self.frames)} frames")


@dataclass
class PromptPlan:
    """Expanded prompt text and the media that fill its slots, in order."""

    text: str
    images: list[Any] = field(default_factory=list)  # fill the <image> slots
    frames: list[Any] = field(default_factory=list)  # fill the [gIMG] slots

    def extend(self, other: PromptPlan) -> None:
        self.text += other.text
        self.images.extend(other.images)
        self.frames.extend(other.frames)


def _is_image(item: Any) -> bool:
    if type(item).__name__ == "ImageRef":
        return True
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(item, Image.Image)


def _is_video(item: Any) -> bool:
    return isinstance(item, VideoFrames) or type(item).__name__ == "VideoRef"


def plan_interleaved(items: str | Sequence[Any], *, n_query: int, v_query: int, video_loader: Any = None) -> PromptPlan:
    """Plain concatenation, as Emu2 (base) and Emu2-Gen take prompts: no system text, no roles.

    ``video_loader`` turns a ``VideoRef`` into :class:`VideoFrames` (the model passes its own).
    """
    if isinstance(items, str):
        items = [items]
    plan = PromptPlan(text="")
    in_video = False
    for index, item in enumerate(items):
        if isinstance(item, str):
            if item == VIDEO_START:
                in_video = True
                plan.text += VIDEO_START
            elif item == VIDEO_END:
                in_video = False
            else:
                plan.text += item
        elif _is_image(item):
            if in_video:
                plan.text += frame_placeholder(v_query)
                plan.frames.append(item)
            else:
                plan.text += image_placeholder(n_query)
                plan.images.append(item)
        elif _is_video(item):
            video = item if isinstance(item, VideoFrames) else _load_video(item, video_loader)
            plan.text += VIDEO_START + frame_placeholder(v_query) * len(video.frames)
            plan.frames.extend(video.frames)
        else:
            raise PromptError(
                f"prompt item {index} has unsupported type {type(item).__name__}; "
                "use str, a PIL image, an ImageRef, a VideoRef or VideoFrames"
            )
    return plan


def _load_video(ref: Any, video_loader: Any) -> VideoFrames:
    if video_loader is None:
        raise PromptError(f"no video loader available for {ref!r}; pass VideoFrames instead")
    return video_loader(ref)


def plan_chat(
    turns: Sequence[tuple[str, Sequence[Any]]],
    *,
    n_query: int,
    v_query: int,
    system_message: str | None = SYSTEM_MESSAGE,
    video_loader: Any = None,
) -> PromptPlan:
    """The Emu2-Chat template (``chat.py:159-195``).

    ``system [USER]: u1 [ASSISTANT]: a1</s>[USER]: u2 [ASSISTANT]:``. ``turns`` are ``(role, items)`` with
    roles ``user`` and ``assistant`` alternating and starting with ``user``; a leading ``system`` turn replaces
    ``system_message``. If the last turn is the user's, the assistant prefix is appended so the model answers;
    if it is the assistant's, its text is continued (prefill).
    """
    turns = list(turns)
    if turns and turns[0][0] == "system":
        system_items = turns.pop(0)[1]
        system_message = "".join(str(x) for x in system_items)
    if not turns:
        raise PromptError("a chat prompt needs at least one user message; got none")
    plan = PromptPlan(text=system_message or "")
    previous = None
    for index, (role, items) in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if role != expected:
            raise PromptError(f"chat message {index} has role {role!r}; roles must alternate user/assistant")
        if role == "user":
            plan.text += " [USER]: " if previous is None else "</s>[USER]: "
        else:
            plan.text += " [ASSISTANT]: "
        plan.extend(plan_interleaved(list(items), n_query=n_query, v_query=v_query, video_loader=video_loader))
        previous = role
    if previous == "user":
        plan.text += " [ASSISTANT]:"
    return plan
