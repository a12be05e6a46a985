"""Paraphrase templates for every request the world makes, split into TRAIN and EVAL-only phrasings.

Each family (a ``kind``) has a few templates the model trains on and at least one it only meets in eval, so the
eval can tell paraphrase generalisation from memorisation. Templates are ``str.format`` strings; the fields each
kind uses are listed in :data:`FIELDS`. Prompts are kept short: emu-tiny trains on a CPU and every token costs.

    >>> templates("vqa_where", "train")[0].format(colour="red", shape="circle")
    'where is the red circle?'
"""

from __future__ import annotations

import random
from typing import Literal

from emu_agent.errors import InputError

__all__ = ["FIELDS", "TEMPLATES", "TemplateSplit", "pick_template", "template_kinds", "templates"]

TemplateSplit = Literal["train", "eval"]

# kind -> (train templates, eval-only templates)
TEMPLATES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "caption": (
        (
            "describe the image.",
            "what is in the picture?",
            "caption this image.",
            "what does the picture show?",
            "describe this scene.",
            "what is in this image?",
            "tell me about the picture.",
            "give a caption for the image.",
            "what objects are in the image?",
            "list what is in the picture.",
            "what is shown here?",
        ),
        ("what do you see?",),
    ),
    "vqa_colour": (
        (
            "what colour is {thing}?",
            "which colour is {thing}?",
            "colour of {thing}?",
            "tell me the colour of {thing}.",
            "what is the colour of {thing}?",
            "{thing} has which colour?",
        ),
        ("name the colour of {thing}.",),
    ),
    "vqa_shape": (
        (
            "what shape is at {cell}?",
            "which shape is at {cell}?",
            "shape at {cell}?",
            "tell me the shape at {cell}.",
            "what is the shape at {cell}?",
            "which shape sits at {cell}?",
            "identify the shape at {cell}.",
        ),
        ("name the shape at {cell}.",),
    ),
    "vqa_where": (
        (
            "where is the {colour} {shape}?",
            "which cell has the {colour} {shape}?",
            "locate the {colour} {shape}.",
            "tell me where the {colour} {shape} is.",
            "where can i find the {colour} {shape}?",
            "position of the {colour} {shape}?",
        ),
        ("in which cell is the {colour} {shape}?",),
    ),
    "count": (
        (
            "how many {things} are there?",
            "count the {things}.",
            "number of {things}?",
            "tell me how many {things} there are.",
            "how many {things} does it show?",
            "what is the number of {things}?",
            "how many {things} are in the picture?",
        ),
        ("how many {things} can you see?",),
    ),
    "exists": (
        (
            "is there a {colour} {shape}?",
            "does it show a {colour} {shape}?",
            "any {colour} {shape}?",
            "is a {colour} {shape} in the image?",
            "is a {colour} {shape} shown?",
            "do you find a {colour} {shape}?",
            "does the picture have a {colour} {shape}?",
            "tell me if there is a {colour} {shape}.",
        ),
        ("can you see a {colour} {shape}?",),
    ),
    "t2i": (
        ("{scene}", "draw {scene}", "an image of {scene}", "create {scene}", "a picture of {scene}", "render {scene}"),
        ("paint {scene}",),
    ),
    "edit_recolour": (
        (
            "make the {colour} {shape} {new_colour}.",
            "recolour the {colour} {shape} {new_colour}.",
            "turn the {colour} {shape} {new_colour}.",
            "colour the {colour} {shape} {new_colour}.",
            "give the {colour} {shape} the colour {new_colour}.",
            "set the {colour} {shape} to {new_colour}.",
            "switch the {colour} {shape} to {new_colour}.",
            "the {colour} {shape} should be {new_colour}.",
            "recolour the {colour} {shape} to {new_colour}.",
        ),
        ("change the {colour} {shape} to {new_colour}.",),
    ),
    "edit_move": (
        (
            "move the {colour} {shape} to {cell}.",
            "put the {colour} {shape} at {cell}.",
            "relocate the {colour} {shape} to {cell}.",
        ),
        ("shift the {colour} {shape} to {cell}.",),
    ),
    "edit_remove": (
        ("remove the {colour} {shape}.", "delete the {colour} {shape}.", "erase the {colour} {shape}."),
        ("take away the {colour} {shape}.",),
    ),
    "edit_add": (
        (
            "add a {colour} {shape} at {cell}.",
            "draw a {colour} {shape} at {cell} too.",
            "include a {colour} {shape} at {cell}.",
        ),
        ("insert a {colour} {shape} at {cell}.",),
    ),
    "video_event": (
        (
            "what happened?",
            "what happens in the video?",
            "describe the change.",
            "what is going on in the clip?",
            "describe what happens.",
            "tell me what happened.",
        ),
        ("what changed in the clip?",),
    ),
    "video_direction": (
        (
            "which way did the {colour} {shape} move?",
            "where did the {colour} {shape} go: up, down, left or right?",
            "the {colour} {shape} moved which way?",
            "the {colour} {shape} went which way?",
            "which way did the {colour} {shape} go?",
            "name the direction the {colour} {shape} moved.",
            "up, down, left or right: how did the {colour} {shape} move?",
        ),
        ("in which direction did the {colour} {shape} move?",),
    ),
    "video_appeared": (
        (
            "what appeared?",
            "which object appeared?",
            "what object is new?",
            "what is new in the clip?",
            "name the new object.",
            "which object was added?",
            "name the object that appeared.",
        ),
        ("what showed up?",),
    ),
    "video_disappeared": (
        (
            "what disappeared?",
            "which object vanished?",
            "which object is gone?",
            "what vanished?",
            "name the object that disappeared.",
            "what is no longer there?",
            "which object was removed?",
            "what is missing now?",
            "which object is missing at the end?",
            "what dropped out of the clip?",
            "which object could no longer be found?",
        ),
        ("what went away?",),
    ),
    "video_new_colour": (
        (
            "what colour did the {colour} {shape} turn?",
            "the {colour} {shape} became which colour?",
            "what is the new colour of the {colour} {shape}?",
            "the {colour} {shape} turned which colour?",
            "name the colour the {colour} {shape} became.",
            "what colour is the {colour} {shape} now?",
        ),
        ("which colour did the {colour} {shape} change to?",),
    ),
    # agent-facing phrasings: how a person asks the assistant (who then calls a tool or answers)
    "agent_generate": (
        (
            "can you draw {scene}?",
            "please make a picture of {scene}.",
            "i want an image of {scene}.",
            "generate an image of {scene}.",
            "create {scene}, please.",
            "show me a picture of {scene}.",
            "i'd like a drawing of {scene}.",
            # words after the scene: the call's prompt copies the scene and stops where the scene ends
            "draw {scene}, then show me the picture.",
            "can you generate {scene} in one picture?",
            "i want {scene} in the picture, please.",
            "make an image of {scene} too.",
        ),
        ("could you sketch {scene} for me?",),
    ),
    "agent_edit": (
        (
            "in this image, {instruction}",
            "{instruction}",
            "please edit it: {instruction}",
            "for this picture: {instruction}",
        ),
        ("could you change the picture? {instruction}",),
    ),
    "agent_follow_up": (
        ("now {instruction}", "{instruction}", "and {instruction}", "then {instruction}", "ok, {instruction}"),
        ("next, {instruction}",),
    ),
    "agent_describe": (
        (
            "what's in this picture?",
            "tell me what you see.",
            "describe this image for me.",
            "what is in this photo?",
            "please describe the picture.",
            "what is in this image?",
            "tell me about this picture.",
            "what can you tell me about this image?",
        ),
        ("what does this image show?",),
    ),
    "agent_video": (
        (
            "what happens in this video?",
            "tell me what changes in this clip.",
            "what goes on in the video?",
            "describe this clip.",
            "what happened in the video?",
        ),
        ("can you explain this video?",),
    ),
}

