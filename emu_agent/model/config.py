"""Architecture config for Emu models: plain dataclasses that import without torch and round-trip through JSON.

Field names follow the checkpoints' own config files: the vision part uses BAAI's ``CLIPVisionCfg`` names
(``width``, ``layers``, ``head_width``, ``n_query``...), the language part the LLaMA ``config.json`` names
(``hidden_size``, ``num_hidden_layers``...). Presets carry the published Emu2 dims (``emu2``, ``emu2-chat``,
``emu2-gen``); any dims can be given explicitly, also as a dict in BAAI's own field names
(:meth:`EmuConfig.from_baai`) or as the HF-release ``config.json`` (:meth:`EmuConfig.from_hf_config`).
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from emu_agent.errors import ConfigError

__all__ = ["PRESETS", "DecoderConfig", "EmuConfig", "TextConfig", "VisionConfig"]

# OpenAI CLIP normalisation, used by Emu2's preprocessing (Emu2/emu/constants.py).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# CLIPVisionCfg fields that change nothing in Emu2's encoder as long as they hold these values.
_INERT_VISION_FIELDS: dict[str, Any] = {
    "rope": False,
    "global_average_pool": False,
    "naiveswiglu": False,
    "subln": False,
    "patch_dropout": 0.0,
    "init_value": None,
}
# CLIPVisionCfg fields with no effect at inference (training-only, or switches between equal kernels).
_IGNORED_VISION_FIELDS = {
    "eva_model_name",
    "drop_path_rate",
    "xattn",
    "pt_hw_seq_len",
    "intp_freq",
    "fusedLN",
}


def _known_kwargs(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {where} config field(s): {', '.join(unknown)}")
    return dict(data)


@dataclass
class VisionConfig:
    """The EVA-CLIP visual encoder (Emu2: EVA02-CLIP-E class, post-norm, q/v biases, no RoPE)."""

    image_size: int = 448
    patch_size: int = 14
    width: int = 1792
    layers: int = 64
    head_width: int = 112
    mlp_ratio: float = 8.571428571428571
    qkv_bias: bool = True
    postnorm: bool = True
    layer_norm_eps: float = 1e-6
    n_query: int = 64  # visual tokens per image
    v_query: int = 64  # visual tokens per video frame

    @property
    def num_heads(self) -> int:
        return self.width // self.head_width

    @property
    def mlp_dim(self) -> int:
        return int(self.width * self.mlp_ratio)  # EVA's own rounding: int(dim * mlp_ratio)

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    def validate(self) -> None:
        if self.width % self.head_width:
            raise ConfigError(f"vision width {self.width} is not a multiple of head_width {self.head_width}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for name in ("n_query", "v_query"):
            n = getattr(self, name)
            side = math.isqrt(n)
            if n < 1 or side * side != n or self.grid_size % side:
                raise ConfigError(
                    f"{name}={n} must be a square whose side divides the {self.grid_size}x{self.grid_size} patch grid"
                )

    @classmethod
    def from_baai(cls, data: dict[str, Any], *, layer_norm_eps: float | None = None) -> VisionConfig:
        """Build from BAAI's ``CLIPVisionCfg`` field names (also the HF release's ``vision_config``)."""
        data = dict(data)
        for name, inert in _INERT_VISION_FIELDS.items():
            value = data.pop(name, inert)
            if value != inert:
                raise ConfigError(f"vision field {name}={value!r} is not supported (Emu2 uses {inert!r})")
        for name in _IGNORED_VISION_FIELDS:
            data.pop(name, None)
        if layer_norm_eps is not None:
            data["layer_norm_eps"] = layer_norm_eps
        return cls(**_known_kwargs(cls, data, "vision"))


@dataclass
class TextConfig:
    """The LLaMA decoder, in LLaMA ``config.json`` names. ``vocab_size`` is the size after Emu2's resize."""

    hidden_size: int = 6656
    intermediate_size: int = 17920
    num_hidden_layers: int = 60
    num_attention_heads: int = 52
    num_key_value_heads: int | None = None
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    hidden_act: str = "silu"
    vocab_size: int = 32272
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 32000

    _LLAMA_IGNORED = frozenset(
        {
            "architectures", "model_type", "initializer_range", "torch_dtype", "transformers_version",
            "use_cache", "tie_word_embeddings", "pretraining_tp", "rope_scaling", "attention_bias",
            "attention_dropout", "mlp_bias", "head_dim", "_name_or_path", "dtype",
        }
    )  # fmt: skip

    @classmethod
    def from_llama(cls, data: dict[str, Any], *, vocab_size: int | None = None) -> TextConfig:
        """Build from a LLaMA ``config.json`` dict; ``vocab_size`` overrides the pre-resize vocabulary."""
        if data.get("tie_word_embeddings"):
            raise ConfigError("tie_word_embeddings=True is not supported (Emu2's LLaMA is untied)")
        if data.get("rope_scaling"):
            raise ConfigError(f"rope_scaling={data['rope_scaling']!r} is not supported")
        data = {k: v for k, v in data.items() if k not in cls._LLAMA_IGNORED}
        if vocab_size is not None:
            data["vocab_size"] = vocab_size
        if data.get("pad_token_id") == 0:
            data["pad_token_id"] = 32000  # LLaMA configs say 0; Emu2's tokenizer pads with [PAD] = 32000
        return cls(**_known_kwargs(cls, data, "text"))

    def to_llama_config(self) -> Any:
        """A ``transformers.LlamaConfig`` with these dims (imports transformers)."""
        from transformers import LlamaConfig

        return LlamaConfig(
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads or self.num_attention_heads,
            rms_norm_eps=self.rms_norm_eps,
            max_position_embeddings=self.max_position_embeddings,
            rope_theta=self.rope_theta,
            hidden_act=self.hidden_act,
            vocab_size=self.vocab_size,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
            tie_word_embeddings=False,
            attention_bias=False,
            mlp_bias=False,
        )


