"""Tier 2: the shipped emu-tiny checkpoint loads offline on CPU and does its tasks (a fast eval subset)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import pytest

from emu_agent.model.loading import builtin_model_dir

TINY = builtin_model_dir("emu-tiny")
pytestmark = pytest.mark.skipif(not TINY.is_dir(), reason="emu-tiny is not shipped in this build")


@pytest.fixture(scope="module")
def model():
    from emu_agent.model.emu import EmuModel

    return EmuModel.from_pretrained("emu-tiny")


def test_ships_as_small_safetensors_in_the_package() -> None:
    files = [f for f in TINY.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 50 * 1024**2
    assert not [f for f in files if f.suffix in (".bin", ".pt", ".pth", ".pkl")]
    assert any(f.suffix == ".safetensors" for f in files)


def test_loads_with_no_network_on_cpu() -> None:
    code = (
        "from emu_agent.model.emu import EmuModel; m = EmuModel.from_pretrained('emu-tiny'); "
        "print(m.config.variant, m.device.type, str(m.dtype), m.system_message, m.decoder.position_scale)"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }  # any hub access would fail
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tempfile.gettempdir()
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["emu-tiny", "cpu", "torch.float32", "None", "1.0"]


def test_fast_eval_subset_scores_well_above_chance(model) -> None:
    from emu_agent.world.eval import evaluate

    tasks = ["count", "few_shot", "t2i", "edit", "vqa_shape", "exists", "video_qa"]
    report = evaluate(model, seed=11, limit=16, tasks=tasks, progress=False)
    scores = {row.task: row.score for row in report.rows}
    # chance: count ~1/4, few-shot ~0, an exactly right image ~0, shape ~1/4, exists ~1/2, video QA ~0;
    # shipped (v14) here: count 1.0, few-shot 1.0, t2i 1.0, edit .94, shape 1.0, exists 1.0, video 1.0, as v13,
    # v12 and v11 (v13 and v14 answer exists and counts by colour or shape in the tallied form)
    # (v10: .88, 1.0, 1.0, .94, 1.0, 1.0, .88, video then scored in the answer's own form only;
    # v9: .88, 1.0, 1.0, .81, 1.0, .94, 1.0; v8: .88, .94, 1.0, .81, 1.0, .94, .81); full run (limit 100):
    # docs/emu-tiny.md. Edit holds v10's gain (v9 scored .81 here).
    assert scores["count"] >= 0.75 and scores["few_shot"] >= 0.8, scores
    assert scores["t2i"] >= 0.88 and scores["edit"] >= 0.85, scores
    assert scores["vqa_shape"] >= 0.88 and scores["exists"] >= 0.8 and scores["video_qa"] >= 0.85, scores


def test_captions_on_trained_and_unseen_phrasings(model) -> None:
    from emu_agent.world.eval import draw_examples, score_text

    examples = draw_examples("caption", seed=11, limit=40)
    outputs = model.generate_texts([ex.prompt for ex in examples], max_new_tokens=40)
    by_split: dict[str, list[bool]] = {"train": [], "eval": []}
    for out, ex in zip(outputs, examples, strict=True):
        by_split[ex.meta["template_split"]].append(score_text(out, ex.answer))
    trained, unseen = (sum(v) / len(v) for v in (by_split["train"], by_split["eval"]))
    # shipped (v14): 14/14 on trained phrasings, 26/26 on the eval-only "what do you see?" (v13: 14/14, 24/26;
    # v12: 14/14, 25/26;
    # v11: 14/14, 26/26;
    # v10: 14/14, 25/26; v9: 14/14, 26/26; v8 and v7: 14/14, 25/26)
    assert len(by_split["train"]) >= 12 and trained >= 0.85, trained
    assert len(by_split["eval"]) >= 12 and unseen >= 0.9, unseen


def test_captions_scenes_from_the_second_renderer(model) -> None:
    """Scenes drawn by the other renderer (no anti-aliasing, other sizes, jitter and noise), with the eval's own
    answer budget: the model is not tied to its training pixels."""
    from emu_agent.world.eval import _max_new_tokens, draw_examples, score_text

    examples = draw_examples("caption", seed=11, limit=24, style="alt")
    outputs = model.generate_texts([ex.prompt for ex in examples], max_new_tokens=_max_new_tokens(model, "caption"))
    right = sum(score_text(out, ex.answer) for out, ex in zip(outputs, examples, strict=True))
    assert right >= 17, right  # shipped (v14): 21/24; v13: 19/24; v12 to v6: 20/24; chance ~0


def test_generates_and_edits_checkable_images(model) -> None:
    from emu_agent.world.checker import check_image, detect_objects
    from emu_agent.world.scene import Scene, SceneObject

    image = model.generate_image("a red circle at top left", seed=0)
    assert image.size == (64, 64)
    assert check_image(image, Scene((SceneObject("red", "circle", "top left"),))).ok
    edited = model.generate_image([image, "make the red circle blue."], seed=0)
    assert edited.size == (64, 64)
    assert check_image(edited, Scene((SceneObject("blue", "circle", "top left"),))).ok
    assert detect_objects(image).background == "white"  # unnamed background defaults to white in the world


def test_follow_up_requests_call_the_right_tool_with_the_right_arguments(model) -> None:
    """Second requests in a conversation ("now make it blue."), from held-out dialogues: the model must pick the
    tool and refer back by handle; exact arguments (the new colour copied right) are its known weak point."""
    import random

    from emu_agent.world.agent_eval import _with_pixels, parse_tool_calls
    from emu_agent.world.dialogues import dialogue_examples, sample_dialogue

    rng = random.Random("followup-check")
    turns = []
    while len(turns) < 40:
        dialogue = sample_dialogue(rng, split="eval")
        if dialogue.kind == "follow_up":
            turns.append([ex for ex in dialogue_examples(dialogue) if ex.meta["expected_tool"] is not None][-1])
    outputs = model.generate_texts([_with_pixels(ex) for ex in turns], max_new_tokens=96, skip_special_tokens=False)
    calls = [parse_tool_calls(out)[0] for out in outputs]
    tool = sum(bool(c) and c[0][0] == ex.meta["expected_tool"] for c, ex in zip(calls, turns, strict=True))
    exact = sum(
        bool(c) and c[0] == (ex.meta["expected_tool"], ex.meta["expected_arguments"])
        for c, ex in zip(calls, turns, strict=True)
    )
    # shipped checkpoint (v14): tool 36/40, exact 26/40, on the follow-ups drawn since session 18 added four
    # drawing requests (earlier draws: v13 37 and 22; v12: 36 and 21; v11 and v10: 37 and 21; v9: 40 and 17;
    # v8 and v7: 40 and 20; v6: 40 and 17; v5: 38 and 19; chance: ~0 for exact)
    assert tool >= 35 and exact >= 15, (tool, exact)


def test_agent_decoding_makes_every_tool_call_valid(model) -> None:
    """The eval's ``agent_`` rows decode as the agent does, under the tool-call grammar: every call the model
    writes then parses and validates (the issue's 100% target), and routing is no worse than unconstrained."""
    from emu_agent.world.agent_eval import score_tool_calls

    rows = {r.task: r for r in score_tool_calls(model, seed=5, limit=8)}
    constrained, free = rows["agent_tool_call_validity"], rows["tool_call_validity"]
    assert constrained.n >= 5 and constrained.score == 1.0, constrained
    assert rows["agent_tool_routing"].n == rows["tool_routing"].n
    assert rows["agent_tool_routing"].score >= rows["tool_routing"].score - 0.1, (rows["agent_tool_routing"], free)
