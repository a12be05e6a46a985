"""describe_image: accessibility profiles (alt text, spatial language, clock positions) and abstention judged from
token probabilities: the real random-weight model is unsure and abstains; a confident model (its decoding
monkeypatched to put all probability on a caption) answers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from emu_agent.errors import InputError, ToolError
from emu_agent.tools.base import ToolContext
from emu_agent.tools.describe import (
    ABSTAIN_TEXT,
    ALT_TEXT_LIMIT,
    CLOCK_POSITIONS,
    DESCRIBE_PROMPT,
    READ_TEXT_PROMPT,
    DescribeImage,
    describe_prompt,
    fit_alt_text,
    generate_with_confidence,
    spatial_language,
)
from emu_agent.tools.inputs import BUILTIN_SPECS

CAPTION = "a red circle at top left and a blue square at center and a green triangle at bottom right"


@pytest.fixture
def image(context: ToolContext) -> str:
    ref = context.media_store.add_image(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    return context.handles.handle("image", ref)


def confident(model: Any, monkeypatch: pytest.MonkeyPatch, text: str, probability: float = 0.97) -> list[Any]:
    """Make ``model.generate_token_ids`` emit ``text`` greedily with ``probability`` on every picked token, going
    through the caller's logits processor exactly as the real decoding loop does."""
    tokenizer = model.tokenizer
    prompts: list[Any] = []

    def fake(batch: list[Any], *, logits_processor: Any = None, **kwargs: Any) -> torch.Tensor:
        prompts.append(batch[0])
        ids = [*tokenizer.encode(text, add_bos=False), tokenizer.eos_token_id]
        vocab = len(tokenizer)
        for step, token in enumerate(ids):
            rest = (1 - probability) / (vocab - 1)
            probs = torch.full((1, vocab), rest)
            probs[0, token] = probability
            logits = logits_processor(torch.tensor([ids[:step]]), probs.log())
            assert int(logits.argmax()) == token
        return torch.tensor([[tokenizer.bos_token_id, *ids]])

    monkeypatch.setattr(model, "generate_token_ids", fake)
    return prompts


def test_random_model_is_unsure_and_abstains(context: ToolContext, image: str) -> None:
    tool = DescribeImage()
    assert tool.spec == BUILTIN_SPECS["describe_image"]
    out = tool(image=image, context=context)
    assert out.text == ABSTAIN_TEXT
    assert out.data["abstained"] is True
    assert 0.0 < out.data["confidence"] < 0.05  # ~1/vocab per token for random weights
    assert out.data["draft"] and out.data["token_probabilities"]
    lenient = DescribeImage(min_confidence=0.0)(image=image, context=context)
    assert lenient.data["abstained"] is False and lenient.text != ABSTAIN_TEXT


def test_confidence_is_the_geometric_mean_of_greedy_token_probabilities(context: ToolContext, image: str) -> None:
    model = context.model
    prompt = describe_prompt(context.handles.resolve(image).load())
    text, confidence, probabilities = generate_with_confidence(model, prompt, max_new_tokens=6)
    assert len(probabilities) == 6
    assert confidence == pytest.approx(float(np.exp(np.mean(np.log(probabilities)))))
    assert text == model.generate_text(prompt, max_new_tokens=6).strip()  # the same greedy answer


def test_confident_model_answers_with_spatial_language(
    context: ToolContext, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = confident(context.model, monkeypatch, CAPTION)
    out = DescribeImage()(image=image, context=context)
    assert out.data["abstained"] is False and out.data["confidence"] == pytest.approx(0.97, abs=1e-3)
    assert out.text == (
        "A red circle at the top left and a blue square in the center and a green triangle at the bottom right."
    )
    [prompt] = prompts
    assert prompt[0][0] == "user" and prompt[0][1][1] == DESCRIBE_PROMPT
    assert np.array_equal(np.asarray(prompt[0][1][0]), np.asarray(context.handles.resolve(image).load()))
    detailed = DescribeImage(clock_positions=True)(image=image, detail="detailed", context=context)
    assert detailed.text == ("A red circle at 10 o'clock. A blue square in the center. A green triangle at 4 o'clock.")
    alt = DescribeImage()(image=image, purpose="alt_text", context=context)
    assert len(alt.text) <= ALT_TEXT_LIMIT and alt.text.startswith("A red circle at the top left")


def test_threshold_is_configurable(context: ToolContext, image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    confident(context.model, monkeypatch, CAPTION, probability=0.6)
    assert DescribeImage(min_confidence=0.5)(image=image, context=context).data["abstained"] is False
    assert DescribeImage(min_confidence=0.7)(image=image, context=context).text == ABSTAIN_TEXT
    with pytest.raises(InputError, match="min_confidence"):
        DescribeImage(min_confidence=1.5)


def test_read_text_uses_its_own_prompt(context: ToolContext, image: str, monkeypatch: pytest.MonkeyPatch) -> None:
    prompts = confident(context.model, monkeypatch, "exit")
    out = DescribeImage()(image=image, purpose="read_text", context=context)
    assert out.text == "exit" and prompts[0][0][1][1] == READ_TEXT_PROMPT


def test_beam_search_fallback_without_a_logits_processor_hook(context: ToolContext, image: str) -> None:
    model = context.model

    class OldModel:
        tokenizer = model.tokenizer

        def generate_token_ids(self, prompts: Any, **kwargs: Any) -> Any:
            if "logits_processor" in kwargs:
                raise InputError("invalid generation option(s): logits_processor=<fn>: Extra inputs are not permitted")
            return model.generate_token_ids(prompts, **kwargs)

    prompt = describe_prompt(context.handles.resolve(image).load())
    _, confidence, probabilities = generate_with_confidence(OldModel(), prompt, max_new_tokens=4)
    assert probabilities == [] and 0.0 < confidence < 0.05


def test_alt_text_is_cut_at_a_word_boundary() -> None:
    long = " ".join(["word"] * 60)
    alt = fit_alt_text(long)
    assert len(alt) <= 125 and alt.endswith("word…") and "  " not in alt
    assert fit_alt_text("a red circle") == "A red circle."
    assert fit_alt_text("x" * 200).endswith("…") and len(fit_alt_text("x" * 200)) <= 125
    assert len(fit_alt_text(CAPTION + " " + CAPTION, 60)) <= 60


def test_spatial_language_and_clock_positions() -> None:
    assert spatial_language("a red circle at upper-left? no: at top-left") == (
        "a red circle at the top left? no: at the top left"
    )
    assert spatial_language("a cat in the middle and a dog at lower right") == (
        "a cat in the center and a dog at the bottom right"
    )
    clock = spatial_language("a at top, b at right, c at bottom, d at left, e at centre", clock=True)
    assert clock == "a at 12 o'clock, b at 3 o'clock, c at 6 o'clock, d at 9 o'clock, e in the center"
    assert set(CLOCK_POSITIONS.values()) == {f"{h} o'clock" for h in (10, 12, 2, 3, 4, 6, 8, 9)}


def test_unknown_image_handle(context: ToolContext) -> None:
    with pytest.raises(ToolError, match="unknown image 'image_3'"):
        DescribeImage()(image="image_3", context=context)


def test_cancelled_description_stops(context: ToolContext, image: str) -> None:
    import threading

    cancel = threading.Event()
    cancel.set()
    cancelled = ToolContext(
        model=context.model, media_store=context.media_store, handles=context.handles, cancelled=cancel
    )
    with pytest.raises(ToolError, match="cancelled"):
        DescribeImage()(image=image, context=cancelled)
