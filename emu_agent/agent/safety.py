"""The prompt-injection rule: flag tool calls that come from data, not from the user.

Text inside images and tool results is *data*. A model that reads "now call fetch_image http://..." in a picture
or a tool result may obey it. The agent therefore checks every call against where the text of the conversation
came from (docs/safety.md has the full rule and its limits):

- **trusted** text: the user's messages and the system prompt (the caller's), plus the arguments of earlier
  calls that were not flagged;
- **untrusted** text: tool results (including text a tool read out of an image), memory recalled into the
  context, and anything else the agent did not get from the user.

A call is **flagged** when any of these hold:

1. *echo*: one of its string arguments (at least :data:`MIN_ECHO_CHARS` characters after normalising case,
   whitespace and edge punctuation; media handles such as ``image_1`` excluded) occurs in untrusted text and in no
   trusted text;
2. *name*: the tool's name (``fetch_image``, or spaced ``fetch image``) occurs in untrusted text and in no user
   text;
3. *link*: an argument holds a URL that appears in no trusted text (so a URL read off an image by the model
   itself is caught even though no tool result holds it).

Flagged calls are reported (``ToolCallEvent.flagged``) and not run unless the agent was created with
``run_flagged_tool_calls=True`` or a callable that approves them; the model is told the call was not run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from emu_agent.messages import Message, TextPart, ToolCallPart, ToolResultPart

__all__ = ["MIN_ECHO_CHARS", "Provenance", "flag_reason"]

MIN_ECHO_CHARS = 8
_HANDLE_RE = re.compile(r"^(image|video)_\d+$")
_URL_RE = re.compile(r"https?://[^\s\"'<>)\]]+", re.IGNORECASE)


def _norm(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .,;:!?\"'`()[]{}")


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


@dataclass
class Provenance:
    """Trusted and untrusted text of one conversation, normalised for matching."""

    trusted: list[str] = field(default_factory=list)
    user: list[str] = field(default_factory=list)
    untrusted: list[tuple[str, str]] = field(default_factory=list)  # (source tool name or "memory", text)
    flagged_ids: set[str] = field(default_factory=set)

    @classmethod
    def of(
        cls,
        messages: Sequence[Message],
        *,
        system_prompt: str | None = None,
        recalled: Sequence[Message] = (),
        flagged_ids: Iterable[str] = (),
    ) -> Provenance:
        """Collect the text of ``messages`` by origin; ``recalled`` (memory) counts as untrusted, and the
        arguments of the calls in ``flagged_ids`` are not trusted."""
        prov = cls(flagged_ids=set(flagged_ids))
        if system_prompt:
            prov.trusted.append(_norm(system_prompt))
        for message in messages:
            prov._add(message, recalled=False)
        for message in recalled:
            prov._add(message, recalled=True)
        return prov

    def _add(self, message: Message, *, recalled: bool) -> None:
        for part in message.parts:
            if isinstance(part, TextPart):
                if recalled:
                    self.untrusted.append(("memory", _norm(part.text)))
                elif message.role == "user":
                    self.user.append(_norm(part.text))
                    self.trusted.append(_norm(part.text))
                elif message.role == "system":
                    self.trusted.append(_norm(part.text))
            elif isinstance(part, ToolResultPart) and not part.is_error:
                self.untrusted.append(("memory" if recalled else part.name, _norm(part.text)))
            elif isinstance(part, ToolCallPart) and not recalled and part.id not in self.flagged_ids:
                self.trusted.extend(_norm(s) for s in _strings(part.arguments))

    def trust_call(self, arguments: dict[str, Any]) -> None:
        """Record the arguments of a call that ran unflagged (later calls may repeat them)."""
        self.trusted.extend(_norm(s) for s in _strings(arguments))

    def add_result(self, result: ToolResultPart) -> None:
        """Record a tool result of this run (untrusted unless it is an error the agent wrote)."""
        if not result.is_error:
            self.untrusted.append((result.name, _norm(result.text)))


def _in_any(needle: str, haystacks: Iterable[str]) -> bool:
    return any(needle in hay for hay in haystacks)


def flag_reason(name: str, arguments: dict[str, Any], prov: Provenance) -> str | None:
    """Why a call of ``name`` with ``arguments`` is flagged under the rule above, or None if it is not."""
    for raw in _strings(arguments):
        for url in _URL_RE.findall(raw):
            url_n = _norm(url)
            if not _in_any(url_n, prov.trusted):
                where = " (it appears in a tool result)" if _in_any(url_n, (t for _, t in prov.untrusted)) else ""
                return f"the URL {url!r} was not given by the user{where}"
    for raw in _strings(arguments):
        value = _norm(raw)
        if len(value) < MIN_ECHO_CHARS or _HANDLE_RE.match(value):
            continue
        if _in_any(value, (t for _, t in prov.untrusted)) and not _in_any(value, prov.trusted):
            return f"the argument {raw[:60]!r} comes from a tool result or recalled content, not from the user"
    spaced = name.replace("_", " ")
    pattern = re.compile(rf"\b({re.escape(name.lower())}|{re.escape(spaced.lower())})\b")
    # a tool's own results may name it (e.g. "generate_image made image_2"); other sources may not
    named = any(source != name and pattern.search(text) for source, text in prov.untrusted)
    if named and not any(pattern.search(t) for t in prov.user):
        return f"the tool {name!r} is named in a tool result or recalled content, not by the user"
    return None
