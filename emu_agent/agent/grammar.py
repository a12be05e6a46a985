"""Grammar-constrained decoding of tool calls for a local model, with llguidance.

Why llguidance: it is maintained (used by vLLM, SGLang and llama.cpp), a 3 MB wheel with no Python dependencies,
works from any vocabulary given as a list of token byte strings (so it takes our own
:class:`~emu_agent.model.tokenizer.EmuTokenizer`, SentencePiece or ``tokenizers`` backend alike), compiles JSON
schemas itself (objects, properties, required, enums, consts, string lengths, integer/number bounds, anyOf) and
combines them with a Lark grammar for the text around the calls. xgrammar needs triton; outlines-core only does
regexes, so the "free text, then calls" shape would have to be hand-built as one regex.

The grammar follows the contract in :mod:`emu_agent.agent.prompt`: ``<tool_call>{"name": ..., "arguments":
{...}}</tool_call>``, compact JSON with ``", "`` / ``": "`` separators in schema order (exactly what
:func:`~emu_agent.model.message_rendering.render_tool_call` writes), whitespace allowed around the markers. The
markers may be ordinary text or single special tokens of the tokenizer; both are accepted.

- ``auto``: free text without ``<tool_call>``, or text followed by one or more calls;
- ``none``: free text that never contains ``<tool_call>``;
- ``required``: one or more calls (at most ``max_calls``) and nothing else;
- a tool name: exactly one call of that tool.

Special tokens other than EOS and the markers (``[IMG]``, ``<image>``...) are never allowed inside the grammar.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from typing import Any

from emu_agent.errors import InputError, MissingDependencyError
from emu_agent.model.message_rendering import TOOL_CALL_END, TOOL_CALL_START

__all__ = ["GrammarLogitsProcessor", "build_grammar", "compile_matcher", "decoding_schema", "token_bytes"]

# per tokenizer: (LLTokenizer, vocab size); built once (a few ms for small vocabularies, ~0.3 s for 32k)
_LLG_TOKENIZERS: weakref.WeakKeyDictionary[Any, tuple[Any, int]] = weakref.WeakKeyDictionary()
_MATCHERS: dict[tuple[int, str], Any] = {}


def _import_llguidance() -> Any:
    try:
        import llguidance
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise MissingDependencyError("llguidance", purpose="constrained tool-call decoding") from exc
    return llguidance


def token_bytes(tokenizer: Any) -> tuple[list[bytes], list[int]]:
    """The bytes each token id stands for, and the special ids (control and added tokens).

    Metaspace ``▁`` is a space, byte pieces ``<0xNN>`` are that byte, special tokens are their literal text (the
    grammar only reaches them by id).
    """
    special = sorted(tokenizer._special_ids)
    special_set = set(special)
    out: list[bytes] = []
    for idx in range(len(tokenizer)):
        piece = tokenizer._id_to_token(idx)
        if idx in special_set:
            out.append(piece.encode("utf-8"))
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out.append(bytes([int(piece[3:5], 16)]))
        else:
            out.append(piece.replace("\u2581", " ").encode("utf-8"))
    return out, special


class _GreedyVocab:
    """What llguidance needs of a tokenizer: token bytes, EOS/BOS, special ids and a byte-exact tokenize.

    Tokenizing is greedy longest match over the non-special vocabulary (every byte has a piece, so it always
    succeeds); llguidance uses it only for the canonical form of grammar literals.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokens, self.special_token_ids = token_bytes(tokenizer)
        self.eos_token_id = tokenizer.eos_token_id
        self.bos_token_id = tokenizer.bos_token_id
        special = set(self.special_token_ids)
        self._by_bytes: dict[bytes, int] = {}
        for idx, data in enumerate(self.tokens):  # later (merged) pieces win over byte-fallback pieces
            if idx not in special and data:
                self._by_bytes[data] = idx
        self._longest = max((len(b) for b in self._by_bytes), default=1)

    def __call__(self, text: bytes | str) -> list[int]:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        out: list[int] = []
        i = 0
        while i < len(data):
            for j in range(min(len(data), i + self._longest), i, -1):
                idx = self._by_bytes.get(data[i:j])
                if idx is not None:
                    out.append(idx)
                    i = j
                    break
            else:  # pragma: no cover - byte pieces cover every byte
                raise InputError(f"byte {data[i]:#x} has no token")
        return out


def llg_tokenizer(tokenizer: Any) -> tuple[Any, int]:
    """The llguidance tokenizer for an :class:`EmuTokenizer` (cached per tokenizer) and its vocabulary size."""
    cached = _LLG_TOKENIZERS.get(tokenizer)
    if cached is None:
        llg = _import_llguidance()
        cached = (llg.LLTokenizer(llg.TokenizerWrapper(_GreedyVocab(tokenizer))), len(tokenizer))
        _LLG_TOKENIZERS[tokenizer] = cached
    return cached


