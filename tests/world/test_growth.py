"""Growing emu-tiny's LM in depth: the grown model computes what the trained one did, and training goes on."""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from emu_agent.cli import main
from emu_agent.errors import InputError
from emu_agent.model.emu import EmuModel
from emu_agent.model.loading import builtin_model_dir
from emu_agent.world.growth import ZEROED_OUTPUTS, expansion_plan, grow_layers, layer_count
from emu_agent.world.tasks import sample_example
from emu_agent.world.tiny import build_emu_tiny
from emu_agent.world.train import TrainConfig, train_lm

TINY = builtin_model_dir("emu-tiny")
needs_tiny = pytest.mark.skipif(not TINY.is_dir(), reason="emu-tiny is not shipped in this build")


def _shipped_depth() -> int:
    return int(json.loads((TINY / "config.json").read_text())["text"]["num_hidden_layers"])


def _lm_state(model: EmuModel) -> dict[str, torch.Tensor]:
    return {f"lm.{key}": value for key, value in model.lm.state_dict().items()}


def test_expansion_plan_spreads_new_layers_evenly() -> None:
    assert expansion_plan(4, 4) == [0, 1, 2, 3]
    assert expansion_plan(4, 8) == [0, None, 1, None, 2, None, 3, None]
    assert expansion_plan(4, 6) == [0, 1, None, 2, 3, None]
    assert expansion_plan(4, 5) == [0, 1, 2, 3, None]
    assert expansion_plan(2, 7) == [0, None, None, 1, None, None, None]
    for layers, target in ((4, 8), (4, 6), (3, 10), (6, 7)):
        plan = expansion_plan(layers, target)
        assert len(plan) == target and [i for i in plan if i is not None] == list(range(layers))
    with pytest.raises(InputError, match=r"lm_layers=3 .* 4 layers"):
        expansion_plan(4, 3)
    with pytest.raises(InputError, match="0 layers"):
        expansion_plan(0, 4)


def test_layer_count_refuses_gaps() -> None:
    weight = torch.zeros(2, 2)
    assert layer_count({"lm.model.layers.0.a": weight, "lm.model.layers.1.a": weight, "project_up.w": weight}) == 2
    assert layer_count({"project_up.w": weight}) == 0
    with pytest.raises(InputError, match=r"\[0, 2\]"):
        layer_count({"lm.model.layers.0.a": weight, "lm.model.layers.2.a": weight})


@needs_tiny
def test_grown_emu_tiny_computes_what_the_shipped_one_does() -> None:
    shipped = EmuModel.from_pretrained("emu-tiny", dtype="float32")
    depth = _shipped_depth()
    grown_state = grow_layers(_lm_state(shipped), depth + 3)
    assert layer_count(grown_state) == depth + 3
    plan = expansion_plan(depth, depth + 3)
    old_state = shipped.lm.state_dict()
    for index, old in enumerate(plan):
        q_proj = grown_state[f"lm.model.layers.{index}.self_attn.q_proj.weight"]
        if old is None:  # a new layer: a copy of the one before it that writes nothing at first
            for name in ZEROED_OUTPUTS:
                assert not grown_state[f"lm.model.layers.{index}.{name}"].any()
            assert q_proj.equal(grown_state[f"lm.model.layers.{index - 1}.self_attn.q_proj.weight"])
        else:  # the old layers keep their weights, in order
            assert q_proj.equal(old_state[f"model.layers.{old}.self_attn.q_proj.weight"])

    grown = build_emu_tiny(shipped.tokenizer, lm_layers=depth + 3)
    grown.lm.load_state_dict({key[len("lm.") :]: value for key, value in grown_state.items()})
    for part in ("visual", "project_up", "project_down"):
        getattr(grown, part).load_state_dict(getattr(shipped, part).state_dict())
    grown.eval()
    ids = torch.randint(0, len(shipped.tokenizer), (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(grown.lm(input_ids=ids).logits, shipped.lm(input_ids=ids).logits)
    rng = random.Random(3)
    prompts = [sample_example(task, rng).prompt for task in ("caption", "vqa_where", "video_qa")]
    assert grown.generate_texts(prompts, max_new_tokens=24) == shipped.generate_texts(prompts, max_new_tokens=24)


@needs_tiny
def test_train_tiny_grows_the_lm_and_ships_the_deeper_checkpoint(tmp_path, capsys) -> None:
    run, out, depth = tmp_path / "run", tmp_path / "model", _shipped_depth()
    argv = [
        "train-tiny", "--run-dir", str(run), "--from-checkpoint", "emu-tiny", "--lm-layers", str(depth + 2),
        "--lm-steps", "1", "--lm-batch", "2", "--lm-lr", "0", "--threads", "1", "--out", str(out), "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["lm"]["steps"] == 1
    assert json.loads((out / "config.json").read_text())["text"]["num_hidden_layers"] == depth + 2

    training = json.loads((out / "training.json").read_text())
    shipped_phases = json.loads((TINY / "training.json").read_text())["lm_phases"]
    assert training["lm_phases"][:-1] == shipped_phases  # the lineage goes on through the growth
    assert training["lm_phases"][-1]["grown"] == {"from_layers": depth, "to_layers": depth + 2}

    # at learning rate 0 the grown checkpoint is the shipped model with identity layers: the same answers
    tensors = load_file(str(out / "model.safetensors"))
    new_layers = [index for index, old in enumerate(expansion_plan(depth, depth + 2)) if old is None]
    for index in new_layers:
        assert not tensors[f"lm.model.layers.{index}.mlp.down_proj.weight"].any()
    grown, shipped = EmuModel.from_pretrained(str(out)), EmuModel.from_pretrained("emu-tiny")
    rng = random.Random(11)
    prompts = [sample_example(task, rng).prompt for task in ("caption", "count", "exists", "few_shot")]
    assert grown.generate_texts(prompts, max_new_tokens=24) == shipped.generate_texts(prompts, max_new_tokens=24)


@needs_tiny
def test_depth_conflicts_are_refused_by_name(tmp_path) -> None:
    from emu_agent.world.unpack import unpack_checkpoint

    run, depth = tmp_path / "run", _shipped_depth()
    info = unpack_checkpoint("emu-tiny", run)
    with pytest.raises(InputError, match=f"lm_layers=2 is fewer than the {depth} layers"):
        train_lm(TrainConfig(run_dir=run, lm_init=info["lm_init"], lm_layers=2, lm_steps=1, progress=False))
    assert not (run / "lm").exists()  # nothing started

    grown = TrainConfig(
        run_dir=run, lm_init=info["lm_init"], lm_layers=depth + 1, lm_steps=1, lm_batch=2, progress=False
    )
    assert train_lm(grown)["steps"] == 1
    # resuming the grown phase at another depth is refused; the phase's weights are untouched
    before = (run / "lm" / "weights.safetensors").read_bytes()
    with pytest.raises(InputError, match=rf"lm_layers={depth + 2}: the phase being resumed .* has {depth + 1} layers"):
        train_lm(grown.model_copy(update={"lm_layers": depth + 2, "lm_steps": 2}))
    assert (run / "lm" / "weights.safetensors").read_bytes() == before
    # resuming at its own depth goes on, and the phase still says it was grown
    assert train_lm(grown.model_copy(update={"lm_layers": None, "lm_steps": 2}))["steps"] == 2
    phase = json.loads((run / "lm" / "phase.json").read_text())
    assert phase["grown"] == {"from_layers": depth, "to_layers": depth + 1}
    with pytest.raises(ValueError):
        TrainConfig(run_dir=run, lm_layers=0)
