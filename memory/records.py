"""What the memory stores and returns: turns, hits, recalled context; and how a turn maps to Chroma records.

Each stored turn becomes, in the text collection of its scope, one *turn record* (id = the turn id, embedded
from the turn's text) and one *caption record* per image (id ``<turn>#c<i>``, embedded from the caption); and,
in the visual collection, one *image record* per image (id ``<turn>#v<i>``, the model's visual vector). Every
record's document is the turn's message as JSON (so any hit hydrates without a second round trip) and its
metadata carries the scope, timestamp, role, tool names and, for image records, the image's sha256.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from emu_agent.media import MEDIA_STORE_CONTEXT_KEY, ImageRef, MediaStore
from emu_agent.messages import ImagePart, Message, TextPart, ToolCallPart, ToolResultPart, VideoPart

__all__ = [
    "MatchKind",
    "MemoryContext",
    "MemoryHit",
    "MemoryTurn",
    "Modality",
    "caption_id",
    "image_id",
    "record_metadata",
    "turn_document",
    "turn_from_record",
    "turn_text",
]

Modality = Literal["text", "image"]
MatchKind = Literal["text", "caption", "image"]
KIND_TURN, KIND_CAPTION, KIND_IMAGE = "turn", "caption", "image"


class MemoryTurn(BaseModel):
    """One stored turn: the message with its interleaved parts (images as refs bound to the media store)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: str
    namespace: str
    session: str | None
    timestamp: float
    message: Message
    tool_names: tuple[str, ...] = ()
    summarised_turns: int = 0  # > 0: a compaction summary standing for that many older turns

    @property
    def role(self) -> str:
        return self.message.role

    @property
    def images(self) -> list[ImageRef]:
        return self.message.images

    @property
    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, tz=UTC)


class MemoryHit(BaseModel):
    """A recalled turn and why: ``score = semantic weight * semantic + recency weight * recency``.

    ``matched`` says which vector matched best: the turn's ``"text"``, an image ``"caption"`` (text->image,
    image->text) or an image's visual vector (``"image"``, image->image); ``image`` is then the image that matched.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    turn: MemoryTurn
    score: float
    semantic: float
    recency: float
    matched: MatchKind
    image: ImageRef | None = None


@dataclass
class MemoryContext:
    """What :meth:`MultimodalMemory.context_for` recalls to prepend, within a token budget.

    ``hits`` are the recalled turns in chronological order; ``items`` the rendered, interleaved content (text and
    image refs) of :meth:`to_message`; ``tokens`` what it costs, images counted as their visual tokens.
    """

    hits: list[MemoryHit] = field(default_factory=list)
    items: list[str | ImageRef] = field(default_factory=list)
    tokens: int = 0
    budget: int = 0

    def __bool__(self) -> bool:
        return bool(self.hits)

    @property
    def turns(self) -> list[MemoryTurn]:
        return [hit.turn for hit in self.hits]

    @property
    def messages(self) -> list[Message]:
        """The recalled turns' own messages, oldest first."""
        return [hit.turn.message for hit in self.hits]

    def to_message(self, role: Literal["user", "system"] = "user") -> Message | None:
        """One interleaved message holding the whole recalled context (``None`` when nothing was recalled)."""
        if not self.hits:
            return None
        return Message.of(role, *self.items)


# ------------------------------------------------------------------------------------------ turn <-> records


def turn_text(message: Message) -> str:
    """The text a turn is embedded from: text parts, tool calls as ``name(args)``, tool results' text."""
    chunks: list[str] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            chunks.append(part.text)
        elif isinstance(part, ToolCallPart):
            chunks.append(f"{part.name}({json.dumps(part.arguments, ensure_ascii=False, sort_keys=True)})")
        elif isinstance(part, ToolResultPart):
            chunks.append(f"{part.name}: {part.text}")
    return " ".join(c.strip() for c in chunks if c.strip())


def tool_names(message: Message) -> tuple[str, ...]:
    names = [p.name for p in message.parts if isinstance(p, (ToolCallPart, ToolResultPart))]
    return tuple(dict.fromkeys(names))


