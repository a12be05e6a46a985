"""Training and eval examples for emu-tiny, drawn from the scenes world.

Two example types, consumed by the trainer and by :mod:`emu_agent.world.eval`:

- :class:`TextExample`: the target is text (captions, VQA, counting, video QA, few-shot);
- :class:`ImageExample`: the target is an image (text-to-image, editing), prompted Emu2-Gen style.

Chat prompts are lists of ``(role, items)`` turns ending with the user's; interleaved prompts (``chat=False``)
are flat lists of strings and images. Answers are short and canonical (a colour word, a shape word, a cell
name, a digit, ``yes``/``no``, a canonical caption or event sentence, a ``[...]`` attribute list), so they
are scored by exact match. A video question about one fact of the event ("what vanished?") also lists the
event's canonical sentence in ``also_correct``: it states the answer exactly, in the form "what happened?" asks
for. A count by colour or by shape, a "where is the red triangle?" and an "is there a red triangle?" list
their *tallied* statement there too (:func:`tallied`: the scene's caption, each object marked as it is checked
against the question, then the answer), the form the ``count_tallied``, ``where_tallied`` and ``exists_tallied``
training entries teach. A "where" question also lists its *checked* statement (:func:`checked`: each object's
colour and shape checked one at a time), the form ``where_checked`` teaches.

``split="eval"`` uses eval-only templates half the time and held-out compositions half the time; both are
recorded in ``meta`` (``template_split``, ``heldout``). Text-to-image prompts name the background half the
time; when they don't, the background is white.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from emu_agent.errors import InputError
from emu_agent.model.prompting import VideoFrames
from emu_agent.world.edits import Edit, sample_edit
from emu_agent.world.fewshot import SCHEMAS, attribute_values, format_attributes, sample_schema_scene
from emu_agent.world.render import Look, RenderStyle, carry_look, render_scene
from emu_agent.world.scene import (
    Scene,
    SceneObject,
    SceneSplit,
    caption,
    is_heldout_scene,
    object_phrase,
    sample_scene,
)
from emu_agent.world.templates import TemplateSplit, pick_template
from emu_agent.world.video import describe_event, direction, render_clip, sample_clip
from emu_agent.world.vocab import BACKGROUNDS, CELLS, COLOURS, SHAPES

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "TASKS",
    "TEXT_TASKS",
    "ExampleSplit",
    "ImageExample",
    "TextExample",
    "checked",
    "edit_instruction",
    "sample_example",
    "sample_mixture",
    "stated_answer",
    "tallied",
    "text_corpus",
    "where_statements",
]

ExampleSplit = Literal["train", "eval"]


@dataclass
class TextExample:
    """An example whose target is text."""

    task: str  # "caption" | "vqa_colour" | "vqa_shape" | "vqa_where" | "count" | "exists" | "video_qa" | "few_shot"
    prompt: list  # chat: (role, items) turns ending with a user turn; interleaved: flat str | image list
    answer: str  # the assistant's target text (no EOS marker)
    chat: bool = True  # False for the interleaved (base Emu2) format, used by few-shot
    meta: dict = field(default_factory=dict)  # scene / clip, heldout, template, template_split, style, ...
    # other outputs the eval also scores right: complete statements that state the answer exactly (a video
    # question about one fact of the event, answered with the event's full sentence). Training uses ``answer``.
    also_correct: tuple[str, ...] = ()


@dataclass
class ImageExample:
    """An example whose target is an image (Emu2-Gen style prompt, no chat template)."""

    task: str  # "t2i" | "edit"
    prompt: list  # interleaved: t2i -> [text]; edit -> [source image, instruction]
    target: Image.Image
    target_scene: Scene
    meta: dict = field(default_factory=dict)


@dataclass
class _Context:
    rng: random.Random
    split: ExampleSplit
    style: RenderStyle
    draw: bool = True  # False: skip rendering (text corpora), images become one shared blank

    def __post_init__(self) -> None:
        eval_split = self.split == "eval"
        self.template_split: TemplateSplit = "eval" if eval_split and self.rng.random() < 0.5 else "train"
        self.scene_split: SceneSplit = "heldout" if eval_split and self.rng.random() < 0.5 else "train"

    def template(self, kind: str) -> tuple[str, str]:
        return pick_template(kind, self.rng, self.template_split)

    def scene(self, **kwargs: Any) -> Scene:
        return sample_scene(self.rng, split=self.scene_split, **kwargs)

    def render(self, scene: Scene, looks: dict[tuple[str, str], Look] | None = None) -> Image.Image:
        if not self.draw:
            return _blank()
        return render_scene(scene, self.rng, style=self.style, looks=looks)

    def meta(self, template_id: str, heldout: bool, **extra: Any) -> dict[str, Any]:
        return {
            "template": template_id,
            "template_split": self.template_split,
            "heldout": heldout,
            "style": self.style,
            **extra,
        }


_BLANK: list[Any] = []


def _blank() -> Image.Image:
    if not _BLANK:
        from PIL import Image

        _BLANK.append(Image.new("RGB", (64, 64), BACKGROUNDS["white"]))
    return _BLANK[0]


def _ask(ctx: _Context, task: str, scene: Scene, kind: str, answer: str, **fields: str) -> TextExample:
    text, template_id = ctx.template(kind)
    prompt = [("user", [ctx.render(scene), text.format(**fields)])]
    return TextExample(task, prompt, answer, meta=ctx.meta(template_id, is_heldout_scene(scene), scene=scene))


# ---------------------------------------------------------------------------------------------- text tasks
def _caption(ctx: _Context) -> TextExample:
    scene = ctx.scene()
    return _ask(ctx, "caption", scene, "caption", caption(scene))


def _vqa_colour(ctx: _Context) -> TextExample:
    scene = ctx.scene()
    obj = ctx.rng.choice(scene.objects)
    unique_shape = sum(o.shape == obj.shape for o in scene.objects) == 1
    thing = f"the {obj.shape}" if unique_shape and ctx.rng.random() < 0.5 else f"the {obj.shape} at {obj.cell}"
    return _ask(ctx, "vqa_colour", scene, "vqa_colour", obj.colour, thing=thing)


def _vqa_shape(ctx: _Context) -> TextExample:
    scene = ctx.scene()
    if ctx.rng.random() < 0.15:  # an empty cell
        cell = ctx.rng.choice([c for c in CELLS if c not in scene.cells])
        return _ask(ctx, "vqa_shape", scene, "vqa_shape", "none", cell=cell)
    obj = ctx.rng.choice(scene.objects)
    return _ask(ctx, "vqa_shape", scene, "vqa_shape", obj.shape, cell=obj.cell)


def _vqa_where(ctx: _Context) -> TextExample:
    scene = ctx.scene()
    obj = ctx.rng.choice(scene.objects)
    example = _ask(ctx, "vqa_where", scene, "vqa_where", obj.cell, colour=obj.colour, shape=obj.shape)
    return replace(example, also_correct=where_statements(scene.objects, obj))


def where_statements(objects: Sequence[SceneObject], asked: SceneObject) -> tuple[str, str]:
    """The worked statements that answer "where is the <colour> <shape>?" exactly, besides the cell itself:
    the :func:`tallied` one, then the :func:`checked` one. ``asked`` is one of ``objects``."""
    marks = ["yes" if o is asked else "no" for o in objects]
    return tallied(objects, marks, asked.cell), checked(objects, asked.colour, asked.shape, asked.cell)


def tallied(objects: Sequence[SceneObject], marks: Sequence[str], answer: str) -> str:
    """The answer worked out in the open: each object in reading order, as the caption names it, followed by its
    mark, then ``"so"`` and the answer.

    >>> from emu_agent.world.scene import SceneObject as O
    >>> tallied([O("orange", "triangle", "right"), O("red", "square", "bottom")], ["no", "1"], "1")
    'a orange triangle at right no and a red square at bottom 1 so 1'

    Counts mark a match with the running count and anything else with ``"no"``; "where is ..." and "is
    there ..." mark ``"yes"`` or ``"no"``. Each step is one the model already does well (the next object of its
    caption; whether the object just named is the one asked about; the last number written), where the one-word
    answer needs the colour or shape bound across the whole image at once."""
    if len(objects) != len(marks):
        raise InputError(f"tallied: {len(objects)} objects but {len(marks)} marks")
    items = [f"{object_phrase(obj)} {mark}" for obj, mark in zip(objects, marks, strict=True)]
    return " and ".join(items) + f" so {answer}"


def checked(objects: Sequence[SceneObject], colour: str, shape: str, answer: str) -> str:
    """A "where is the <colour> <shape>?" worked out attribute by attribute: each object in reading order, as
    the caption names it, then whether its colour and whether its shape are the ones asked about, then
    ``"so"`` and the answer.

    >>> from emu_agent.world.scene import SceneObject as O
    >>> checked([O("red", "square", "top"), O("red", "triangle", "right")], "red", "triangle", "right")
    'a red square at top colour yes shape no and a red triangle at right colour yes shape yes so right'

    The single mark of :func:`tallied` asks for the colour *and* the shape bound at once, the step emu-tiny gets
    wrong; here each mark compares one word, as a count by colour or by shape does."""
    items = [
        f"{object_phrase(obj)} colour {_yes_no(obj.colour == colour)} shape {_yes_no(obj.shape == shape)}"
        for obj in objects
    ]
    return " and ".join(items) + f" so {answer}"


def stated_answer(text: str) -> str:
    """The answer a worked statement ends with, else ``text`` itself (trimmed).

    emu-tiny answers some questions in the open (:func:`tallied`, :func:`checked`): the statement ends with
    ``"so"`` and the answer, which is what a caller that wants the short answer should show.

    >>> stated_answer("a red circle at top left no and a blue square at bottom right yes so bottom right")
    'bottom right'
    >>> stated_answer(" bottom right ")
    'bottom right'
    """
    text = text.strip()
    return text.rsplit(" so ", 1)[1].strip() if " so " in text else text


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _tallied_count(objects: Sequence[SceneObject], counted: Sequence[SceneObject]) -> str:
    marks, running = [], 0
    for obj in objects:
        running += obj in counted
        marks.append(str(running) if obj in counted else "no")
    return tallied(objects, marks, str(running))


def _count(ctx: _Context) -> TextExample:
    scene = ctx.scene()
    rng = ctx.rng
    roll = rng.random()
    if roll < 0.5:
        return _ask(ctx, "count", scene, "count", str(len(scene.objects)), things="objects")
    if roll < 0.75:
        present = [o.colour for o in scene.objects]
        colour = rng.choice(present) if rng.random() < 0.7 else rng.choice(list(COLOURS))
        things, counted = f"{colour} objects", [o for o in scene.objects if o.colour == colour]
    else:
        present = [o.shape for o in scene.objects]
        shape = rng.choice(present) if rng.random() < 0.7 else rng.choice(SHAPES)
        things, counted = f"{shape}s", [o for o in scene.objects if o.shape == shape]
    example = _ask(ctx, "count", scene, "count", str(len(counted)), things=things)
    return replace(example, also_correct=(_tallied_count(scene.objects, counted),))


def _exists(ctx: _Context) -> TextExample:
    scene = ctx.scene()
    rng = ctx.rng
    pairs = {(o.colour, o.shape) for o in scene.objects}
    if rng.random() < 0.5:
        colour, shape = rng.choice(sorted(pairs))
        answer = "yes"
    else:  # often a near miss: the right shape in another colour, or the right colour in another shape
        obj = rng.choice(scene.objects)
        options = sorted((c, s) for c in COLOURS for s in SHAPES if (c, s) not in pairs)
        near = [(c, s) for c, s in options if c == obj.colour or s == obj.shape]
        colour, shape = rng.choice(near if near and rng.random() < 0.6 else options)
        answer = "no"
    example = _ask(ctx, "exists", scene, "exists", answer, colour=colour, shape=shape)
    marks = [_yes_no((o.colour, o.shape) == (colour, shape)) for o in scene.objects]
    return replace(example, also_correct=(tallied(scene.objects, marks, answer),))


def _video_question(ctx: _Context, event: Any) -> tuple[str, str, dict[str, str]]:
    specific = {
        "move": ("video_direction", lambda: direction(event.obj.cell, event.to_cell)),
        "appear": ("video_appeared", lambda: f"a {event.obj.colour} {event.obj.shape}"),
        "disappear": ("video_disappeared", lambda: f"a {event.obj.colour} {event.obj.shape}"),
        "recolour": ("video_new_colour", lambda: event.to_colour),
    }
    if ctx.rng.random() < 0.5:
        return "video_event", describe_event(event), {}
    kind, answer = specific[event.kind]
    return kind, answer(), {"colour": event.obj.colour, "shape": event.obj.shape}


def _video_qa(ctx: _Context) -> TextExample:
    clip = sample_clip(ctx.rng, split=ctx.scene_split)
    frames = render_clip(clip, ctx.rng, style=ctx.style) if ctx.draw else [_blank()] * len(clip.frames)
    kind, answer, fields = _video_question(ctx, clip.event)
    text, template_id = ctx.template(kind)
    prompt = [("user", [VideoFrames(frames, list(clip.timestamps)), text.format(**fields)])]
    meta = ctx.meta(template_id, clip.heldout, clip=clip, question=kind)
    sentence = describe_event(clip.event)  # "the red square disappeared from left" also answers "what vanished?"
    also = (sentence,) if sentence != answer else ()
    return TextExample("video_qa", prompt, answer, meta=meta, also_correct=also)


def _few_shot(ctx: _Context) -> TextExample:
    rng = ctx.rng
    schema = rng.choice(list(SCHEMAS))
    shots = [sample_schema_scene(rng, schema, "train") for _ in range(rng.randint(2, 3))]
    query = sample_schema_scene(rng, schema, ctx.scene_split)
    prompt: list[Any] = []
    for scene in shots:
        prompt += [ctx.render(scene), format_attributes(attribute_values(scene, schema))]
    prompt.append(ctx.render(query))
    answer = format_attributes(attribute_values(query, schema))
    meta = ctx.meta("few_shot/" + ",".join(schema), is_heldout_scene(query), scene=query, schema=schema)
    meta["template_split"] = "train"  # few-shot has no templates
    return TextExample("few_shot", prompt, answer, chat=False, meta=meta)


# ---------------------------------------------------------------------------------------------- image tasks
def _t2i(ctx: _Context) -> ImageExample:
    rng = ctx.rng
    named = rng.random() < 0.5
    scene = ctx.scene(background=None if named else "white")
    text = caption(scene) + (f" on {scene.background}" if named else "")
    template, template_id = ctx.template("t2i")
    meta = ctx.meta(template_id, is_heldout_scene(scene), background_in_prompt=named)
    meta["style"] = "train"  # targets are always drawn by the training renderer
    target = render_scene(scene, rng) if ctx.draw else _blank()
    return ImageExample("t2i", [template.format(scene=text)], target, scene, meta)


def edit_instruction(edit: Edit, template: str) -> str:
    """Fill an ``edit_<kind>`` template for ``edit``."""
    t = edit.target
    fields = {"colour": t.colour, "shape": t.shape, "cell": edit.cell or t.cell, "new_colour": edit.colour or ""}
    return template.format(**fields)


def _edit(ctx: _Context) -> ImageExample:
    rng = ctx.rng
    source = ctx.scene()
    edit, target_scene = sample_edit(source, rng, split=ctx.scene_split)
    template, template_id = ctx.template(f"edit_{edit.kind}")
    looks: dict[tuple[str, str], Look] = {}
    source_image = ctx.render(source, looks)
    if edit.kind == "recolour" and edit.result_object is not None:
        carry_look(looks, edit.target, edit.result_object)
    target = render_scene(target_scene, rng, looks=looks) if ctx.draw else _blank()  # targets: training renderer
    heldout = is_heldout_scene(source) or is_heldout_scene(target_scene)
    meta = ctx.meta(template_id, heldout, edit=edit, kind=edit.kind, source_scene=source)
    return ImageExample("edit", [source_image, edit_instruction(edit, template)], target, target_scene, meta)


TASKS: dict[str, Callable[[_Context], TextExample | ImageExample]] = {
    "caption": _caption,
    "vqa_colour": _vqa_colour,
    "vqa_shape": _vqa_shape,
    "vqa_where": _vqa_where,
    "count": _count,
    "exists": _exists,
    "video_qa": _video_qa,
    "few_shot": _few_shot,
    "t2i": _t2i,
    "edit": _edit,
}
TEXT_TASKS: tuple[str, ...] = tuple(t for t in TASKS if t not in ("t2i", "edit"))


def sample_example(
    task: str,
    rng: random.Random,
    *,
    split: ExampleSplit = "train",
    style: RenderStyle | None = None,
    draw: bool = True,
) -> TextExample | ImageExample:
    """One example of ``task``. ``style`` picks the renderer for input images (default ``"train"``; targets of
    image tasks always use it); ``draw=False`` skips rendering (every image is one blank), for text corpora."""
    generator = TASKS.get(task)
    if generator is None:
        raise InputError(f"unknown task {task!r}; use one of {list(TASKS)}")
    if split not in ("train", "eval"):
        raise InputError(f"split must be 'train' or 'eval'; got {split!r}")
    return generator(_Context(rng, split, style or "train", draw))


def sample_mixture(
    rng: random.Random, weights: dict[str, float], split: ExampleSplit = "train"
) -> TextExample | ImageExample:
    """An example of a task drawn with probability proportional to ``weights``."""
    names = list(weights)
    task = rng.choices(names, weights=[weights[n] for n in names])[0]
    return sample_example(task, rng, split=split)


def _texts(example: TextExample | ImageExample) -> list[str]:
    if isinstance(example, ImageExample):
        return [x for x in example.prompt if isinstance(x, str)]
    items = [x for _, turn in example.prompt for x in turn] if example.chat else example.prompt
    return [*(x for x in items if isinstance(x, str)), example.answer]


def text_corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` lines of representative text from every task (prompts and answers, both template splits), plus
    the agent-facing phrasings, for training a tokenizer. No images are rendered."""
    from emu_agent.world.templates import TEMPLATES

    rng = random.Random(seed)
    tasks = list(TASKS)
    agent_kinds = [k for k in TEMPLATES if k.startswith("agent_")]
    lines = []
    for i in range(n):
        if i % 10 == 9:  # agent-facing requests
            kind = rng.choice(agent_kinds)
            template, _ = pick_template(kind, rng, rng.choice(["train", "eval"]))
            scene = sample_scene(rng)
            lines.append(template.format(scene=caption(scene), instruction="remove the red circle."))
            continue
        example = sample_example(rng.choice(tasks), rng, split=rng.choice(["train", "eval"]), draw=False)
        lines.append(" ".join(_texts(example)))
    return lines
