"""Smoke training of emu-tiny: every stage runs a few real steps, resumes, assembles and loads."""

from __future__ import annotations

import json
import random

import pytest
import torch

from emu_agent.errors import InputError
from emu_agent.world.batches import IGNORE, collate, forward_losses
from emu_agent.world.mixture import sample_training_example
from emu_agent.world.stages import step_rng
from emu_agent.world.train import (
    TrainConfig,
    assemble,
    train_decoder,
    train_decoder_on_regressed,
    train_encoder,
    train_lm,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    config = TrainConfig(
        run_dir=run,
        encoder_steps=3,
        encoder_batch=4,
        encoder_grayscale=0.5,
        encoder_off_palette=0.5,
        decoder_steps=2,
        decoder_batch=2,
        lm_steps=3,
        lm_batch=4,
        decoder_ft_steps=2,
        progress=False,
    )
    results = {"encoder": train_encoder(config), "decoder": train_decoder(config), "lm": train_lm(config)}
    results["decoder_ft"] = train_decoder_on_regressed(config)
    return config, results


def test_stages_run_and_record_their_steps(trained):
    config, results = trained
    for stage, steps in (("encoder", 3), ("decoder", 2), ("lm", 3), ("decoder_ft", 2)):
        state = json.loads((config.run_dir / stage / "state.json").read_text())
        assert state["step"] == steps
        assert (config.run_dir / stage / "weights.safetensors").stat().st_size > 10_000
    assert 0.0 <= results["encoder"]["scene_acc_train"] <= 1.0
    for key in ("shape_acc_heldout", "colour_acc_heldout", "shape_acc_trained", "colour_acc_trained"):
        assert 0.0 <= results["encoder"][key] <= 1.0  # the probe's reads, held-out compositions apart
    assert torch.isfinite(torch.tensor(results["lm"]["text"]))
    assert 0.0 <= results["decoder_ft"]["reconstruction_ok"] <= 1.0


def _distance(a, b) -> float:
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5


def test_off_palette_paints_shapes_in_colours_the_world_never_names():
    from emu_agent.world.render import off_palette, render_scene
    from emu_agent.world.scene import Scene, SceneObject
    from emu_agent.world.vocab import BACKGROUNDS, COLOURS

    named = [*COLOURS.values(), *BACKGROUNDS.values()]
    palettes = [off_palette(random.Random(seed)) for seed in range(50)]
    assert all(set(p) == set(COLOURS) for p in palettes)
    assert min(_distance(rgb, c) for p in palettes for rgb in p.values() for c in named) >= 90
    assert len({p["red"] for p in palettes}) == 50  # random, not one fixed substitute
    assert off_palette(random.Random(7)) == off_palette(random.Random(7))  # deterministic by seed

    scene = Scene((SceneObject("red", "square", "center"),), "white")
    palette = off_palette(random.Random(1))
    plain = render_scene(scene, random.Random(0))
    painted = render_scene(scene, random.Random(0), palette=palette)  # same look and noise, other paint
    centre = painted.getpixel((32, 32))
    assert _distance(centre, palette["red"]) < 40  # shade jitter (±12 a channel) and noise (sigma 4)
    assert _distance(centre, COLOURS["red"]) > 60 and _distance(plain.getpixel((32, 32)), COLOURS["red"]) < 40
    assert painted.getpixel((2, 2)) == plain.getpixel((2, 2))  # the background is untouched


def test_off_palette_batch_marks_what_it_repainted():
    from emu_agent.world.train import off_palette_batch, scene_batch
    from emu_agent.world.vocab import COLOURS, cell_center

    scenes, images, in_palette = off_palette_batch(random.Random(5), 8, 0.0)
    same_scenes, same_images = scene_batch(random.Random(5), 8)  # fraction 0 draws scene_batch's batch exactly
    assert scenes == same_scenes and [i.tobytes() for i in images] == [i.tobytes() for i in same_images]
    assert in_palette.all()
    scenes, images, in_palette = off_palette_batch(random.Random(5), 8, 1.0)
    assert not in_palette.any()
    for scene, image in zip(scenes, images, strict=True):
        for obj in scene.objects:  # every object's centre is far from its named colour
            x, y = cell_center(obj.cell)
            assert _distance(image.getpixel((int(x), int(y))), COLOURS[obj.colour]) > 50, obj
    _, _, mixed = off_palette_batch(random.Random(5), 200, 0.4)
    assert 50 <= int((~mixed).sum()) <= 110  # about 80 of 200


def test_grayscale_augmentation_drops_colour_and_its_targets():
    from emu_agent.world.render import render_scene
    from emu_agent.world.scene import sample_scene
    from emu_agent.world.train import _attribute_loss, _attribute_targets, _grayscale

    rng = random.Random(3)
    scenes = [sample_scene(rng) for _ in range(6)]
    images = [render_scene(s, rng) for s in scenes]
    gray, colour_known = _grayscale(images, random.Random(0), 1.0)
    assert not colour_known.any()
    for image in gray:
        pixels = torch.tensor(list(image.getdata()))  # (H*W, 3)
        assert torch.equal(pixels[:, 0], pixels[:, 1]) and torch.equal(pixels[:, 1], pixels[:, 2])
    same, colour_known = _grayscale(images, random.Random(0), 0.0)
    assert colour_known.all() and same == images
    mixed, colour_known = _grayscale(images * 20, random.Random(0), 0.5)
    assert 30 <= int(colour_known.sum()) <= 90  # about half of 120
    originals = images * 20
    for image, original, kept in zip(mixed, originals, colour_known.tolist(), strict=True):
        pixels = torch.tensor(list(image.getdata()))  # (H*W, 3)
        assert (image is original) if kept else bool((pixels == pixels[:, :1]).all())

    # where colour is unknown, the colour logits do not move the loss; where known, they do
    targets = torch.stack([_attribute_targets(s) for s in scenes])
    logits = torch.randn(len(scenes), 9 * 4 + 9 * 7 + 3)  # shapes (9 cells x 4), colours (9 x 7), background
    changed = logits.clone()
    changed[:, 36:99] += torch.randn_like(changed[:, 36:99])  # only the colour block
    unknown = torch.zeros(len(scenes), dtype=torch.bool)
    blind = _attribute_loss(logits, targets, unknown)[0]
    assert torch.isfinite(blind) and torch.isclose(blind, _attribute_loss(changed, targets, unknown)[0])
    assert not torch.isclose(_attribute_loss(logits, targets)[0], _attribute_loss(changed, targets)[0])


def test_object_reads_split_trained_from_heldout_compositions():
    from emu_agent.world.scene import is_heldout_triple, sample_scene
    from emu_agent.world.train import _attribute_targets, _object_reads
    from emu_agent.world.vocab import CELLS, COLOURS, SHAPES

    rng = random.Random(5)
    scenes = [sample_scene(rng, split="heldout") for _ in range(8)]
    assert any(not is_heldout_triple(o) for s in scenes for o in s.objects)
    n_cells, n_shape, n_colour = len(CELLS), 1 + len(SHAPES), 1 + len(COLOURS)
    perfect = torch.full((len(scenes), n_cells * (n_shape + n_colour) + 3), -10.0)
    for row, scene in enumerate(scenes):
        target = _attribute_targets(scene)
        for cell in range(n_cells):
            perfect[row, cell * n_shape + int(target[cell])] = 10.0
            perfect[row, n_cells * n_shape + cell * n_colour + int(target[n_cells + cell])] = 10.0
    reads = _object_reads(perfect, scenes)
    assert reads == {f"{a}_acc_{s}": 1.0 for s in ("trained", "heldout") for a in ("shape", "colour")}
    wrong_shapes = perfect.clone()
    wrong_shapes[:, : n_cells * n_shape] = 0.0
    wrong_shapes[:, 0 : n_cells * n_shape : n_shape] = 10.0  # every cell read as empty
    reads = _object_reads(wrong_shapes, scenes)
    assert reads["shape_acc_heldout"] == 0.0 and reads["colour_acc_heldout"] == 1.0


def test_decoder_fine_tuning_changes_the_decoder_that_assemble_ships(trained, tmp_path):
    from safetensors.torch import load_file

    config, _ = trained
    base = load_file(str(config.run_dir / "decoder" / "weights.safetensors"))
    tuned = load_file(str(config.run_dir / "decoder_ft" / "weights.safetensors"))
    assert base.keys() == tuned.keys()
    assert any(not torch.equal(base[k], tuned[k]) for k in base)
    out = assemble(config.run_dir, tmp_path / "assembled", dtype=torch.float32)
    shipped = load_file(str(out / "decoder" / "unet" / "diffusion_pytorch_model.safetensors"))
    torch.testing.assert_close(shipped["conv_in.weight"], tuned["conv_in.weight"])
    assert json.loads((out / "training.json").read_text())["steps"]["decoder_ft"] == 2


def test_a_new_lm_phase_starts_from_another_runs_weights(trained, tmp_path):
    from safetensors.torch import load_file

    from emu_agent.world.train import _lm_lineage, _load_stage_weights

    config, _ = trained
    source = load_file(str(config.run_dir / "lm" / "weights.safetensors"))
    from emu_agent.model.tokenizer import EmuTokenizer
    from emu_agent.world.tiny import build_emu_tiny

    model = build_emu_tiny(EmuTokenizer.from_pretrained(config.run_dir / "tokenizer"))
    module = torch.nn.ModuleDict({"lm": model.lm, "project_up": model.project_up, "project_down": model.project_down})
    _load_stage_weights(module, "lm", config.run_dir)
    for key, value in module.state_dict().items():
        torch.testing.assert_close(value, source[key])
    with pytest.raises(InputError, match="nowhere"):
        _load_stage_weights(module, "lm", tmp_path / "nowhere")
    phase = TrainConfig(
        run_dir=tmp_path / "phase2", lm_init=config.run_dir, lm_steps=1, lm_batch=4, lm_rollout=1.0, progress=False
    )
    (phase.run_dir / "tokenizer").parent.mkdir(parents=True)
    (phase.run_dir / "encoder").symlink_to(config.run_dir / "encoder")
    (phase.run_dir / "tokenizer").symlink_to(config.run_dir / "tokenizer")
    assert train_lm(phase)["steps"] == 1
    lineage = _lm_lineage(phase.run_dir)  # what training.json ships as lm_phases
    assert [entry["run_dir"] for entry in lineage] == [str(config.run_dir), str(phase.run_dir)]
    assert lineage[-1]["steps"] == 1 and lineage[-1]["rollout"] == 1.0 and lineage[-1]["lr"] == phase.lm_lr


def test_encoder_and_decoder_phases_start_from_another_runs_weights(trained, tmp_path):
    """A new encoder or decoder phase starts from another run's weights (fresh schedule; lr 0 keeps them) and
    records where it started; an unpacked checkpoint's encoder (no probe heads) works too."""
    from safetensors.torch import load_file

    from emu_agent.world.train import _stage_lineage

    config, _ = trained
    phase = TrainConfig(
        run_dir=tmp_path / "phase2",
        encoder_init=config.run_dir,
        encoder_steps=1,
        encoder_batch=4,
        encoder_lr=0.0,
        decoder_init=config.run_dir,
        decoder_steps=1,
        decoder_batch=2,
        decoder_lr=0.0,
        progress=False,
    )
    train_encoder(phase)
    train_decoder(phase)
    for stage in ("encoder", "decoder"):
        before = load_file(str(config.run_dir / stage / "weights.safetensors"))
        after = load_file(str(phase.run_dir / stage / "weights.safetensors"))
        assert before.keys() == after.keys()
        for key, value in before.items():
            torch.testing.assert_close(after[key], value, msg=f"{stage}: {key}")
        init = json.loads((phase.run_dir / stage / "init.json").read_text())  # the source's phases
        source_steps = {"encoder": 3, "decoder": 2}[stage]
        assert [(p["run_dir"], p["steps"]) for p in init] == [(str(config.run_dir), source_steps)]
        lineage = _stage_lineage(phase.run_dir, stage)  # what training.json ships as {stage}_phases
        assert lineage[:-1] == init and lineage[-1]["run_dir"] == str(phase.run_dir)
        assert lineage[-1]["steps"] == 1 and lineage[-1]["lr"] == 0.0
    assert _stage_lineage(phase.run_dir, "encoder")[0]["grayscale"] == 0.5  # the fixture's recipe
    assert _stage_lineage(phase.run_dir, "encoder")[0]["off_palette"] == 0.5

    headless = tmp_path / "headless" / "encoder"  # as unpack_checkpoint writes it: visual.* only
    headless.mkdir(parents=True)
    from safetensors.torch import save_file

    visual_only = {k: v for k, v in load_file(str(config.run_dir / "encoder" / "weights.safetensors")).items()
                   if k.startswith("visual.")}  # fmt: skip
    save_file(visual_only, str(headless / "weights.safetensors"))
    from_headless = phase.model_copy(update={"run_dir": tmp_path / "phase3", "encoder_init": headless.parent})
    train_encoder(from_headless)
    started = load_file(str(from_headless.run_dir / "encoder" / "weights.safetensors"))
    for key, value in visual_only.items():
        torch.testing.assert_close(started[key], value)

    with pytest.raises(InputError, match="nowhere"):
        train_encoder(phase.model_copy(update={"run_dir": tmp_path / "phase4", "encoder_init": tmp_path / "nowhere"}))
    misfit = tmp_path / "misfit" / "decoder"  # encoder weights where a decoder's should be
    misfit.mkdir(parents=True)
    save_file(visual_only, str(misfit / "weights.safetensors"))
    (tmp_path / "phase5").mkdir()
    (tmp_path / "phase5" / "encoder").symlink_to(phase.run_dir / "encoder")
    with pytest.raises(InputError, match="do not fit the decoder"):
        train_decoder(phase.model_copy(update={"run_dir": tmp_path / "phase5", "decoder_init": misfit.parent}))


def test_resume_continues_from_the_checkpoint(trained):
    config, _ = trained
    longer = config.model_copy(update={"lm_steps": 5})
    result = train_lm(longer)
    assert result["steps"] == 5
    assert json.loads((config.run_dir / "lm" / "state.json").read_text())["step"] == 5
    assert train_lm(longer)["steps"] == 5  # a finished stage reports the steps it has, not one more


def test_assembled_checkpoint_loads_and_runs_every_capability(trained, tmp_path):
    from emu_agent.model.emu import EmuModel
    from emu_agent.world.render import render_scene
    from emu_agent.world.scene import sample_scene

    config, _ = trained
    out = assemble(config.run_dir, tmp_path / "emu-tiny")
    assert sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) < 50 * 1024**2
    model = EmuModel.from_pretrained(out, dtype="float32", device="cpu")
    assert model.system_message is None
    image = render_scene(sample_scene(random.Random(0)), random.Random(0))
    text = model.generate_text([("user", [image, "describe the image."])], max_new_tokens=4)
    assert isinstance(text, str)
    picture = model.generate_image("a red circle at top left", num_inference_steps=2, seed=0)
    assert picture.size == (64, 64)


