"""The training mixture: names are checked, and the hard variants keep only the cases they promise."""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest

from emu_agent.errors import InputError
from emu_agent.world.mixture import DEFAULT_MIXTURE, check_mixture, sample_training_example
from emu_agent.world.scene import object_phrase
from emu_agent.world.vocab import COLOURS, SHAPES

ASKED = re.compile(rf"({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})")


def _question(example) -> str:
    return [x for x in example.prompt[-1][1] if isinstance(x, str)][-1]


def test_count_hard_asks_by_colour_or_shape_and_rarely_answers_one() -> None:
    rng = random.Random(0)
    examples = [sample_training_example(rng, {"count_hard": 1.0}) for _ in range(150)]
    answers = Counter(e.answer for e in examples)
    assert set(answers) <= {"0", "1", "2", "3"} and answers["0"] and answers["2"], answers
    assert 0.2 <= answers["1"] / len(examples) <= 0.47, answers  # one in three, not the plain generator's majority
    for e in examples:
        question, scene = _question(e), e.meta["scene"]
        assert e.task == "count" and e.meta["template_split"] == "train"
        colour = next((c for c in COLOURS if f"{c} objects" in question), None)
        shape = next((s for s in SHAPES if f"{s}s" in question), None)
        assert colour or shape, question  # never the plain total
        n = sum(o.colour == colour for o in scene.objects) if colour else sum(o.shape == shape for o in scene.objects)
        assert e.answer == str(n), (question, scene)


def _marks(answer: str) -> tuple[list, list[str], str]:
    """Read a tallied answer back: (objects, marks, answer)."""
    from emu_agent.world.scene import parse_object_phrase

    items, final = answer.rsplit(" so ", 1)
    parsed = [item.rsplit(" ", 1) for item in items.split(" and ")]
    return [parse_object_phrase(phrase) for phrase, _ in parsed], [mark for _, mark in parsed], final


def test_count_tallied_marks_each_object_with_the_running_count() -> None:
    """By colour or by shape: every object in reading order, each marked with the running count if it is
    counted and "no" if not, then the number (the number alone stays right in ``also_correct``); the total is
    answered with the number, as in ``"count"``."""
    rng = random.Random(5)
    examples = [sample_training_example(rng, {"count_tallied": 1.0}) for _ in range(160)]
    totals = [e for e in examples if not e.also_correct]
    assert 0.15 <= len(totals) / len(examples) <= 0.35, len(totals)
    for e in totals:
        assert e.task == "count" and e.answer == str(len(e.meta["scene"].objects))
    numbers = Counter()
    for e in (e for e in examples if e.also_correct):
        question, scene = _question(e), e.meta["scene"]
        colour = next((c for c in COLOURS if f"{c} objects" in question), None)
        shape = next((s for s in SHAPES if f"{s}s" in question), None)
        objects, marks, number = _marks(e.answer)
        assert objects == list(scene.objects), (e.answer, scene)
        counted = [o.colour == colour or o.shape == shape for o in scene.objects]
        running = [str(sum(counted[: i + 1])) if hit else "no" for i, hit in enumerate(counted)]
        assert marks == running and number == str(sum(counted)) and e.also_correct == (number,), e.answer
        numbers[number] += 1
    assert set(numbers) >= {"0", "1", "2"}, numbers


def _where_asked(example) -> tuple:
    """A trained "where" example's (colour, shape, scene, the one object asked about)."""
    assert example.task == "vqa_where" and example.meta["template_split"] == "train"
    colour, shape = ASKED.search(_question(example)).groups()
    scene = example.meta["scene"]
    (target,) = [o for o in scene.objects if (o.colour, o.shape) == (colour, shape)]
    return colour, shape, scene, target


def test_where_tallied_marks_the_asked_object_yes_often_beside_a_distractor() -> None:
    rng = random.Random(6)
    examples = [sample_training_example(rng, {"where_tallied": 1.0}) for _ in range(120)]
    hard = 0
    for e in examples:
        colour, shape, scene, target = _where_asked(e)
        objects, marks, cell = _marks(e.answer)
        assert objects == list(scene.objects) and cell == target.cell and e.also_correct == (target.cell,)
        assert marks == ["yes" if o == target else "no" for o in scene.objects], e.answer
        hard += any(o != target and (o.colour == colour or o.shape == shape) for o in scene.objects)
    assert 0.5 <= hard / len(examples) <= 0.85, hard  # half drawn hard, plus the plain draws that happen to be


