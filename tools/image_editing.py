"""``edit_image``: change an image by an instruction; the result records ``derived_from`` = the source's sha256.

- :class:`EditImage` is Emu2-Gen style: the source image and the instruction form one interleaved prompt,
  ``model.generate_image([source, instruction])``, so the regressed embeddings (and the decoded image) are
  conditioned on both.
- :class:`DiffusersImageEdit` wraps a local diffusers instruct-pix2pix folder
  (``StableDiffusionInstructPix2PixPipeline``: ``image_guidance_scale`` applies) or an image-to-image folder
  (e.g. ``StableDiffusionImg2ImgPipeline``: ``strength`` applies), loaded as
  :class:`~emu_agent.tools.image_generation.LocalPipeline` loads it (local files, safetensors, no custom code).

Because every edit result is stored with ``derived_from``, a chain of edits can be walked back to its origin
(what ``/undo`` in the CLI uses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emu_agent.errors import InputError, ToolError
from emu_agent.tools.base import Tool, ToolContext, ToolOutput
from emu_agent.tools.image_generation import LocalPipeline, decoder_progress, draw_seed, require_model
from emu_agent.tools.inputs import EditImageInput, builtin_spec

__all__ = ["DiffusersImageEdit", "EditImage", "edit_prompt"]

_SPEC = builtin_spec("edit_image")


def edit_prompt(source: Any, instruction: str) -> list[Any]:
    """The Emu2-Gen editing prompt: the source image, then the instruction (as emu-tiny trains on edits)."""
    return [source, instruction]


class EditImage(Tool):
    """``edit_image`` on the Emu model's own decoder, prompted with ``[source image, instruction]``.

    Args:
        model: the model to edit with; by default the agent's model (``context.model``).
        seed: the seed used when a call gives none; ``None`` draws a fresh one per call (reported in ``data``).
        timeout: seconds before the agent cancels the call.
    """

    name = "edit_image"
    description = _SPEC.description
    input_model = EditImageInput

    def __init__(self, model: Any = None, *, seed: int | None = None, timeout: float | None = 300.0) -> None:
        self.model = model
        self.seed = seed
        self.timeout = timeout

    def run(self, arguments: EditImageInput, context: ToolContext) -> ToolOutput:  # type: ignore[override]
        model = require_model(self.model, context, self.name, needs_decoder=True)
        source_ref = context.resolve_image(arguments.image)
        source = source_ref.load()
        seed = draw_seed(arguments.seed, self.seed)
        context.report_progress(0.0, "regressing visual embeddings")
        try:
            image = model.generate_image(
                edit_prompt(source, arguments.instruction),
                num_inference_steps=arguments.num_inference_steps,
                guidance_scale=arguments.guidance_scale,
                seed=seed,
                callback=decoder_progress(context),
            )
        except ToolError:
            raise
        except InputError as exc:
            raise ToolError(
                f"edit_image could not apply {arguments.instruction!r:.120} to {arguments.image}: {exc}"
            ) from exc
        ref = context.media_store.add_image(image, derived_from=source_ref)
        return ToolOutput(
            images=[ref],  # the image (with its handle) is the result the model reads
            data={
                "summary": f"Edited {arguments.image}: {arguments.instruction}",
                "sha256": ref.sha256,
                "derived_from": source_ref.sha256,
                "seed": seed,
                "backend": "emu",
            },
        )


class DiffusersImageEdit(Tool):
    """``edit_image`` on a local diffusers instruct-pix2pix or image-to-image pipeline folder.

    Args:
        folder: a folder written by ``pipeline.save_pretrained``.
        strength: how much an image-to-image pipeline may change the source (0..1); unused by instruct-pix2pix.
        image_guidance_scale: how closely instruct-pix2pix sticks to the source; unused by image-to-image.
        device, torch_dtype: where and in which dtype to run.
        seed: the seed used when a call gives none; ``None`` draws a fresh one per call.
        timeout: seconds before the agent cancels the call.

    Raises:
        ModelLoadError: ``folder`` is not a loadable diffusers pipeline folder (see ``LocalPipeline``).
    """

    name = "edit_image"
    description = _SPEC.description
    input_model = EditImageInput

    def __init__(
        self,
        folder: str | Path,
        *,
        strength: float = 0.75,
        image_guidance_scale: float = 1.5,
        device: str = "cpu",
        torch_dtype: Any = None,
        seed: int | None = None,
        timeout: float | None = 300.0,
    ) -> None:
        self.pipeline = LocalPipeline(folder, device=device, torch_dtype=torch_dtype)
        self.strength = strength
        self.image_guidance_scale = image_guidance_scale
        self.seed = seed
        self.timeout = timeout

    def run(self, arguments: EditImageInput, context: ToolContext) -> ToolOutput:  # type: ignore[override]
        source_ref = context.resolve_image(arguments.image)
        source = source_ref.load()
        seed = draw_seed(arguments.seed, self.seed)
        if not self.pipeline.accepts("image"):
            raise ToolError(f"the pipeline in {self.pipeline.folder} ({self.pipeline.class_name}) takes no image")
        image = self.pipeline(
            context,
            seed=seed,
            prompt=arguments.instruction,
            image=source,
            num_inference_steps=arguments.num_inference_steps,
            guidance_scale=arguments.guidance_scale,
            strength=self.strength,
            image_guidance_scale=self.image_guidance_scale,
        )
        ref = context.media_store.add_image(image, derived_from=source_ref)
        return ToolOutput(
            images=[ref],  # the image (with its handle) is the result the model reads
            data={
                "summary": f"Edited {arguments.image}: {arguments.instruction}",
                "sha256": ref.sha256,
                "derived_from": source_ref.sha256,
                "seed": seed,
                "backend": f"diffusers:{self.pipeline.class_name}",
            },
        )
