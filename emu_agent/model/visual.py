"""The EVA-CLIP visual encoder as Emu2 uses it, plus Emu2's image preprocessing and query pooling.

Emu2's encoder (``Emu2/emu/eva_vit.py``) is a plain ViT with three EVA particulars:
- attention has one bias-free ``qkv`` Linear plus separate ``q_bias`` and ``v_bias``: keys get no bias;
- blocks are post-norm: ``x = x + norm1(attn(x)); x = x + norm2(mlp(x))``;
- no final norm and no head: the output is the raw last block, CLS first.
Parameter names equal the checkpoint keys under ``visual.``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from emu_agent.model.config import CLIP_MEAN, CLIP_STD, VisionConfig

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["EvaVisionTransformer", "pool_visual_tokens", "preprocess_images"]


class PatchEmbed(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, config.width, kernel_size=config.patch_size, stride=config.patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.proj(pixel_values)  # (B, C, g, g)
        return x.flatten(2).transpose(1, 2)  # (B, g*g, C), row-major


class EvaAttention(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.head_width
        width = config.width
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        if config.qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(width))
            self.v_bias = nn.Parameter(torch.zeros(width))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape  # (B, N, C)
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])  # keys: no bias
        qkv = F.linear(x, self.qkv.weight, bias)  # (B, N, 3C)
        qkv = qkv.reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, N, D)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, D), scale D^-0.5
        out = out.transpose(1, 2).reshape(batch, tokens, width)  # (B, N, C)
        return self.proj(out)


class EvaMlp(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.width, config.mlp_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(config.mlp_dim, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class EvaBlock(nn.Module):
    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.postnorm = config.postnorm
        self.norm1 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.attn = EvaAttention(config)
        self.norm2 = nn.LayerNorm(config.width, eps=config.layer_norm_eps)
        self.mlp = EvaMlp(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.postnorm:
            x = x + self.norm1(self.attn(x))
            return x + self.norm2(self.mlp(x))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class EvaVisionTransformer(nn.Module):
    """EVA ViT returning the raw output of the last block: ``(B, 1 + g*g, width)``, CLS first."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config
        num_patches = config.grid_size**2
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, config.width))
        self.blocks = nn.ModuleList(EvaBlock(config) for _ in range(config.layers))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixel_values)  # (B, N, C)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, C)
        x = torch.cat([cls, x], dim=1) + self.pos_embed  # (B, 1+N, C)
        for block in self.blocks:
            x = block(x)
        return x


def pool_visual_tokens(features: torch.Tensor, n_query: int) -> torch.Tensor:
    """Emu2's ``encode_image`` pooling: drop CLS, average-pool the patch grid to ``n_query`` tokens.

    ``features`` (B, 1+g*g, C) -> (B, n_query, C), row-major like the patch order.
    """
    patches = features[:, 1:, :]  # (B, g*g, C)
    batch, count, width = patches.shape
    grid = math.isqrt(count)
    side = math.isqrt(n_query)
    stride = grid // side
    x = patches.permute(0, 2, 1).reshape(batch, width, grid, grid)  # (B, C, g, g)
    x = F.avg_pool2d(x, kernel_size=stride, stride=stride)  # (B, C, side, side)
    return x.flatten(2).transpose(1, 2)  # (B, n_query, C)


def preprocess_images(images: Sequence[Image.Image], image_size: int) -> torch.Tensor:
    """Emu2's transform: bicubic resize to a square (aspect ratio ignored), to [0, 1], CLIP-normalise.

    This equals torchvision's ``Resize((s, s), BICUBIC)`` on a PIL image (which calls PIL's resize),
    ``ToTensor`` and ``Normalize``. Returns (N, 3, s, s) float32.
    """
    import numpy as np
    from PIL import Image

    arrays = []
    for image in images:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        resized = rgb.resize((image_size, image_size), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(resized, dtype=np.uint8))
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(255.0)  # (N, 3, s, s)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std