def _cap_strings(schema: Any, max_chars: int) -> Any:
    """A copy of ``schema`` whose free strings are at most ``max_chars`` long (so a call always fits)."""
    if isinstance(schema, list):
        return [_cap_strings(x, max_chars) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _cap_strings(v, max_chars) for k, v in schema.items()}
    if out.get("type") == "string" and "enum" not in out and "const" not in out:
        out["maxLength"] = min(int(out.get("maxLength", max_chars)), max_chars)
    return out


def decoding_schema(specs: Sequence[Any], *, max_string_chars: int = 200) -> dict[str, Any]:
    """JSON schema of one call body, ``{"name": <const>, "arguments": <tool schema>}``, any of ``specs``.

    Arguments are closed (``additionalProperties: false``): the model may not invent arguments.
    """
    options = []
    for spec in specs:
        params = dict(spec.parameters)
        params.setdefault("type", "object")
        params.setdefault("properties", {})
        params["additionalProperties"] = False
        params = _cap_strings(params, max_string_chars)
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": spec.name}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    schema["x-guidance"] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
    return schema


def _marker(tokenizer: Any, text: str) -> str:
    """A grammar expression for a marker: the special token when the tokenizer has one, else the literal."""
    literal = json.dumps(text)
    if text in getattr(tokenizer, "special_tokens", ()):
        return f"(<[{tokenizer.convert_tokens_to_ids(text)}]> | {literal})"
    return literal


def build_grammar(
    specs: Sequence[Any], tool_choice: str, tokenizer: Any, *, max_calls: int = 4, max_string_chars: int = 200
) -> str:
    """The Lark grammar (llguidance dialect) of one assistant reply under ``tool_choice``."""
    no_text_marker = "TEXT: /(?s:.+)/ & ~/(?s:.*)<tool_call>(?s:.*)/"
    header = '%llguidance {"no_forcing": true}\n'
    if tool_choice == "none" or not specs:
        return header + "start: TEXT?\n" + no_text_marker + "\n"
    if tool_choice not in ("auto", "required"):
        specs = [s for s in specs if s.name == tool_choice]
        if not specs:
            raise InputError(f"tool_choice {tool_choice!r} names no available tool")
    open_, close = _marker(tokenizer, TOOL_CALL_START), _marker(tokenizer, TOOL_CALL_END)
    body = json.dumps(decoding_schema(specs, max_string_chars=max_string_chars))
    lines = [
        f"call: {open_} WS? body WS? {close}",
        "WS: /[ \\t\\n]{1,3}/",
        f"body: %json {body}",
        no_text_marker,
    ]
    if tool_choice == "auto":
        # free text up to (and including) the first marker; lazy, so it ends right at the marker
        opened = "opened_text"
        if TOOL_CALL_START in getattr(tokenizer, "special_tokens", ()):
            opened += f" | TEXT? <[{tokenizer.convert_tokens_to_ids(TOOL_CALL_START)}]>"
        lines += [
            f"start: TEXT | opened WS? body WS? {close} (WS? call){{0,{max_calls - 1}}} WS?",
            f"opened: {opened}",
            "opened_text[lazy]: /(?s:.*)<tool_call>/",
        ]
    elif tool_choice == "required":
        lines.append(f"start: WS? call (WS? call){{0,{max_calls - 1}}} WS?")
    else:
        lines.append("start: WS? call WS?")
    return header + "\n".join(lines) + "\n"


def compile_matcher(specs: Sequence[Any], tool_choice: str, tokenizer: Any, **options: Any) -> Any:
    """A fresh llguidance matcher for the grammar (compiled once per tokenizer and grammar, then copied).

    Raises:
        InputError: the grammar can't be compiled (e.g. a schema feature llguidance doesn't support).
    """
    llg = _import_llguidance()
    lark = build_grammar(specs, tool_choice, tokenizer, **options)
    key = (id(tokenizer), lark)
    proto = _MATCHERS.get(key)
    if proto is None:
        lt, _ = llg_tokenizer(tokenizer)
        proto = llg.LLMatcher(lt, lark, log_level=0)
        if proto.is_error():
            raise InputError(f"can't compile the tool-call grammar: {proto.get_error()}")
        if len(_MATCHERS) > 64:
            _MATCHERS.clear()
        _MATCHERS[key] = proto
    return proto.deep_copy()


def _pressure_masks(tokenizer: Any) -> tuple[Any, Any]:
    """Bool tensors (V,): tokens holding a ``"``, and tokens that close an object/array/call (or EOS)."""
    import torch

    cached = _PRESSURE.get(tokenizer)
    if cached is None:
        data = _token_bytes_cached(tokenizer)
        end = TOOL_CALL_END.encode()
        quotes = torch.tensor([b'"' in b for b in data], dtype=torch.bool)
        closers = torch.tensor([b"}" in b or b"]" in b or b == end for b in data], dtype=torch.bool)
        closers[tokenizer.eos_token_id] = True
        cached = (quotes, closers)
        _PRESSURE[tokenizer] = cached
    return cached