def test_step_data_is_reproducible():
    a = [sample_training_example(step_rng(0, "lm", 7)).task for _ in range(3)]
    b = [sample_training_example(step_rng(0, "lm", 7)).task for _ in range(3)]
    assert a == b


def test_batches_score_only_answers_and_regress_target_slots():
    from emu_agent.world.tiny import build_emu_tiny, train_tiny_tokenizer

    model = build_emu_tiny(train_tiny_tokenizer(0, n_texts=300))
    rng = random.Random(3)
    examples = []
    while {e.task for e in examples} < {"caption", "t2i"}:
        ex = sample_training_example(rng)
        if ex.task in ("caption", "t2i") and ex.task not in {e.task for e in examples}:
            examples.append(ex)
    batch = collate(model, examples)
    caption_row = [e.task for e in examples].index("caption")
    scored = batch.labels[caption_row][batch.labels[caption_row] != IGNORE].tolist()
    answer = examples[caption_row].answer
    assert model.tokenizer.decode(scored[:-1]) == answer and scored[-1] == model.tokenizer.eos_token_id
    assert len(batch.regress) == 1
    row, first, _ = batch.regress[0]
    assert batch.input_ids[row, first - 1] == model.tokenizer.boi_token_id  # the regression starts at [IMG]
    losses = forward_losses(model, batch)
    assert set(losses) == {"text", "regression"}
    sum(losses.values()).backward()
    assert model.project_down.weight.grad is not None and model.project_down.weight.grad.abs().sum() > 0