def test_where_checked_marks_each_objects_colour_and_shape_apart() -> None:
    """ "where is the red triangle?" -> "a red square at top colour yes shape no and a red triangle at center
    colour yes shape yes so center": every object in reading order, its colour and its shape each checked
    against the question, then the cell; the cell alone stays right in ``also_correct``."""
    rng = random.Random(7)
    examples = [sample_training_example(rng, {"where_checked": 1.0}) for _ in range(120)]
    one_attribute_shared = 0
    for e in examples:
        colour, shape, scene, target = _where_asked(e)
        items, cell = e.answer.rsplit(" so ", 1)
        yes_no = {True: "yes", False: "no"}
        expected = [
            f"{object_phrase(o)} colour {yes_no[o.colour == colour]} shape {yes_no[o.shape == shape]}"
            for o in scene.objects
        ]
        assert items.split(" and ") == expected and cell == target.cell and e.also_correct == (target.cell,)
        one_attribute_shared += " colour yes shape no" in e.answer or " colour no shape yes" in e.answer
    assert 0.5 <= one_attribute_shared / len(examples) <= 0.85, one_attribute_shared


def test_exists_tallied_marks_the_asked_object_and_says_yes_only_if_it_is_there() -> None:
    """ "is there a red triangle?" -> "a red square at top no and a red triangle at center yes so yes": the
    marks are where_tallied's (yes only for an object of the asked colour and shape), the answer is yes if one
    is marked yes; the short answer stays right in ``also_correct``; half the draws are exists_hard cases."""
    rng = random.Random(8)
    examples = [sample_training_example(rng, {"exists_tallied": 1.0}) for _ in range(160)]
    answers, near_miss = Counter(), 0
    for e in examples:
        assert e.task == "exists" and e.meta["template_split"] == "train"
        colour, shape = ASKED.search(_question(e)).groups()
        scene = e.meta["scene"]
        objects, marks, answer = _marks(e.answer)
        asked = [(o.colour, o.shape) == (colour, shape) for o in scene.objects]
        assert objects == list(scene.objects), (e.answer, scene)
        assert marks == ["yes" if hit else "no" for hit in asked], e.answer
        assert answer == ("yes" if any(asked) else "no") and e.also_correct == (answer,), e.answer
        answers[answer] += 1
        near_miss += any((o.colour == colour) != (o.shape == shape) for o in scene.objects)
    assert 0.35 <= answers["yes"] / len(examples) <= 0.65, answers
    assert 0.5 <= near_miss / len(examples) <= 0.9, near_miss


def test_agent_draw_many_is_the_closed_generate_call_for_a_request_of_two_or_three_objects() -> None:
    """The call copies the request's whole scene into the prompt and closes, parsed back to the same arguments."""
    from emu_agent.model.message_rendering import TOOL_CALL_START
    from emu_agent.world.agent_eval import parse_tool_calls

    rng = random.Random(5)
    examples = [sample_training_example(rng, {"agent_draw_many": 1.0}) for _ in range(80)]
    sizes = Counter()
    for e in examples:
        assert e.task == "agent" and e.chat and e.meta["kind"] == "generate"
        request = e.prompt[-1].text
        calls, valid = parse_tool_calls(e.answer)
        assert valid and e.answer.startswith(TOOL_CALL_START), e.answer
        assert calls == [("generate_image", e.meta["expected_arguments"])], e.answer
        prompt = e.meta["expected_arguments"]["prompt"]
        assert prompt in request, (prompt, request)
        sizes[prompt.count(" and ") + 1] += 1
    assert set(sizes) == {2, 3} and 0.6 <= sizes[3] / len(examples) <= 0.9, sizes


