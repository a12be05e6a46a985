"""Loading every checkpoint layout, our own save format, and the loader's errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from emu_agent.errors import ConfigError, DeviceError, ModelLoadError
from emu_agent.model.config import EmuConfig
from emu_agent.model.emu import EmuModel


def _params(model: EmuModel) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}


def _assert_same_weights(a: EmuModel, b: EmuModel) -> None:
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        assert torch.equal(pa[key], pb[key]), key


def test_all_layouts_give_identical_encoder_weights(emu2: Any, emu2_gen: Any, ref: Any) -> None:
    hf = EmuModel.from_pretrained(ref.WEIGHTS / "Emu2-Gen" / "multimodal_encoder", tokenizer=ref.TOKENIZER)
    native_gen = EmuModel.from_pretrained(
        ref.WEIGHTS / "Emu2-Gen_pytorch_model.bf16.safetensors",
        config=ref.emu_config("emu2_gen"),
        tokenizer=ref.TOKENIZER,
    )
    for model in (hf, emu2_gen, native_gen):
        _assert_same_weights(emu2, model)
    assert emu2.load_report.layout == "baai-native"
    assert emu2.load_report.dropped_inv_freq == 2  # stale rotary buffers present in the native file
    assert hf.load_report.layout == "hf-release" and hf.load_report.dropped_inv_freq == 0
    assert emu2_gen.load_report.layout == "emu2-gen-diffusers"
    assert native_gen.load_report.layout == "baai-native-gen"
    assert native_gen.load_report.skipped == {"safety_checker": 44}  # tiny CLIP tower (396 at full size)
    # the decoders of both Gen layouts are the same weights
    ga, gb = emu2_gen.decoder.state_dict(), native_gen.decoder.state_dict()
    assert ga.keys() == gb.keys() and all(torch.equal(ga[k], gb[k]) for k in ga)


def test_rope_comes_from_theta_not_the_stale_bf16_buffer(emu2: Any) -> None:
    rotary = emu2.lm.model.rotary_emb
    head_dim = emu2.config.text.hidden_size // emu2.config.text.num_attention_heads
    exact = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    assert torch.equal(rotary.inv_freq.cpu(), exact)


def test_chat_pth_is_read_with_weights_only(ref: Any, tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> Any:
            return (print, ("pwned",))

    bad = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, bad)
    with pytest.raises(ModelLoadError, match="weights_only"):
        EmuModel.from_pretrained(bad, config=ref.emu_config("emu2"), tokenizer=ref.TOKENIZER)


def test_save_and_reload_roundtrip(emu2_gen: Any, ref: Any, tmp_path: Path) -> None:
    emu2_gen.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "config.json").read_text())["format"] == "emu-agent"
    reloaded = EmuModel.from_pretrained(tmp_path / "model")
    assert reloaded.load_report.layout == "emu-agent"
    _assert_same_weights(emu2_gen, reloaded)
    assert reloaded.config.to_dict() == emu2_gen.config.to_dict()
    prompt = ["a red circle"]
    torch.testing.assert_close(
        reloaded.regress_visual_embeddings(prompt),
        emu2_gen.regress_visual_embeddings(prompt),
        rtol=0,
        atol=1e-6,
    )  # memory alignment may change SIMD summation order: not always bit-exact
    a = reloaded.generate_image(prompt, seed=1, height=64, width=64, num_inference_steps=2)
    b = emu2_gen.generate_image(prompt, seed=1, height=64, width=64, num_inference_steps=2)
    assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max() <= 1


def test_dtypes_bf16_and_fp32(ref: Any) -> None:
    path = ref.WEIGHTS / "Emu2_pytorch_model.bf16.safetensors"
    bf16 = EmuModel.from_pretrained(path, config=ref.emu_config("emu2"), tokenizer=ref.TOKENIZER, dtype="bfloat16")
    assert bf16.dtype == torch.bfloat16 and bf16.visual.cls_token.dtype == torch.bfloat16
    prompt = ref.resolve_inputs(ref.reference_json("generate")["t1_one_image"]["inputs"])
    embeds, mask, _ = bf16.embed_plans([bf16.plan(prompt)])
    with torch.no_grad():
        logits = bf16.lm(inputs_embeds=embeds, attention_mask=mask).logits[:, -8:].float()
    expected = ref.tensors("lm")["t1_one_image.logits_last8"]
    assert (logits - expected).abs().max() < 0.05 * expected.abs().max()
    fp32 = EmuModel.from_pretrained(path, config=ref.emu_config("emu2"), tokenizer=ref.TOKENIZER, dtype="auto")
    assert fp32.dtype == torch.float32  # auto on CPU


# ---------------------------------------------------------------------------------------------- errors
def _copy_native(ref: Any, tmp_path: Path, edit: Any) -> Path:
    state = load_file(str(ref.WEIGHTS / "Emu2_pytorch_model.bf16.safetensors"))
    edit(state)
    path = tmp_path / "edited.safetensors"
    save_file(state, str(path))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("project_up.weight"), "missing keys: project_up.weight"),
        (
            lambda s: s.__setitem__("visual.extra.weight", torch.zeros(2)),
            "unexpected keys: visual.extra.weight",
        ),
        (
            lambda s: s.__setitem__("project_down.weight", torch.zeros(3, 3, dtype=torch.bfloat16)),
            r"mis-shaped keys.*project_down.weight \(3, 3\) != \(56, 16\)",
        ),
    ],
)
def test_key_mismatches_are_named(ref: Any, tmp_path: Path, edit: Any, message: str) -> None:
    path = _copy_native(ref, tmp_path, edit)
    with pytest.raises(ModelLoadError, match=message):
        EmuModel.from_pretrained(path, config=ref.emu_config("emu2"), tokenizer=ref.TOKENIZER)


def test_wrong_config_names_the_mismatch(ref: Any) -> None:
    with pytest.raises(ModelLoadError, match=r"lm\.model\.embed_tokens\.weight"):
        EmuModel.from_pretrained(
            ref.WEIGHTS / "Emu2-Chat_pytorch_model.bf16.pth",
            config=ref.emu_config("emu2"),
            tokenizer=ref.TOKENIZER,
        )


def test_native_file_with_unknown_dims_asks_for_config(ref: Any) -> None:
    with pytest.raises(ModelLoadError, match="match no preset; pass config="):
        EmuModel.from_pretrained(ref.WEIGHTS / "Emu2_pytorch_model.bf16.safetensors", tokenizer=ref.TOKENIZER)


def test_folder_without_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match=f"no checkpoint found in {tmp_path}"):
        EmuModel.from_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        EmuModel.from_pretrained(tmp_path / "nope")


def test_corrupt_safetensors(tmp_path: Path, ref: Any) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match=r"model\.safetensors"):
        EmuModel.from_pretrained(bad, config=ref.emu_config("emu2"), tokenizer=ref.TOKENIZER)


def test_missing_tokenizer_is_named(ref: Any, tmp_path: Path) -> None:
    shutil.copy(ref.WEIGHTS / "Emu2_pytorch_model.bf16.safetensors", tmp_path / "w.safetensors")
    with pytest.raises(ModelLoadError, match="pass tokenizer="):
        EmuModel.from_pretrained(tmp_path / "w.safetensors", config=ref.emu_config("emu2"))


def test_preset_names_are_not_downloaded() -> None:
    with pytest.raises(ModelLoadError, match="never downloads"):
        EmuModel.from_pretrained("emu2-chat")


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'emu3'"):
        EmuConfig.preset("emu3")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "float8"}, "unsupported dtype 'float8'"),
        ({"dtype": torch.int8}, "unsupported dtype"),
        ({"device": "cuda"}, "no CUDA GPU is available"),
    ],
)
def test_device_and_dtype_errors(ref: Any, kwargs: dict[str, Any], message: str) -> None:
    if "cuda" in str(kwargs.get("device")) and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceError, match=message):
        EmuModel.from_pretrained(
            ref.WEIGHTS / "Emu2_pytorch_model.bf16.safetensors",
            config=ref.emu_config("emu2"),
            tokenizer=ref.TOKENIZER,
            **kwargs,
        )


def test_device_map_dispatches_on_cpu(ref: Any) -> None:
    model = EmuModel.from_pretrained(
        ref.WEIGHTS / "Emu2_pytorch_model.bf16.safetensors",
        config=ref.emu_config("emu2"),
        tokenizer=ref.TOKENIZER,
        device_map={"": "cpu"},
    )
    ids = model.generate_token_ids([["The capital of France is"]], max_new_tokens=3)
    assert ids.shape == (1, 4)
