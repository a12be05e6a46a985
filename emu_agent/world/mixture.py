"""The training mixture of emu-tiny: world tasks plus agent dialogues, drawn by weight.

Besides the world's tasks and ``"agent"``, a mixture may weight two training-only *hard* variants. They draw
from the same generators (same scenes, phrasings and answers) and keep only the cases that need more than a
glance, so the eval, which draws from the plain generators, is unchanged:

- ``"count_hard"``: counting by colour or by shape whose answer is not 1 (0, 2 or 3), plus one in three
  answered 1, so the answer cannot be guessed from "how many ...s";
- ``"exists_hard"``: questions whose answer needs the colour *and* the shape bound to one object: "no" for a
  near miss (an object of that colour or that shape is present, not both), "yes" where another object shares
  the colour or the shape of the one asked about;
- ``"where_hard"``: "where is the <colour> <shape>?" in scenes where another object shares its colour or its
  shape, so the cell can only be found with both bound to one object. These were 10 of v10's 11 "where" misses
  on eval seed 7 (session 12);
- ``"edit_hard"``: edits that change an object where it stands: recolours (three in four) and removals. They are
  the edits emu-tiny v9 got wrong most (seed 2026: recolour 50%, removal 67%, against 96-100% for move and
  add). Measured, not in v10's recipe: the recolour misses turned out to be one unseen phrasing
  (docs/emu-tiny-history.md, "Phase 12").

Two training-only entries change the form of an answer rather than which cases are drawn. Both answer in the
*tallied* form of :func:`emu_agent.world.tasks.tallied`, which the eval also accepts as exactly right:

- ``"count_tallied"``: a count by colour or by shape (three in four of its draws; the rest ask for the total,
  answered with the number as in ``"count"``): "how many squares?" -> "a orange triangle at right no and a red
  square at bottom 1 so 1";
- ``"where_tallied"``: "where is the red triangle?" -> "a red square at top no and a red triangle at center yes
  so center"; half of its draws are ``where_hard`` scenes;
- ``"where_checked"``: the same draws, answered in the *checked* form of :func:`emu_agent.world.tasks.checked`,
  which marks each object's colour and shape apart: "a red square at top colour yes shape no and a red triangle
  at center colour yes shape yes so center". Measured in session 16 (docs/emu-tiny-history.md, "Phase 17"; not
  in v12's recipe): after 1,200 steps at .25 the shape marks were mostly right and the colour marks were not
  (where 94 and 90 on eval seeds 7 and 31337), as the tallied counts were at 1,200 steps;
- ``"exists_tallied"``: "is there a red triangle?" -> "a red square at top no and a red triangle at center yes
  so yes"; half of its draws are ``exists_hard`` cases. The marks are ``where_tallied``'s, so the two forms
  agree. Why (session 16, "Phase 17"): a model trained on ``where_tallied`` answered the eval-only phrasing
  "can you see a red triangle?" with a tallied statement half the time it went wrong, and the direct
  exists answer was cut off there; in its own tallied form the question is answered, not cut off. In v13's
  recipe (session 17, "Phase 18": .15-.26 in its last two phases, beside ``where_tallied`` .18-.22): every
  exists and every "where" is answered tallied, exists at 95.8% and where at 98.0% over five eval seeds
  (v12, direct: 96.8% and 94.6%).

Why: emu-tiny v11 names colours, shapes and cells in its captions 99% of the time, yet on four eval seeds it
counted 211 of 211 totals right and only 71 of 106 counts by shape; most misses counted objects of another shape,
and most of its "where" misses gave the cell of an object of the right colour and the wrong shape. Asked for the
counted objects first (session 14, a listed form: "a red square at bottom, so 1"), it listed objects of the
wrong shape as often: selecting by shape across the image is what fails, not naming. The tallied form never
selects across the image: it writes the caption, one object at a time, checks the object it has just named
against the question, and keeps a running count. A mixture that weights these should leave ``"count"``,
``"count_hard"``, ``"vqa_where"`` and ``"where_hard"`` at 0, so that each question is asked in one form only.
Measured in session 14 (docs/emu-tiny-history.md, "Phase 15"; not in v11's recipe): after 1,200 steps from v11 the
model wrote the caption right and marked "a green triangle at left" as not one of the "triangles?" asked about,
on training examples as on held-out ones (10-13 of 32 counts by shape right): it could not tell which shape a
plural names, which :mod:`emu_agent.world.plurals` is about.
Session 15 ("Phase 16"): on the split tokenizer of :func:`emu_agent.world.plurals.split_plurals` and after
2,400 steps, ``count_tallied`` (with ``where_tallied``) counted 37 of 38 by shape on eval seed 2026; v12's last
phase keeps ``count_tallied`` .15 in place of ``count`` and ``count_hard`` in v11's mixture.

Two more training-only entries teach the two-turn form of :mod:`emu_agent.world.look_first` (measured in
session 12: the follow-up answers were no better than the direct ones; v11's lineage trained on ``look_first``
for what it did to the direct counting and exists answers, docs/emu-tiny-history.md "Phase 14"):

- ``"look_first"``: a question about one image (where, how many, is there, colour, shape; mostly the first
  three) asked after a first turn in which the user asks for a description (a trained caption phrasing) and the
  assistant gives the scene's caption. Only the answer to the question is scored;
- ``"look_first_blind"``: the same, with the image replaced by an empty canvas of the scene's background, so
  the answer can only come from the description (a model that already answers most questions from the image
  otherwise has little reason to learn to read what it wrote).

One more training-only entry is about the agent's own, unconstrained tool calls (session 18, "Phase 19" in
docs/emu-tiny-history.md): ``"agent_draw_many"`` is the ``generate_image`` call for a drawing request of three
objects (three draws in four) or two. Plain ``"agent"`` draws a three-object ``generate_image`` call in about
one example in 26, and the one malformed call v11-v13 still write is a three-object drawing request copied into
the call's prompt and never closed. On its own it did not stop that (the calls broke off after the scene, at
the eval-only "... for me?"); four trained drawing requests with words after the scene
(:mod:`emu_agent.world.templates`) did, and v14 trained on both.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from emu_agent.errors import InputError
from emu_agent.world.dialogues import dialogue_examples, sample_dialogue, sample_drawing_dialogue
from emu_agent.world.look_first import look_first_prompt
from emu_agent.world.scene import caption
from emu_agent.world.tasks import TASKS, ImageExample, TextExample, checked, sample_example
from emu_agent.world.templates import pick_template
from emu_agent.world.vocab import BACKGROUNDS, CANVAS_SIZE, COLOURS, SHAPES

__all__ = [
    "DEFAULT_MIXTURE",
    "LOOK_FIRST_QUESTIONS",
    "MIXTURE_NAMES",
    "check_mixture",
    "sample_training_example",
]

DEFAULT_MIXTURE: dict[str, float] = {
    "caption": 0.11,
    "vqa_colour": 0.04,
    "vqa_shape": 0.04,
    "vqa_where": 0.04,
    "count": 0.04,
    "exists": 0.04,
    "video_qa": 0.1,
    "few_shot": 0.07,
    "t2i": 0.14,
    "edit": 0.14,
    "agent": 0.24,
}
_HARD = ("count_hard", "exists_hard", "where_hard", "edit_hard")
_HARD_SOURCE = {"count_hard": "count", "exists_hard": "exists", "where_hard": "vqa_where"}  # plain generator drawn
_TALLIED = ("count_tallied", "where_tallied", "where_checked", "exists_tallied")
MIXTURE_NAMES: tuple[str, ...] = (
    *TASKS,
    "agent",
    "agent_draw_many",
    *_HARD,
    *_TALLIED,
    "look_first",
    "look_first_blind",
)
#: The questions ``look_first`` asks after the description, by weight (binding questions first).
LOOK_FIRST_QUESTIONS: dict[str, float] = {
    "vqa_where": 0.3,
    "count": 0.3,
    "exists": 0.25,
    "vqa_colour": 0.075,
    "vqa_shape": 0.075,
}
_MAX_DRAWS = 200  # rejection sampling bound (a hard case comes up within a few draws)
_ASKED = re.compile(rf"\b({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})\b")


def check_mixture(weights: dict[str, float]) -> dict[str, float]:
    """``weights`` if every name is known and every weight is >= 0 with a positive sum; else ``InputError``."""
    unknown = sorted(set(weights) - set(MIXTURE_NAMES))
    if unknown:
        raise InputError(f"mixture: unknown names {unknown}; use {list(MIXTURE_NAMES)}")
    negative = {k: v for k, v in weights.items() if not v >= 0}
    if negative or sum(weights.values()) <= 0:
        raise InputError(f"mixture: weights must be >= 0 with a positive sum; got {negative or weights}")
    return weights


def sample_training_example(rng: random.Random, weights: dict[str, float] | None = None) -> TextExample | ImageExample:
    """One training example; ``"agent"`` draws a dialogue and one of its assistant turns."""
    weights = weights or DEFAULT_MIXTURE
    names = list(weights)
    task = rng.choices(names, weights=[weights[n] for n in names])[0]
    if task == "agent":
        return rng.choice(dialogue_examples(sample_dialogue(rng)))
    if task == "agent_draw_many":
        return _draw_many_example(rng)
    if task in _HARD:
        return _hard_example(task, rng)
    if task == "count_tallied":
        return _count_tallied_example(rng)
    if task == "where_tallied":
        return _where_tallied_example(rng)
    if task == "where_checked":
        return _where_checked_example(rng)
    if task == "exists_tallied":
        return _exists_tallied_example(rng)
    if task in ("look_first", "look_first_blind"):
        return _look_first_example(rng, blind=task == "look_first_blind")
    return sample_example(task, rng, split="train")


def _draw_many_example(rng: random.Random) -> TextExample:
    """The ``generate_image`` call that answers a drawing request of three objects (three draws in four) or two."""
    dialogue = sample_drawing_dialogue(rng, n_objects=3 if rng.random() < 0.75 else 2)
    call = dialogue_examples(dialogue)[0]
    assert call.meta["expected_tool"] == "generate_image"
    return call


def _count_tallied_example(rng: random.Random) -> TextExample:
    """A count example; by colour or by shape (three in four) it is answered in its tallied form."""
    want_total = rng.random() < 0.25
    for _ in range(_MAX_DRAWS):
        example = sample_example("count", rng, split="train")
        assert isinstance(example, TextExample)
        if not example.also_correct:  # the total: "how many objects?"
            if want_total:
                return example
        elif not want_total:
            return _answered_tallied(example)
    raise RuntimeError(f"count_tallied: no example in {_MAX_DRAWS} draws")  # pragma: no cover - a generator change


def _where_example(rng: random.Random) -> TextExample:
    """A "where is ..." example, half of them ``where_hard`` scenes."""
    example = _hard_example("where_hard", rng) if rng.random() < 0.5 else sample_example("vqa_where", rng)
    assert isinstance(example, TextExample)
    return example


def _where_tallied_example(rng: random.Random) -> TextExample:
    """A :func:`_where_example` answered in its tallied form."""
    return _answered_tallied(_where_example(rng))


def _where_checked_example(rng: random.Random) -> TextExample:
    """A :func:`_where_example` answered in its checked form."""
    example = _where_example(rng)
    scene = example.meta["scene"]
    asked = scene.at(example.answer)
    statement = checked(scene.objects, asked.colour, asked.shape, asked.cell)
    return replace(example, answer=statement, also_correct=(example.answer,))


def _exists_tallied_example(rng: random.Random) -> TextExample:
    """An "is there ..." example answered in its tallied form, half of them ``exists_hard`` cases."""
    example = _hard_example("exists_hard", rng) if rng.random() < 0.5 else sample_example("exists", rng, split="train")
    assert isinstance(example, TextExample)
    return _answered_tallied(example)


def _answered_tallied(example: TextExample) -> TextExample:
    """``example`` trained on its tallied statement; its short answer stays right in ``also_correct``."""
    return replace(example, answer=example.also_correct[0], also_correct=(example.answer,))


def _look_first_example(rng: random.Random, *, blind: bool = False) -> TextExample:
    """A question example asked after a description request answered with the scene's caption (same answer);
    ``blind``: the image is an empty canvas of the scene's background."""
    names = list(LOOK_FIRST_QUESTIONS)
    task = rng.choices(names, weights=[LOOK_FIRST_QUESTIONS[n] for n in names])[0]
    example = sample_example(task, rng, split="train")
    assert isinstance(example, TextExample)
    request, _ = pick_template("caption", rng, "train")
    scene = example.meta["scene"]
    image = example.prompt[0][1][0]
    if blind:  # the description is the only place the answer can come from
        from PIL import Image

        image = Image.new("RGB", (CANVAS_SIZE, CANVAS_SIZE), BACKGROUNDS[scene.background])
    description = caption(scene)
    prompt = look_first_prompt(image, _question(example), description, describe_request=request)
    return TextExample(task, prompt, example.answer, meta={**example.meta, "look_first": description})


