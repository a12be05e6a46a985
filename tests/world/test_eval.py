"""The eval harness: an oracle scores 1.0 end to end; the random-weight model runs through and writes files."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image

from emu_agent.errors import InputError
from emu_agent.model.loading import builtin_model_dir
from emu_agent.model.prompting import VideoFrames
from emu_agent.model.tokenizer import EmuTokenizer
from emu_agent.world.eval import (
    ALT_TASKS,
    TARGETS,
    TaskScore,
    draw_examples,
    evaluate,
    score_image,
    score_text,
)
from emu_agent.world.render import render_scene
from emu_agent.world.tasks import TASKS, ImageExample


def _key(prompt: list) -> tuple:
    items = [x for _, turn in prompt for x in turn] if prompt and isinstance(prompt[0], tuple) else prompt
    parts = []
    for item in items:
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, VideoFrames):
            parts.append(tuple(f.tobytes() for f in item.frames))
        else:
            parts.append(item.tobytes())
    return tuple(parts)


class OracleModel:
    """Answers every eval prompt correctly by looking the example up (tests the harness, not a model).

    Like a real model it writes at most ``max_new_tokens`` tokens of emu-tiny's tokenizer, so a token budget
    the harness sets too short for an answer shows up as a miss."""

    decoder = object()
    tokenizer = EmuTokenizer.from_pretrained(builtin_model_dir("emu-tiny"))

    def __init__(self, seed: int, limit: int, wrong: bool = False) -> None:
        self.answers: dict[tuple, object] = {}
        self.wrong = wrong
        for task in TASKS:
            for style in (None, "alt"):
                for ex in draw_examples(task, seed=seed, limit=limit, style=style):
                    value = ex.target if isinstance(ex, ImageExample) else ex.answer
                    self.answers[_key(ex.prompt)] = value

    def generate_texts(self, prompts: list, max_new_tokens: int) -> list[str]:
        assert max_new_tokens > 0
        answers = [("nope" if self.wrong else self.answers[_key(p)]) for p in prompts]
        return [self.tokenizer.decode(self.tokenizer.encode(a, add_bos=False)[:max_new_tokens]) for a in answers]  # type: ignore[arg-type]

    def generate_image(self, prompt: list, seed: int) -> Image.Image:
        if self.wrong:
            return Image.new("RGB", (64, 64), (255, 255, 255))
        return self.answers[_key(prompt)]  # type: ignore[return-value]


def test_oracle_scores_one_everywhere(tmp_path) -> None:
    report = evaluate(OracleModel(seed=3, limit=6), seed=3, limit=6, progress=False)
    assert [r.task for r in report.rows] == list(TASKS)
    for row in report.rows:
        assert row.n == 6 and row.score == 1.0 and row.passed, row
        assert row.target == TARGETS[row.task]
        assert (row.alt_score == 1.0) == (row.task in ALT_TASKS)
    assert any(r.heldout_n for r in report.rows) and any(r.paraphrase_n for r in report.rows)
    report.write(tmp_path)
    assert "| caption | 6 | 100.0%" in (tmp_path / "report.md").read_text()


def test_edit_and_video_rows_are_split_by_kind(tmp_path) -> None:
    """A model that fails every recolour shows it in the edit row's ``by_kind``, and the report lists it."""
    oracle = OracleModel(seed=5, limit=24)
    for ex in draw_examples("edit", seed=5, limit=24):
        if ex.meta["kind"] == "recolour":
            oracle.answers[_key(ex.prompt)] = Image.new("RGB", (64, 64), (255, 255, 255))
    report = evaluate(oracle, seed=5, limit=24, tasks=["edit", "video_qa", "caption"], progress=False)
    edit = report.row("edit").by_kind
    assert set(edit) == {"recolour", "move", "remove", "add"}, edit
    assert edit["recolour"][0] == 0 < edit["recolour"][1]
    assert all(ok == n > 0 for kind, (ok, n) in edit.items() if kind != "recolour")
    assert sum(n for _, n in edit.values()) == 24
    assert report.row("edit").score == pytest.approx(1 - edit["recolour"][1] / 24)
    video = report.row("video_qa").by_kind
    assert len(video) >= 3 and all(ok == n for ok, n in video.values()) and sum(n for _, n in video.values()) == 24
    assert report.row("caption").by_kind == {}
    report.write(tmp_path)
    assert f"- edit: add {edit['add'][0]}/{edit['add'][1]}, move" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["rows"][0]["by_kind"]["recolour"][0] == 0


