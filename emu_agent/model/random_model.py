"""A small random-weight Emu model with every part real (EVA, LLaMA, projections, tokenizer, decoder).

It exercises the whole pipeline on a CPU in seconds. Its outputs are noise: it is for smoke runs, tests and
benchmarks, and for the demo until a trained model ships.
"""

from __future__ import annotations

import torch

from emu_agent.model.config import DecoderConfig, EmuConfig, TextConfig, VisionConfig
from emu_agent.model.emu import EmuModel

__all__ = ["random_emu_model"]

_CORPUS = [
    "a red circle at top left and a blue square at bottom right",
    "describe the scene. what colour is the circle? where is the triangle?",
    "draw a green triangle at center. make it yellow. how many objects are there?",
    "the purple square moved from left to right. the orange circle appeared.",
]


def _decoder_config(width: int, image_size: int) -> DecoderConfig:
    unet = {
        "_class_name": "UNet2DConditionModel",
        "sample_size": image_size,
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": [16, 32, 64],  # attention only at the lowest resolution (CPU-friendly)
        "down_block_types": ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "attention_head_dim": [1, 1, 2],
        "norm_num_groups": 8,
        "cross_attention_dim": width,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": width + 6 * 8,
        "use_linear_projection": True,
    }
    scheduler = EmuConfig.preset("emu2-gen").decoder.scheduler  # type: ignore[union-attr]
    return DecoderConfig(
        unet=unet,
        scheduler=scheduler,
        vae=None,
        default_height=image_size,
        default_width=image_size,
        default_num_inference_steps=4,
    )


def random_emu_model(*, seed: int = 0, image_size: int = 64) -> EmuModel:
    """A ~2M-parameter Emu2-architecture model with random weights, a trained tokenizer and a pixel decoder."""
    from diffusers import SchedulerMixin, UNet2DConditionModel
    from diffusers.schedulers import EulerDiscreteScheduler

    from emu_agent.model.decoder import EmuDecoder
    from emu_agent.model.tokenizer import EmuTokenizer

    torch.manual_seed(seed)
    tokenizer = EmuTokenizer.train(_CORPUS * 8, vocab_size=300, instruct=True)
    vision = VisionConfig(image_size=56, patch_size=7, width=64, layers=2, head_width=16, n_query=4, v_query=4)
    text = TextConfig(
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=1024,
    )
    decoder_config = _decoder_config(vision.width, image_size)
    config = EmuConfig(vision=vision, text=text, instruct=True, decoder=decoder_config, variant="random-tiny")
    scheduler: SchedulerMixin = EulerDiscreteScheduler.from_config(decoder_config.scheduler)
    decoder = EmuDecoder(UNet2DConditionModel.from_config(decoder_config.unet), scheduler)
    model = EmuModel.from_config(config, tokenizer=tokenizer, decoder=decoder)
    model.system_message = None
    return model
