"""The agent and built-in tool commands of ``emu-agent``: ``chat``, ``describe``, ``generate``, ``edit``, ``video-qa``.

Each command has one ``_register_*`` function (its sub-parser) and one ``_cmd_*`` handler; :data:`REGISTRARS` lists
them for :mod:`emu_agent.cli`. Every command takes ``--json`` (results on stdout as JSON; ``chat`` writes one JSON
event per line), ``--model`` (emu-tiny when shipped, else a random-weight model with a NOTE, or a checkpoint folder)
and ``--store`` (the media store folder). Progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from emu_agent.errors import InputError

__all__ = ["REGISTRARS", "chat_loop"]


# ------------------------------------------------------------------------------------------ shared


class _ProgressBar:
    """A tqdm bar on stderr fed by ``(fraction, message)`` callbacks; created on first use."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, fraction: float, message: str = "") -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=100, file=sys.stderr, leave=False, bar_format="{desc} {bar} {n_fmt}%")
        self.bar.n = round(fraction * 100)
        self.bar.set_description_str(message[:48])
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="emu-tiny (default when shipped) or a checkpoint folder")
    parser.add_argument("--store", type=Path, default=None, help="media store folder (default: a temporary one)")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")


def _setup(args: argparse.Namespace) -> tuple[Any, str, Any]:
    from emu_agent.cli import _load_model
    from emu_agent.media import MediaStore

    model, name = _load_model(args.model, quiet=False)
    store = MediaStore(args.store or tempfile.mkdtemp(prefix="emu-agent-cli-"))
    return model, name, store


def _run_tool(tool: Any, arguments: dict[str, Any], *, model: Any, store: Any, handles: Any, progress: bool) -> Any:
    """Validate and run one built-in tool directly (no agent), with a progress bar."""
    from emu_agent.tools.base import ToolContext, to_tool_output

    bar = _ProgressBar(progress)
    context = ToolContext(model=model, media_store=store, handles=handles, on_progress=bar, tool_name=tool.name)
    try:
        return to_tool_output(tool.run(tool.validate_arguments(arguments), context), store)
    finally:
        bar.close()


def _handles_with(**refs: Any) -> Any:
    from emu_agent.agent.prompt import MediaHandles

    handles = MediaHandles()
    for kind, ref in refs.items():
        handles.handle(kind, ref)
    return handles


