"""Access to the BAAI reference set in tests/fixtures/emu2-reference (outputs of BAAI's own Emu2 code)."""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "emu2-reference"
WEIGHTS = ROOT / "weights"
TOKENIZER = ROOT / "tokenizer"

# Tolerances from the reference README ("Suggested bounds for a float32 re-implementation").
VISION_ATOL = 2e-5
LM_ATOL = 1e-5
STEP_ATOL = 5e-4
DECODED_ATOL = 1e-4


@cache
def config() -> dict[str, Any]:
    return json.loads((ROOT / "config.json").read_text())


@cache
def reference_json(name: str) -> dict[str, Any]:
    return json.loads((ROOT / "reference" / f"{name}.json").read_text())


@cache
def tensors(name: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(ROOT / "reference" / f"{name}.safetensors"))


def image(name: str) -> Image.Image:
    path = ROOT / "inputs" / "video" / f"{name}.png" if name.startswith("frame") else ROOT / "inputs" / f"{name}.png"
    with Image.open(path) as im:
        return im.convert("RGB")


def resolve_inputs(inputs: Any) -> Any:
    """Replace ``@name`` strings by the images, recursively (chat rounds are nested lists)."""
    if isinstance(inputs, list):
        return [resolve_inputs(x) for x in inputs]
    if isinstance(inputs, str) and inputs.startswith("@"):
        return image(inputs[1:])
    return inputs


def emu_config(variant: str) -> Any:
    from emu_agent.model.config import DecoderConfig, EmuConfig

    models = config()["models"]
    if variant == "emu2_gen":
        base = EmuConfig.from_baai(models["emu2"], variant="emu2-gen")
        gen = models["emu2_gen"]
        base.decoder = DecoderConfig(unet=gen["unet"], scheduler=gen["scheduler"], vae=gen["vae"])
        return base
    return EmuConfig.from_baai(models[variant], variant=variant)


@pytest.fixture(scope="session")
def ref() -> Any:
    """This module: paths, tolerances and loaders of the reference set."""
    return sys.modules[__name__]


@pytest.fixture(scope="session")
def emu2(ref: Any) -> Any:
    from emu_agent.model.emu import EmuModel

    return EmuModel.from_pretrained(
        WEIGHTS / "Emu2_pytorch_model.bf16.safetensors", config=emu_config("emu2"), tokenizer=TOKENIZER
    )


@pytest.fixture(scope="session")
def emu2_chat(ref: Any) -> Any:
    from emu_agent.model.emu import EmuModel

    return EmuModel.from_pretrained(
        WEIGHTS / "Emu2-Chat_pytorch_model.bf16.pth", config=emu_config("emu2_chat"), tokenizer=TOKENIZER
    )


@pytest.fixture(scope="session")
def emu2_gen(ref: Any) -> Any:
    """The Emu2-Gen diffusers folder (HF-release multimodal_encoder + unet/vae/scheduler)."""
    from emu_agent.model.emu import EmuModel

    return EmuModel.from_pretrained(WEIGHTS / "Emu2-Gen", tokenizer=TOKENIZER)
