"""Templates split into train/eval; every task generator makes valid examples that the model's planner takes."""

from __future__ import annotations

import itertools
import random

import pytest
from PIL import Image

from emu_agent.errors import InputError
from emu_agent.model.prompting import VideoFrames
from emu_agent.world.checker import check_image
from emu_agent.world.scene import caption, is_heldout_scene, parse_caption
from emu_agent.world.tasks import (
    TASKS,
    TEXT_TASKS,
    ImageExample,
    TextExample,
    sample_example,
    sample_mixture,
    text_corpus,
)
from emu_agent.world.templates import FIELDS, TEMPLATES, pick_template, templates
from emu_agent.world.vocab import CELLS, COLOURS, SHAPES


def test_every_family_has_train_and_eval_only_templates() -> None:
    assert set(FIELDS) == set(TEMPLATES)
    for kind in TEMPLATES:
        train, held = templates(kind, "train"), templates(kind, "eval")
        assert len(train) >= 2 and len(held) >= 1
        assert not set(train) & set(held)
        fields = dict.fromkeys(FIELDS[kind], "x")
        for template in (*train, *held):
            template.format(**fields)  # every template fills from its declared fields
    with pytest.raises(InputError):
        templates("nope")
    assert pick_template("caption", random.Random(0), "eval")[1] == "caption/eval/0"


def test_drawing_requests_train_words_after_the_scene_and_keep_the_eval_ones_unseen() -> None:
    """The held-out "could you sketch {scene} for me?" tests where a copied scene ends; trained requests go on
    after the scene too, with other words, so the model meets that, not the eval phrasing."""
    train, (held,) = templates("agent_generate", "train"), templates("agent_generate", "eval")
    tails = [t.split("{scene}")[1].strip(" .?,") for t in train]
    assert sum(len(tail.split()) >= 2 for tail in tails) >= 3, tails
    held_tail = held.split("{scene}")[1].strip(" ?")
    assert held_tail == "for me" and not any(held_tail in tail for tail in tails)
    assert not any("sketch" in t for t in train)


def _texts(example: TextExample) -> list[str]:
    items = [x for _, turn in example.prompt for x in turn] if example.chat else example.prompt
    return [x for x in items if isinstance(x, str)]


def _check_answer(example: TextExample) -> None:
    answer = example.answer
    assert answer == answer.strip() and answer
    task = example.task
    if task == "caption":
        assert parse_caption(answer) == example.meta["scene"].objects
    elif task == "vqa_colour":
        assert answer in COLOURS
    elif task == "vqa_shape":
        assert answer in (*SHAPES, "none")
    elif task == "vqa_where":
        assert answer in CELLS
    elif task == "count":
        assert answer in {"0", "1", "2", "3"}
    elif task == "exists":
        assert answer in {"yes", "no"}
    elif task == "few_shot":
        assert answer.startswith("[") and answer.endswith("]")


@pytest.mark.parametrize("split", ["train", "eval"])
def test_every_task_makes_valid_examples(split: str) -> None:
    rng = random.Random(0)
    for task in TASKS:
        template_splits, heldouts = set(), set()
        for _ in range(30):
            example = sample_example(task, rng, split=split)
            assert example.task == task
            meta = example.meta
            template_splits.add(meta["template_split"])
            heldouts.add(meta["heldout"])
            if isinstance(example, TextExample):
                assert task in TEXT_TASKS
                _check_answer(example)
                if example.chat:
                    roles = [role for role, _ in example.prompt]
                    assert roles[0] == "user" and roles[-1] == "user"
                    assert all(a != b for a, b in itertools.pairwise(roles))
                    media = [x for _, turn in example.prompt for x in turn if not isinstance(x, str)]
                    kind = VideoFrames if task == "video_qa" else Image.Image
                    assert media and all(isinstance(m, kind) for m in media)
                else:
                    assert task == "few_shot" and isinstance(example.prompt[-1], Image.Image)
                assert sum(len(t.split()) for t in _texts(example)) <= 40  # prompts stay short
            else:
                assert isinstance(example, ImageExample)
                assert example.target.size == (64, 64)
                assert check_image(example.target, example.target_scene, check_background=True).ok
                if task == "t2i":
                    assert example.prompt == [example.prompt[0]] and caption(example.target_scene) in example.prompt[0]
                    if not meta["background_in_prompt"]:
                        assert example.target_scene.background == "white"
                else:
                    source, instruction = example.prompt
                    assert check_image(source, meta["source_scene"]).ok and isinstance(instruction, str)
            if split == "train":
                assert meta["template_split"] == "train" and not meta["heldout"]
        if split == "eval":
            assert True in heldouts, task
            if task != "few_shot":
                assert template_splits == {"train", "eval"}, task
        if split == "eval" and task in ("caption", "t2i"):
            assert is_heldout_scene(example.target_scene if task == "t2i" else example.meta["scene"]) == meta["heldout"]


def test_examples_are_deterministic() -> None:
    for task in TASKS:
        a = sample_example(task, random.Random(5), split="eval")
        b = sample_example(task, random.Random(5), split="eval")
        if isinstance(a, TextExample):
            assert (a.answer, _texts(a)) == (b.answer, _texts(b))
        else:
            assert a.target_scene == b.target_scene and a.target.tobytes() == b.target.tobytes()


def test_alt_style_is_recorded() -> None:
    example = sample_example("caption", random.Random(0), style="alt")
    assert example.meta["style"] == "alt"


def test_mixture_and_corpus() -> None:
    rng = random.Random(0)
    seen = {sample_mixture(rng, {"caption": 1.0, "count": 3.0, "t2i": 0.0}).task for _ in range(60)}
    assert seen == {"caption", "count"}
    corpus = text_corpus(300, seed=1)
    assert corpus == text_corpus(300, seed=1) and len(corpus) == 300
    joined = "\n".join(corpus)
    for word in ("describe", "how many", "moved", "[", "draw", "remove", "can you"):
        assert word in joined


def test_examples_plan_on_the_random_model(random_model) -> None:
    rng = random.Random(0)
    vision = random_model.config.vision
    for task in TASKS:
        for split in ("train", "eval"):
            example = sample_example(task, rng, split=split)
            if isinstance(example, TextExample):
                plan = random_model.plan(example.prompt)
                assert ("[USER]" in plan.text) == example.chat
            else:
                plan = random_model.plan(example.prompt)
                assert "[USER]" not in plan.text
            n_images = sum(isinstance(x, Image.Image) for x in _flat(example))
            n_frames = sum(len(x.frames) for x in _flat(example) if isinstance(x, VideoFrames))
            assert len(plan.images) == n_images and len(plan.frames) == n_frames
            assert plan.text.count("<image>") == n_images * vision.n_query
            random_model.tokenizer.encode(plan.text)


def _flat(example: TextExample | ImageExample) -> list:
    if isinstance(example, TextExample) and example.chat:
        return [x for _, turn in example.prompt for x in turn]
    return list(example.prompt)
