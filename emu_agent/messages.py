"""Messages: a role and an ordered list of parts (text, image, video, tool call, tool result).

Parts are pydantic models told apart by their ``type`` field, so a message round-trips through JSON exactly::

    m = Message.user("What changed between", before_ref, "and", after_ref, "?")
    assert Message.model_validate_json(m.model_dump_json()) == m

Images and videos are :class:`~emu_agent.media.ImageRef` / :class:`~emu_agent.media.VideoRef` references
into a :class:`~emu_agent.media.MediaStore` (sha256, mime type, sizes), never base64 pixels. To get refs
parsed from JSON bound to a store (so ``ref.load()`` works), validate with
``Message.model_validate_json(data, context={"media_store": store})``.

Which parts a role may hold: tool calls appear only in ``assistant`` messages, tool results only in ``tool``
messages, and a ``tool`` message holds only tool results.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emu_agent.errors import InputError
from emu_agent.media import ImageRef, VideoRef

__all__ = [
    "ContentItem",
    "ImagePart",
    "Message",
    "Part",
    "Role",
    "TextPart",
    "ToolCallPart",
    "ToolResultPart",
    "VideoPart",
]

Role = Literal["system", "user", "assistant", "tool"]


class _PartBase(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_PartBase):
    """A run of text."""

    type: Literal["text"] = "text"
    text: str


class ImagePart(_PartBase):
    """An image, by reference into a media store."""

    type: Literal["image"] = "image"
    image: ImageRef


class VideoPart(_PartBase):
    """A video, by reference into a media store."""

    type: Literal["video"] = "video"
    video: VideoRef


class ToolCallPart(_PartBase):
    """A call the assistant asks for: ``id`` pairs it with its :class:`ToolResultPart`."""

    type: Literal["tool_call"] = "tool_call"
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


ResultContent = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ToolResultPart(_PartBase):
    """The result of a tool call: interleaved text and images, flagged ``is_error`` when the tool failed.

    ``content`` also accepts plain ``str`` and :class:`ImageRef` items, which become parts.
    """

    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    content: list[ResultContent] = Field(default_factory=list)
    is_error: bool = False

    @field_validator("content", mode="before")
    @classmethod
    def _coerce_content(cls, value: Any) -> Any:
        if isinstance(value, (str, ImageRef, TextPart, ImagePart)):
            value = [value]
        if isinstance(value, (list, tuple)):
            return [_coerce_item(item, allow_video=False) for item in value]
        return value

    @property
    def text(self) -> str:
        """The concatenated text of the result."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def images(self) -> list[ImageRef]:
        """The images of the result, in order."""
        return [p.image for p in self.content if isinstance(p, ImagePart)]


Part = Annotated[
    TextPart | ImagePart | VideoPart | ToolCallPart | ToolResultPart,
    Field(discriminator="type"),
]
#: What the convenience constructors take: text, media refs, or ready-made parts.
ContentItem = str | ImageRef | VideoRef | TextPart | ImagePart | VideoPart | ToolCallPart | ToolResultPart


class Message(BaseModel):
    """A role and an ordered list of parts.

    Build one with :meth:`user`, :meth:`assistant`, :meth:`system` or :meth:`tool`, which take an interleaved
    mix of ``str``, :class:`ImageRef`, :class:`VideoRef` and parts. ``parts`` also accepts those items.
    """

    model_config = ConfigDict(extra="forbid")

    role: Role
    parts: list[Part] = Field(default_factory=list)

    @field_validator("parts", mode="before")
    @classmethod
    def _coerce_parts(cls, value: Any) -> Any:
        if isinstance(value, (str, ImageRef, VideoRef)):
            value = [value]
        if isinstance(value, (list, tuple)):
            return [_coerce_item(item, allow_video=True) for item in value]
        return value

    @model_validator(mode="after")
    def _check_roles(self) -> Self:
        for part in self.parts:
            if isinstance(part, ToolCallPart) and self.role != "assistant":
                raise ValueError(f"tool call {part.name!r} in a {self.role!r} message; only 'assistant' may call")
            if isinstance(part, ToolResultPart) and self.role != "tool":
                raise ValueError(f"tool result {part.name!r} in a {self.role!r} message; use a 'tool' message")
            if self.role == "tool" and not isinstance(part, ToolResultPart):
                raise ValueError(f"a 'tool' message holds only tool results, got a {part.type!r} part")
        return self

    # ------------------------------------------------------------ constructors

    @classmethod
    def of(cls, role: Role, *content: ContentItem) -> Message:
        """A message of ``role`` from an interleaved mix of text, refs and parts.

        Raises:
            InputError: an item of an unsupported type, or a part the role can't hold.
        """
        try:
            return cls(role=role, parts=[_coerce_item(item, allow_video=True, strict=True) for item in content])
        except ValidationError as exc:
            reasons = "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in exc.errors())
            raise InputError(f"can't build a {role!r} message: {reasons}") from exc

    @classmethod
    def user(cls, *content: ContentItem) -> Message:
        """A user message, e.g. ``Message.user("What is this?", image_ref)``."""
        return cls.of("user", *content)

    @classmethod
    def assistant(cls, *content: ContentItem) -> Message:
        """An assistant message: text, images, videos and tool calls."""
        return cls.of("assistant", *content)

    @classmethod
    def system(cls, *content: ContentItem) -> Message:
        """A system message (usually just text)."""
        return cls.of("system", *content)

    @classmethod
    def tool(cls, *results: ToolResultPart) -> Message:
        """A tool message holding one or more tool results."""
        return cls.of("tool", *results)

    # ------------------------------------------------------------ views

    @property
    def text(self) -> str:
        """The text parts concatenated with no separator (tool-result text included, in order)."""
        chunks: list[str] = []
        for part in self.parts:
            if isinstance(part, (TextPart, ToolResultPart)):
                chunks.append(part.text)
        return "".join(chunks)

    @property
    def images(self) -> list[ImageRef]:
        """Every image referenced, in order, including those inside tool results."""
        refs: list[ImageRef] = []
        for part in self.parts:
            if isinstance(part, ImagePart):
                refs.append(part.image)
            elif isinstance(part, ToolResultPart):
                refs.extend(part.images)
        return refs

    @property
    def videos(self) -> list[VideoRef]:
        """Every video referenced, in order."""
        return [p.video for p in self.parts if isinstance(p, VideoPart)]

    @property
    def tool_calls(self) -> list[ToolCallPart]:
        """The tool calls in this message, in order."""
        return [p for p in self.parts if isinstance(p, ToolCallPart)]

    @property
    def tool_results(self) -> list[ToolResultPart]:
        """The tool results in this message, in order."""
        return [p for p in self.parts if isinstance(p, ToolResultPart)]


def _coerce_item(item: Any, *, allow_video: bool, strict: bool = False) -> Any:
    """Wrap a str / ImageRef / VideoRef into its part; other values pass through (pydantic validates them).

    With ``strict``, anything that is neither one of those nor a part raises :class:`InputError`.
    """
    if isinstance(item, str):
        return TextPart(text=item)
    if isinstance(item, ImageRef):
        return ImagePart(image=item)
    if isinstance(item, VideoRef) and allow_video:
        return VideoPart(video=item)
    if strict and not isinstance(item, _PartBase):
        raise InputError(
            f"message content must be str, ImageRef, VideoRef or a part, not {type(item).__name__}: {item!r:.80}"
        )
    return item