FIELDS: dict[str, tuple[str, ...]] = {
    "caption": (),
    "vqa_colour": ("thing",),
    "vqa_shape": ("cell",),
    "vqa_where": ("colour", "shape"),
    "count": ("things",),
    "exists": ("colour", "shape"),
    "t2i": ("scene",),
    "edit_recolour": ("colour", "shape", "new_colour"),
    "edit_move": ("colour", "shape", "cell"),
    "edit_remove": ("colour", "shape"),
    "edit_add": ("colour", "shape", "cell"),
    "video_event": (),
    "video_direction": ("colour", "shape"),
    "video_appeared": (),
    "video_disappeared": (),
    "video_new_colour": ("colour", "shape"),
    "agent_generate": ("scene",),
    "agent_edit": ("instruction",),
    "agent_follow_up": ("instruction",),
    "agent_describe": (),
    "agent_video": (),
}


def template_kinds() -> tuple[str, ...]:
    """Every template family."""
    return tuple(TEMPLATES)


def templates(kind: str, split: TemplateSplit = "train") -> tuple[str, ...]:
    """The templates of ``kind`` for ``split``: ``"train"`` phrasings, or the ``"eval"``-only ones."""
    family = TEMPLATES.get(kind)
    if family is None:
        raise InputError(f"unknown template kind {kind!r}; use one of {list(TEMPLATES)}")
    if split not in ("train", "eval"):
        raise InputError(f"template split must be 'train' or 'eval'; got {split!r}")
    return family[0] if split == "train" else family[1]


def pick_template(kind: str, rng: random.Random, split: TemplateSplit = "train") -> tuple[str, str]:
    """A random template of ``kind`` for ``split`` and its id (``"kind/split/index"``)."""
    options = templates(kind, split)
    index = rng.randrange(len(options))
    return options[index], f"{kind}/{split}/{index}"
