"""``describe_image``: describe an image for people who can't see it, with accessibility profiles.

The model is asked in the chat form emu-tiny trains its captions on, ``[("user", [image, DESCRIBE_PROMPT])]``
(``READ_TEXT_PROMPT`` for ``purpose="read_text"``), and its answer is shaped by a profile:

- ``purpose="alt_text"``: one sentence of at most :data:`ALT_TEXT_LIMIT` (125) characters, cut at a word
  boundary (with an ellipsis) when longer;
- ``purpose="scene"``: spatial language. Grid cells become phrases a listener can place ("at the top left",
  "in the center"); with ``clock_positions=True`` the eight outer cells become clock positions ("at 10
  o'clock"; 12 is the top). ``detail="detailed"`` gives one sentence per object, ``"brief"`` one sentence;
- ``purpose="read_text"``: the model's reading, unchanged.

**Abstention.** Greedy decoding records the probability of every token it picks; the confidence is their
geometric mean (the per-token perplexity's inverse). Below ``min_confidence`` the tool answers
:data:`ABSTAIN_TEXT` ("I can't tell.") instead of guessing, and reports the draft and the confidence in
``data``. The probabilities come from a ``logits_processor`` hook on ``model.generate_token_ids``; a model without
that hook is scored by beam search (2 beams) instead, whose length-normalised log-probability is the same
geometric mean for the returned sequence.
"""

from __future__ import annotations

import math
import re
from typing import Any

from emu_agent.errors import InputError, PromptError, ToolError
from emu_agent.tools.base import Tool, ToolContext, ToolOutput
from emu_agent.tools.image_generation import require_model
from emu_agent.tools.inputs import DescribeImageInput, builtin_spec

__all__ = [
    "ABSTAIN_TEXT",
    "ALT_TEXT_LIMIT",
    "CLOCK_POSITIONS",
    "DESCRIBE_PROMPT",
    "READ_TEXT_PROMPT",
    "DescribeImage",
    "describe_prompt",
    "fit_alt_text",
    "generate_with_confidence",
    "spatial_language",
]

_SPEC = builtin_spec("describe_image")
#: The caption request emu-tiny trains on (world templates, "caption" kind).
DESCRIBE_PROMPT = "describe the image."
#: The text-reading request (emu-tiny is not trained to read text; a real Emu2-Chat is).
READ_TEXT_PROMPT = "what text is written in the image?"
ABSTAIN_TEXT = "I can't tell."
ALT_TEXT_LIMIT = 125
DEFAULT_MIN_CONFIDENCE = 0.5
MAX_NEW_TOKENS = {"brief": 48, "detailed": 128}

#: Grid cells as clock positions, 12 o'clock at the top (the convention of clock-face descriptions).
CLOCK_POSITIONS: dict[str, str] = {
    "top left": "10 o'clock",
    "top": "12 o'clock",
    "top right": "2 o'clock",
    "right": "3 o'clock",
    "bottom right": "4 o'clock",
    "bottom": "6 o'clock",
    "bottom left": "8 o'clock",
    "left": "9 o'clock",
}
_VERTICAL = {"upper": "top", "lower": "bottom", "top": "top", "bottom": "bottom"}
_SYNONYMS = {
    **{f"{a}{sep}{b}": f"{c} {b}" for a, c in _VERTICAL.items() for b in ("left", "right") for sep in (" ", "-")},
    "upper": "top",
    "lower": "bottom",
    "centre": "center",
    "middle": "center",
}
_CELLS = sorted([*CLOCK_POSITIONS, "center", *_SYNONYMS], key=len, reverse=True)
_CELL_PHRASE = re.compile(rf"\b(?:at|in) (?:the )?({'|'.join(re.escape(c) for c in _CELLS)})\b", re.IGNORECASE)


def describe_prompt(image: Any, purpose: str = "scene") -> list[tuple[str, list[Any]]]:
    """The chat prompt for a description (or a text reading) of ``image``."""
    return [("user", [image, READ_TEXT_PROMPT if purpose == "read_text" else DESCRIBE_PROMPT])]


# ---------------------------------------------------------------------------------------------- text shaping


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?…" else text + "."