def test_stage_logs_never_reach_stdout(tmp_path, capsys):
    from emu_agent.world.stages import run_stage

    weight = torch.nn.Linear(2, 1)

    def loss_fn(step: int) -> dict[str, torch.Tensor]:
        return {"l2": weight(torch.ones(1, 2)).pow(2).sum()}

    for progress in (False, True):
        result = run_stage(
            "probe", weight, loss_fn, steps=2, lr=0.1, checkpoint_dir=tmp_path / str(progress),
            log_every=1, evaluate=lambda: {"score": 1.0}, eval_every=1, progress=progress,
        )  # fmt: skip
        assert result["steps"] == 2
        out, err = capsys.readouterr()
        assert out == ""  # stdout is for --json output only
        assert ('"score": 1.0' in err) is progress


def test_decoder_embedding_noise_touches_about_half_the_batch():
    from emu_agent.world.train import _noised

    embeddings = torch.zeros(64, 16, 8)
    assert torch.equal(_noised(embeddings, 0.0, torch.Generator().manual_seed(0)), embeddings)
    noised = _noised(embeddings, 0.5, torch.Generator().manual_seed(0))
    changed = noised.abs().flatten(1).amax(1) > 0  # (64,)
    assert 16 < int(changed.sum()) < 48
    assert noised[changed].std() < 0.5  # levels are below max_noise (unit-scale embeddings)
    torch.testing.assert_close(noised, _noised(embeddings, 0.5, torch.Generator().manual_seed(0)))