def caption_id(turn_id: str, index: int) -> str:
    return f"{turn_id}#c{index}"


def image_id(turn_id: str, index: int) -> str:
    return f"{turn_id}#v{index}"


def record_metadata(turn: MemoryTurn) -> dict[str, Any]:
    """The metadata every record of a turn carries: only what filters use (Chroma's query cost grows with it)."""
    return {"session": turn.session or "", "ts": float(turn.timestamp)}


def turn_document(turn: MemoryTurn) -> str:
    """A turn as one JSON document (its message as pydantic's compact JSON, so ``"sha256":"<sha>"`` is findable)."""
    head = {
        "id": turn.id,
        "ns": turn.namespace,
        "session": turn.session,
        "ts": turn.timestamp,
        "tools": list(turn.tool_names),
        "summary": turn.summarised_turns,
    }
    return json.dumps(head, ensure_ascii=False)[:-1] + ',"message":' + turn.message.model_dump_json() + "}"


def turn_from_record(document: str, store: MediaStore) -> MemoryTurn:
    """Rebuild a turn from any of its records' document, image refs bound to ``store``."""
    data = json.loads(document)
    return MemoryTurn(
        id=data["id"],
        namespace=data["ns"],
        session=data["session"],
        timestamp=float(data["ts"]),
        message=Message.model_validate(data["message"], context={MEDIA_STORE_CONTEXT_KEY: store}),
        tool_names=tuple(data.get("tools") or ()),
        summarised_turns=int(data.get("summary") or 0),
    )


def turn_to_json(turn: MemoryTurn) -> dict[str, Any]:
    """The JSONL form of a turn (export)."""
    return {
        "id": turn.id,
        "namespace": turn.namespace,
        "session": turn.session,
        "timestamp": turn.timestamp,
        "message": turn.message.model_dump(mode="json"),
        "tool_names": list(turn.tool_names),
        "summarised_turns": turn.summarised_turns,
    }


def turn_from_json(data: dict[str, Any], store: MediaStore) -> MemoryTurn:
    message = Message.model_validate(data["message"], context={MEDIA_STORE_CONTEXT_KEY: store})
    return MemoryTurn(
        id=str(data["id"]),
        namespace=str(data["namespace"]),
        session=data.get("session"),
        timestamp=float(data["timestamp"]),
        message=message,
        tool_names=tuple(data.get("tool_names") or tool_names(message)),
        summarised_turns=int(data.get("summarised_turns") or 0),
    )


def when(timestamp: float) -> str:
    """``2026-01-31 14:05`` (UTC) for rendering recalled turns."""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M")


def render_items(turn: MemoryTurn) -> list[str | ImageRef]:
    """A turn as interleaved text and image refs for the recalled context (videos become a text note)."""
    head = f"[{when(turn.timestamp)} {turn.message.role}"
    head += f", summary of {turn.summarised_turns} turns]" if turn.summarised_turns else "]"
    items: list[str | ImageRef] = [head + " "]
    for part in turn.message.parts:
        if isinstance(part, TextPart):
            items.append(part.text)
        elif isinstance(part, ImagePart):
            items.append(part.image)
        elif isinstance(part, VideoPart):
            items.append(f"(a {part.video.duration_seconds:.0f} s video)")
        elif isinstance(part, ToolCallPart):
            items.append(f"called {part.name}({json.dumps(part.arguments, ensure_ascii=False)})")
        elif isinstance(part, ToolResultPart):
            items.append(f"{part.name} returned: ")
            items.extend(p.text if isinstance(p, TextPart) else p.image for p in part.content)
    items.append("\n")
    return _merge_text(items)


def _merge_text(items: Sequence[str | ImageRef]) -> list[str | ImageRef]:
    merged: list[str | ImageRef] = []
    for item in items:
        if isinstance(item, str) and merged and isinstance(merged[-1], str):
            merged[-1] = merged[-1] + item
        else:
            merged.append(item)
    return merged


def now() -> float:
    return time.time()
