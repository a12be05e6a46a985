"""Train emu-tiny on the scenes world, in three stages (``emu-agent train-tiny`` runs them).

1. ``encoder``: the EVA-style encoder is pre-trained to see, as EVA-CLIP is before Emu uses it: here with a
   scene-attribute objective (per cell: shape and colour, plus the background) read from its pooled image
   (16 tokens) and video-frame (4 tokens) embeddings. The probe heads are dropped afterwards.
2. ``decoder``: with the encoder frozen, a diffusers UNet learns to turn an image's visual embeddings back into
   its pixels (Emu2-Gen's decoder objective; diffusion with clean-image prediction, pixel-weighted MSE).
3. ``lm``: with the encoder frozen, the LLaMA and both projections learn Emu's unified objective on the task
   mixture: cross-entropy on text answers plus l2 regression of the visual embeddings of target images.
4. ``decoder_ft``: with everything else frozen, the decoder is fine-tuned on the language model's *regressed*
   embeddings of text-to-image and editing prompts (paired with the target renders), half of each batch, and
   on true embeddings for the other half, as Emu fine-tunes its diffusion decoder on the regression output.

Stages 2 and 3 both need only stage 1, so they can run side by side (one process each). :func:`assemble`
merges the parts into one ``save_pretrained`` checkpoint.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from emu_agent.errors import InputError
from emu_agent.model.visual import EvaVisionTransformer, pool_visual_tokens, preprocess_images
from emu_agent.world.growth import expansion_plan, grow_layers, layer_count
from emu_agent.world.plurals import plural_pairs, seed_plural_embeddings, split_plurals
from emu_agent.world.render import off_palette, render_scene
from emu_agent.world.scene import Scene, is_heldout_triple, sample_scene
from emu_agent.world.stages import run_stage, step_rng
from emu_agent.world.tiny import _vision
from emu_agent.world.vocab import BACKGROUNDS, CELLS, COLOURS, SHAPES

__all__ = ["TrainConfig", "assemble", "train_decoder", "train_decoder_on_regressed", "train_encoder", "train_lm"]


class TrainConfig(BaseModel):
    """Options of a training run (``run_dir`` holds the stages' checkpoints)."""

    model_config = ConfigDict(extra="forbid")

    run_dir: Path
    seed: int = 0
    encoder_steps: int = 600
    encoder_batch: int = 64
    encoder_lr: float = 1e-3
    # fraction of encoder images shown in grayscale, colour targets ignored: shape read apart from colour
    encoder_grayscale: float = Field(0.0, ge=0.0, le=1.0)
    # fraction of encoder images painted in off-vocabulary colours (render.off_palette), colour targets ignored
    encoder_off_palette: float = Field(0.0, ge=0.0, le=1.0)
    encoder_init: Path | None = None  # start the encoder from this run dir's encoder/ (a new phase)
    decoder_steps: int = 1500
    decoder_batch: int = 16
    decoder_lr: float = 1e-3
    decoder_embedding_noise: float = 0.5
    decoder_init: Path | None = None  # start the decoder from this run dir's decoder/ (a new phase)
    decoder_ft_steps: int = 0
    decoder_ft_lr: float = 2e-4
    lm_steps: int = 2500
    lm_batch: int = 32
    lm_lr: float = 1e-3
    lm_init: Path | None = None
    # LLaMA depth; above lm_init's, the phase grows the LM (emu_agent.world.growth). None: lm_init's, or 4
    lm_layers: int | None = Field(None, ge=1, le=64)
    # start the phase with each shape plural's input embedding copied from its singular (emu_agent.world.plurals)
    lm_seed_plurals: bool = False
    # drop the tokenizer's shape-plural merges before the phase, so "squares?" reads as "▁square" "s" "?"
    lm_split_plurals: bool = False
    lm_mixture: dict[str, float] | None = None
    regression_weight: float = 1.0
    lm_rollout: float = Field(0.0, ge=0.0, le=1.0)  # fraction of image targets fed the LM's own rollouts
    time_limit_s: float | None = None
    progress: bool = True


# ------------------------------------------------------------------------------------------ stage 1: encoder
_COARSE_POOL = 4  # the probe's second head reads a 2x2 pool, which pushes scene-wide information into every token
_ATTRS = len(CELLS) * (1 + len(SHAPES) + 1 + len(COLOURS)) + len(BACKGROUNDS)


class EncoderProbe(nn.Module):
    """The encoder plus linear probe heads on its pooled embeddings, 4x4 and 2x2 (heads are discarded)."""

    def __init__(self) -> None:
        super().__init__()
        self.vision = _vision()
        self.visual = EvaVisionTransformer(self.vision)
        width = self.vision.width
        self.image_head = nn.Sequential(
            nn.LayerNorm(self.vision.n_query * width), nn.Linear(self.vision.n_query * width, _ATTRS)
        )
        self.frame_head = nn.Sequential(nn.LayerNorm(_COARSE_POOL * width), nn.Linear(_COARSE_POOL * width, _ATTRS))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.visual(pixels)  # (B, 1+g*g, w)
        image = pool_visual_tokens(features, self.vision.n_query).flatten(1)  # (B, nq*w)
        frame = pool_visual_tokens(features, _COARSE_POOL).flatten(1)  # (B, 4*w): a harder, coarser read-out
        return self.image_head(image), self.frame_head(frame)  # (B, A) each


def _attribute_targets(scene: Scene) -> torch.Tensor:
    shapes = [0] * len(CELLS)
    colours = [0] * len(CELLS)
    for obj in scene.objects:
        index = CELLS.index(obj.cell)
        shapes[index] = 1 + SHAPES.index(obj.shape)
        colours[index] = 1 + list(COLOURS).index(obj.colour)
    return torch.tensor([*shapes, *colours, list(BACKGROUNDS).index(scene.background)])  # (19,)


def _attribute_loss(
    logits: torch.Tensor, targets: torch.Tensor, colour_known: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over every cell's shape and colour and the background, and the share of scenes read
    entirely right. ``colour_known`` (B,) bool: where False (a grayscale image) colour targets are ignored."""
    n_cells, n_shape, n_colour = len(CELLS), 1 + len(SHAPES), 1 + len(COLOURS)
    shape_logits = logits[:, : n_cells * n_shape].reshape(-1, n_cells, n_shape)  # (B, 9, 4)
    colour_logits = logits[:, n_cells * n_shape : n_cells * (n_shape + n_colour)].reshape(-1, n_cells, n_colour)
    bg_logits = logits[:, n_cells * (n_shape + n_colour) :]  # (B, n_backgrounds)
    colour_targets = targets[:, n_cells : 2 * n_cells]  # (B, 9)
    if colour_known is not None:
        colour_targets = colour_targets.masked_fill(~colour_known[:, None], -100)
    colour_sum = F.cross_entropy(colour_logits.transpose(1, 2), colour_targets, ignore_index=-100, reduction="sum")
    colour_loss = colour_sum / (colour_targets != -100).sum().clamp(min=1)  # an all-grayscale batch gives 0, not NaN
    loss = (
        F.cross_entropy(shape_logits.transpose(1, 2), targets[:, :n_cells])
        + colour_loss
        + F.cross_entropy(bg_logits, targets[:, -1])
    )
    correct = (
        (shape_logits.argmax(-1) == targets[:, :n_cells]).all(-1)
        & (colour_logits.argmax(-1) == targets[:, n_cells : 2 * n_cells]).all(-1)
        & (bg_logits.argmax(-1) == targets[:, -1])
    )
    return loss, correct.float().mean()


def _object_reads(logits: torch.Tensor, scenes: list[Scene]) -> dict[str, float]:
    """Per-object shape and colour accuracy of the probe, split into trained and held-out compositions."""
    n_cells, n_shape, n_colour = len(CELLS), 1 + len(SHAPES), 1 + len(COLOURS)
    shapes = logits[:, : n_cells * n_shape].reshape(-1, n_cells, n_shape).argmax(-1)  # (B, 9)
    colours = logits[:, n_cells * n_shape : n_cells * (n_shape + n_colour)].reshape(-1, n_cells, n_colour).argmax(-1)
    counts: dict[str, list[int]] = {"trained": [0, 0, 0], "heldout": [0, 0, 0]}
    for scene, shape_row, colour_row in zip(scenes, shapes.tolist(), colours.tolist(), strict=True):
        for obj in scene.objects:
            cell = CELLS.index(obj.cell)
            tally = counts["heldout" if is_heldout_triple(obj) else "trained"]
            tally[0] += 1
            tally[1] += shape_row[cell] == 1 + SHAPES.index(obj.shape)
            tally[2] += colour_row[cell] == 1 + list(COLOURS).index(obj.colour)
    scores = {}
    for split, (n, shape_ok, colour_ok) in counts.items():
        if n:
            scores[f"shape_acc_{split}"] = round(shape_ok / n, 4)
            scores[f"colour_acc_{split}"] = round(colour_ok / n, 4)
    return scores


def _grayscale(images: list[Any], rng: random.Random, fraction: float) -> tuple[list[Any], torch.Tensor]:
    """Convert a random ``fraction`` of ``images`` to grayscale; returns them and which kept colour (B,)."""
    keep = [not (fraction > 0 and rng.random() < fraction) for _ in images]
    out = [im if kept else im.convert("L").convert("RGB") for im, kept in zip(images, keep, strict=True)]
    return out, torch.tensor(keep)


def scene_batch(rng: random.Random, batch: int, style: str = "train") -> tuple[list[Scene], list[Any]]:
    """``batch`` training-split scenes and their renders."""
    scenes = [sample_scene(rng, split="train") for _ in range(batch)]
    return scenes, [render_scene(s, rng, style=style) for s in scenes]  # type: ignore[arg-type]


def off_palette_batch(rng: random.Random, batch: int, fraction: float) -> tuple[list[Scene], list[Any], torch.Tensor]:
    """Like :func:`scene_batch`, with a random ``fraction`` of the scenes painted with an :func:`off_palette`;
    also returns which images show the vocabulary's colours (B,) bool. At ``fraction`` 0 it draws exactly
    :func:`scene_batch`'s batch, so runs made before the option existed stay reproducible."""
    if fraction <= 0:
        scenes, images = scene_batch(rng, batch)
        return scenes, images, torch.ones(batch, dtype=torch.bool)
    scenes = [sample_scene(rng, split="train") for _ in range(batch)]
    palettes = [off_palette(rng) if rng.random() < fraction else None for _ in scenes]
    images = [render_scene(s, rng, palette=p) for s, p in zip(scenes, palettes, strict=True)]
    return scenes, images, torch.tensor([p is None for p in palettes])


def train_encoder(config: TrainConfig) -> dict[str, Any]:
    """Stage 1. Writes ``run_dir/encoder/weights.safetensors`` (probe included)."""
    torch.manual_seed(config.seed)
    probe = EncoderProbe()
    size = probe.vision.image_size
    if config.encoder_init is not None:
        _start_stage_from(probe, "encoder", config.encoder_init, config.run_dir, strict=False)
    recipe = {"lr": config.encoder_lr, "batch": config.encoder_batch, "grayscale": config.encoder_grayscale}
    if config.encoder_off_palette > 0:
        recipe["off_palette"] = config.encoder_off_palette
    _write_recipe(config.run_dir / "encoder", recipe)

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        rng = step_rng(config.seed, "encoder", step)
        scenes, images, in_palette = off_palette_batch(rng, config.encoder_batch, config.encoder_off_palette)
        images, kept_colour = _grayscale(images, rng, config.encoder_grayscale)
        colour_known = in_palette & kept_colour
        targets = torch.stack([_attribute_targets(s) for s in scenes])
        image_logits, frame_logits = probe(preprocess_images(images, size))
        return {
            "image": _attribute_loss(image_logits, targets, colour_known)[0],
            "frame": _attribute_loss(frame_logits, targets, colour_known)[0],
        }

    def evaluate() -> dict[str, float]:
        scores = {}
        for style in ("train", "alt"):
            scenes, images = scene_batch(random.Random(f"eval/{style}"), 256, style)
            targets = torch.stack([_attribute_targets(s) for s in scenes])
            with torch.no_grad():
                image_logits, frame_logits = probe(preprocess_images(images, size))
            scores[f"scene_acc_{style}"] = round(float(_attribute_loss(image_logits, targets)[1]), 4)
            scores[f"frame_acc_{style}"] = round(float(_attribute_loss(frame_logits, targets)[1]), 4)
        heldout_rng = random.Random("eval/heldout")
        scenes = [sample_scene(heldout_rng, split="heldout") for _ in range(256)]
        with torch.no_grad():
            image_logits, _ = probe(preprocess_images([render_scene(s, heldout_rng) for s in scenes], size))
        scores.update(_object_reads(image_logits, scenes))  # held-out (colour, shape, cell) triples vs trained
        return scores

    return dict(
        run_stage(
            "encoder",
            probe,
            loss_fn,
            steps=config.encoder_steps,
            lr=config.encoder_lr,
            checkpoint_dir=config.run_dir / "encoder",
            evaluate=evaluate,
            eval_every=100,
            progress=config.progress,
            time_limit_s=config.time_limit_s,
        )
    )


def _start_stage_from(
    module: nn.Module,
    stage: str,
    init_dir: Path,
    run_dir: Path,
    *,
    strict: bool = True,
    transform: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> None:
    """Start ``stage`` (a new phase: fresh optimizer and schedule) from ``init_dir/stage`` 's weights, unless
    ``run_dir/stage`` already has a checkpoint to resume. ``run_dir/stage/init.json`` records where the phase
    started, with that stage's own earlier phases. ``transform`` maps the loaded weights first (LM growth)."""
    stage_dir = run_dir / stage
    if (stage_dir / "state.json").exists():
        return  # resuming this phase: its own checkpoint wins
    _load_stage_weights(module, stage, Path(init_dir), strict=strict, transform=transform)
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / "init.json").write_text(json.dumps(_stage_lineage(Path(init_dir), stage)))


def _load_stage_weights(
    module: nn.Module,
    stage: str,
    init_dir: Path,
    *,
    strict: bool = True,
    transform: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> None:
    """Load ``init_dir/stage/weights.safetensors`` into ``module``; ``InputError`` (naming ``init_dir``) when
    there are none or they do not fit. ``strict=False`` lets the encoder start from weights without probe heads
    (an unpacked checkpoint ships none): the heads then start fresh."""
    from safetensors.torch import load_file

    from emu_agent.errors import InputError

    path = init_dir / stage / "weights.safetensors"
    if not path.is_file():
        raise InputError(f"{stage}_init={str(init_dir)!r} has no {stage}/weights.safetensors")
    state = load_file(str(path))
    if transform is not None:
        state = transform(state)
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise InputError(f"{stage}_init={str(init_dir)!r}: weights do not fit the {stage}: {exc}") from None
    allowed_missing = () if strict else ("image_head.", "frame_head.")  # probe heads start fresh
    stray = [key for key in missing if not key.startswith(allowed_missing)]
    if unexpected or stray:
        raise InputError(
            f"{stage}_init={str(init_dir)!r}: weights do not fit the {stage} "
            f"(missing {stray[:3]}, unexpected {unexpected[:3]})"
        )


def _write_recipe(stage_dir: Path, recipe: dict[str, Any]) -> None:
    """Keep this phase's recipe in ``stage_dir/phase.json`` (it ships in ``training.json``)."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / "phase.json").write_text(json.dumps(recipe))


def load_trained_encoder(run_dir: Path) -> EvaVisionTransformer:
    """The stage-1 encoder, frozen."""
    from safetensors.torch import load_file

    visual = EvaVisionTransformer(_vision())
    state = load_file(str(run_dir / "encoder" / "weights.safetensors"))
    visual.load_state_dict({k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")})
    visual.eval()
    visual.requires_grad_(False)
    return visual


# ------------------------------------------------------------------------------------------ stage 2: decoder
def _pixel_weights(scenes: list[Scene], pixels: torch.Tensor, boost: float = 4.0) -> torch.Tensor:
    """(B, 1, H, W): 1 on the background, 1 + boost on objects (they are small; the loss must see them)."""
    background = torch.tensor([BACKGROUNDS[s.background] for s in scenes], dtype=torch.float32) / 127.5 - 1
    distance = (pixels - background[:, :, None, None]).abs().sum(1, keepdim=True)  # (B, 1, H, W)
    return 1.0 + boost * (distance > 0.3).float()


def _embedder(visual: EvaVisionTransformer) -> Any:
    """``embed(images) -> (B, n_query, width)``: the frozen encoder's pooled embeddings, without gradients."""
    vision = _vision()

    def embed(images: list[Any]) -> torch.Tensor:
        with torch.no_grad():
            return pool_visual_tokens(visual(preprocess_images(images, vision.image_size)), vision.n_query)

    return embed


def _pixels(images: list[Any]) -> torch.Tensor:
    """PIL images -> (B, 3, H, W) in [-1, 1]."""
    import numpy as np

    pixels = torch.from_numpy(np.stack([np.asarray(im, dtype=np.float32) for im in images]))
    return pixels.permute(0, 3, 1, 2) / 127.5 - 1


def _reconstruction_score(decoder: Any, embed: Any) -> dict[str, float]:
    """Share of 24 fixed scenes the decoder paints back exactly (world checker) from their true embeddings."""
    from emu_agent.world.checker import check_image

    scenes, images = scene_batch(random.Random("eval/decoder"), 24)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = decoder.decode(
            embed(images), height=64, width=64, num_inference_steps=8, guidance_scale=1.0, generator=generator
        )
    ok = [check_image(img, scene).ok for img, scene in zip(out, scenes, strict=True)]
    return {"reconstruction_ok": round(sum(ok) / len(ok), 3)}


def _noised(embeddings: torch.Tensor, max_noise: float, generator: torch.Generator) -> torch.Tensor:
    """Half the batch gets Gaussian noise of a random level in [0, max_noise) (embeddings have unit scale), so the
    decoder also paints from the language model's inexact regressed embeddings, not only from exact ones."""
    if max_noise <= 0:
        return embeddings
    batch = embeddings.shape[0]
    level = torch.rand(batch, generator=generator) * max_noise * (torch.rand(batch, generator=generator) < 0.5)
    noise = torch.randn(embeddings.shape, generator=generator)
    return embeddings + level[:, None, None] * noise  # (B, n, w)


def train_decoder(config: TrainConfig) -> dict[str, Any]:
    """Stage 2. Writes ``run_dir/decoder/weights.safetensors`` (the UNet)."""
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

    from emu_agent.model.decoder import EmuDecoder
    from emu_agent.world.tiny import DECODER_POSITION_SCALE, DECODER_SPATIAL_CONDITIONING, _decoder

    torch.manual_seed(config.seed + 1)
    visual = load_trained_encoder(config.run_dir)
    vision = _vision()
    decoder_config = _decoder(vision.width)
    decoder = EmuDecoder(
        UNet2DConditionModel.from_config(decoder_config.unet),
        EulerDiscreteScheduler.from_config(decoder_config.scheduler),
        position_scale=DECODER_POSITION_SCALE,
        spatial_conditioning=DECODER_SPATIAL_CONDITIONING,
    )

    if config.decoder_init is not None:
        _start_stage_from(decoder.unet, "decoder", config.decoder_init, config.run_dir)
    recipe = {"lr": config.decoder_lr, "batch": config.decoder_batch, "noise": config.decoder_embedding_noise}
    _write_recipe(config.run_dir / "decoder", recipe)
    embed = _embedder(visual)

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        rng = step_rng(config.seed, "decoder", step)
        scenes, images = scene_batch(rng, config.decoder_batch)
        pixels = _pixels(images)
        generator = torch.Generator().manual_seed(rng.getrandbits(62))
        weights = _pixel_weights(scenes, pixels)
        embeddings = _noised(embed(images), config.decoder_embedding_noise, generator)
        return {"diffusion": decoder.train_loss(pixels, embeddings, generator=generator, pixel_weights=weights)}

    return dict(
        run_stage(
            "decoder",
            decoder.unet,
            loss_fn,
            steps=config.decoder_steps,
            lr=config.decoder_lr,
            checkpoint_dir=config.run_dir / "decoder",
            evaluate=lambda: _reconstruction_score(decoder, embed),
            eval_every=250,
            progress=config.progress,
            time_limit_s=config.time_limit_s,
        )
    )


# ------------------------------------------------------------------------------------------ stage 3: language model
def train_lm(config: TrainConfig, mixture: dict[str, float] | None = None) -> dict[str, Any]:
    """Stage 3. Writes ``run_dir/lm/weights.safetensors`` (LLaMA + projections) and the tokenizer."""
    from emu_agent.world.mixture import DEFAULT_MIXTURE, check_mixture, sample_training_example
    from emu_agent.world.tiny import build_emu_tiny

    if config.lm_seed_plurals and config.lm_init is None:
        raise InputError("lm_seed_plurals: seeding plural embeddings needs a trained LM to start from (lm_init)")
    tokenizer = _lm_tokenizer(config)
    plurals_split = split_plurals(config.run_dir / "tokenizer") if config.lm_split_plurals else []
    if plurals_split:
        tokenizer = _lm_tokenizer(config)  # reread: the same ids, without the plural merges
    start_layers, layers = _lm_depth(config)
    model = build_emu_tiny(tokenizer, seed=config.seed, lm_layers=layers)
    model.decoder = None
    model.visual.load_state_dict(load_trained_encoder(config.run_dir).state_dict())
    model.visual.requires_grad_(False)
    weights = check_mixture(mixture or config.lm_mixture or DEFAULT_MIXTURE)
    scale = _embedding_scale(model)
    trainable = nn.ModuleDict({"lm": model.lm, "project_up": model.project_up, "project_down": model.project_down})
    pairs = plural_pairs(tokenizer) if config.lm_seed_plurals else []
    if config.lm_init is not None:

        def transform(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            state = grow_layers(state, layers) if layers != start_layers else state
            return seed_plural_embeddings(state, pairs) if pairs else state

        _start_stage_from(trainable, "lm", config.lm_init, config.run_dir, transform=transform)
    recipe: dict[str, Any] = {
        "lr": config.lm_lr,
        "batch": config.lm_batch,
        "rollout": config.lm_rollout,
        "mixture": weights,
    }
    if pairs:
        recipe["plurals_seeded"] = [
            [tokenizer.convert_ids_to_tokens(p)[0], tokenizer.convert_ids_to_tokens(s)[0]] for p, s in pairs
        ]
    if plurals_split:
        recipe["plurals_split"] = plurals_split
    if layers != start_layers:
        recipe["grown"] = {"from_layers": start_layers, "to_layers": layers}
    elif (config.run_dir / "lm" / "state.json").is_file():  # resuming: a grown phase keeps saying so
        earlier_recipe = config.run_dir / "lm" / "phase.json"
        earlier = json.loads(earlier_recipe.read_text()) if earlier_recipe.is_file() else {}
        if "grown" in earlier:
            recipe["grown"] = earlier["grown"]
    _write_recipe(config.run_dir / "lm", recipe)

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        rng = step_rng(config.seed, "lm", step)
        examples = [sample_training_example(rng, weights) for _ in range(config.lm_batch)]
        rollout_rng = step_rng(config.seed, "lm-rollout", step)
        return _bucketed_losses(model, examples, scale, config.regression_weight, config.lm_rollout, rollout_rng)

    result = run_stage(
        "lm",
        trainable,
        loss_fn,
        steps=config.lm_steps,
        lr=config.lm_lr,
        checkpoint_dir=config.run_dir / "lm",
        progress=config.progress,
        time_limit_s=config.time_limit_s,
        warmup=100,
    )
    return dict(result)


def _lm_tokenizer(config: TrainConfig) -> Any:
    """The LM phase's tokenizer, kept in ``run_dir/tokenizer``: the run dir's own; else the one ``lm_init``'s LM
    was trained with (``lm_init/tokenizer``), since an LM's embeddings index its tokenizer's vocabulary; else a
    new one trained on the world's text. ``InputError`` when ``lm_init``'s LM and the
    tokenizer disagree on the vocabulary size (say a run dir whose tokenizer was trained anew)."""
    from safetensors import safe_open

    from emu_agent.errors import InputError
    from emu_agent.model.tokenizer import EmuTokenizer
    from emu_agent.world.tiny import train_tiny_tokenizer

    own = config.run_dir / "tokenizer"
    inherited = config.lm_init / "tokenizer" if config.lm_init is not None else None
    if (own / "emu_tokenizer.json").exists():
        tokenizer = EmuTokenizer.from_pretrained(own)
    elif inherited is not None and (inherited / "emu_tokenizer.json").exists():
        tokenizer = EmuTokenizer.from_pretrained(inherited)
        tokenizer.save_pretrained(own)
    else:
        tokenizer = train_tiny_tokenizer(config.seed)
        tokenizer.save_pretrained(own)
    init_weights = config.lm_init / "lm" / "weights.safetensors" if config.lm_init is not None else None
    if init_weights is not None and init_weights.is_file():
        with safe_open(str(init_weights), framework="pt") as handle:
            vocab = handle.get_slice("lm.model.embed_tokens.weight").get_shape()[0]
        if vocab != len(tokenizer):
            raise InputError(
                f"train-tiny: the LM at lm_init={str(config.lm_init)!r} has a vocabulary of {vocab} tokens, but the "
                f"tokenizer in {str(own)!r} has {len(tokenizer)}; copy the tokenizer that LM was trained with "
                f"into {str(own)!r}"
            )
    return tokenizer


def _saved_lm_layers(stage_dir: Path) -> int:
    """The decoder depth of the LM weights in ``stage_dir`` (read from the safetensors header only)."""
    from safetensors import safe_open

    with safe_open(str(stage_dir / "weights.safetensors"), framework="pt") as handle:
        return layer_count(handle.keys())


def _lm_depth(config: TrainConfig) -> tuple[int, int]:
    """(depth the phase starts from, depth it trains): a resumed phase keeps its own (both); a phase from ``lm_init``
    starts at that LM's depth and grows to ``lm_layers`` when that is more. ``InputError`` names a conflict."""
    from emu_agent.errors import InputError
    from emu_agent.world.tiny import LM_LAYERS

    own = config.run_dir / "lm"
    if (own / "state.json").is_file() and (own / "weights.safetensors").is_file():
        saved = _saved_lm_layers(own)
        if config.lm_layers is not None and config.lm_layers != saved:
            raise InputError(
                f"lm_layers={config.lm_layers}: the phase being resumed in {str(own)!r} has {saved} layers"
            )
        return saved, saved  # its phase.json already says whether it was grown
    if config.lm_init is not None:
        init_dir = Path(config.lm_init) / "lm"
        if not (init_dir / "weights.safetensors").is_file():
            raise InputError(f"lm_init={str(config.lm_init)!r} has no lm/weights.safetensors")
        start = _saved_lm_layers(init_dir)
        target = config.lm_layers or start
        expansion_plan(start, target)  # refuses shrinking, naming both depths
        return start, target
    layers = config.lm_layers or LM_LAYERS
    return layers, layers


def _stage_lineage(run_dir: Path, stage: str) -> list[dict[str, Any]]:
    """The phases behind ``run_dir/stage``, oldest first: ``[{"run_dir", "steps", "lr", ...}, ...]`` (each
    phase's recipe from its ``phase.json``, where it has one; earlier phases from ``init.json``)."""
    stage_dir = run_dir / stage
    if (stage_dir / "lineage.json").is_file():  # unpacked from a checkpoint: the lineage as it shipped
        return list(json.loads((stage_dir / "lineage.json").read_text()))
    earlier = json.loads((stage_dir / "init.json").read_text()) if (stage_dir / "init.json").is_file() else []
    state = stage_dir / "state.json"
    steps = json.loads(state.read_text())["step"] if state.is_file() else None
    recipe = json.loads((stage_dir / "phase.json").read_text()) if (stage_dir / "phase.json").is_file() else {}
    return [*earlier, {"run_dir": str(run_dir), "steps": steps, **recipe}]


def _lm_lineage(run_dir: Path) -> list[dict[str, Any]]:
    """The LM phases behind ``run_dir/lm``, oldest first (see :func:`_stage_lineage`)."""
    return _stage_lineage(run_dir, "lm")


def _bucketed_losses(
    model: Any,
    examples: list[Any],
    scale: torch.Tensor,
    regression_weight: float,
    rollout: float = 0.0,
    rng: random.Random | None = None,
    buckets: int = 2,
) -> dict[str, torch.Tensor]:
    """Losses of ``examples`` computed in length-sorted micro-batches (less padding), averaged by item count.

    A ``rollout`` fraction of the image targets is fed the model's own free-running regression (see
    :func:`_own_rollouts`) instead of the true embeddings.
    """
    from emu_agent.world.batches import collate, forward_losses

    batches = [collate(model, [ex]) for ex in examples]
    order = sorted(range(len(examples)), key=lambda i: batches[i].input_ids.shape[1])
    size = -(-len(order) // buckets)
    totals: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for start in range(0, len(order), size):
        chunk = [examples[i] for i in order[start : start + size]]
        own = _own_rollouts(model, chunk, rollout, rng) if rollout > 0 else None
        losses = forward_losses(model, collate(model, chunk), embedding_scale=scale, own_slots=own)
        n_regress = sum(1 for ex in chunk if not hasattr(ex, "answer"))
        weights = {"text": len(chunk) - n_regress, "regression": n_regress}
        for key, value in losses.items():
            totals[key] = totals.get(key, 0.0) + value * weights[key]
            counts[key] = counts.get(key, 0) + weights[key]
    out = {key: totals[key] / max(1, counts[key]) for key in totals}
    if "regression" in out:
        out["regression"] = regression_weight * out["regression"]
    return out


def _own_rollouts(
    model: Any, examples: list[Any], fraction: float, rng: random.Random | None
) -> dict[int, torch.Tensor]:
    """Row -> the model's free-running regression (n_query, width) for a random ``fraction`` of the image
    targets among ``examples``: exactly what ``regress_visual_embeddings`` would produce at inference, so the
    loss is taken on the inputs the model will really see (exposure bias: teacher forcing alone let edits
    decode from true slots far better than from the model's own, 0.68 vs 0.35 probe accuracy)."""
    rng = rng or random.Random(0)
    rows = [i for i, ex in enumerate(examples) if not hasattr(ex, "answer") and rng.random() < fraction]
    if not rows:
        return {}
    rolled = model.batch_regress_visual_embeddings([examples[i].prompt for i in rows])  # (R, nq, width), no grad
    return {row: rolled[k] for k, row in enumerate(rows)}


def _embedding_scale(model: Any) -> torch.Tensor:
    """Per-dimension std of the frozen encoder's embeddings (regression loss units), floored."""
    _, images = scene_batch(random.Random("embedding-scale"), 256)
    with torch.no_grad():
        feats = pool_visual_tokens(model.visual(model.preprocess(images)), model.config.vision.n_query)
    return feats.flatten(0, 1).std(0).clamp_min(1e-2)  # (width,)


# ------------------------------------------------------------------------------------------ stage 4: decoder_ft
_GENERATION_TASKS = {"t2i": 0.4, "edit": 0.6}


def _assembled_model(run_dir: Path, decoder_dir: str = "decoder") -> Any:
    """emu-tiny (fp32) from a run dir's stages, every part frozen."""
    from safetensors.torch import load_file

    from emu_agent.model.tokenizer import EmuTokenizer
    from emu_agent.world.tiny import build_emu_tiny

    lm_state = load_file(str(run_dir / "lm" / "weights.safetensors"))
    model = build_emu_tiny(EmuTokenizer.from_pretrained(run_dir / "tokenizer"), lm_layers=layer_count(lm_state))
    model.visual.load_state_dict(load_trained_encoder(run_dir).state_dict())
    for name in ("lm", "project_up", "project_down"):
        part = {k[len(name) + 1 :]: v for k, v in lm_state.items() if k.startswith(name + ".")}
        getattr(model, name).load_state_dict(part)
    model.decoder.unet.load_state_dict(load_file(str(run_dir / decoder_dir / "weights.safetensors")))
    model.eval()
    model.requires_grad_(False)
    return model


def train_decoder_on_regressed(config: TrainConfig) -> dict[str, Any]:
    """Stage 4. Writes ``run_dir/decoder_ft/weights.safetensors`` (the UNet, fine-tuned)."""
    from emu_agent.world.tasks import sample_example

    torch.manual_seed(config.seed + 4)
    model = _assembled_model(config.run_dir)
    decoder = model.decoder
    decoder.unet.requires_grad_(True)
    half = max(1, config.decoder_batch // 2)

    embed = _embedder(model.visual)

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        rng = step_rng(config.seed, "decoder_ft", step)
        names = list(_GENERATION_TASKS)
        tasks = rng.choices(names, weights=[_GENERATION_TASKS[n] for n in names], k=half)
        examples = [sample_example(task, rng, split="train") for task in tasks]
        with torch.no_grad():
            regressed = model.batch_regress_visual_embeddings([ex.prompt for ex in examples])  # (b, n, w)
        scenes, images = scene_batch(rng, config.decoder_batch - half)
        all_scenes = [ex.target_scene for ex in examples] + scenes
        pixels = _pixels([ex.target for ex in examples] + images)  # (B, 3, H, W)
        embeddings = torch.cat([regressed, embed(images)])  # (B, n, w)
        generator = torch.Generator().manual_seed(rng.getrandbits(62))
        weights = _pixel_weights(all_scenes, pixels)
        return {"diffusion": decoder.train_loss(pixels, embeddings, generator=generator, pixel_weights=weights)}

    return dict(
        run_stage(
            "decoder_ft",
            decoder.unet,
            loss_fn,
            steps=config.decoder_ft_steps,
            lr=config.decoder_ft_lr,
            checkpoint_dir=config.run_dir / "decoder_ft",
            evaluate=lambda: _reconstruction_score(decoder, embed),
            eval_every=100,
            progress=config.progress,
            time_limit_s=config.time_limit_s,
            warmup=20,
        )
    )


# ------------------------------------------------------------------------------------------ assemble
def assemble(run_dir: Path, out_dir: Path, *, dtype: torch.dtype = torch.float16) -> Path:
    """Merge the stages into one checkpoint (``EmuModel.save_pretrained`` layout) at ``out_dir``.

    The decoder is the fine-tuned one (``decoder_ft``) when that stage has run, else the stage-2 one.
    """
    run_dir = Path(run_dir)
    decoder_dir = "decoder_ft" if (run_dir / "decoder_ft" / "weights.safetensors").is_file() else "decoder"
    model = _assembled_model(run_dir, decoder_dir)
    model.to(dtype)
    model.save_pretrained(out_dir)
    stages = ("encoder", "decoder", "lm", "decoder_ft")
    summary = {
        name: json.loads((run_dir / name / "state.json").read_text())["step"]
        for name in stages
        if (run_dir / name / "state.json").is_file()
    }
    info: dict[str, Any] = {"steps": summary}
    for name in ("encoder", "decoder", "lm"):  # every phase of each stage (earlier runs it continued, then this)
        if (run_dir / name / "state.json").is_file():
            info[f"{name}_phases"] = _stage_lineage(run_dir, name)
    (Path(out_dir) / "training.json").write_text(json.dumps(info, indent=2))
    return Path(out_dir)