_PRESSURE: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()
_BYTES: weakref.WeakKeyDictionary[Any, list[bytes]] = weakref.WeakKeyDictionary()


def _token_bytes_cached(tokenizer: Any) -> list[bytes]:
    cached = _BYTES.get(tokenizer)
    if cached is None:
        cached = _BYTES[tokenizer] = token_bytes(tokenizer)[0]
    return cached


class GrammarLogitsProcessor:
    """``processor(generated_ids (1, T), logits (1, V)) -> logits`` that keeps decoding inside the grammar.

    Tokens the grammar forbids get ``-inf``; once the grammar is complete only EOS is allowed. Given
    ``max_new_tokens`` it also makes sure a reply is not cut off inside a call:

    - *closing pressure*: inside a call with at most ``reserve`` tokens left, allowed tokens that close what is
      open are preferred (a ``"`` inside a JSON string, else a ``}``, ``]`` or the end marker), so the call
      completes within the budget;
    - after a completed call, if fewer tokens remain than that call took (plus a margin), only EOS is allowed.
    """

    def __init__(self, matcher: Any, tokenizer: Any, *, max_new_tokens: int | None = None, reserve: int = 48) -> None:
        self.matcher = matcher
        self.eos_token_id = tokenizer.eos_token_id
        self.vocab_size = len(tokenizer)
        self.max_new_tokens = max_new_tokens
        self.reserve = reserve
        self.quotes, self.closers = _pressure_masks(tokenizer)
        self.bytes_of = _token_bytes_cached(tokenizer)
        self.in_string = False  # inside a JSON string of the call being written (for closing pressure)
        self._escaped = False
        self.consumed = 0
        self._accept_at = 0
        self._was_accepting = bool(matcher.is_accepting())
        self._longest_call = 0

    @property
    def is_complete(self) -> bool:
        """Whether what was generated so far is a complete reply under the grammar."""
        return bool(self.matcher.is_accepting())

    def _advance(self, generated: Any) -> None:
        ids = generated[0].tolist() if generated.dim() == 2 else generated.tolist()
        for index in range(self.consumed, len(ids)):
            token = int(ids[index])
            if token != self.eos_token_id and not self.matcher.consume_token(token):
                raise InputError(f"constrained decoding left the grammar: {self.matcher.get_error()[:300]}")
            accepting = bool(self.matcher.is_accepting())
            self._track_strings(token, accepting)
            if accepting and not self._was_accepting:  # a call just closed: remember how long it took
                self._longest_call = max(self._longest_call, index + 1 - self._accept_at)
            if accepting:
                self._accept_at = index + 1
            self._was_accepting = accepting
        self.consumed = len(ids)

    def _eos_only(self) -> bool:
        if self.matcher.is_stopped():
            return True
        if self.max_new_tokens is None or not self.matcher.is_accepting() or not self._longest_call:
            return False
        remaining = self.max_new_tokens - self.consumed
        return remaining < self._longest_call + 8

    def __call__(self, generated: Any, logits: Any) -> Any:
        import numpy as np
        import torch

        if logits.shape[0] != 1:
            raise InputError("constrained decoding takes one sequence at a time")
        self._advance(generated)
        allowed = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
        if self._eos_only():
            allowed[self.eos_token_id] = True
        else:
            bits = np.unpackbits(np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8), bitorder="little")
            n = min(self.vocab_size, logits.shape[-1])
            allowed[:n] = torch.from_numpy(bits[:n].astype(bool)).to(logits.device)
            if not bool(allowed.any()):
                allowed[self.eos_token_id] = True
            elif self._under_pressure():
                preferred = torch.zeros_like(allowed)
                mask = self.quotes if self.in_string else self.closers
                preferred[: len(mask)] = mask.to(allowed.device)
                if bool((allowed & preferred).any()):
                    allowed &= preferred
        return logits.masked_fill(~allowed, float("-inf"))

    def _track_strings(self, token: int, accepting: bool) -> None:
        if accepting or token >= len(self.bytes_of):  # between calls (or free text): nothing is open
            self.in_string, self._escaped = False, False
            return
        for byte in self.bytes_of[token]:
            if self._escaped:
                self._escaped = False
            elif self.in_string and byte == 0x5C:  # backslash
                self._escaped = True
            elif byte == 0x22:  # quote
                self.in_string = not self.in_string

    def _under_pressure(self) -> bool:
        if self.max_new_tokens is None or self.matcher.is_accepting():
            return False
        return self.max_new_tokens - self.consumed <= self.reserve