def test_video_questions_about_one_fact_also_take_the_events_full_sentence() -> None:
    """A "what vanished?" answered "the red square disappeared from left" is right (it states the answer); the
    sentence of another event, or the object alone for "what happened?", is not. The note counts each form."""
    from emu_agent.world.video import describe_event

    examples = draw_examples("video_qa", seed=8, limit=40)
    specific = [ex for ex in examples if ex.meta["question"] != "video_event"]
    events = [ex for ex in examples if ex.meta["question"] == "video_event"]
    assert specific and events
    for ex in specific:
        assert ex.also_correct == (describe_event(ex.meta["clip"].event),)
        assert score_text(ex.also_correct[0] + "\n", ex.answer, ex.also_correct)
    assert all(ex.also_correct == () and ex.answer == describe_event(ex.meta["clip"].event) for ex in events)
    other = next(e for e in specific if e.also_correct != specific[0].also_correct).also_correct[0]
    assert not score_text(other, specific[0].answer, specific[0].also_correct)

    oracle = OracleModel(seed=8, limit=40)
    for ex in specific:  # the full sentence everywhere it is allowed
        oracle.answers[_key(ex.prompt)] = ex.also_correct[0]
    row = evaluate(oracle, seed=8, limit=40, tasks=["video_qa"], progress=False).row("video_qa")
    assert row.score == 1.0
    assert row.note == f"{len(events)}/40 in the answer's own form, {len(specific)} as the full statement"
    for ex in events:  # "what happened?" answered with the object alone says nothing of what happened
        clip = ex.meta["clip"]
        oracle.answers[_key(ex.prompt)] = f"a {clip.event.obj.colour} {clip.event.obj.shape}"
    row = evaluate(oracle, seed=8, limit=40, tasks=["video_qa"], progress=False).row("video_qa")
    assert row.score == pytest.approx(len(specific) / 40)


def test_counts_by_colour_or_shape_and_where_and_exists_questions_also_take_the_tallied_statement() -> None:
    """ "how many squares?" answered "a orange triangle at right no and a red square at bottom 1 so 1" is right;
    the right number after a wrong tally is not. The total takes the number only. "where is ..." and "is there
    ..." likewise."""
    from emu_agent.world.scene import SceneObject
    from emu_agent.world.tasks import checked, stated_answer, tallied

    examples = draw_examples("count", seed=9, limit=60)
    marked = [ex for ex in examples if ex.also_correct]
    totals = [ex for ex in examples if not ex.also_correct]
    assert marked and totals
    for ex in marked:
        (statement,) = ex.also_correct
        assert statement.endswith(f" so {ex.answer}") and statement.count(" and ") == len(ex.meta["scene"].objects) - 1
        assert score_text(statement, ex.answer, ex.also_correct)
        wrong = statement.replace(" no and ", " 1 and ", 1)  # one more object counted, the same number
        assert wrong == statement or not score_text(wrong, ex.answer, ex.also_correct)
    oracle = OracleModel(seed=9, limit=60)
    for ex in marked:
        oracle.answers[_key(ex.prompt)] = ex.also_correct[0]
    row = evaluate(oracle, seed=9, limit=60, tasks=["count"], progress=False).row("count")
    assert row.score == 1.0
    assert row.note == f"{len(totals)}/60 in the answer's own form, {len(marked)} as the full statement"

    for ex in draw_examples("vqa_where", seed=10, limit=30):
        statement, checked_statement = ex.also_correct
        assert statement.endswith(f" so {ex.answer}") and statement.count(" yes") == 1
        assert score_text(statement, ex.answer, ex.also_correct)
        assert not score_text(statement.replace(" yes", " no"), ex.answer, ex.also_correct)
        assert checked_statement.endswith(f" so {ex.answer}") and "colour yes shape yes" in checked_statement
        assert score_text(checked_statement, ex.answer, ex.also_correct)
        flips = {
            " colour yes shape yes": " colour yes shape no",
            " colour no": " colour yes",
            " shape no": " shape yes",
        }
        for mark, flipped_mark in flips.items():  # one mark wrong, the same cell: wrong
            flipped = checked_statement.replace(mark, flipped_mark, 1)
            assert flipped == checked_statement or not score_text(flipped, ex.answer, ex.also_correct)
    exists = draw_examples("exists", seed=11, limit=40)
    assert {ex.answer for ex in exists} == {"yes", "no"}
    for ex in exists:  # "is there ...": the where marks, then yes or no
        (statement,) = ex.also_correct
        assert statement.endswith(f" so {ex.answer}") and statement.count(" yes") == (ex.answer == "yes") * 2
        assert score_text(statement, ex.answer, ex.also_correct)
        for mark, flipped_mark in ((" yes and", " no and"), (" no and", " yes and"), (" no so", " yes so")):
            flipped = statement.replace(mark, flipped_mark, 1)  # one object marked wrong, the same answer
            assert flipped == statement or not score_text(flipped, ex.answer, ex.also_correct)
        other = "no" if ex.answer == "yes" else "yes"
        assert not score_text(statement.rsplit(" so ", 1)[0] + f" so {other}", ex.answer, ex.also_correct)
    square = SceneObject("red", "square", "top")
    assert tallied([square], ["yes"], "top") == "a red square at top yes so top"
    assert stated_answer("a red square at top yes so top") == "top" and stated_answer(" top ") == "top"
    assert stated_answer("a red square at top no and a blue circle at bottom right 1 so 1") == "1"
    triangle = SceneObject("red", "triangle", "right")
    assert checked([square, triangle], "red", "triangle", "right") == (
        "a red square at top colour yes shape no and a red triangle at right colour yes shape yes so right"
    )
    with pytest.raises(InputError, match="1 objects but 2 marks"):
        tallied([square], ["yes", "no"], "top")


