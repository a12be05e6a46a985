"""generate_image and edit_image: on the random-weight Emu model's own decoder, and on tiny real diffusers
pipelines saved to (and loaded from) a local folder."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emu_agent.errors import ModelLoadError, ToolError
from emu_agent.media import MediaStore
from emu_agent.tools.base import ToolContext
from emu_agent.tools.image_editing import DiffusersImageEdit, EditImage, edit_prompt
from emu_agent.tools.image_generation import DiffusersTextToImage, GenerateImage, LocalPipeline
from emu_agent.tools.inputs import BUILTIN_SPECS

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def pixels(context: ToolContext, ref: Any) -> np.ndarray:
    return np.asarray(context.media_store.load_image(ref))


# ---------------------------------------------------------------------------------------------- emu decoder


def test_generate_image_on_the_model_decoder(context: ToolContext, progress: list) -> None:
    tool = GenerateImage()
    assert tool.spec == BUILTIN_SPECS["generate_image"]
    out = tool(prompt="a red circle at top left", seed=3, num_inference_steps=2, context=context)
    [ref] = out.images
    assert context.media_store.has(ref) and (ref.width, ref.height) == (64, 64)
    assert out.data["summary"] == "Generated a 64x64 image of: a red circle at top left"
    assert {k: out.data[k] for k in ("sha256", "seed", "backend")} == {
        "sha256": ref.sha256,
        "seed": 3,
        "backend": "emu",
    }
    assert out.text == ""  # the model reads the image itself, labelled with its handle, as emu-tiny is trained
    assert progress == [(0.0, "regressing visual embeddings"), (0.5, "denoising step 1/2"), (1.0, "denoising step 2/2")]
    again = tool(prompt="a red circle at top left", seed=3, num_inference_steps=2, context=context)
    assert again.images[0] == ref  # same seed -> same pixels -> same content address
    other = tool(prompt="a red circle at top left", seed=4, num_inference_steps=2, context=context)
    assert other.images[0] != ref


def test_generate_image_passes_every_argument(context: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    real = context.model.generate_image

    def spy(prompt: Any, **kwargs: Any) -> Any:
        seen.update(kwargs, prompt=prompt)
        return real(prompt, **kwargs)

    monkeypatch.setattr(context.model, "generate_image", spy)
    GenerateImage(height=32, width=32)(
        prompt="a blue square", negative_prompt="red", num_inference_steps=1, guidance_scale=1.0, seed=1,
        context=context,
    )  # fmt: skip
    assert {k: seen[k] for k in ("prompt", "negative_prompt", "num_inference_steps", "guidance_scale", "seed")} == {
        "prompt": "a blue square",
        "negative_prompt": "red",
        "num_inference_steps": 1,
        "guidance_scale": 1.0,
        "seed": 1,
    }
    assert (seen["height"], seen["width"]) == (32, 32)


def test_generate_image_draws_and_reports_a_seed(context: ToolContext) -> None:
    out = GenerateImage()(prompt="a green triangle", num_inference_steps=1, context=context)
    assert isinstance(out.data["seed"], int)
    fixed = GenerateImage(seed=7)(prompt="a green triangle", num_inference_steps=1, context=context)
    assert fixed.data["seed"] == 7


def test_generate_image_errors(store: MediaStore, context: ToolContext) -> None:
    with pytest.raises(ToolError, match="needs a model"):
        GenerateImage()(prompt="x", context=ToolContext(media_store=store))

    class NoDecoder:
        decoder = None

    with pytest.raises(ToolError, match="NoDecoder has none"):
        GenerateImage(NoDecoder())(prompt="x", context=context)
    with pytest.raises(ToolError, match="'num_inference_steps'=0"):
        GenerateImage()(prompt="x", num_inference_steps=0, context=context)


def test_generate_image_stops_when_cancelled(context: ToolContext) -> None:
    cancel = threading.Event()
    cancel.set()
    cancelled = ToolContext(model=context.model, media_store=context.media_store, cancelled=cancel, tool_name="g")
    with pytest.raises(ToolError, match="cancelled"):
        GenerateImage()(prompt="a red circle", num_inference_steps=2, context=cancelled)


def test_edit_image_prompts_with_source_and_records_lineage(
    context: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = GenerateImage()(prompt="a red circle", seed=1, num_inference_steps=1, context=context).images[0]
    handle = context.handles.handle("image", source)
    prompts: list[Any] = []
    real = context.model.generate_image
    monkeypatch.setattr(context.model, "generate_image", lambda p, **kw: prompts.append(p) or real(p, **kw))
    tool = EditImage()
    assert tool.spec == BUILTIN_SPECS["edit_image"]
    out = tool(image=handle, instruction="make the red circle blue.", seed=2, num_inference_steps=2, context=context)
    [ref] = out.images
    assert ref.derived_from == source.sha256 and out.data["derived_from"] == source.sha256
    assert ref != source and context.media_store.has(ref)
    [prompt] = prompts
    assert prompt[1] == "make the red circle blue." and np.array_equal(np.asarray(prompt[0]), pixels(context, source))
    assert edit_prompt("img", "x") == ["img", "x"]
    # the result is a valid input to the next edit
    second = context.handles.handle("image", ref)
    chained = tool(image=second, instruction="move it to right.", seed=2, num_inference_steps=1, context=context)
    assert chained.images[0].derived_from == ref.sha256


def test_edit_image_unknown_handle(context: ToolContext) -> None:
    with pytest.raises(ToolError, match=r"unknown image 'image_9'"):
        EditImage()(image="image_9", instruction="make it blue", context=context)


# ---------------------------------------------------------------------------------------------- diffusers


def test_diffusers_text_to_image(pipeline_folder: Any, context: ToolContext, progress: list) -> None:
    tool = DiffusersTextToImage(pipeline_folder("text2img"), height=32, width=32)
    assert tool.name == "generate_image" and tool.spec == BUILTIN_SPECS["generate_image"]
    out = tool(prompt="a red circle", seed=0, num_inference_steps=2, guidance_scale=2.0, context=context)
    [ref] = out.images
    assert (ref.width, ref.height) == (32, 32) and context.media_store.has(ref)
    assert out.data["backend"] == "diffusers:StableDiffusionPipeline"
    assert [f for f, _ in progress] == [0.5, 1.0]
    same = tool(prompt="a red circle", seed=0, num_inference_steps=2, guidance_scale=2.0, context=context)
    assert same.images[0] == ref
    negative = tool(
        prompt="a red circle", negative_prompt="blue", seed=0, num_inference_steps=2, guidance_scale=2.0,
        context=context,
    )  # fmt: skip
    assert negative.images[0] != ref


@pytest.mark.parametrize(("kind", "cls"), [("pix2pix", "InstructPix2Pix"), ("img2img", "Img2Img")])
def test_diffusers_image_edit(pipeline_folder: Any, context: ToolContext, kind: str, cls: str) -> None:
    source = context.media_store.add_image(np.full((32, 32, 3), 200, dtype=np.uint8))
    handle = context.handles.handle("image", source)
    tool = DiffusersImageEdit(pipeline_folder(kind))
    assert tool.name == "edit_image"
    out = tool(image=handle, instruction="make it blue", seed=0, num_inference_steps=2, context=context)
    [ref] = out.images
    assert ref.derived_from == source.sha256 and (ref.width, ref.height) == (32, 32)
    assert out.data["backend"] == f"diffusers:StableDiffusion{cls}Pipeline"


def test_local_pipeline_refuses_what_it_should(tmp_path: Path, pipeline_folder: Any) -> None:
    with pytest.raises(ModelLoadError, match=r"no model_index\.json"):
        LocalPipeline(tmp_path)
    with pytest.raises(ModelLoadError, match=r"no model_index\.json"):
        DiffusersTextToImage("some-org/some-hub-model")  # a hub id is not a folder: never downloaded
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "model_index.json").write_text(json.dumps({"_class_name": ["pipeline", "MyPipeline"]}))
    with pytest.raises(ModelLoadError, match="custom pipeline code"):
        LocalPipeline(custom)
    (custom / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["my_module", "MyUNet"]})
    )
    with pytest.raises(ModelLoadError, match="'unet' comes from 'my_module'"):
        LocalPipeline(custom)
    (custom / "model_index.json").write_text(json.dumps({"_class_name": "NotAPipeline"}))
    with pytest.raises(ModelLoadError, match="not a diffusers pipeline class"):
        LocalPipeline(custom).load()
    pickled = tmp_path / "pickled"  # a folder whose weights are only .bin pickles is refused, not unpickled
    import shutil

    shutil.copytree(pipeline_folder("text2img"), pickled)
    for weights in pickled.rglob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelLoadError, match="can't load the diffusers pipeline"):
        LocalPipeline(pickled).load()
