"""Input models of the built-in tools: the single source of their names, descriptions and argument schemas.

The tool implementations, the prompt that advertises them and emu-tiny's training dialogues all read these, so
the model is trained on exactly what the agent shows it. Images and videos are named by the handles the agent
writes next to them in the conversation (``image_1``, ``video_1``); see :mod:`emu_agent.agent.prompt`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from emu_agent.tools.spec import ToolSpec

__all__ = [
    "BUILTIN_SPECS",
    "AnswerAboutVideoInput",
    "DescribeImageInput",
    "EditImageInput",
    "FetchImageInput",
    "GenerateImageInput",
    "builtin_spec",
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerateImageInput(_Input):
    """Arguments of ``generate_image``."""

    prompt: str = Field(min_length=1, max_length=2000, description="what the image shows")
    negative_prompt: str | None = Field(default=None, max_length=2000, description="what to avoid")
    num_inference_steps: int | None = Field(default=None, ge=1, le=200)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)


class EditImageInput(_Input):
    """Arguments of ``edit_image``."""

    image: str = Field(min_length=1, max_length=200, description="handle of the image to edit, e.g. image_1")
    instruction: str = Field(min_length=1, max_length=2000, description="what to change")
    num_inference_steps: int | None = Field(default=None, ge=1, le=200)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)


class AnswerAboutVideoInput(_Input):
    """Arguments of ``answer_about_video``."""

    video: str = Field(min_length=1, max_length=200, description="handle of the video, e.g. video_1")
    question: str = Field(min_length=1, max_length=2000)
    max_frames: int | None = Field(default=None, ge=1, le=256)
    sampling: Literal["uniform", "scene"] = "uniform"


class DescribeImageInput(_Input):
    """Arguments of ``describe_image``."""

    image: str = Field(min_length=1, max_length=200, description="handle of the image, e.g. image_1")
    detail: Literal["brief", "detailed"] = "brief"
    purpose: Literal["alt_text", "scene", "read_text"] = "scene"


class FetchImageInput(_Input):
    """Arguments of ``fetch_image``."""

    url: str = Field(min_length=1, max_length=4096, description="http or https URL of an image")


_DESCRIPTIONS: dict[str, tuple[str, type[_Input]]] = {
    "generate_image": ("Draw a new image from a text prompt.", GenerateImageInput),
    "edit_image": ("Change an image by an instruction.", EditImageInput),
    "answer_about_video": ("Answer a question about a video.", AnswerAboutVideoInput),
    "describe_image": ("Describe an image, e.g. as alt text.", DescribeImageInput),
    "fetch_image": ("Download an image from a URL.", FetchImageInput),
}

BUILTIN_SPECS: dict[str, ToolSpec] = {
    name: ToolSpec.from_input_model(name, description, model) for name, (description, model) in _DESCRIPTIONS.items()
}


def builtin_spec(name: str) -> ToolSpec:
    """The spec of a built-in tool by name."""
    return BUILTIN_SPECS[name]
