"""Tool calls in a model's reply: constrained decoding for local models, parsing with repair for the rest.

Two paths, one format (``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, see
:mod:`emu_agent.agent.prompt`):

- **Constrained** (a local model): :class:`ToolCallConstraint` builds a grammar from the tools' JSON schemas and
  ``tool_choice`` and hands the model a logits processor (:mod:`emu_agent.agent.grammar`), so every call parses
  and validates by construction.
- **Unconstrained** (a remote model, or ``constrained=False``): :func:`parse_reply` finds the calls and repairs
  the usual damage (code fences, trailing commas, single quotes, Python literals, unquoted keys, missing closing
  brackets, ``parameters``/``args`` instead of ``arguments``, arguments given as a JSON string, a tool name in the
  wrong case); :func:`validate_call` drops unknown arguments when that is all that is wrong. What still fails is
  reported in words the model can act on (:func:`retry_message`), and the agent retries a bounded number of times.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from emu_agent.errors import ToolError

__all__ = [
    "ParsedCall",
    "ParsedReply",
    "ToolCallConstraint",
    "loads_lenient",
    "parse_reply",
    "retry_message",
    "validate_call",
]

_BLOCK_RE = re.compile(r"<\s*tool_call\s*>(.*?)(?:<\s*/\s*tool_call\s*>|$)", re.DOTALL)
_FENCE_RE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
TOOL_CHOICES = ("auto", "none", "required")


# ------------------------------------------------------------------------------------------- constraint


@dataclass(frozen=True)
class ToolCallConstraint:
    """What a local model's decoding must follow in one step: the tools and ``tool_choice``.

    ``tool_choice`` is ``"auto"`` (text or calls), ``"none"`` (text only), ``"required"`` (one or more calls) or
    a tool name (exactly one call of that tool). ``max_calls`` bounds the calls of one reply and
    ``max_string_chars`` the free strings inside them (within the schema's own bounds), so a call always fits.
    """

    specs: tuple[Any, ...]
    tool_choice: str = "auto"
    max_calls: int = 4
    max_string_chars: int = 200

    def logits_processor(self, tokenizer: Any, *, max_new_tokens: int | None = None) -> Any:
        """A fresh :class:`~emu_agent.agent.grammar.GrammarLogitsProcessor` for one generation."""
        from emu_agent.agent.grammar import GrammarLogitsProcessor, compile_matcher

        matcher = compile_matcher(
            self.specs,
            self.tool_choice,
            tokenizer,
            max_calls=self.max_calls,
            max_string_chars=self.max_string_chars,
        )
        return GrammarLogitsProcessor(matcher, tokenizer, max_new_tokens=max_new_tokens)


# ------------------------------------------------------------------------------------------- parsing


@dataclass
class ParsedCall:
    """One call found in a reply (not yet validated). ``repairs`` says what was fixed to read it."""

    name: str
    arguments: dict[str, Any]
    raw: str
    repairs: list[str] = field(default_factory=list)


@dataclass
class ParsedReply:
    """A reply split into its text (outside the calls), its calls, and the call blocks that couldn't be read."""

    text: str
    calls: list[ParsedCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _strip_fence(text: str) -> tuple[str, bool]:
    match = _FENCE_RE.match(text)
    return (match.group(1), True) if match else (text, False)


def _scan_strings(text: str) -> list[tuple[int, int, str]]:
    """Spans of JSON/Python string literals: (start, end, quote)."""
    spans = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "\"'":
            j = i + 1
            while j < len(text) and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            spans.append((i, min(j + 1, len(text)), ch))
            i = j + 1
        else:
            i += 1
    return spans


def _requote(text: str) -> str:
    """Single-quoted strings -> double-quoted; an unterminated last string is closed."""
    out = []
    last = 0
    for start, end, quote in _scan_strings(text):
        out.append(text[last:start])
        inner = text[start + 1 : end - 1] if end - start >= 2 and text[end - 1] == quote else text[start + 1 : end]
        if quote == "'":
            inner = inner.replace("\\'", "'").replace('"', '\\"')
        out.append('"' + inner + '"')
        last = end
    out.append(text[last:])
    return "".join(out)


def _outside_strings(text: str, fn: Any) -> str:
    """Apply ``fn`` to the parts of ``text`` outside double-quoted strings."""
    out = []
    last = 0
    for start, end, _ in _scan_strings(text):
        out.append(fn(text[last:start]))
        out.append(text[start:end])
        last = end
    out.append(fn(text[last:]))
    return "".join(out)


def _fix_bare(chunk: str) -> str:
    chunk = re.sub(r"\bTrue\b", "true", chunk)
    chunk = re.sub(r"\bFalse\b", "false", chunk)
    chunk = re.sub(r"\bNone\b", "null", chunk)
    chunk = re.sub(r",\s*([}\]])", r"\1", chunk)  # trailing commas
    return re.sub(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)(\s*:)", r'\1"\2"\3', chunk)  # unquoted keys


def _close_brackets(text: str) -> str:
    """Append the closing brackets that ``text`` (outside its strings) leaves open."""
    inside: set[int] = set()
    for start, end, _ in _scan_strings(text):
        inside.update(range(start, end))
    stack: list[str] = []
    for i, ch in enumerate(text):
        if i in inside:
            continue
        if ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    return text + "".join(reversed(stack))


def loads_lenient(text: str) -> tuple[Any, list[str]]:
    """Parse JSON, repairing common damage; returns the value and what was repaired.

    Raises:
        ValueError: still not JSON after repair (the message says where).
    """
    repairs: list[str] = []
    candidate = text.strip()
    candidate, fenced = _strip_fence(candidate)
    if fenced:
        repairs.append("removed a code fence")
    try:
        return json.loads(candidate), repairs
    except json.JSONDecodeError:
        pass
    start = min((i for i in (candidate.find("{"), candidate.find("[")) if i >= 0), default=-1)
    if start > 0:
        candidate = candidate[start:]
        repairs.append("dropped text before the JSON")
    fixed = _close_brackets(_outside_strings(_requote(candidate), _fix_bare))
    end = max(fixed.rfind("}"), fixed.rfind("]"))
    if 0 <= end < len(fixed) - 1:
        fixed = fixed[: end + 1]
    try:
        value = json.loads(fixed)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos}): {text.strip()[:120]!r}") from exc
    repairs.append("repaired the JSON")
    return value, repairs