def _hard_example(task: str, rng: random.Random) -> TextExample | ImageExample:
    if task == "edit_hard":
        return _hard_edit(rng)
    keep = {"count_hard": _hard_count, "exists_hard": _hard_exists, "where_hard": _hard_where}[task]
    want_one = task == "count_hard" and rng.random() < 1 / 3
    want_yes = rng.random() < 0.5
    for _ in range(_MAX_DRAWS):
        example = sample_example(_HARD_SOURCE[task], rng, split="train")
        assert isinstance(example, TextExample)
        if keep(example, want_one=want_one, want_yes=want_yes):
            return example
    raise RuntimeError(f"{task}: no hard case in {_MAX_DRAWS} draws")  # pragma: no cover - a generator change


def _hard_edit(rng: random.Random) -> ImageExample:
    """An edit example of kind recolour (three in four) or remove, drawn from the plain edit generator."""
    kind = "recolour" if rng.random() < 0.75 else "remove"
    for _ in range(_MAX_DRAWS):
        example = sample_example("edit", rng, split="train")
        assert isinstance(example, ImageExample)
        if example.meta["kind"] == kind:
            return example
    raise RuntimeError(f"edit_hard: no {kind} edit in {_MAX_DRAWS} draws")  # pragma: no cover - a generator change


def _question(example: TextExample) -> str:
    return next(x for x in reversed(example.prompt[-1][1]) if isinstance(x, str))


def _hard_count(example: TextExample, *, want_one: bool, want_yes: bool) -> bool:
    if "objects" in _question(example) and not any(c in _question(example) for c in COLOURS):
        return False  # "how many objects": the total, never hard in this sense
    return (example.answer == "1") == want_one


def _hard_where(example: TextExample, *, want_one: bool, want_yes: bool) -> bool:
    asked = _ASKED.search(_question(example))
    if asked is None:
        return False
    colour, shape = asked.groups()
    others = [o for o in example.meta["scene"].objects if (o.colour, o.shape) != (colour, shape)]
    return any(o.colour == colour or o.shape == shape for o in others)


def _hard_exists(example: TextExample, *, want_one: bool, want_yes: bool) -> bool:
    if (example.answer == "yes") != want_yes:
        return False
    asked = _ASKED.search(_question(example))
    if asked is None:
        return False
    colour, shape = asked.groups()
    objects = example.meta["scene"].objects
    if want_yes:  # another object shares the colour or the shape
        return any((o.colour == colour) != (o.shape == shape) for o in objects)
    return any(o.colour == colour or o.shape == shape for o in objects)  # a near miss