@dataclass
class DecoderConfig:
    """The diffusion decoder: diffusers configs for the UNet, the scheduler and the optional VAE."""

    unet: dict[str, Any]
    scheduler: dict[str, Any]
    vae: dict[str, Any] | None = None
    default_height: int = 1024
    default_width: int = 1024
    default_num_inference_steps: int = 50
    default_guidance_scale: float = 3.0


@dataclass
class EmuConfig:
    """The whole model: visual encoder, language model, projections and (for generation) the decoder."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    text: TextConfig = field(default_factory=TextConfig)
    instruct: bool = False  # Emu2-Chat: [USER]/[ASSISTANT] tokens and the chat template
    decoder: DecoderConfig | None = None
    variant: str = "custom"

    def __post_init__(self) -> None:
        if isinstance(self.vision, dict):
            self.vision = VisionConfig(**self.vision)
        if isinstance(self.text, dict):
            self.text = TextConfig(**self.text)
        if isinstance(self.decoder, dict):
            self.decoder = DecoderConfig(**self.decoder)
        self.vision.validate()

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmuConfig:
        data = copy.deepcopy(data)
        data.pop("format", None)
        data.pop("format_version", None)
        return cls(**_known_kwargs(cls, data, "model"))

    def to_json_file(self, path: str | os.PathLike[str]) -> None:
        payload = {"format": "emu-agent", "format_version": 1, **self.to_dict()}
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> EmuConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"can't read model config {path}: {exc}") from exc
        return cls.from_dict(data)

    # ---------------------------------------------------------------- other sources
    @classmethod
    def preset(cls, name: str) -> EmuConfig:
        """One of :data:`PRESETS` (``emu2``, ``emu2-chat``, ``emu2-gen``)."""
        try:
            factory = PRESETS[name]
        except KeyError:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}") from None
        return factory()

    @classmethod
    def from_baai(cls, data: dict[str, Any], *, variant: str = "custom") -> EmuConfig:
        """From a dict shaped as ``models.<variant>`` in the reference sets' config.json.

        ``vision`` holds CLIPVisionCfg fields, ``text`` the LLaMA config.json, ``instruct`` the chat flag,
        and optionally ``eva_layernorm_eps`` and ``vocab_size_after_resize``.
        """
        instruct = bool(data.get("instruct", False))
        vocab = data.get("vocab_size_after_resize") or (32274 if instruct else 32272)
        vision = VisionConfig.from_baai(data["vision"], layer_norm_eps=data.get("eva_layernorm_eps"))
        text = TextConfig.from_llama(data["text"], vocab_size=vocab)
        return cls(vision=vision, text=text, instruct=instruct, variant=variant)

    @classmethod
    def from_hf_config(cls, data: dict[str, Any]) -> EmuConfig:
        """From the HF-release ``config.json`` (LLaMA fields at top level, ``vision_config``, ``model_version``)."""
        data = {k: v for k, v in data.items() if not k.startswith("_")}
        vision_data = data.pop("vision_config", None)
        if vision_data is None:
            raise ConfigError("HF-release config has no 'vision_config'")
        instruct = data.pop("model_version", "base") == "chat"
        d_model = data.pop("d_model", None)
        vision = VisionConfig.from_baai(vision_data)
        if d_model is not None and d_model != vision.width:
            raise ConfigError(f"d_model={d_model} differs from the vision width {vision.width}")
        text = TextConfig.from_llama(data)
        return cls(vision=vision, text=text, instruct=instruct, variant="emu2-chat" if instruct else "emu2")


# ------------------------------------------------------------------------------------------------ presets
def _emu2_scheduler() -> dict[str, Any]:
    return {
        "_class_name": "EulerDiscreteScheduler",
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "interpolation_type": "linear",
        "num_train_timesteps": 1000,
        "prediction_type": "epsilon",
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "trained_betas": None,
        "use_karras_sigmas": False,
    }


def _emu2_unet() -> dict[str, Any]:
    return {
        "_class_name": "UNet2DConditionModel",
        "act_fn": "silu",
        "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": 256,
        "attention_head_dim": [5, 10, 20],
        "block_out_channels": [320, 640, 1280],
        "cross_attention_dim": 1792,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 2,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "out_channels": 4,
        "projection_class_embeddings_input_dim": 3328,
        "sample_size": 128,
        "transformer_layers_per_block": [1, 2, 10],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "use_linear_projection": True,
    }


def _sdxl_vae() -> dict[str, Any]:
    return {
        "_class_name": "AutoencoderKL",
        "act_fn": "silu",
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "force_upcast": True,
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "out_channels": 3,
        "sample_size": 1024,
        "scaling_factor": 0.13025,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
    }


def _emu2() -> EmuConfig:
    return EmuConfig(vision=VisionConfig(), text=TextConfig(vocab_size=32272), instruct=False, variant="emu2")


def _emu2_chat() -> EmuConfig:
    return EmuConfig(
        vision=VisionConfig(n_query=256, v_query=64),
        text=TextConfig(vocab_size=32274),
        instruct=True,
        variant="emu2-chat",
    )


def _emu2_gen() -> EmuConfig:
    config = _emu2()
    config.variant = "emu2-gen"
    config.decoder = DecoderConfig(unet=_emu2_unet(), scheduler=_emu2_scheduler(), vae=_sdxl_vae())
    return config


PRESETS = {"emu2": _emu2, "emu2-chat": _emu2_chat, "emu2-gen": _emu2_gen}
