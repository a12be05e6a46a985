"""The Emu2-Gen image decoder: regressed visual embeddings -> pixels.

An SDXL-layout ``UNet2DConditionModel`` conditioned directly on the visual embeddings (no text encoder),
a diffusers scheduler (Emu2-Gen: ``EulerDiscreteScheduler``) and an optional ``AutoencoderKL``. Without a
VAE the UNet works in pixel space (in/out channels 3) at full resolution.

The sampling loop reproduces ``Emu2/emu/diffusion.py`` exactly (see ``shared/emu2-architecture.md`` §5):
``encoder_hidden_states`` = the embeddings, pooled ``text_embeds`` = mean over tokens, ``time_ids`` =
original_size + crop_top_left + (height, width), CFG rows [conditional; negative] with
``uncond + g * (cond - uncond)``, latents = randn * init_noise_sigma, decode ``latents / scaling_factor``,
``(x / 2 + 0.5).clamp(0, 1)`` and ``(x * 255).round()`` to uint8. Unlike the reference it takes a batch
(``time_ids`` as a (B, 6) tensor) and an explicit ``torch.Generator``.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import diffusers
import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import Tensor

from emu_agent.errors import InputError, ModelLoadError
from emu_agent.model.state_keys import key_mismatches, name_list

__all__ = ["EmuDecoder"]

OutputType = Literal["pil", "np", "pt", "latent"]


def _scheduler_from_config(config: Mapping[str, Any]) -> Any:
    """Build the diffusers scheduler named by ``_class_name`` (default: EulerDiscreteScheduler)."""
    name = config.get("_class_name", "EulerDiscreteScheduler")
    cls = getattr(diffusers, name, None)
    if cls is None or not issubclass(cls, diffusers.SchedulerMixin):
        raise ModelLoadError(f"unknown diffusers scheduler class {name!r}")
    return cls.from_config(dict(config))


def _load_meta(module: torch.nn.Module, state: dict[str, Tensor], what: str) -> None:
    """Load ``state`` into a meta-device ``module`` by assignment (no second copy); strict with names."""
    problems = key_mismatches(module.state_dict(), state, prefix=f"{what}.")
    if problems:
        raise ModelLoadError(f"{what} state dict does not fit its config; " + "; ".join(problems))
    module.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise ModelLoadError(f"{what} tensors left uninitialised: {name_list(left)}")


_SIDECAR = "emu_decoder.json"


def token_positions(count: int, width: int) -> Tensor:
    """Fixed sinusoidal embeddings (count, width) of token indices 0..count-1 (the Transformer's formula)."""
    index = torch.arange(count, dtype=torch.float32)[:, None]  # (n, 1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, width, 2, dtype=torch.float32) / width)  # (w/2,)
    table = torch.zeros(count, width)
    table[:, 0::2] = torch.sin(index * freq)
    table[:, 1::2] = torch.cos(index * freq[: width // 2])
    return table


class EmuDecoder(torch.nn.Module):
    """Diffusion decoder of Emu2-Gen: (B, n_query, width) visual embeddings -> images.

    ``unet`` is a ``UNet2DConditionModel`` (``cross_attention_dim`` = embedding width; with
    ``addition_embed_type="text_time"`` it also gets the pooled embedding and the time ids), ``scheduler``
    any diffusers scheduler, ``vae`` an ``AutoencoderKL`` or ``None`` (pixel-space UNet).

    ``position_scale`` > 0 adds a fixed sinusoidal embedding of each token's index to the cross-attention
    inputs (not to the pooled embedding). Cross-attention is blind to the order of its keys, so a small decoder
    whose embeddings don't carry their own position needs it to know *where* each token's content goes.
    Emu2-Gen uses 0 (its EVA tokens carry position); emu-tiny uses it.

    ``spatial_conditioning`` also lays the embeddings out on their token grid (n_query = s*s tokens, row-major,
    as :func:`~emu_agent.model.visual.pool_visual_tokens` pools them), upsamples that (B, width, s, s) map to
    the latent size (nearest) and concatenates it to the UNet input, as instruct-pix2pix concatenates its
    source latents; the UNet's ``in_channels`` is then latent channels + width. Every token then conditions the
    pixels it was pooled from, which a small decoder otherwise has to learn through cross-attention. Emu2-Gen
    does not use it. Both options are saved in ``emu_decoder.json``.
    """

    unet: UNet2DConditionModel
    vae: AutoencoderKL | None

    def __init__(
        self,
        unet: UNet2DConditionModel,
        scheduler: Any,
        vae: AutoencoderKL | None = None,
        position_scale: float = 0.0,
        spatial_conditioning: bool = False,
    ) -> None:
        super().__init__()
        self.unet = unet
        self.vae = vae
        self.scheduler = scheduler
        self.position_scale = float(position_scale)
        self.spatial_conditioning = bool(spatial_conditioning)
        if self.spatial_conditioning:
            extra = unet.config.in_channels - unet.config.out_channels
            if extra != unet.config.cross_attention_dim:
                raise ModelLoadError(
                    f"spatial conditioning needs unet in_channels = out_channels + cross_attention_dim "
                    f"({unet.config.out_channels} + {unet.config.cross_attention_dim}); got {unet.config.in_channels}"
                )

    # ------------------------------------------------------------------ loading / saving

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
    ) -> EmuDecoder:
        """Load a diffusers folder with ``unet/``, ``scheduler/`` and optionally ``vae/`` (safetensors)."""
        folder = Path(folder)
        for sub in ("unet", "scheduler"):
            if not (folder / sub).is_dir():
                raise ModelLoadError(f"{folder} has no {sub}/ folder (need unet/, scheduler/, optional vae/)")
        try:
            sched_files = sorted((folder / "scheduler").glob("*.json"))
            if not sched_files:
                raise ModelLoadError(f"{folder / 'scheduler'} has no scheduler_config.json")
            scheduler = _scheduler_from_config(json.loads(sched_files[0].read_text()))
            unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=dtype, use_safetensors=True)
            vae = None
            if (folder / "vae").is_dir():
                vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=dtype, use_safetensors=True)
            extra = json.loads((folder / _SIDECAR).read_text()) if (folder / _SIDECAR).is_file() else {}
            position_scale = float(extra.get("position_scale", 0.0))
            spatial = bool(extra.get("spatial_conditioning", False))
        except ModelLoadError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot load the decoder from {folder}: {exc}") from exc
        return cls(unet, scheduler, vae, position_scale, spatial).to(device=device, dtype=dtype).eval()

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, Tensor],
        *,
        unet_config: dict,
        scheduler_config: dict,
        vae_config: dict | None,
        dtype: torch.dtype = torch.float32,
    ) -> EmuDecoder:
        """Build from a native Emu2-Gen state dict (keys ``unet.*`` and, with ``vae_config``, ``vae.*``).

        Modules are built on the meta device and the tensors assigned, so no second copy is allocated
        beyond the dtype cast. ``safety_checker.*`` and ``multimodal_encoder.*`` keys are ignored; the
        caller should filter them out (e.g. ``safe_open`` only the wanted keys) to save memory. Any other
        missing, unexpected or mis-shaped key raises ModelLoadError naming the keys.
        """
        parts: dict[str, dict[str, Tensor]] = {"unet": {}, "vae": {}}
        stray = []
        for key, value in state_dict.items():
            prefix, _, rest = key.partition(".")
            if prefix in parts:
                parts[prefix][rest] = value.to(dtype)
            elif prefix not in ("safety_checker", "multimodal_encoder"):
                stray.append(key)
        if vae_config is None and parts["vae"]:
            stray += [f"vae.{k}" for k in parts["vae"]]
        if stray:
            raise ModelLoadError(f"unexpected keys in the decoder state dict: {name_list(sorted(stray))}")
        try:
            with torch.device("meta"):
                unet = UNet2DConditionModel.from_config(dict(unet_config))
                vae = AutoencoderKL.from_config(dict(vae_config)) if vae_config is not None else None
        except (ValueError, TypeError, KeyError) as exc:
            raise ModelLoadError(f"invalid unet/vae config: {exc}") from exc
        _load_meta(unet, parts["unet"], "unet")
        if vae is not None:
            _load_meta(vae, parts["vae"], "vae")
        return cls(unet, _scheduler_from_config(scheduler_config), vae).eval()

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``unet/``, ``scheduler/`` and (if any) ``vae/`` as diffusers folders (safetensors)."""
        folder = Path(folder)
        self.unet.save_pretrained(folder / "unet", safe_serialization=True)
        self.scheduler.save_pretrained(folder / "scheduler")
        if self.vae is not None:
            self.vae.save_pretrained(folder / "vae", safe_serialization=True)
        extra = {"position_scale": self.position_scale, "spatial_conditioning": self.spatial_conditioning}
        if self.position_scale or self.spatial_conditioning:
            (folder / _SIDECAR).write_text(json.dumps(extra))

    # ------------------------------------------------------------------ properties

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell (8 for the SDXL VAE, 1 without a VAE)."""
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        """Channels of the latents (3 in pixel space, 4 with the SDXL VAE); the UNet's output channels."""
        return int(self.unet.config.out_channels)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    # ------------------------------------------------------------------ sampling steps

    def check_inputs(
        self, embeddings: Tensor, negative: Tensor | None, height: int, width: int, steps: int, cfg: bool
    ) -> None:
        """Raise InputError for sizes, shapes or step counts the UNet can't take."""
        multiple = self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value <= 0 or value % multiple:
                raise InputError(f"{name}={value!r} must be a positive multiple of {multiple}")
        if not isinstance(steps, int) or steps < 1:
            raise InputError(f"num_inference_steps={steps!r} must be >= 1")
        width_ = self.unet.config.cross_attention_dim
        if embeddings.ndim != 3 or embeddings.shape[-1] != width_ or embeddings.shape[:2].numel() == 0:
            raise InputError(f"embeddings of shape {tuple(embeddings.shape)} must be (B, n_query, {width_})")
        if negative is not None and (
            negative.ndim != 3
            or negative.shape[1:] != embeddings.shape[1:]
            or negative.shape[0] not in (1, embeddings.shape[0])
        ):
            raise InputError(
                f"negative_embeddings of shape {tuple(negative.shape)} do not match embeddings "
                f"{tuple(embeddings.shape)} (need the same shape, or batch 1)"
            )
        if cfg and negative is None:
            raise InputError("guidance_scale > 1 needs negative_embeddings (or pass guidance_scale=1.0)")

    def prepare_latents(
        self, batch: int, height: int, width: int, generator: torch.Generator | None, latents: Tensor | None
    ) -> Tensor:
        """Initial latents (B, C, h, w) = randn(generator) * init_noise_sigma, or ``latents`` as given."""
        shape = (batch, self.latent_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        if latents is not None:  # already scaled by init_noise_sigma (e.g. a trace's init_latents)
            if tuple(latents.shape) != shape:
                raise InputError(f"latents of shape {tuple(latents.shape)} must be {shape}")
            return latents.to(device=self.device, dtype=self.dtype)
        draw_device = generator.device if generator is not None else self.device
        noise = torch.randn(shape, generator=generator, device=draw_device, dtype=torch.float32)
        return (noise * self.scheduler.init_noise_sigma).to(device=self.device, dtype=self.dtype)

    def conditioning(
        self,
        embeddings: Tensor,
        height: int,
        width: int,
        original_size: tuple[int, int],
        crops_coords_top_left: tuple[int, int],
    ) -> dict[str, Tensor]:
        """UNet kwargs for (B, n, w) embeddings: encoder_hidden_states, and text_embeds / time_ids if used."""
        cond = {"encoder_hidden_states": embeddings}  # (B, n, w)
        if self.position_scale:
            positions = token_positions(embeddings.shape[1], embeddings.shape[2]).to(embeddings)  # (n, w)
            cond["encoder_hidden_states"] = embeddings + self.position_scale * positions
        if self.spatial_conditioning:
            scale = self.vae_scale_factor
            cond["spatial"] = self.spatial_map(embeddings, height // scale, width // scale)  # (B, w, h, w')
        if self.unet.config.addition_embed_type == "text_time":
            time_ids = [*original_size, *crops_coords_top_left, height, width]
            cond["text_embeds"] = embeddings.mean(dim=1)  # (B, w)
            cond["time_ids"] = torch.tensor([time_ids] * embeddings.shape[0], device=embeddings.device)  # (B, 6)
        return cond

    @staticmethod
    def spatial_map(embeddings: Tensor, height: int, width: int) -> Tensor:
        """(B, s*s, w) embeddings -> (B, w, height, width): each token painted over the region it was pooled from."""
        batch, count, channels = embeddings.shape
        side = math.isqrt(count)
        if side * side != count:
            raise InputError(f"spatial conditioning needs a square token grid; got {count} tokens")
        grid = embeddings.transpose(1, 2).reshape(batch, channels, side, side)  # (B, w, s, s)
        return torch.nn.functional.interpolate(grid, size=(height, width), mode="nearest")  # (B, w, h, w')

    def predict_noise(self, model_input: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
        """One UNet call on (B', C, h, w) -> (B', C, h, w) (with spatial conditioning, the map is appended)."""
        if "spatial" in cond:
            model_input = torch.cat([model_input, cond["spatial"].to(model_input.dtype)], dim=1)  # (B', C+w, h, w)
        added = {k: cond[k] for k in ("text_embeds", "time_ids") if k in cond} or None
        return self.unet(
            model_input,
            t,
            encoder_hidden_states=cond["encoder_hidden_states"],
            added_cond_kwargs=added,
            return_dict=False,
        )[0]

    def decode_latents(self, latents: Tensor) -> Tensor:
        """(B, C, h, w) latents -> (B, 3, H, W) float pixels in [0, 1]."""
        if self.vae is None:
            image = latents
        else:
            image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        return (image / 2 + 0.5).clamp(0, 1)

    @torch.no_grad()
    def decode(
        self,
        embeddings: Tensor,
        negative_embeddings: Tensor | None = None,
        *,
        height: int,
        width: int,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
        generator: torch.Generator | None = None,
        latents: Tensor | None = None,
        original_size: tuple[int, int] = (1024, 1024),
        crops_coords_top_left: tuple[int, int] = (0, 0),
        callback: Callable[[int, int, Tensor], None] | None = None,
        output_type: OutputType = "pil",
        trace: dict | None = None,
    ) -> list[PIL.Image.Image] | Tensor | np.ndarray:
        """Sample images from (B, n_query, width) embeddings.

        CFG runs when ``guidance_scale > 1`` and needs ``negative_embeddings`` ((B or 1, n_query, width)).
        ``latents`` are initial latents already multiplied by ``init_noise_sigma`` (used as given);
        otherwise they are drawn with ``generator`` (global RNG when None). ``callback(step, total, latents)``
        runs after each step. Returns a list of PIL images ("pil"), float [0, 1] (B, H, W, 3) numpy ("np"),
        float [0, 1] (B, 3, H, W) tensor ("pt") or the final latents ("latent"). If ``trace`` is a dict it
        receives the intermediate tensors (names as in the reference's gen.safetensors).
        """
        cfg = guidance_scale > 1.0
        self.check_inputs(embeddings, negative_embeddings, height, width, num_inference_steps, cfg)
        batch = embeddings.shape[0]
        embeddings = embeddings.to(device=self.device, dtype=self.dtype)
        if cfg:  # rows [conditional; negative], conditional FIRST as in Emu2-Gen
            negative = negative_embeddings.to(device=self.device, dtype=self.dtype).expand_as(embeddings)
            embeddings = torch.cat([embeddings, negative])  # (2B, n, w)
        cond = self.conditioning(embeddings, height, width, original_size, crops_coords_top_left)

        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        latents = self.prepare_latents(batch, height, width, generator, latents)  # (B, C, h, w)
        step_kwargs = {}
        if "generator" in inspect.signature(self.scheduler.step).parameters:
            step_kwargs["generator"] = generator
        if trace is not None:
            trace.update(init_latents=latents.clone(), **{k: v.clone() for k, v in cond.items()})

        timesteps = self.scheduler.timesteps
        for i, t in enumerate(timesteps):
            model_input = torch.cat([latents] * 2) if cfg else latents  # (2B or B, C, h, w)
            model_input = self.scheduler.scale_model_input(model_input, t)
            noise_pred = self.predict_noise(model_input, t, cond)
            guided = noise_pred
            if cfg:
                pred_cond, pred_uncond = noise_pred.chunk(2)
                guided = pred_uncond + guidance_scale * (pred_cond - pred_uncond)
            latents = self.scheduler.step(guided, t, latents, **step_kwargs, return_dict=False)[0]
            if trace is not None:
                trace.update(
                    {
                        f"step{i}.timestep": t.reshape(1).clone(),
                        f"step{i}.latent_model_input": model_input.clone(),
                        f"step{i}.unet_out": noise_pred.clone(),
                        f"step{i}.guided_noise_pred": guided.clone(),
                        f"step{i}.latents_after": latents.clone(),
                    }
                )
            if callback is not None:
                callback(i, len(timesteps), latents)

        if trace is not None:
            trace["final_latents"] = latents.clone()
        if output_type == "latent":
            return latents
        image = self.decode_latents(latents)  # (B, 3, H, W) in [0, 1]
        if trace is not None:
            trace["decoded_float"] = image.permute(0, 2, 3, 1).float().cpu()  # (B, H, W, 3)
        if output_type == "pt":
            return image
        array = image.permute(0, 2, 3, 1).float().cpu().numpy()  # (B, H, W, 3)
        if output_type == "np":
            return array
        if output_type != "pil":
            raise InputError(f"output_type={output_type!r} must be 'pil', 'np', 'pt' or 'latent'")
        return [PIL.Image.fromarray(a) for a in (array * 255).round().astype(np.uint8)]

    # ------------------------------------------------------------------ training

    def train_loss(
        self,
        pixel_values: Tensor,
        embeddings: Tensor,
        *,
        generator: torch.Generator | None = None,
        original_size: tuple[int, int] = (1024, 1024),
        crops_coords_top_left: tuple[int, int] = (0, 0),
        pixel_weights: Tensor | None = None,
    ) -> Tensor:
        """Diffusion training loss (MSE to the scheduler's prediction target) for (image, embeddings) pairs.

        ``pixel_weights`` (B, 1, h, w), optional, weights the squared error per position (e.g. to stress small
        objects on a plain background); the loss is then normalised by the weights' sum.

        ``pixel_values`` (B, 3, H, W) in [-1, 1]; ``embeddings`` (B, n_query, width). Encoded with the VAE
        (latent sample * scaling_factor) if there is one, else used in pixel space. Timesteps are uniform in
        [0, num_train_timesteps); noise follows the scheduler's ``alphas_cumprod`` (DDPM forward process,
        which is what Euler's sigmas parametrise). Same conditioning as ``decode`` (time ids use the image
        size as target size). Classifier-free-guidance dropout is the caller's job (swap in negatives).
        """
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise InputError(f"pixel_values of shape {tuple(pixel_values.shape)} must be (B, 3, H, W)")
        height, width = pixel_values.shape[-2:]
        self.check_inputs(embeddings, None, int(height), int(width), 1, False)
        if embeddings.shape[0] != pixel_values.shape[0]:
            raise InputError(f"batch of embeddings {embeddings.shape[0]} != images {pixel_values.shape[0]}")
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        embeddings = embeddings.to(device=self.device, dtype=self.dtype)
        if self.vae is None:
            x0 = pixel_values  # (B, 3, H, W)
        else:
            dist = self.vae.encode(pixel_values).latent_dist
            x0 = dist.sample(generator) * self.vae.config.scaling_factor  # (B, 4, h, w)
        batch = x0.shape[0]
        gen_device = generator.device if generator is not None else self.device
        noise = torch.randn(x0.shape, generator=generator, device=gen_device).to(x0)
        n_train = self.scheduler.config.num_train_timesteps
        t = torch.randint(0, n_train, (batch,), generator=generator, device=gen_device).to(self.device)
        alpha_bar = self.scheduler.alphas_cumprod.to(device=self.device, dtype=torch.float32)[t]
        a = alpha_bar.sqrt().view(-1, 1, 1, 1).to(x0.dtype)
        s = (1 - alpha_bar).sqrt().view(-1, 1, 1, 1).to(x0.dtype)
        noisy = a * x0 + s * noise
        prediction_type = self.scheduler.config.get("prediction_type", "epsilon")
        if prediction_type == "epsilon":
            target = noise
        elif prediction_type == "v_prediction":
            target = a * noise - s * x0
        elif prediction_type in ("sample", "original_sample"):
            target = x0
        else:
            raise InputError(f"unsupported prediction_type {prediction_type!r} for training")
        cond = self.conditioning(embeddings, int(height), int(width), original_size, crops_coords_top_left)
        pred = self.predict_noise(noisy, t, cond)
        if pixel_weights is None:
            return torch.nn.functional.mse_loss(pred.float(), target.float())
        squared = (pred.float() - target.float()).pow(2) * pixel_weights.to(pred.device, torch.float32)
        return squared.sum() / (pixel_weights.sum() * pred.shape[1]).clamp_min(1e-8)
