"""emu-tiny's architecture: an Emu2-shaped model small enough to train on 2 CPU cores and to ship in the package.

- visual: an EVA-style ViT on 64x64 images, patch 8 (an 8x8 grid), width 128, 4 post-norm blocks; an image is
  16 visual tokens (4x4 average pool), and so is a video frame (the world's 3x3 cells need that resolution);
- language model: LLaMA, hidden 256, 4 layers, 4 heads, on a BPE vocabulary trained on the world's text with
  Emu2's special tokens and the tool-call markers;
- decoder: a diffusers ``UNet2DConditionModel`` in pixel space (no VAE at 64x64), conditioned as Emu2-Gen is
  (cross-attention on the 16 embeddings, their mean as the pooled embedding, SDXL time ids) plus the embeddings'
  4x4 map concatenated to its input, attention only at 16x16 and 8x8, predicting the clean image
  (``prediction_type="sample"``) for few-step Euler sampling.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from emu_agent.model.config import DecoderConfig, EmuConfig, TextConfig, VisionConfig
from emu_agent.model.message_rendering import TOOL_CALL_END, TOOL_CALL_START, TOOL_RESULT_END

if TYPE_CHECKING:
    from emu_agent.model.emu import EmuModel
    from emu_agent.model.tokenizer import EmuTokenizer

__all__ = ["TOOL_TOKENS", "build_emu_tiny", "emu_tiny_config", "train_tiny_tokenizer"]

TOOL_TOKENS = (TOOL_CALL_START, TOOL_CALL_END, TOOL_RESULT_END)
VOCAB_SIZE = 1536  # base BPE vocabulary (control + bytes + trained pieces)
IMAGE_SIZE = 64
LM_LAYERS = 4  # the LLaMA's depth when trained from scratch; an LM phase may grow it (--lm-layers)
DECODER_POSITION_SCALE = 1.0  # token-index embeddings for the decoder's cross-attention (see EmuDecoder)
DECODER_SPATIAL_CONDITIONING = True  # the embeddings' 4x4 map concatenated to the UNet input (see EmuDecoder)


def _vision() -> VisionConfig:
    return VisionConfig(
        image_size=IMAGE_SIZE, patch_size=8, width=128, layers=4, head_width=32, mlp_ratio=4.0, n_query=16, v_query=16
    )


def _decoder(width: int) -> DecoderConfig:
    unet = {
        "_class_name": "UNet2DConditionModel",
        "sample_size": IMAGE_SIZE,
        "in_channels": 3 + width,  # pixels + the spatial map of the embeddings
        "out_channels": 3,
        "block_out_channels": [16, 32, 64, 128],
        "down_block_types": ["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
        "layers_per_block": 1,
        "attention_head_dim": [1, 1, 2, 4],  # diffusers: the number of heads,
        "norm_num_groups": 8,
        "cross_attention_dim": width,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 16,
        "projection_class_embeddings_input_dim": width + 6 * 16,
        "use_linear_projection": True,
    }
    scheduler = {
        "_class_name": "EulerDiscreteScheduler",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "interpolation_type": "linear",
        "num_train_timesteps": 1000,
        "prediction_type": "sample",
        "steps_offset": 1,
        "timestep_spacing": "trailing",
        "trained_betas": None,
        "use_karras_sigmas": False,
    }
    return DecoderConfig(
        unet=unet,
        scheduler=scheduler,
        vae=None,
        default_height=IMAGE_SIZE,
        default_width=IMAGE_SIZE,
        default_num_inference_steps=8,
        default_guidance_scale=1.0,
    )


def emu_tiny_config(vocab_size: int, pad_token_id: int, *, lm_layers: int = LM_LAYERS) -> EmuConfig:
    """The emu-tiny architecture for a tokenizer of ``vocab_size`` ids (``lm_layers`` decoder layers)."""
    vision = _vision()
    text = TextConfig(
        hidden_size=256,
        intermediate_size=704,
        num_hidden_layers=lm_layers,
        num_attention_heads=4,
        vocab_size=vocab_size,
        pad_token_id=pad_token_id,
        max_position_embeddings=1024,
    )
    return EmuConfig(vision=vision, text=text, instruct=True, decoder=_decoder(vision.width), variant="emu-tiny")


def train_tiny_tokenizer(seed: int = 0, n_texts: int = 6000) -> EmuTokenizer:
    """A BPE tokenizer trained on the world's task text and agent dialogues (Emu2 + tool-call tokens)."""
    from emu_agent.model.tokenizer import EmuTokenizer
    from emu_agent.world.dialogues import dialogue_corpus
    from emu_agent.world.tasks import text_corpus

    texts = list(text_corpus(n_texts, seed)) + list(dialogue_corpus(n_texts // 3, seed + 1))
    random.Random(seed).shuffle(texts)
    return EmuTokenizer.train(texts, vocab_size=VOCAB_SIZE, instruct=True, extra_special_tokens=TOOL_TOKENS)


def build_emu_tiny(tokenizer: EmuTokenizer, *, seed: int = 0, lm_layers: int = LM_LAYERS) -> EmuModel:
    """A freshly initialised emu-tiny (fp32, CPU), with its decoder; no system message (the agent sets one).
    ``lm_layers`` sets the LLaMA's depth (a grown LM, :mod:`emu_agent.world.growth`)."""
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

    from emu_agent.model.decoder import EmuDecoder
    from emu_agent.model.emu import EmuModel

    config = emu_tiny_config(len(tokenizer), tokenizer.pad_token_id, lm_layers=lm_layers)
    import torch

    torch.manual_seed(seed)
    decoder = EmuDecoder(
        UNet2DConditionModel.from_config(config.decoder.unet),  # type: ignore[union-attr]
        EulerDiscreteScheduler.from_config(config.decoder.scheduler),  # type: ignore[union-attr]
        position_scale=DECODER_POSITION_SCALE,
        spatial_conditioning=DECODER_SPATIAL_CONDITIONING,
    )
    model = EmuModel.from_config(config, tokenizer=tokenizer, decoder=decoder, seed=seed)
    model.system_message = None
    return model
