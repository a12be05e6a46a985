"""Agent dialogues for emu-tiny: requests that need a tool, multi-step requests, and plain answers.

Every dialogue is built as real :class:`~emu_agent.messages.Message` objects (tool calls as ``ToolCallPart``,
results as ``ToolResultPart``) and rendered with the agent's own :func:`~emu_agent.agent.prompt.conversation_for_model`
and the built-in tool specs of :mod:`emu_agent.tools.inputs`, so emu-tiny learns exactly the text the agent shows
it at run time. Each assistant turn becomes one :class:`~emu_agent.world.tasks.TextExample` (task ``"agent"``):
the conversation so far is the prompt, the turn (a tool call, or the final answer) the target.

Images are never written to disk here: they get content-hash refs and travel as PIL images in
``meta["pil_by_sha"]``. Videos appear only by handle (the agent doesn't expand them), so they need no pixels.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emu_agent.agent.prompt import conversation_for_model
from emu_agent.media import ImageRef, VideoRef
from emu_agent.messages import Message, ToolCallPart, ToolResultPart
from emu_agent.model.message_rendering import render_tool_call
from emu_agent.tools.inputs import BUILTIN_SPECS
from emu_agent.world.edits import sample_edit
from emu_agent.world.render import Look, carry_look, render_scene
from emu_agent.world.scene import Scene, caption, object_phrase, sample_scene
from emu_agent.world.tasks import TextExample, edit_instruction
from emu_agent.world.templates import pick_template
from emu_agent.world.video import describe_event, sample_clip
from emu_agent.world.vocab import CELLS

__all__ = [
    "DIALOGUES",
    "Dialogue",
    "dialogue_corpus",
    "dialogue_examples",
    "sample_dialogue",
    "sample_drawing_dialogue",
]

GREETINGS = ("hello!", "hi, what can you do?", "what can you help me with?")
GREETING_ANSWER = "i can draw and edit images, describe them and answer questions about videos."
URLS = (
    "https://example.com/{name}.png",
    "http://images.example.org/{name}.jpg",
    "https://cdn.example.net/p/{name}.png",
)


@dataclass
class Dialogue:
    """A whole conversation plus what each assistant turn should do (for training targets and scoring)."""

    kind: str
    messages: list[Message]
    pil_by_sha: dict[str, Any] = field(default_factory=dict)
    final_scene: Scene | None = None  # the scene the last image should show, if any


class _Builder:
    def __init__(self, rng: random.Random, split: str) -> None:
        self.rng = rng
        self.split = split
        self.messages: list[Message] = []
        self.pil_by_sha: dict[str, Any] = {}
        self.calls = 0

    def image(self, scene: Scene, looks: dict[Any, Look] | None = None, derived_from: str | None = None) -> ImageRef:
        picture = render_scene(scene, self.rng, looks=looks)
        sha = hashlib.sha256(picture.tobytes()).hexdigest()
        self.pil_by_sha[sha] = picture
        return ImageRef(sha256=sha, size_bytes=len(picture.tobytes()), width=64, height=64, derived_from=derived_from)

    def video(self) -> VideoRef:
        sha = hashlib.sha256(self.rng.getrandbits(128).to_bytes(16, "big")).hexdigest()
        return VideoRef(
            sha256=sha,
            mime_type="video/mp4",
            size_bytes=1,
            duration_seconds=3.0,
            n_frames=6,
            fps=2.0,
            width=64,
            height=64,
        )

    def user(self, *content: Any) -> None:
        self.messages.append(Message.user(*content))

    def call(self, name: str, arguments: dict[str, Any], result: list[Any]) -> None:
        self.calls += 1
        call_id = f"call_{self.calls}"
        self.messages.append(
            Message(role="assistant", parts=[ToolCallPart(id=call_id, name=name, arguments=arguments)])
        )
        self.messages.append(Message.tool(ToolResultPart(tool_call_id=call_id, name=name, content=result)))

    def answer(self, text: str) -> None:
        self.messages.append(Message.assistant(text))

    def template(self, kind: str) -> str:
        return pick_template(kind, self.rng, "eval" if self.split == "eval" and self.rng.random() < 0.5 else "train")[0]

    def scene(self, **kwargs: Any) -> Scene:
        heldout = self.split == "eval" and self.rng.random() < 0.3
        return sample_scene(self.rng, split="heldout" if heldout else "train", **kwargs)


def _generate(b: _Builder, n_objects: int | None = None) -> Scene:
    scene = b.scene(background="white", n_objects=n_objects)
    b.user(b.template("agent_generate").format(scene=caption(scene)))
    b.call("generate_image", {"prompt": caption(scene)}, [b.image(scene)])
    b.answer(f"image_1: {caption(scene)}.")
    return scene


def _edit(b: _Builder) -> Scene:
    source = b.scene()
    edit, target = sample_edit(source, b.rng, split="train")
    instruction = edit_instruction(edit, b.template(f"edit_{edit.kind}"))
    looks: dict[Any, Look] = {}
    source_ref = b.image(source, looks)
    if edit.kind == "recolour" and edit.result_object is not None:
        carry_look(looks, edit.target, edit.result_object)
    b.user(source_ref, b.template("agent_edit").format(instruction=instruction))
    b.call("edit_image", {"image": "image_1", "instruction": instruction}, [b.image(target, looks, source_ref.sha256)])
    b.answer(f"image_2: {caption(target)}.")
    return target


def _at_cell(scene: Scene, cell: str) -> str:
    obj = scene.at(cell)
    return object_phrase(obj) if obj is not None else "nothing"


def _multi_step(b: _Builder) -> Scene:
    first = b.scene(background="white", n_objects=b.rng.randint(1, 2))
    edit, target = sample_edit(first, b.rng, split="train")
    instruction = edit_instruction(edit, b.template(f"edit_{edit.kind}"))
    spoken = instruction.rstrip(".")
    if edit.kind == "recolour" and len(first.objects) == 1 and b.rng.random() < 0.5:
        spoken = f"make it {edit.colour}"
    request = f"draw {caption(first)}, then {spoken}"
    cell = b.rng.choice(CELLS)
    ask = b.rng.random() < 0.4
    if ask:
        request += f", then tell me what is at {cell}"
    b.user(request + ".")
    looks: dict[Any, Look] = {}
    first_ref = b.image(first, looks)
    b.call("generate_image", {"prompt": caption(first)}, [first_ref])
    if edit.kind == "recolour" and edit.result_object is not None:
        carry_look(looks, edit.target, edit.result_object)
    b.call("edit_image", {"image": "image_1", "instruction": instruction}, [b.image(target, looks, first_ref.sha256)])
    b.answer(f"at {cell}: {_at_cell(target, cell)}." if ask else f"image_2: {caption(target)}.")
    return target


def _follow_up(b: _Builder) -> Scene:
    """Two requests in one conversation: a picture, then an edit of it (or a second picture) by its handle."""
    first = b.scene(background="white")
    looks: dict[Any, Look] = {}
    b.user(b.template("agent_generate").format(scene=caption(first)))
    first_ref = b.image(first, looks)
    b.call("generate_image", {"prompt": caption(first)}, [first_ref])
    b.answer(f"image_1: {caption(first)}.")
    if b.rng.random() < 0.3:
        second = b.scene(background="white")
        b.user(b.template("agent_generate").format(scene=caption(second)))
        b.call("generate_image", {"prompt": caption(second)}, [b.image(second)])
        b.answer(f"image_2: {caption(second)}.")
        return second
    edit, target = sample_edit(first, b.rng, split="train")
    instruction = edit_instruction(edit, b.template(f"edit_{edit.kind}"))
    spoken = instruction
    if edit.kind == "recolour" and len(first.objects) == 1 and b.rng.random() < 0.5:
        spoken = f"make it {edit.colour}."
    b.user(b.template("agent_follow_up").format(instruction=spoken))
    if edit.kind == "recolour" and edit.result_object is not None:
        carry_look(looks, edit.target, edit.result_object)
    b.call("edit_image", {"image": "image_1", "instruction": instruction}, [b.image(target, looks, first_ref.sha256)])
    b.answer(f"image_2: {caption(target)}.")
    return target


def _video(b: _Builder) -> None:
    clip = sample_clip(b.rng, split="train")
    question = b.template("agent_video")
    b.user(b.video(), question)
    answer = describe_event(clip.events[0])
    b.call("answer_about_video", {"video": "video_1", "question": question}, [answer])
    b.answer(answer)


def _describe(b: _Builder) -> None:
    scene = b.scene()
    alt = b.rng.random() < 0.4
    request = (
        b.rng.choice(("write alt text for this image.", "give me alt text for it."))
        if alt
        else b.template("agent_describe")
    )
    b.user(b.image(scene), request)
    arguments: dict[str, Any] = {"image": "image_1"}
    if alt:
        arguments["purpose"] = "alt_text"
    description = caption(scene) + "."
    b.call("describe_image", arguments, [description])
    b.answer(description)


def _fetch(b: _Builder) -> Scene:
    scene = b.scene()
    url = b.rng.choice(URLS).format(name=b.rng.choice(("photo", "scene", "img7", "shapes", "pic")))
    b.user(b.rng.choice(("fetch the image at {url}", "download {url}", "get this image: {url}")).format(url=url))
    b.call("fetch_image", {"url": url}, [b.image(scene)])
    b.answer(f"image_1: {caption(scene)}.")
    return scene


def _plain(b: _Builder) -> None:
    if b.rng.random() < 0.3:
        b.user(b.rng.choice(GREETINGS))
        b.answer(GREETING_ANSWER)
        return
    scene = b.scene()
    obj = b.rng.choice(scene.objects)
    question, answer = b.rng.choice(
        [
            (f"what colour is the {obj.shape} at {obj.cell}?", obj.colour),
            (f"where is the {obj.colour} {obj.shape}?", obj.cell),
            ("how many objects are there?", str(len(scene.objects))),
        ]
    )
    b.user(b.image(scene), question)
    b.answer(answer)


DIALOGUES: dict[str, tuple[float, Callable[[_Builder], Any]]] = {
    "generate": (0.18, _generate),
    "edit": (0.18, _edit),
    "multi_step": (0.22, _multi_step),
    "follow_up": (0.12, _follow_up),
    "video": (0.12, _video),
    "describe": (0.1, _describe),
    "fetch": (0.05, _fetch),
    "plain": (0.09, _plain),
}


def sample_dialogue(rng: random.Random, *, split: str = "train", kind: str | None = None) -> Dialogue:
    """One whole dialogue of ``kind`` (default: drawn by the :data:`DIALOGUES` weights)."""
    if kind is None:
        kinds = list(DIALOGUES)
        kind = rng.choices(kinds, weights=[DIALOGUES[k][0] for k in kinds])[0]
    builder = _Builder(rng, split)
    final = DIALOGUES[kind][1](builder)
    return Dialogue(kind, builder.messages, builder.pil_by_sha, final if isinstance(final, Scene) else None)


def sample_drawing_dialogue(rng: random.Random, *, n_objects: int, split: str = "train") -> Dialogue:
    """A ``"generate"`` dialogue whose drawing request names exactly ``n_objects`` objects (1-3)."""
    builder = _Builder(rng, split)
    final = _generate(builder, n_objects=n_objects)
    return Dialogue("generate", builder.messages, builder.pil_by_sha, final)


def _turn_text(message: Message) -> str:
    if message.tool_calls:
        return "".join(render_tool_call(c.name, c.arguments) for c in message.tool_calls)
    return message.text


def dialogue_examples(dialogue: Dialogue) -> list[TextExample]:
    """One training example per assistant turn: the rendered conversation before it -> that turn's text."""
    specs = list(BUILTIN_SPECS.values())
    examples = []
    for index, message in enumerate(dialogue.messages):
        if message.role != "assistant":
            continue
        prompt = conversation_for_model(dialogue.messages[:index], tools=specs)
        expected = message.tool_calls[0].name if message.tool_calls else None
        arguments = dict(message.tool_calls[0].arguments) if message.tool_calls else None
        meta = {
            "pil_by_sha": dialogue.pil_by_sha,
            "kind": dialogue.kind,
            "expected_tool": expected,
            "expected_arguments": arguments,
            "turn": index,
        }
        examples.append(TextExample("agent", prompt, _turn_text(message), chat=True, meta=meta))
    return examples


def dialogue_corpus(n: int, seed: int = 0) -> list[str]:
    """Rendered dialogue text (system block, turns, tool calls) for training the tokenizer."""
    from emu_agent.model.message_rendering import messages_to_turns

    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        dialogue = sample_dialogue(rng)
        rendered = conversation_for_model(dialogue.messages, tools=BUILTIN_SPECS.values())
        for _, items in messages_to_turns(rendered):
            lines.append("".join(x for x in items if isinstance(x, str)))
    return lines