def fit_alt_text(text: str, limit: int = ALT_TEXT_LIMIT) -> str:
    """One sentence of at most ``limit`` characters; cut at the last word boundary (plus "…") when longer."""
    text = _sentence(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > 0:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"


def spatial_language(text: str, *, clock: bool = False) -> str:
    """Grid-cell phrases as spoken positions: "at top left" -> "at the top left" (or "at 10 o'clock"), "at
    center" -> "in the center". Synonyms (upper/lower, centre/middle, hyphenated) are normalised."""

    def place(match: re.Match[str]) -> str:
        cell = match.group(1).lower()
        cell = _SYNONYMS.get(cell, cell)
        if cell == "center":
            return "in the center"
        return f"at {CLOCK_POSITIONS[cell]}" if clock else f"at the {cell}"

    return _CELL_PHRASE.sub(place, text)


def _object_sentences(text: str) -> list[str]:
    """A caption's object phrases ("a red circle at top left and a blue square at right") as sentences."""
    return [_sentence(part) for part in re.split(r",? and (?=an? )|; |\. ", text.strip()) if part.strip()]


# ---------------------------------------------------------------------------------------------- confidence


def _decode(model: Any, row: Any) -> str:
    tokenizer = model.tokenizer
    ids = [int(i) for i in row[1:]]  # drop BOS
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    ids = [i for i in ids if i != tokenizer.pad_token_id]
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def generate_with_confidence(
    model: Any, prompt: Any, *, max_new_tokens: int = 48, context: ToolContext | None = None
) -> tuple[str, float, list[float]]:
    """Greedy answer, its confidence (geometric mean of the picked tokens' probabilities) and those
    probabilities. Falls back to 2-beam search scores when the model has no ``logits_processor`` hook.
    With a ``context``, a cancelled run stops between tokens."""
    import torch

    probabilities: list[float] = []

    def record(_generated: Any, logits: Any) -> Any:
        if context is not None:
            context.raise_if_cancelled()
        probabilities.append(float(torch.softmax(logits[0].float(), dim=-1).max()))
        return logits

    try:
        ids = model.generate_token_ids([prompt], max_new_tokens=max_new_tokens, logits_processor=record)
    except InputError as exc:
        if "logits_processor" not in str(exc):
            raise
        ids, scores = model.generate_token_ids([prompt], max_new_tokens=max_new_tokens, num_beams=2, return_scores=True)
        return _decode(model, ids[0]), math.exp(float(scores[0])), []
    if not probabilities:
        return _decode(model, ids[0]), 0.0, []
    confidence = math.exp(sum(math.log(max(p, 1e-12)) for p in probabilities) / len(probabilities))
    return _decode(model, ids[0]), confidence, probabilities


# ---------------------------------------------------------------------------------------------- the tool


class DescribeImage(Tool):
    """``describe_image`` with accessibility profiles (alt text, spatial scene description, text reading).

    Args:
        model: the model to ask; by default the agent's model (``context.model``).
        min_confidence: below this confidence (0..1) the tool abstains with :data:`ABSTAIN_TEXT`.
        clock_positions: in scene descriptions, name the outer cells as clock positions.
        alt_text_limit: the longest alt text, in characters.
        timeout: seconds before the agent cancels the call.
    """

    name = "describe_image"
    description = _SPEC.description
    input_model = DescribeImageInput

    def __init__(
        self,
        model: Any = None,
        *,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        clock_positions: bool = False,
        alt_text_limit: int = ALT_TEXT_LIMIT,
        timeout: float | None = 120.0,
    ) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise InputError(f"min_confidence must be in [0, 1], got {min_confidence}")
        self.model = model
        self.min_confidence = min_confidence
        self.clock_positions = clock_positions
        self.alt_text_limit = alt_text_limit
        self.timeout = timeout

    def run(self, arguments: DescribeImageInput, context: ToolContext) -> ToolOutput:  # type: ignore[override]
        model = require_model(self.model, context, self.name)
        ref = context.resolve_image(arguments.image)
        image = ref.load()
        prompt = describe_prompt(image, arguments.purpose)
        try:
            draft, confidence, probabilities = generate_with_confidence(
                model, prompt, max_new_tokens=MAX_NEW_TOKENS[arguments.detail], context=context
            )
        except PromptError as exc:
            raise ToolError(f"describe_image could not describe {arguments.image}: {exc}") from exc
        abstained = confidence < self.min_confidence or not draft
        text = ABSTAIN_TEXT if abstained else self.shape(draft, arguments.detail, arguments.purpose)
        return ToolOutput(
            text=text,
            data={
                "image": ref.sha256,
                "purpose": arguments.purpose,
                "detail": arguments.detail,
                "abstained": abstained,
                "confidence": round(confidence, 4),
                "min_confidence": self.min_confidence,
                "draft": draft,
                "token_probabilities": [round(p, 4) for p in probabilities],
            },
        )

    def shape(self, draft: str, detail: str, purpose: str) -> str:
        """Apply the accessibility profile of ``purpose`` to the model's draft."""
        if purpose == "read_text":
            return draft.strip()
        if purpose == "alt_text":
            return fit_alt_text(spatial_language(draft), self.alt_text_limit)
        spoken = spatial_language(draft, clock=self.clock_positions)
        if detail == "detailed":
            return " ".join(_object_sentences(spoken))
        return _sentence(spoken)
