"""Fixtures for the built-in tool tests: a real media store, handles, a context, the random-weight model, clips
written with PyAV, and tiny real diffusers pipelines.

The diffusers pipelines are built offline from configs (random weights) and saved to a tmp folder: Stable Diffusion
layout with a CLIP text encoder and tokenizer (a byte-level BPE vocabulary with no merges), a
``UNet2DConditionModel``, an ``AutoencoderKL`` and a DDIM scheduler, a few thousand parameters each; 32x32 images.
Nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emu_agent.agent.prompt import MediaHandles
from emu_agent.media import MediaStore
from emu_agent.tools.base import ToolContext


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    return MediaStore(tmp_path / "media")


@pytest.fixture
def handles() -> MediaHandles:
    return MediaHandles()


@pytest.fixture(scope="session")
def model() -> Any:
    """The ~2M-parameter random-weight Emu model: every stage real, outputs noise."""
    from emu_agent.model.random_model import random_emu_model

    return random_emu_model(seed=0)


@pytest.fixture
def progress() -> list[tuple[float, str]]:
    return []


@pytest.fixture
def context(model: Any, store: MediaStore, handles: MediaHandles, progress: list) -> ToolContext:
    return ToolContext(
        model=model, media_store=store, handles=handles, on_progress=lambda f, m: progress.append((f, m))
    )


def write_clip(
    path: Path,
    *,
    seconds: float = 2.0,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264",
    gop: int | None = None,
    level: Callable[[int], int] | None = None,
) -> Path:
    """Write a clip whose frame i is a flat grey of ``level(i)`` (default: 4 * i, capped at 250)."""
    import av

    level = level or (lambda i: min(4 * i, 250))
    n = round(seconds * fps)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if gop is not None:
            stream.gop_size = gop
        for i in range(n):
            arr = np.full((size[1], size[0], 3), level(i), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def make_clip() -> Callable[..., Path]:
    """``make_clip(path, seconds=..., fps=..., ...)`` writes a real clip (see :func:`write_clip`)."""
    return write_clip


# ---------------------------------------------------------------------------------------------- tiny diffusers

IMAGE_SIZE = 32


def _tokenizer() -> Any:
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in [*symbols, *(s + "</w>" for s in symbols)]:
        vocab.setdefault(symbol, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)


def _components(unet_in_channels: int) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    tokenizer = _tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2,
        in_channels=unet_in_channels,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
        sample_size=IMAGE_SIZE,
    )
    scheduler = DDIMScheduler(steps_offset=1, clip_sample=False)
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def save_pipeline(kind: str, folder: Path) -> Path:
    """Build a tiny ``"text2img"``, ``"img2img"`` or ``"pix2pix"`` pipeline and save it (safetensors) in ``folder``."""
    from diffusers import (
        StableDiffusionImg2ImgPipeline,
        StableDiffusionInstructPix2PixPipeline,
        StableDiffusionPipeline,
    )

    classes = {
        "text2img": (StableDiffusionPipeline, 4),
        "img2img": (StableDiffusionImg2ImgPipeline, 4),
        "pix2pix": (StableDiffusionInstructPix2PixPipeline, 8),
    }
    cls, in_channels = classes[kind]
    pipeline = cls(**_components(in_channels))
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def pipeline_folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``pipeline_folder(kind)``: the folder of a tiny saved pipeline of ``kind``, built once per session."""
    built: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in built:
            built[kind] = save_pipeline(kind, tmp_path_factory.mktemp("diffusers") / kind)
        return built[kind]

    return get