def test_answer_budgets_fit_the_longest_statement_the_eval_accepts() -> None:
    """An oracle that always writes the longest exact form (the checked "where", the tallied count and exists)
    within the eval's token budget still scores 1.0, on both renderers: a budget too short for a worked
    statement would turn right answers into misses."""
    tasks = ["count", "vqa_where", "exists"]
    oracle = OracleModel(seed=12, limit=60)
    longest = 0
    for task in tasks:
        for style in (None, "alt"):
            for ex in draw_examples(task, seed=12, limit=60, style=style):
                statement = max((ex.answer, *ex.also_correct), key=len)
                oracle.answers[_key(ex.prompt)] = statement
                longest = max(longest, statement.count(" and ") + 1)
    assert longest == 3  # three-object scenes are among the draws
    report = evaluate(oracle, seed=12, limit=60, tasks=tasks, progress=False)
    for row in report.rows:
        assert row.score == 1.0 and row.alt_score == 1.0, row


def test_wrong_model_scores_zero() -> None:
    report = evaluate(OracleModel(seed=0, limit=3, wrong=True), seed=0, limit=3, progress=False)
    assert all(r.score == 0.0 and r.passed is False for r in report.rows)


def test_scorers_directly() -> None:
    assert score_text(" 3\n", "3") and not score_text("3.", "3")
    for ex in draw_examples("t2i", seed=1, limit=10) + draw_examples("edit", seed=1, limit=10):
        assert score_image(ex.target, ex)
        assert score_image(render_scene(ex.target_scene, random.Random(0), style="alt"), ex)
        assert not score_image(Image.new("RGB", (64, 64)), ex)


def test_draw_examples_is_deterministic_and_per_task() -> None:
    a = draw_examples("caption", seed=4, limit=5)
    b = draw_examples("caption", seed=4, limit=5)
    assert [x.answer for x in a] == [x.answer for x in b]
    assert [x.answer for x in a] != [x.answer for x in draw_examples("caption", seed=5, limit=5)]
    assert all(x.meta["style"] == "alt" for x in draw_examples("count", seed=4, limit=3, style="alt"))


def test_extra_scorers_and_bad_tasks() -> None:
    def tool_calls(model, *, seed: int, limit: int) -> TaskScore:
        return TaskScore("tool_calls", limit, 0.5, target=0.9)

    report = evaluate(
        OracleModel(seed=0, limit=2), seed=0, limit=2, tasks=["count"], progress=False,
        extra_scorers={"tool_calls": tool_calls},
    )  # fmt: skip
    assert [r.task for r in report.rows] == ["count", "tool_calls"]
    assert report.row("tool_calls").passed is False
    with pytest.raises(InputError):
        evaluate(OracleModel(seed=0, limit=1), tasks=["nope"], progress=False)


def test_random_model_end_to_end(random_model, tmp_path) -> None:
    report = evaluate(random_model, seed=0, limit=2, batch_size=4, progress=False)
    assert {r.task for r in report.rows} == set(TASKS)
    for row in report.rows:
        assert row.n == 2 and 0.0 <= row.score <= 1.0
    out = report.write(tmp_path / "eval")
    data = json.loads((out / "report.json").read_text())
    assert {r["task"] for r in data["rows"]} == set(TASKS) and data["info"]["limit"] == 2
    assert "| task |" in (out / "report.md").read_text()
    sheet = Image.open(out / "samples.png")
    assert sheet.width > 500 and sheet.height > 100 * len(TASKS)
    assert any(s.output_image is not None for s in report.samples)