def test_rollout_slots_reproduce_free_running_regression():
    """Fed its own rollouts, the training forward predicts exactly what inference regresses, and the loss compares
    those predictions with the true embeddings: the training signal is on the inputs inference really sees."""
    from emu_agent.world.batches import encode_media
    from emu_agent.world.tiny import build_emu_tiny, train_tiny_tokenizer
    from emu_agent.world.train import _own_rollouts

    model = build_emu_tiny(train_tiny_tokenizer(0, n_texts=300), seed=1)
    rng = random.Random(5)
    wanted = ["t2i", "caption", "edit"]
    examples = []
    while wanted:
        ex = sample_training_example(rng)
        if ex.task == wanted[0]:
            examples.append(ex)
            wanted.pop(0)
    with pytest.raises(ValueError, match="lm_rollout"):  # pydantic's ValidationError names the field
        TrainConfig(run_dir="run", lm_rollout=1.5)
    assert _own_rollouts(model, examples, 0.0, random.Random(0)) == {}
    own = _own_rollouts(model, examples, 1.0, random.Random(0))
    assert sorted(own) == [0, 2]  # the image targets only, by batch row
    batch = collate(model, examples)
    with torch.no_grad():
        true = encode_media(model, [batch.images[i] for _, _, i in batch.regress], 16, train_visual=False)
        rolled = torch.stack([own[row] for row, _, _ in batch.regress])  # (2, 16, width)
        expected = (rolled - true).pow(2).mean()
        fed_own = forward_losses(model, batch, own_slots=own)["regression"]
        forced = forward_losses(model, batch)["regression"]
    torch.testing.assert_close(fed_own, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(forced, fed_own)
    for row, _, _ in batch.regress:  # the rollouts are the model's own free-running regression
        torch.testing.assert_close(own[row][None], model.regress_visual_embeddings(examples[row].prompt))


def test_seeded_plurals_start_the_phase_reading_as_their_singular(trained, tmp_path):
    """``lm_seed_plurals``: the new phase starts with each shape plural's embedding row equal to its singular's
    (the phase's recipe names the pairs); nothing else of the LM moves before training."""
    from safetensors.torch import load_file

    from emu_agent.model.tokenizer import EmuTokenizer
    from emu_agent.world.plurals import EMBEDDING_KEY, plural_pairs

    config, _ = trained
    tokenizer = EmuTokenizer.from_pretrained(config.run_dir / "tokenizer")
    pairs = plural_pairs(tokenizer)
    assert pairs, "the world's tokenizer merges some shape plurals"
    phase = TrainConfig(
        run_dir=tmp_path / "plurals",
        lm_init=config.run_dir,
        lm_steps=1,
        lm_batch=2,
        lm_lr=1e-12,
        lm_seed_plurals=True,
        progress=False,
    )
    phase.run_dir.mkdir()
    (phase.run_dir / "encoder").symlink_to(config.run_dir / "encoder")
    (phase.run_dir / "tokenizer").symlink_to(config.run_dir / "tokenizer")
    train_lm(phase)
    before = load_file(str(config.run_dir / "lm" / "weights.safetensors"))[EMBEDDING_KEY]
    after = load_file(str(phase.run_dir / "lm" / "weights.safetensors"))[EMBEDDING_KEY]
    plural_ids = [p for p, _ in pairs]
    for plural, singular in pairs:
        torch.testing.assert_close(after[plural], before[singular])
        assert not torch.allclose(before[plural], before[singular])
    others = [i for i in range(before.shape[0]) if i not in plural_ids]
    torch.testing.assert_close(after[others], before[others])
    recipe = json.loads((phase.run_dir / "lm" / "phase.json").read_text())
    assert len(recipe["plurals_seeded"]) == len(pairs)
    assert all(p.rstrip("?.") == s.rstrip("?.") + "s" for p, s in recipe["plurals_seeded"])
    with pytest.raises(InputError, match="lm_init"):
        train_lm(TrainConfig(run_dir=tmp_path / "alone", lm_steps=1, lm_seed_plurals=True, progress=False))


def test_split_plurals_phase_reads_plurals_as_the_caption_shape(trained, tmp_path):
    """``lm_split_plurals``: the phase's tokenizer stops producing shape-plural tokens ("squares?" becomes the
    caption's "▁square" then "s?"), keeps every id, and the LM trains on with the vocabulary it had; the
    recipe names the tokens dropped. Resuming keeps saying so."""
    import shutil

    from emu_agent.model.tokenizer import EmuTokenizer

    config, _ = trained
    phase = TrainConfig(
        run_dir=tmp_path / "split", lm_init=config.run_dir, lm_steps=1, lm_batch=2, lm_split_plurals=True,
        progress=False,
    )  # fmt: skip
    phase.run_dir.mkdir()
    (phase.run_dir / "encoder").symlink_to(config.run_dir / "encoder")
    shutil.copytree(config.run_dir / "tokenizer", phase.run_dir / "tokenizer")  # a copy: the phase rewrites it
    before = EmuTokenizer.from_pretrained(config.run_dir / "tokenizer")
    train_lm(phase)
    after = EmuTokenizer.from_pretrained(phase.run_dir / "tokenizer")
    assert len(after) == len(before)
    square = after.convert_tokens_to_ids("▁square")
    assert square in after.encode("how many squares?", add_bos=False)
    assert square not in before.encode("how many squares?", add_bos=False)
    caption = "a red square at top left and a blue circle at bottom"
    assert after.encode(caption) == before.encode(caption)
    recipe = json.loads((phase.run_dir / "lm" / "phase.json").read_text())
    assert "▁squares" in recipe["plurals_split"] and all(t.startswith("▁") for t in recipe["plurals_split"])
    train_lm(phase.model_copy(update={"lm_steps": 2}))  # resumes: the tokenizer is split already
    assert json.loads((phase.run_dir / "lm" / "phase.json").read_text())["plurals_split"] == recipe["plurals_split"]