def _normalize(value: Any) -> tuple[str, dict[str, Any], list[str]]:
    """``{"name", "arguments"}`` from the shapes models write; raises ValueError naming what is missing."""
    repairs: list[str] = []
    if not isinstance(value, dict):
        raise ValueError(f"a tool call must be a JSON object, got {type(value).__name__}")
    if isinstance(value.get("function"), dict):
        value = value["function"]
        repairs.append("unwrapped 'function'")
    name = value.get("name", value.get("tool", value.get("tool_name")))
    if not isinstance(name, str) or not name:
        raise ValueError('a tool call needs a "name" string')
    arguments: Any = {}
    for key in ("arguments", "parameters", "args", "tool_input", "input"):
        if key in value:
            arguments = value[key]
            if key != "arguments":
                repairs.append(f"read {key!r} as 'arguments'")
            break
    if isinstance(arguments, str):
        arguments, more = loads_lenient(arguments) if arguments.strip() else ({}, [])
        repairs += ["arguments were a JSON string", *more]
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ValueError(f'the "arguments" of {name!r} must be a JSON object, got {type(arguments).__name__}')
    return name, arguments, repairs


def _calls_from_json(body: str) -> list[ParsedCall]:
    value, repairs = loads_lenient(body)
    items = value if isinstance(value, list) else [value]
    calls = []
    for item in items:
        name, arguments, more = _normalize(item)
        calls.append(ParsedCall(name=name, arguments=arguments, raw=body.strip(), repairs=repairs + more))
    return calls