def _save_image(ref: Any, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    ref.load().save(out)
    return out


def _emit(args: argparse.Namespace, payload: dict[str, Any], human: str) -> int:
    print(json.dumps(payload, indent=2) if args.json else human)
    return 0


# ------------------------------------------------------------------------------------------ one-shot commands


def _cmd_describe(args: argparse.Namespace) -> int:
    from emu_agent.tools.describe import DescribeImage

    model, name, store = _setup(args)
    ref = store.add_image(args.image)
    output = _run_tool(
        DescribeImage(clock_positions=args.clock),
        {"image": "image_1", "detail": args.detail, "purpose": args.purpose},
        model=model, store=store, handles=_handles_with(image=ref), progress=not args.no_progress,
    )  # fmt: skip
    payload = {"model": name, "image": str(args.image), "text": output.text, "data": output.data}
    return _emit(args, payload, output.text)


def _cmd_generate(args: argparse.Namespace) -> int:
    from emu_agent.tools.image_generation import GenerateImage

    model, name, store = _setup(args)
    arguments = {"prompt": args.prompt, "seed": args.seed, "num_inference_steps": args.steps}
    arguments["guidance_scale"] = args.guidance_scale
    output = _run_tool(
        GenerateImage(), {k: v for k, v in arguments.items() if v is not None},
        model=model, store=store, handles=_handles_with(), progress=not args.no_progress,
    )  # fmt: skip
    path = _save_image(output.images[0], args.out)
    payload = {"model": name, "out": str(path), "sha256": output.images[0].sha256, "data": output.data}
    return _emit(args, payload, f"wrote {path}")


def _cmd_edit(args: argparse.Namespace) -> int:
    from emu_agent.tools.image_editing import EditImage

    model, name, store = _setup(args)
    source = store.add_image(args.image)
    arguments = {
        "image": "image_1",
        "instruction": args.instruction,
        "seed": args.seed,
        "num_inference_steps": args.steps,
    }
    output = _run_tool(
        EditImage(), {k: v for k, v in arguments.items() if v is not None},
        model=model, store=store, handles=_handles_with(image=source), progress=not args.no_progress,
    )  # fmt: skip
    path = _save_image(output.images[0], args.out)
    payload = {
        "model": name,
        "out": str(path),
        "sha256": output.images[0].sha256,
        "derived_from": output.images[0].derived_from,
        "data": output.data,
    }
    return _emit(args, payload, f"wrote {path}")


def _cmd_video_qa(args: argparse.Namespace) -> int:
    from emu_agent.tools.video import AnswerAboutVideo

    model, name, store = _setup(args)
    video = store.add_video(args.video)
    arguments: dict[str, Any] = {"video": "video_1", "question": args.question, "sampling": args.sampling}
    if args.max_frames:
        arguments["max_frames"] = args.max_frames
    output = _run_tool(
        AnswerAboutVideo(), arguments,
        model=model, store=store, handles=_handles_with(video=video), progress=not args.no_progress,
    )  # fmt: skip
    payload = {"model": name, "video": str(args.video), "answer": output.text, "data": output.data}
    return _emit(args, payload, output.text)


# ------------------------------------------------------------------------------------------ chat

CHAT_HELP = """commands:
  /image PATH   attach an image to your next message     /video PATH  attach a video
  /save FILE    save the latest image (or the conversation, for a .json FILE)
  /undo         undo the last turn (e.g. an image edit you didn't like)
  /help         this help                                 /quit        leave"""


class _Chat:
    """The REPL state: a conversation, pending attachments and the turn marks that /undo returns to."""

    def __init__(self, agent: Any, out: TextIO, err: TextIO, *, as_json: bool, progress: bool) -> None:
        self.agent = agent
        self.conv = agent.conversation()
        self.out, self.err = out, err
        self.as_json = as_json
        self.progress = progress
        self.pending: list[Any] = []
        self.marks: list[int] = []

    def say(self, kind: str, text: str, **extra: Any) -> None:
        if self.as_json:
            print(json.dumps({"type": kind, "text": text, **extra}), file=self.out, flush=True)
        else:
            print(text, file=self.err if kind != "answer" else self.out, flush=True)

    def command(self, line: str) -> bool:
        """Run a slash command; False to quit."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        store = self.agent.media_store
        if name in ("/quit", "/exit"):
            return False
        if name == "/help":
            self.say("help", CHAT_HELP)
        elif name in ("/image", "/video"):
            if not arg:
                raise InputError(f"{name} needs a file path")
            ref = store.add_image(Path(arg)) if name == "/image" else store.add_video(Path(arg))
            self.pending.append(ref)
            self.say("attached", f"attached {self.conv.handle_of(ref)} ({arg})", handle=self.conv.handle_of(ref))
        elif name == "/save":
            self._save(arg)
        elif name == "/undo":
            self._undo()
        else:
            raise InputError(f"unknown command {name}; /help lists them")
        return True

    def _save(self, arg: str) -> None:
        if not arg:
            raise InputError("/save needs a file name")
        path = Path(arg)
        if path.suffix.lower() == ".json":
            path.write_text(self.conv.to_json())
            self.say("saved", f"saved the conversation to {path}", path=str(path))
            return
        if not self.conv.images:
            raise InputError("there is no image to save yet")
        _save_image(self.conv.images[-1], path)
        self.say("saved", f"saved {self.conv.handle_of(self.conv.images[-1])} to {path}", path=str(path))

    def _undo(self) -> None:
        if not self.marks:
            raise InputError("nothing to undo")
        del self.conv.messages[self.marks.pop() :]
        latest = self.conv.images[-1] if self.conv.images else None
        current = f"; the latest image is {self.conv.handle_of(latest)}" if latest is not None else ""
        self.say("undone", f"undid the last turn{current}")

    def turn(self, text: str) -> None:
        self.marks.append(len(self.conv.messages))
        content = [*self.pending, text] if self.pending else text
        self.pending = []
        bar = _ProgressBar(self.progress and not self.as_json)
        try:
            for event in self.conv.stream(content):
                self._show(event, bar)
        finally:
            bar.close()

    def _show(self, event: Any, bar: _ProgressBar) -> None:
        if self.as_json:
            print(event.model_dump_json(), file=self.out, flush=True)
            return
        if event.type == "tool_call":
            args = ", ".join(f"{k}={v!r}" for k, v in event.call.arguments.items())
            flag = f"  [flagged: {event.flag_reason}]" if event.flagged else ""
            print(f"-> {event.call.name}({args}){flag}", file=self.err, flush=True)
        elif event.type == "tool_progress":
            bar(event.fraction, f"{event.name}: {event.message}")
        elif event.type == "tool_result":
            bar.close()
            images = ", ".join(self.conv.handle_of(ref) for ref in event.result.images)
            summary = event.result.text[:200] + (f" [{images}]" if images else "")
            print(f"<- {event.result.name}: {summary}", file=self.err, flush=True)
        elif event.type == "error":
            print(f"!! {event.kind}: {event.message}", file=self.err, flush=True)
        elif event.type == "final":
            print(event.result.text or "(no answer)", file=self.out, flush=True)


def chat_loop(agent: Any, lines: Iterable[str], *, out: TextIO, err: TextIO, as_json: bool, progress: bool) -> int:
    """Run the chat REPL over ``lines`` (stdin); errors are shown and the chat goes on."""
    from emu_agent.errors import EmuAgentError

    chat = _Chat(agent, out, err, as_json=as_json, progress=progress)
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                if not chat.command(line):
                    break
            else:
                chat.turn(line)
        except EmuAgentError as exc:
            chat.say("error", f"error: {exc}", error=type(exc).__name__)
    return 0


def _stdin_lines(interactive: bool) -> Iterable[str]:
    while True:
        if interactive:
            print("you> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return
        yield line


def _cmd_chat(args: argparse.Namespace) -> int:
    from emu_agent.agent.agent import Agent
    from emu_agent.tools import builtin_tools

    model, name, store = _setup(args)
    agent = Agent(model, tools=builtin_tools(), media_store=store, max_steps=args.max_steps, on_step_limit="final")
    interactive = sys.stdin.isatty()
    if interactive and not args.json:
        print(f"emu-agent chat on {name}. /help for commands.", file=sys.stderr)
    progress = not args.no_progress
    return chat_loop(
        agent, _stdin_lines(interactive), out=sys.stdout, err=sys.stderr, as_json=args.json, progress=progress
    )


# ------------------------------------------------------------------------------------------ parsers


def _register_chat(sub: Any) -> None:
    chat = sub.add_parser("chat", help="chat with the agent (attach images/videos with /image, /video)")
    _common(chat)
    chat.add_argument("--max-steps", type=int, default=6, help="most model calls per message")
    chat.set_defaults(handler=_cmd_chat)


def _register_describe(sub: Any) -> None:
    describe = sub.add_parser("describe", help="describe an image (alt text, scene, or the text in it)")
    describe.add_argument("image", type=Path)
    describe.add_argument("--detail", choices=["brief", "detailed"], default="brief")
    describe.add_argument("--purpose", choices=["alt_text", "scene", "read_text"], default="scene")
    describe.add_argument("--clock", action="store_true", help="clock positions in scene descriptions")
    _common(describe)
    describe.set_defaults(handler=_cmd_describe)


def _image_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--out", type=Path, required=True, help="where to write the image (.png, .jpg)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="num_inference_steps")
    _common(parser)


def _register_generate(sub: Any) -> None:
    generate = sub.add_parser("generate", help="draw an image from a prompt")
    generate.add_argument("prompt")
    generate.add_argument("--guidance-scale", type=float, default=None)
    _image_options(generate)
    generate.set_defaults(handler=_cmd_generate)


def _register_edit(sub: Any) -> None:
    edit = sub.add_parser("edit", help="edit an image by an instruction")
    edit.add_argument("image", type=Path)
    edit.add_argument("instruction")
    _image_options(edit)
    edit.set_defaults(handler=_cmd_edit)


def _register_video_qa(sub: Any) -> None:
    video = sub.add_parser("video-qa", help="answer a question about a video")
    video.add_argument("video", type=Path)
    video.add_argument("question")
    video.add_argument("--max-frames", type=int, default=None)
    video.add_argument("--sampling", choices=["uniform", "scene"], default="uniform")
    _common(video)
    video.set_defaults(handler=_cmd_video_qa)


REGISTRARS: list[Callable[[Any], None]] = [
    _register_chat,
    _register_describe,
    _register_generate,
    _register_edit,
    _register_video_qa,
]
