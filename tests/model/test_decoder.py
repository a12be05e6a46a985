"""EmuDecoder against BAAI's Emu2-Gen reference runs (tests/fixtures/emu2-reference), plus API behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file

from emu_agent.errors import InputError, ModelLoadError
from emu_agent.model.decoder import EmuDecoder

REF = Path(__file__).resolve().parents[1] / "fixtures" / "emu2-reference"
GEN_FOLDER = REF / "weights" / "Emu2-Gen"
GEN_NATIVE = REF / "weights" / "Emu2-Gen_pytorch_model.bf16.safetensors"
RUNS = ("gen_t2i", "gen_autoencode")
STEPS, GUIDANCE, SIZE = 3, 3.0, 64
# README "Tolerances observed": per-step UNet outputs and latents 5e-4, decoded_float 1e-4, uint8 within 1.
ATOL = {"decoded_float": 1e-4}
STEP_ATOL = 5e-4


@pytest.fixture(scope="module")
def gen_config() -> dict:
    return json.loads((REF / "config.json").read_text())["models"]["emu2_gen"]


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(REF / "reference" / "gen.safetensors")


@pytest.fixture(scope="module")
def gen_json() -> dict:
    return json.loads((REF / "reference" / "gen.json").read_text())


def _native_state(prefixes: tuple[str, ...] = ("unet.", "vae.")) -> dict[str, torch.Tensor]:
    with safe_open(GEN_NATIVE, "pt") as f:  # read only the decoder's keys (caller filters)
        return {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefixes)}  # noqa: SIM118


@pytest.fixture(scope="module")
def decoders(gen_config: dict) -> dict[str, EmuDecoder]:
    folder = EmuDecoder.from_pretrained(GEN_FOLDER, dtype=torch.float32)
    native = EmuDecoder.from_state_dict(
        _native_state(),
        unet_config=gen_config["unet"],
        scheduler_config=gen_config["scheduler"],
        vae_config=gen_config["vae"],
        dtype=torch.float32,
    )
    return {"folder": folder, "native": native}


def _run_reference(dec: EmuDecoder, ref: dict[str, torch.Tensor], run: str, trace: dict) -> PIL.Image.Image:
    ehs = ref[f"{run}.encoder_hidden_states"]  # (2, n, w) rows [cond, neg]
    return dec.decode(
        ehs[:1],
        ehs[1:],
        height=SIZE,
        width=SIZE,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        latents=ref[f"{run}.init_latents"],
        trace=trace,
    )[0]


def test_both_loaders_give_the_same_weights(decoders: dict[str, EmuDecoder]) -> None:
    a, b = decoders["folder"].state_dict(), decoders["native"].state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(v.dtype == torch.float32 and not v.is_meta for v in b.values())
    assert type(decoders["native"].scheduler).__name__ == "EulerDiscreteScheduler"
    assert decoders["native"].vae_scale_factor == 8


@pytest.mark.parametrize("loader", ["folder", "native"])
@pytest.mark.parametrize("run", RUNS)
def test_matches_reference(decoders: dict[str, EmuDecoder], reference: dict, run: str, loader: str) -> None:
    trace: dict = {}
    image = _run_reference(decoders[loader], reference, run, trace)
    errors = {}
    # conditioning: text_embeds = token mean; time_ids (2, 6) == the reference's 1-D [12] flattened
    assert torch.equal(trace["time_ids"].reshape(-1), reference[f"{run}.time_ids"])
    torch.testing.assert_close(trace["text_embeds"], reference[f"{run}.text_embeds"], rtol=0, atol=1e-6)
    torch.testing.assert_close(
        trace["encoder_hidden_states"], reference[f"{run}.encoder_hidden_states"], rtol=0, atol=0
    )
    names = ["init_latents", "final_latents", "decoded_float"]
    for i in range(STEPS):
        names += [
            f"step{i}.{n}" for n in ("timestep", "latent_model_input", "unet_out", "guided_noise_pred", "latents_after")
        ]
    for name in names:
        ours, theirs = trace[name].float(), reference[f"{run}.{name}"]
        assert ours.shape == theirs.shape, name
        errors[name] = (ours - theirs).abs().max().item()
        assert errors[name] <= ATOL.get(name, STEP_ATOL), (name, errors[name])
    ours_u8 = np.asarray(image).astype(int)  # (H, W, 3)
    for theirs_u8 in (
        reference[f"{run}.image_uint8"].numpy(),
        np.asarray(PIL.Image.open(REF / "reference" / f"{run}.png").convert("RGB")),
    ):
        diff = np.abs(ours_u8 - theirs_u8.astype(int))
        assert diff.max() <= 1 and (diff > 0).sum() <= 16, (diff.max(), (diff > 0).sum())


@pytest.mark.parametrize("run", RUNS)
def test_generator_reproduces_reference_noise(
    decoders: dict[str, EmuDecoder], reference: dict, gen_json: dict, run: str
) -> None:
    dec = decoders["native"]
    seed, shape = gen_json[run]["seed"], tuple(gen_json[run]["latent_shape"])
    trace: dict = {}
    ehs = reference[f"{run}.encoder_hidden_states"]
    dec.decode(
        ehs[:1],
        ehs[1:],
        height=SIZE,
        width=SIZE,
        num_inference_steps=STEPS,
        output_type="latent",
        generator=torch.Generator().manual_seed(seed),
        trace=trace,
    )  # sigma_max depends on steps
    assert dec.scheduler.init_noise_sigma == pytest.approx(gen_json[run]["init_noise_sigma"], rel=1e-6)
    torch.testing.assert_close(trace["init_latents"], reference[f"{run}.init_latents"], rtol=0, atol=0)
    torch.manual_seed(seed)
    torch.testing.assert_close(
        trace["init_latents"] / dec.scheduler.init_noise_sigma, torch.randn(shape), rtol=0, atol=1e-6
    )


def test_seed_reproducibility_and_batch(decoders: dict[str, EmuDecoder], reference: dict) -> None:
    dec = decoders["folder"]
    ehs = reference["gen_t2i.encoder_hidden_states"]

    def sample(seed: int, cond: torch.Tensor, output_type: str = "np") -> np.ndarray:
        return dec.decode(
            cond,
            ehs[1:],
            height=SIZE,
            width=SIZE,
            num_inference_steps=2,
            generator=torch.Generator().manual_seed(seed),
            output_type=output_type,
        )

    a, b, c = sample(5, ehs[:1]), sample(5, ehs[:1]), sample(6, ehs[:1])
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.asarray(sample(5, ehs[:1], "pil")[0]).tobytes() == np.asarray(sample(5, ehs[:1], "pil")[0]).tobytes()
    # batch of 2 (negative broadcast from batch 1): row 0 is the batch-1 sample with the same first noise draw
    cond2 = torch.cat([ehs[:1], reference["gen_autoencode.encoder_hidden_states"][:1]])
    steps: list[tuple[int, int]] = []
    images = dec.decode(
        cond2,
        ehs[1:],
        height=SIZE,
        width=SIZE,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(5),
        callback=lambda i, n, lat: steps.append((i, n)),
    )
    assert len(images) == 2 and all(im.size == (SIZE, SIZE) and im.mode == "RGB" for im in images)
    assert steps == [(0, 2), (1, 2)]
    batch = sample(5, cond2)
    assert batch.shape == (2, SIZE, SIZE, 3)
    np.testing.assert_allclose(batch[0], a[0], atol=1e-4)  # noise row 0 identical, per-row conditioning
    assert np.abs(batch[0] - batch[1]).max() > 1e-3
    # latents / pt outputs
    assert dec.decode(ehs[:1], ehs[1:], height=32, width=96, num_inference_steps=1, output_type="latent").shape == (
        1,
        4,
        4,
        12,
    )
    pt = dec.decode(ehs[:1], guidance_scale=1.0, height=32, width=32, num_inference_steps=1, output_type="pt")
    assert pt.shape == (1, 3, 32, 32) and pt.min() >= 0 and pt.max() <= 1


def test_save_pretrained_round_trip(decoders: dict[str, EmuDecoder], reference: dict, tmp_path: Path) -> None:
    dec = decoders["native"]
    dec.save_pretrained(tmp_path / "dec")
    assert {p.name for p in (tmp_path / "dec").iterdir()} == {"unet", "scheduler", "vae"}
    assert list((tmp_path / "dec" / "unet").glob("*.safetensors"))
    again = EmuDecoder.from_pretrained(tmp_path / "dec")
    outs = [
        d.decode(
            reference["gen_t2i.encoder_hidden_states"][:1],
            reference["gen_t2i.encoder_hidden_states"][1:],
            height=SIZE,
            width=SIZE,
            num_inference_steps=2,
            output_type="np",
            generator=torch.Generator().manual_seed(1),
        )
        for d in (dec, again)
    ]
    assert np.array_equal(outs[0], outs[1])


TINY_UNET = {
    "sample_size": 16,
    "in_channels": 3,
    "out_channels": 3,
    "layers_per_block": 1,
    "block_out_channels": [8, 16],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_num_groups": 4,
    "cross_attention_dim": 8,
    "attention_head_dim": 2,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 4,
    "projection_class_embeddings_input_dim": 8 + 6 * 4,
}


@pytest.fixture
def tiny(gen_config: dict) -> EmuDecoder:
    torch.manual_seed(0)
    return EmuDecoder(UNet2DConditionModel(**TINY_UNET), EulerDiscreteScheduler.from_config(gen_config["scheduler"]))


def test_pixel_space_tiny_decoder_runs_and_trains(tiny: EmuDecoder) -> None:
    assert tiny.vae_scale_factor == 1 and tiny.dtype == torch.float32 and tiny.device.type == "cpu"
    emb, neg = torch.randn(2, 3, 8), torch.zeros(1, 3, 8)
    images = tiny.decode(
        emb, neg, height=16, width=32, num_inference_steps=2, generator=torch.Generator().manual_seed(0)
    )
    assert [im.size for im in images] == [(32, 16), (32, 16)]
    trace: dict = {}
    tiny.decode(emb, neg, height=16, width=16, num_inference_steps=1, output_type="latent", trace=trace)
    assert trace["time_ids"].tolist() == [[1024, 1024, 0, 0, 16, 16]] * 4
    torch.testing.assert_close(trace["text_embeds"][:2], emb.mean(1))
    # (x/2 + 0.5).clamp with no VAE
    lat = torch.randn(1, 3, 16, 16)
    torch.testing.assert_close(tiny.decode_latents(lat), (lat / 2 + 0.5).clamp(0, 1))

    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    opt = torch.optim.SGD(tiny.unet.parameters(), lr=1e-3)
    loss = tiny.train_loss(pixels, emb, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in tiny.unet.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    opt.step()
    again = tiny.train_loss(pixels, emb, generator=torch.Generator().manual_seed(0))
    assert again.item() != loss.item()


def test_train_loss_with_vae(decoders: dict[str, EmuDecoder], reference: dict) -> None:
    dec = decoders["folder"]
    emb = reference["gen_t2i.encoder_hidden_states"][:1]
    with torch.enable_grad():
        loss = dec.train_loss(torch.zeros(1, 3, 64, 64), emb, generator=torch.Generator().manual_seed(0))
    assert loss.requires_grad and torch.isfinite(loss)
    dec.zero_grad(set_to_none=True)


def test_bad_inputs(tiny: EmuDecoder) -> None:
    emb, neg = torch.randn(1, 3, 8), torch.zeros(1, 3, 8)
    ok = {"height": 16, "width": 16, "num_inference_steps": 1}
    for bad, match in [
        ({"height": 15}, "height=15"),
        ({"width": 0}, "width=0"),
        ({"height": -16}, "height=-16"),
        ({"num_inference_steps": 0}, "num_inference_steps=0"),
    ]:
        with pytest.raises(InputError, match=match):
            tiny.decode(emb, neg, **{**ok, **bad})
    with pytest.raises(InputError, match=r"\(1, 3, 7\)"):
        tiny.decode(torch.randn(1, 3, 7), torch.zeros(1, 3, 7), **ok)
    with pytest.raises(InputError, match=r"\(3, 8\)"):
        tiny.decode(torch.randn(3, 8), **ok, guidance_scale=1.0)
    with pytest.raises(InputError, match="negative_embeddings"):
        tiny.decode(emb, torch.zeros(1, 4, 8), **ok)
    with pytest.raises(InputError, match="negative_embeddings"):
        tiny.decode(emb, **ok)  # CFG without a negative
    with pytest.raises(InputError, match="latents"):
        tiny.decode(emb, neg, **ok, latents=torch.randn(1, 4, 16, 16))


def test_vae_scale_factor_in_size_check(decoders: dict[str, EmuDecoder], reference: dict) -> None:
    ehs = reference["gen_t2i.encoder_hidden_states"]
    with pytest.raises(InputError, match="multiple of 32"):
        decoders["folder"].decode(ehs[:1], ehs[1:], height=48, width=64, num_inference_steps=1)


def test_key_mismatch_names_keys(gen_config: dict) -> None:
    state = _native_state()
    kwargs = {
        "unet_config": gen_config["unet"],
        "scheduler_config": gen_config["scheduler"],
        "vae_config": gen_config["vae"],
    }
    missing = dict(state)
    del missing["unet.conv_in.weight"]
    with pytest.raises(ModelLoadError, match=r"missing keys: unet\.conv_in\.weight"):
        EmuDecoder.from_state_dict(missing, **kwargs)
    extra = {**state, "unet.bogus.weight": torch.zeros(1), "other.x": torch.zeros(1)}
    with pytest.raises(ModelLoadError, match=r"other\.x"):
        EmuDecoder.from_state_dict(extra, **kwargs)
    extra.pop("other.x")
    with pytest.raises(ModelLoadError, match=r"unexpected keys: unet\.bogus\.weight"):
        EmuDecoder.from_state_dict(extra, **kwargs)
    shaped = {**state, "vae.post_quant_conv.bias": torch.zeros(5)}
    with pytest.raises(ModelLoadError, match=r"mis-shaped keys: vae\.post_quant_conv\.bias \(5,\)"):
        EmuDecoder.from_state_dict(shaped, **kwargs)
    # the full native file, safety checker and multimodal encoder included, still loads
    full = _native_state(("unet.", "vae.", "safety_checker.", "multimodal_encoder."))
    assert EmuDecoder.from_state_dict(full, **kwargs).vae is not None


def test_from_pretrained_missing_parts(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    with pytest.raises(ModelLoadError, match="scheduler"):
        EmuDecoder.from_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=str(tmp_path / "nothing")):
        EmuDecoder.from_pretrained(tmp_path / "nothing")


def test_position_scale_marks_token_order_and_round_trips(gen_config: dict, tmp_path: Path) -> None:
    from emu_agent.model.decoder import token_positions

    torch.manual_seed(0)
    positioned = EmuDecoder(
        UNet2DConditionModel(**TINY_UNET),
        EulerDiscreteScheduler.from_config(gen_config["scheduler"]),
        position_scale=0.5,
    )
    emb = torch.randn(1, 3, 8)
    cond = positioned.conditioning(emb, 16, 16, (1024, 1024), (0, 0))
    torch.testing.assert_close(cond["encoder_hidden_states"], emb + 0.5 * token_positions(3, 8))
    torch.testing.assert_close(cond["text_embeds"], emb.mean(1))  # the pooled embedding stays position-free
    # without positions, swapping two tokens changes nothing the cross-attention can see; with them it does
    swapped = emb[:, [1, 0, 2]]
    moved = positioned.conditioning(swapped, 16, 16, (1024, 1024), (0, 0))["encoder_hidden_states"]
    assert not torch.allclose(moved[:, [1, 0, 2]], cond["encoder_hidden_states"])
    positioned.save_pretrained(tmp_path / "dec")
    sidecar = json.loads((tmp_path / "dec" / "emu_decoder.json").read_text())
    assert sidecar == {"position_scale": 0.5, "spatial_conditioning": False}
    assert EmuDecoder.from_pretrained(tmp_path / "dec").position_scale == 0.5


def _spatial_decoder(gen_config: dict) -> EmuDecoder:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{**TINY_UNET, "in_channels": 3 + 8})  # pixels + an 8-wide embedding map
    return EmuDecoder(unet, EulerDiscreteScheduler.from_config(gen_config["scheduler"]), spatial_conditioning=True)


def test_spatial_map_paints_each_token_over_its_pooled_region() -> None:
    emb = torch.arange(4 * 2, dtype=torch.float32).reshape(1, 4, 2)  # 2x2 grid, row-major, width 2
    grid = EmuDecoder.spatial_map(emb, 8, 8)  # (1, 2, 8, 8)
    assert grid.shape == (1, 2, 8, 8)
    for token, (rows, cols) in enumerate([(slice(0, 4), slice(0, 4)), (slice(0, 4), slice(4, 8)),
                                          (slice(4, 8), slice(0, 4)), (slice(4, 8), slice(4, 8))]):  # fmt: skip
        block = grid[0, :, rows, cols]
        torch.testing.assert_close(block, emb[0, token][:, None, None].expand_as(block))
    with pytest.raises(InputError, match="square token grid; got 3"):
        EmuDecoder.spatial_map(torch.zeros(1, 3, 2), 8, 8)


def test_spatial_conditioning_decodes_trains_and_round_trips(gen_config: dict, tmp_path: Path) -> None:
    dec = _spatial_decoder(gen_config)
    assert dec.latent_channels == 3
    emb = torch.randn(2, 4, 8)
    images = dec.decode(emb, height=16, width=16, num_inference_steps=2, guidance_scale=1.0,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert [im.size for im in images] == [(16, 16), (16, 16)]
    cond = dec.conditioning(emb, 16, 16, (1024, 1024), (0, 0))
    assert cond["spatial"].shape == (2, 8, 16, 16)
    # a change to the top-left token changes the prediction most in the top-left quadrant: the map is local
    latents = torch.randn(1, 3, 16, 16)
    t = torch.tensor([500])
    base = dec.predict_noise(latents, t, dec.conditioning(emb[:1], 16, 16, (1024, 1024), (0, 0)))
    changed_emb = emb[:1].clone()
    changed_emb[0, 0] += 5.0
    changed = dec.predict_noise(latents, t, dec.conditioning(changed_emb, 16, 16, (1024, 1024), (0, 0)))
    diff = (changed - base).abs().sum(1)[0]  # (16, 16)
    assert diff[:8, :8].mean() > diff[8:, 8:].mean()
    loss = dec.train_loss(torch.rand(2, 3, 16, 16) * 2 - 1, emb, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert dec.unet.conv_in.weight.grad[:, 3:].abs().sum() > 0  # the map's input channels learn
    dec.save_pretrained(tmp_path / "dec")
    loaded = EmuDecoder.from_pretrained(tmp_path / "dec")
    assert loaded.spatial_conditioning and loaded.unet.config.in_channels == 11
    again = loaded.decode(emb, height=16, width=16, num_inference_steps=2, guidance_scale=1.0,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert [np.asarray(a).tolist() for a in again] == [np.asarray(b).tolist() for b in images]


def test_spatial_conditioning_needs_matching_input_channels(gen_config: dict) -> None:
    with pytest.raises(ModelLoadError, match=r"in_channels = out_channels \+ cross_attention_dim"):
        EmuDecoder(UNet2DConditionModel(**TINY_UNET), EulerDiscreteScheduler.from_config(gen_config["scheduler"]),
                   spatial_conditioning=True)  # fmt: skip


def test_pixel_weights_weight_the_squared_error(tiny: EmuDecoder) -> None:
    pixels = torch.rand(2, 3, 16, 16) * 2 - 1
    emb = torch.randn(2, 3, 8)
    flat = tiny.train_loss(pixels, emb, generator=torch.Generator().manual_seed(0))
    ones = tiny.train_loss(
        pixels, emb, generator=torch.Generator().manual_seed(0), pixel_weights=torch.ones(2, 1, 16, 16)
    )
    torch.testing.assert_close(flat, ones)  # weights of 1 are the plain MSE
    weighted = tiny.train_loss(
        pixels, emb, generator=torch.Generator().manual_seed(0), pixel_weights=torch.rand(2, 1, 16, 16)
    )
    assert torch.isfinite(weighted) and weighted.item() != flat.item()
