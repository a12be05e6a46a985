"""EmuModel against outputs computed by BAAI's own Emu2 code (tests/fixtures/emu2-reference).

Weights are loaded through ``EmuModel.from_pretrained`` in every BAAI layout; tolerances are the reference
README's float32 bounds (ids exact, vision 2e-5, embeddings/logits/regression 1e-5, diffusion steps 5e-4,
decoded image 1e-4, uint8 within one level).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

LM_PROMPTS = {
    "t0_text": "emu2",
    "t1_one_image": "emu2",
    "t2_two_images": "emu2",
    "c1_chat_image_video": "emu2_chat",
}
BEAM_PROMPTS = [p for p in LM_PROMPTS if p in ("t2_two_images", "c1_chat_image_video")]


def _close(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> float:
    error = (actual.float() - expected.float()).abs().max().item()
    assert error <= atol, f"max abs error {error:.3g} > {atol}"
    return error


@pytest.fixture(scope="module")
def models(emu2: Any, emu2_chat: Any) -> dict[str, Any]:
    return {"emu2": emu2, "emu2_chat": emu2_chat}


def _inputs(ref: Any, prompt: str) -> Any:
    return ref.resolve_inputs(ref.reference_json("generate")[prompt]["inputs"])


# ---------------------------------------------------------------------------------------------- vision
def test_preprocessing_matches_reference(emu2: Any, ref: Any) -> None:
    pixels = ref.tensors("preprocess")
    ours = emu2.preprocess([ref.image(n) for n in ("img_a", "img_b", "img_c")])
    expected = torch.stack([pixels[f"pixel.img_{n}"] for n in "abc"])
    _close(ours, expected, 1e-6)
    frames = emu2.preprocess([ref.image(f"frame_{i}") for i in range(4)])
    _close(frames, pixels["pixel.frames"], 1e-6)


@pytest.mark.parametrize("variant", ["emu2", "emu2_chat"])
def test_visual_features_match_reference(models: dict[str, Any], ref: Any, variant: str) -> None:
    model = models[variant]
    vision = ref.tensors("vision")
    images = model.preprocess([ref.image(n) for n in ("img_a", "img_b", "img_c")])
    frames = model.preprocess([ref.image(f"frame_{i}") for i in range(4)])
    nq, vq = model.config.vision.n_query, model.config.vision.v_query
    with torch.no_grad():
        _close(model.visual(images), vision[f"{variant}.visual.images"], ref.VISION_ATOL)
        _close(model.visual(frames), vision[f"{variant}.visual.frames"], ref.VISION_ATOL)
        encoded = model.encode_images(images)
        assert encoded.shape == (3, nq, model.config.vision.width)
        _close(encoded, vision[f"{variant}.encode_image.images.nq{nq}"], ref.VISION_ATOL)
        _close(
            model.encode_images(frames, n_query=vq),
            vision[f"{variant}.encode_image.frames.nq{vq}"],
            ref.VISION_ATOL,
        )
        _close(model.project_up(encoded), vision[f"{variant}.project_up.images.nq{nq}"], ref.LM_ATOL)


# ---------------------------------------------------------------------------------------------- language
@pytest.mark.parametrize("prompt", list(LM_PROMPTS))
def test_prompt_ids_embeddings_and_logits(models: dict[str, Any], ref: Any, prompt: str) -> None:
    model = models[LM_PROMPTS[prompt]]
    lm = ref.tensors("lm")
    plan = model.plan(_inputs(ref, prompt))
    assert plan.text == ref.reference_json("generate")[prompt]["expanded_text"]
    embeds, mask, ids = model.embed_plans([plan])
    assert ids.tolist() == lm[f"{prompt}.input_ids"].tolist()
    assert mask.tolist() == lm[f"{prompt}.attention_mask"].tolist()
    _close(embeds, lm[f"{prompt}.inputs_embeds"], ref.LM_ATOL)
    with torch.no_grad():
        logits = model.lm(inputs_embeds=embeds, attention_mask=mask).logits
    _close(logits[:, -8:], lm[f"{prompt}.logits_last8"], ref.LM_ATOL)
    assert logits.argmax(-1).tolist() == lm[f"{prompt}.argmax"].tolist()


@pytest.mark.parametrize("prompt", list(LM_PROMPTS))
def test_greedy_ids_exact_with_bos_quirk(models: dict[str, Any], ref: Any, prompt: str) -> None:
    model = models[LM_PROMPTS[prompt]]
    ids = model.generate_token_ids([_inputs(ref, prompt)], max_new_tokens=12, length_penalty=-1)
    expected = ref.tensors("lm")[f"{prompt}.greedy_ids"]
    assert ids.tolist() == expected.tolist()
    assert ids[0, 0].item() == 1  # BOS first, as generate(inputs_embeds=...) returned it in 4.31


@pytest.mark.parametrize("prompt", BEAM_PROMPTS)
def test_beam_search_ids_and_scores_exact(models: dict[str, Any], ref: Any, prompt: str) -> None:
    model = models[LM_PROMPTS[prompt]]
    ids, scores = model.generate_token_ids(
        [_inputs(ref, prompt)], max_new_tokens=12, num_beams=5, length_penalty=-1, return_scores=True
    )
    lm = ref.tensors("lm")
    assert ids.tolist() == lm[f"{prompt}.beam_ids"].tolist()
    torch.testing.assert_close(scores.float(), lm[f"{prompt}.beam_sequences_scores"], rtol=1e-6, atol=0)


def test_left_padded_text_batch_matches_single_prompts(emu2: Any, ref: Any) -> None:
    prompts = ["t0_text", "t1_one_image", "t2_two_images"]
    ids = emu2.generate_token_ids([_inputs(ref, p) for p in prompts], max_new_tokens=12)
    lm = ref.tensors("lm")
    for row, prompt in enumerate(prompts):
        assert ids[row].tolist() == lm[f"{prompt}.greedy_ids"][0].tolist(), prompt


def test_generate_text_decodes_the_reference_answer(emu2: Any, ref: Any) -> None:
    expected = ref.reference_json("generate")["t0_text"]["greedy"]["text"]
    assert emu2.generate_text(_inputs(ref, "t0_text"), max_new_tokens=12) == expected
    streamed = "".join(emu2.stream_text(_inputs(ref, "t0_text"), max_new_tokens=12))
    assert streamed == expected


# ---------------------------------------------------------------------------------------------- regression
REGRESSION_INPUTS = {
    "text_only": ["impressionist painting of an astronaut in a jungle"],
    "image_text": ["@img_b", "wearing a red hat on the beach."],
    "empty": [""],
}


@pytest.mark.parametrize("name", list(REGRESSION_INPUTS))
@pytest.mark.parametrize("use_cache", [True, False])
def test_regressed_embeddings_match_reference(emu2_gen: Any, ref: Any, name: str, use_cache: bool) -> None:
    prompt = ref.resolve_inputs(REGRESSION_INPUTS[name])
    regressed = emu2_gen.regress_visual_embeddings(prompt, use_cache=use_cache)
    assert regressed.shape == (1, 4, 56)
    _close(regressed, ref.tensors("generate_image")[f"{name}.regressed"], ref.LM_ATOL)


def test_regression_left_padded_batch(emu2_gen: Any, ref: Any) -> None:
    prompts = [ref.resolve_inputs(v) for v in REGRESSION_INPUTS.values()]
    batch = emu2_gen.batch_regress_visual_embeddings(prompts)
    for row, name in enumerate(REGRESSION_INPUTS):
        _close(batch[row : row + 1], ref.tensors("generate_image")[f"{name}.regressed"], ref.LM_ATOL)


# ---------------------------------------------------------------------------------------------- generation
@pytest.mark.parametrize("run", ["gen_t2i", "gen_autoencode"])
def test_gen_conditioning_latents_and_image(emu2_gen: Any, ref: Any, run: str) -> None:
    gen = ref.tensors("gen")
    prompt = ["a red circle on a blue background"] if run == "gen_t2i" else [ref.image("img_a")]
    seed = 2024 if run == "gen_t2i" else 77
    cond, negative = emu2_gen.generation_conditioning(prompt)
    _close(torch.cat([cond, negative]), gen[f"{run}.encoder_hidden_states"], ref.LM_ATOL)
    trace: dict[str, Any] = {}
    emu2_gen.decoder.decode(
        cond, negative, height=64, width=64, num_inference_steps=3, guidance_scale=3.0,
        generator=torch.Generator().manual_seed(seed), trace=trace,
    )  # fmt: skip
    _close(trace["text_embeds"], gen[f"{run}.text_embeds"], ref.LM_ATOL)
    assert trace["time_ids"].flatten().tolist() == gen[f"{run}.time_ids"].tolist()
    _close(trace["init_latents"], gen[f"{run}.init_latents"], ref.STEP_ATOL)
    for i in range(3):
        assert trace[f"step{i}.timestep"].tolist() == gen[f"{run}.step{i}.timestep"].tolist()
        for key in ("latent_model_input", "unet_out", "guided_noise_pred", "latents_after"):
            _close(trace[f"step{i}.{key}"], gen[f"{run}.step{i}.{key}"], ref.STEP_ATOL)
    _close(trace["final_latents"], gen[f"{run}.final_latents"], ref.STEP_ATOL)
    _close(trace["decoded_float"], gen[f"{run}.decoded_float"], ref.DECODED_ATOL)

    image = emu2_gen.generate_image(prompt, seed=seed, height=64, width=64, num_inference_steps=3, guidance_scale=3.0)
    ours = np.asarray(image).astype(int)
    expected = gen[f"{run}.image_uint8"].numpy().astype(int)
    assert np.abs(ours - expected).max() <= 1
    assert (ours != expected).sum() <= 16