def parse_reply(text: str, *, tool_names: Collection[str] = (), repair: bool = True) -> ParsedReply:
    """Split a reply into text and tool calls.

    Calls are ``<tool_call>...</tool_call>`` blocks (a missing closing marker at the very end is tolerated). With
    ``repair``, a reply that is nothing but a (possibly fenced) JSON object naming one of ``tool_names`` is read
    as a call too.
    """
    reply = ParsedReply(text="")
    pieces: list[str] = []
    last = 0
    for match in _BLOCK_RE.finditer(text):
        pieces.append(text[last : match.start()])
        last = match.end()
        body = match.group(1)
        try:
            calls = _calls_from_json(body) if repair else [_strict_call(body)]
        except ValueError as exc:
            reply.errors.append(f"can't read the tool call {body.strip()[:80]!r}: {exc}")
            continue
        reply.calls.extend(calls)
    pieces.append(text[last:])
    reply.text = "".join(pieces).strip()
    if not reply.calls and not reply.errors and repair and tool_names:
        bare, _ = _strip_fence(reply.text)
        if bare.strip().startswith(("{", "[")):
            try:
                calls = _calls_from_json(reply.text)
            except ValueError:
                calls = []
            if calls and all(_match_name(c.name, tool_names) for c in calls):
                for call in calls:
                    call.repairs.append("read a bare JSON reply as a tool call")
                reply.calls, reply.text = calls, ""
    return reply


def _strict_call(body: str) -> ParsedCall:
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from exc
    if not isinstance(value, dict) or set(value) - {"name", "arguments"} or not isinstance(value.get("name"), str):
        raise ValueError('expected {"name": ..., "arguments": {...}}')
    arguments = value.get("arguments", {})
    if not isinstance(arguments, dict):
        raise ValueError('"arguments" must be an object')
    return ParsedCall(name=value["name"], arguments=arguments, raw=body.strip())


def _match_name(name: str, tool_names: Collection[str]) -> str | None:
    if name in tool_names:
        return name
    canon = {re.sub(r"[\s\-]+", "_", n.strip().lower()): n for n in tool_names}
    return canon.get(re.sub(r"[\s\-]+", "_", name.strip().lower()))


# ------------------------------------------------------------------------------------------- validation


def validate_call(call: ParsedCall, tools: Mapping[str, Any], *, repair: bool = True) -> tuple[Any, BaseModel]:
    """The tool a call names and its validated arguments.

    With ``repair``, a name differing only in case/separators is accepted, and unknown arguments are dropped
    when the rest validates (both noted in ``call.repairs``).

    Raises:
        ToolError: an unknown tool (naming the available ones and the closest) or invalid arguments.
    """
    name = _match_name(call.name, tools) if repair else (call.name if call.name in tools else None)
    if name is None:
        available = ", ".join(sorted(tools)) or "none"
        close = difflib.get_close_matches(call.name, list(tools), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ToolError(f"unknown tool {call.name!r}; the available tools are: {available}.{hint}")
    if name != call.name:
        call.repairs.append(f"tool name {call.name!r} read as {name!r}")
        call.name = name
    tool = tools[name]
    try:
        return tool, tool.validate_arguments(call.arguments)
    except ToolError:
        known = set(getattr(tool.input_model, "model_fields", {}))
        unknown = [key for key in call.arguments if key not in known]
        if not (repair and unknown and known):
            raise
        kept = {k: v for k, v in call.arguments.items() if k in known}
        arguments = tool.validate_arguments(kept)  # raises the remaining problem, if any
        call.repairs.append(f"dropped unknown argument(s) {', '.join(map(repr, unknown))}")
        call.arguments = kept
        return tool, arguments


def retry_message(problems: Sequence[str], *, tool_choice: str = "auto") -> str:
    """What the model is told when its reply had to be rejected: the problems and the expected format."""
    need = ""
    if tool_choice == "required":
        need = " You must call a tool."
    elif tool_choice not in ("auto", "none"):
        need = f" You must call the tool {tool_choice!r}."
    listed = "; ".join(problems)
    return (
        f"Your last reply could not be used: {listed}.{need} Answer again. To call a tool, write "
        '<tool_call>{"name": ..., "arguments": {...}}</tool_call> with valid JSON matching its parameters.'
    )
