"""``generate_image``: text to image on the model's own decoder, or on a local diffusers pipeline folder.

- :class:`GenerateImage` runs ``model.generate_image(prompt, ...)`` (Emu2-Gen: the LLM regresses visual
  embeddings, the diffusion decoder paints them) and reports each denoising step as progress.
- :class:`DiffusersTextToImage` wraps a diffusers text-to-image pipeline saved in a local folder (e.g. a Stable
  Diffusion folder with ``model_index.json``). It never downloads and never runs code from the folder: the
  pipeline and every component must be classes that ship with diffusers or transformers, and weights are read
  only from safetensors files.

Both store the image in the media store and return it as the tool's image. The helpers at the bottom (progress,
model lookup, local pipeline loading) are shared with :mod:`emu_agent.tools.image_editing`.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emu_agent.errors import EmuAgentError, InputError, ModelLoadError, ToolError
from emu_agent.tools.base import Tool, ToolContext, ToolOutput
from emu_agent.tools.inputs import GenerateImageInput, builtin_spec

__all__ = [
    "DiffusersTextToImage",
    "GenerateImage",
    "LocalPipeline",
    "decoder_progress",
    "diffusers_progress",
    "draw_seed",
    "require_model",
]

_SPEC = builtin_spec("generate_image")


class GenerateImage(Tool):
    """``generate_image`` on the Emu model's own diffusion decoder.

    Args:
        model: the model to draw with; by default the agent's model (``context.model``).
        height, width: image size (default: the decoder's default size).
        seed: the seed used when a call gives none; ``None`` draws a fresh one per call (reported in ``data``).
        timeout: seconds before the agent cancels the call.
    """

    name = "generate_image"
    description = _SPEC.description
    input_model = GenerateImageInput

    def __init__(
        self,
        model: Any = None,
        *,
        height: int | None = None,
        width: int | None = None,
        seed: int | None = None,
        timeout: float | None = 300.0,
    ) -> None:
        self.model = model
        self.height = height
        self.width = width
        self.seed = seed
        self.timeout = timeout

    def run(self, arguments: GenerateImageInput, context: ToolContext) -> ToolOutput:  # type: ignore[override]
        model = require_model(self.model, context, self.name, needs_decoder=True)
        seed = draw_seed(arguments.seed, self.seed)
        context.report_progress(0.0, "regressing visual embeddings")
        try:
            image = model.generate_image(
                arguments.prompt,
                negative_prompt=arguments.negative_prompt,
                num_inference_steps=arguments.num_inference_steps,
                guidance_scale=arguments.guidance_scale,
                height=self.height,
                width=self.width,
                seed=seed,
                callback=decoder_progress(context),
            )
        except ToolError:
            raise
        except InputError as exc:
            raise ToolError(f"generate_image could not draw {arguments.prompt!r:.120}: {exc}") from exc
        ref = context.media_store.add_image(image)
        return ToolOutput(
            images=[ref],  # the image (with its handle) is the result the model reads
            data={
                "summary": f"Generated a {ref.width}x{ref.height} image of: {arguments.prompt}",
                "sha256": ref.sha256,
                "seed": seed,
                "backend": "emu",
            },
        )


class DiffusersTextToImage(Tool):
    """``generate_image`` on a local diffusers text-to-image pipeline folder (loaded on first use).

    Args:
        folder: a folder written by ``pipeline.save_pretrained`` (``model_index.json`` plus component folders).
        device, torch_dtype: where and in which dtype to run (``torch_dtype`` a torch dtype or its name).
        height, width: image size (default: the pipeline's).
        seed: the seed used when a call gives none; ``None`` draws a fresh one per call.
        timeout: seconds before the agent cancels the call.

    Raises:
        ModelLoadError: ``folder`` is not a diffusers pipeline folder, names a class outside diffusers and
            transformers, or can't be loaded (raised when the folder is checked, and on first use).
    """

    name = "generate_image"
    description = _SPEC.description
    input_model = GenerateImageInput

    def __init__(
        self,
        folder: str | Path,
        *,
        device: str = "cpu",
        torch_dtype: Any = None,
        height: int | None = None,
        width: int | None = None,
        seed: int | None = None,
        timeout: float | None = 300.0,
    ) -> None:
        self.pipeline = LocalPipeline(folder, device=device, torch_dtype=torch_dtype)
        self.height = height
        self.width = width
        self.seed = seed
        self.timeout = timeout

    def run(self, arguments: GenerateImageInput, context: ToolContext) -> ToolOutput:  # type: ignore[override]
        seed = draw_seed(arguments.seed, self.seed)
        kwargs: dict[str, Any] = {
            "prompt": arguments.prompt,
            "negative_prompt": arguments.negative_prompt,
            "num_inference_steps": arguments.num_inference_steps,
            "guidance_scale": arguments.guidance_scale,
            "height": self.height,
            "width": self.width,
        }
        image = self.pipeline(context, seed=seed, **kwargs)
        ref = context.media_store.add_image(image)
        return ToolOutput(
            images=[ref],  # the image (with its handle) is the result the model reads
            data={
                "summary": f"Generated a {ref.width}x{ref.height} image of: {arguments.prompt}",
                "sha256": ref.sha256,
                "seed": seed,
                "backend": f"diffusers:{self.pipeline.class_name}",
            },
        )


# ---------------------------------------------------------------------------------------------- shared helpers


def require_model(model: Any, context: ToolContext, tool_name: str, *, needs_decoder: bool = False) -> Any:
    """The tool's own model, else the agent's; a ToolError if there is none (or it has no image decoder)."""
    model = model if model is not None else context.model
    if model is None:
        raise ToolError(f"{tool_name} needs a model, but none was given to the tool or the agent")
    if needs_decoder and getattr(model, "decoder", None) is None:
        raise ToolError(f"{tool_name} needs a model with an image decoder; {type(model).__name__} has none")
    return model


def draw_seed(requested: int | None, default: int | None) -> int:
    """The call's seed, else the tool's default, else a fresh random one (so every result can be reproduced)."""
    if requested is not None:
        return requested
    return default if default is not None else secrets.randbelow(2**31)


def decoder_progress(context: ToolContext) -> Callable[[int, int, Any], None]:
    """An ``EmuDecoder`` step callback that reports progress and stops the run when it is cancelled."""

    def callback(step: int, total: int, _latents: Any) -> None:
        context.raise_if_cancelled()
        context.report_progress((step + 1) / max(total, 1), f"denoising step {step + 1}/{total}")

    return callback


def diffusers_progress(context: ToolContext, default_total: int) -> Callable[..., dict[str, Any]]:
    """A diffusers ``callback_on_step_end`` that reports progress and stops the run when it is cancelled."""

    def callback(pipe: Any, step: int, _timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        context.raise_if_cancelled()
        total = int(getattr(pipe, "_num_timesteps", 0) or default_total or 1)
        context.report_progress(min((step + 1) / total, 1.0), f"denoising step {step + 1}/{total}")
        return callback_kwargs

    return callback


_ALLOWED_LIBRARIES = {"diffusers", "transformers"}


class LocalPipeline:
    """A diffusers pipeline in a local folder, checked at construction and loaded on first call (thread-safe).

    The folder's ``model_index.json`` must name a pipeline class of diffusers and, for every component, a class
    of diffusers or transformers (or ``null``); custom pipeline code in the folder is refused. Loading uses
    ``local_files_only=True`` and ``use_safetensors=True``: no download, no pickle.
    """

    def __init__(self, folder: str | Path, *, device: str = "cpu", torch_dtype: Any = None) -> None:
        self.folder = Path(folder)
        self.device = device
        self.torch_dtype = torch_dtype
        self.class_name = self._check_folder()
        self._pipeline: Any = None
        self._lock = threading.Lock()

    def _check_folder(self) -> str:
        index = self.folder / "model_index.json"
        if not index.is_file():
            raise ModelLoadError(f"{self.folder} is not a diffusers pipeline folder (no model_index.json)")
        try:
            config = json.loads(index.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{index} can't be read: {exc}") from exc
        class_name = config.get("_class_name")
        if not isinstance(class_name, str):
            raise ModelLoadError(f"{index} names custom pipeline code {class_name!r}; only diffusers classes load")
        for key, value in config.items():
            if key.startswith("_") or not isinstance(value, list):
                continue
            library = value[0] if value else None
            if library is not None and library not in _ALLOWED_LIBRARIES:
                raise ModelLoadError(
                    f"{index}: component {key!r} comes from {library!r}; only diffusers and transformers load"
                )
        return class_name

    def load(self) -> Any:
        """The pipeline, loaded once."""
        with self._lock:
            if self._pipeline is None:
                self._pipeline = self._load()
            return self._pipeline

    def _load(self) -> Any:
        import diffusers
        import torch

        cls = getattr(diffusers, self.class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, diffusers.DiffusionPipeline)):
            raise ModelLoadError(f"{self.folder}: {self.class_name!r} is not a diffusers pipeline class")
        dtype = getattr(torch, self.torch_dtype) if isinstance(self.torch_dtype, str) else self.torch_dtype
        # diffusers renamed ``torch_dtype`` to ``dtype`` (the old name warns); pass whichever this version takes
        dtype_key = "dtype" if hasattr(diffusers.utils.deprecation_utils, "_resolve_dtype") else "torch_dtype"
        try:
            pipe = cls.from_pretrained(
                str(self.folder), local_files_only=True, use_safetensors=True, **{dtype_key: dtype or torch.float32}
            )
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as exc:
            raise ModelLoadError(f"can't load the diffusers pipeline in {self.folder}: {exc}") from exc
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def accepts(self, argument: str) -> bool:
        """Whether the pipeline's ``__call__`` takes ``argument`` (loads the pipeline)."""
        import inspect

        return argument in inspect.signature(self.load().__call__).parameters

    def __call__(self, context: ToolContext, *, seed: int, **kwargs: Any) -> Any:
        """Run the pipeline once and return its first image. Arguments that are ``None`` (left to the
        pipeline's defaults) or that the pipeline does not take (e.g. ``strength`` for instruct-pix2pix) are
        dropped."""
        import inspect

        import torch

        pipe = self.load()
        accepted = inspect.signature(pipe.__call__).parameters
        call = {k: v for k, v in kwargs.items() if v is not None and k in accepted}
        if "callback_on_step_end" in accepted:
            call["callback_on_step_end"] = diffusers_progress(context, kwargs.get("num_inference_steps") or 0)
        call["generator"] = torch.Generator(device="cpu").manual_seed(seed)
        try:
            with self._lock:
                result = pipe(**call, output_type="pil")
        except EmuAgentError:
            raise
        except (ValueError, TypeError, RuntimeError) as exc:
            raise ToolError(f"the diffusers pipeline in {self.folder} failed: {exc}") from exc
        return result.images[0]