def test_exists_hard_needs_colour_and_shape_bound_to_one_object() -> None:
    rng = random.Random(1)
    examples = [sample_training_example(rng, {"exists_hard": 1.0}) for _ in range(150)]
    answers = Counter(e.answer for e in examples)
    assert 0.35 <= answers["yes"] / len(examples) <= 0.65, answers
    for e in examples:
        colour, shape = ASKED.search(_question(e)).groups()
        objects = e.meta["scene"].objects
        present = any(o.colour == colour and o.shape == shape for o in objects)
        assert (e.answer == "yes") == present
        assert any((o.colour == colour) != (o.shape == shape) for o in objects)  # a near miss is in the picture


def test_where_hard_has_a_distractor_sharing_the_colour_or_the_shape() -> None:
    rng = random.Random(3)
    examples = [sample_training_example(rng, {"where_hard": 1.0}) for _ in range(120)]
    assert len({e.answer for e in examples}) >= 6  # many cells, not one
    for e in examples:
        assert e.task == "vqa_where" and e.meta["template_split"] == "train"
        colour, shape = ASKED.search(_question(e)).groups()
        objects = e.meta["scene"].objects
        (target,) = [o for o in objects if (o.colour, o.shape) == (colour, shape)]
        assert e.answer == target.cell
        others = [o for o in objects if o is not target]
        assert any(o.colour == colour or o.shape == shape for o in others), (colour, shape, objects)


def test_edit_hard_draws_recolours_and_removals_that_the_target_image_shows() -> None:
    from emu_agent.world.checker import check_image
    from emu_agent.world.edits import apply_edit

    rng = random.Random(2)
    examples = [sample_training_example(rng, {"edit_hard": 1.0}) for _ in range(60)]
    kinds = Counter(e.meta["kind"] for e in examples)
    assert set(kinds) == {"recolour", "remove"} and 0.6 <= kinds["recolour"] / len(examples) <= 0.9, kinds
    for e in examples:
        assert e.task == "edit" and e.meta["template_split"] == "train"
        assert apply_edit(e.meta["source_scene"], e.meta["edit"]) == e.target_scene
        assert check_image(e.target, e.target_scene).ok  # the target image really shows the edited scene


def test_unknown_or_negative_mixture_names_are_refused() -> None:
    assert check_mixture(DEFAULT_MIXTURE) is DEFAULT_MIXTURE
    with pytest.raises(InputError, match="counting"):
        check_mixture({"caption": 1.0, "counting": 1.0})
    with pytest.raises(InputError, match="-1"):
        check_mixture({"caption": -1.0})
    with pytest.raises(InputError, match="positive sum"):
        check_mixture({"caption": 0.0})


def test_look_first_asks_the_plain_question_after_the_true_caption() -> None:
    from emu_agent.world.mixture import LOOK_FIRST_QUESTIONS
    from emu_agent.world.scene import caption
    from emu_agent.world.templates import templates

    rng = random.Random(5)
    examples = [sample_training_example(rng, {"look_first": 1.0}) for _ in range(120)]
    tasks = Counter(e.task for e in examples)
    assert set(tasks) == set(LOOK_FIRST_QUESTIONS) and tasks["vqa_where"] > tasks["vqa_shape"], tasks
    for e in examples:
        (user, [image, request]), (assistant, [description]), (follow_up, [question]) = e.prompt
        assert (user, assistant, follow_up) == ("user", "assistant", "user") and not isinstance(image, str)
        assert request in templates("caption", "train") and description == caption(e.meta["scene"])
        assert e.meta["look_first"] == description and e.meta["template_split"] == "train"
        assert isinstance(question, str) and e.answer  # the plain generator's question and answer


def test_look_first_blind_shows_an_empty_canvas_so_only_the_description_answers() -> None:
    from emu_agent.world.scene import caption
    from emu_agent.world.vocab import BACKGROUNDS

    rng = random.Random(6)
    for _ in range(40):
        e = sample_training_example(rng, {"look_first_blind": 1.0})
        (_, [image, _]), (_, [description]), (_, [question]) = e.prompt
        scene = e.meta["scene"]
        assert image.getcolors() == [(64 * 64, BACKGROUNDS[scene.background])]  # nothing drawn
        assert description == caption(scene) and isinstance(question, str)
