"""The emu-agent CLI: the demo end to end on emu-tiny and --json output."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from emu_agent.cli import main


def test_demo_writes_images_and_transcript(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [s["step"] for s in result["steps"]] == [
        "describe a scene",
        "answer a question",
        "generate an image",
        "edit it",
        "answer about a clip",
    ]
    for name in ("scene.png", "generated.png", "edited.png"):
        with Image.open(tmp_path / name) as image:
            assert image.size == (64, 64)
    transcript = (tmp_path / "transcript.md").read_text()
    assert "generated.png" in transcript and "edited.png" in transcript
    assert all(isinstance(s["answer"], str) for s in result["steps"] if "answer" in s)
    assert all(s["ok"] for s in result["steps"]), result["steps"]  # emu-tiny passes every step
    question = result["steps"][1]
    assert question["answer"] == "bottom right", question  # the short answer, also when worked out object by object
    if "worked" in question:  # emu-tiny v13 and v14 tally: "... a blue square at bottom right yes so bottom right"
        assert question["worked"].endswith(" so bottom right") and question["worked"] in transcript


def test_demo_reports_a_bad_model_path_as_json(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path), "--model", str(tmp_path / "nope"), "--json"]) == 1
    error = json.loads(capsys.readouterr().out)
    assert error["error"] == "ModelLoadError" and "nope" in error["message"]


def test_console_script_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "emu_agent.cli", "version", "--json"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),  # outside the repo, so the installed package is what runs
    ).stdout
    assert json.loads(out)["version"]


# ------------------------------------------------------------------ agent and tool commands


def _scene_png(path: Path) -> Path:
    from PIL import ImageDraw

    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).ellipse((2, 2, 20, 20), fill=(220, 20, 20))
    image.save(path)
    return path


def test_generate_then_edit_write_images(tmp_path: Path, capsys) -> None:
    assert main(["generate", "a red circle at top left", "-o", str(tmp_path / "g.png"), "--seed", "1", "--json"]) == 0
    generated = json.loads(capsys.readouterr().out)
    with Image.open(generated["out"]) as image:
        assert image.size == (64, 64)
    args = ["edit", generated["out"], "make it blue", "-o", str(tmp_path / "e.png"), "--json", "--no-progress"]
    assert main(args) == 0
    edited = json.loads(capsys.readouterr().out)
    assert edited["derived_from"] == generated["sha256"] and Path(edited["out"]).is_file()


def test_describe_json(tmp_path: Path, capsys) -> None:
    image = _scene_png(tmp_path / "scene.png")
    assert main(["describe", str(image), "--purpose", "alt_text", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert isinstance(result["text"], str) and result["data"]["purpose"] == "alt_text"


def test_video_qa_json(tmp_path: Path, capsys) -> None:
    import av
    import numpy as np

    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width = stream.height = 64
        for i in range(8):
            frame = np.full((64, 64, 3), 255, dtype=np.uint8)
            frame[20:36, 4 + 6 * i : 20 + 6 * i] = (150, 40, 200)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert main(["video-qa", str(path), "where did the square move?", "--max-frames", "4", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert isinstance(result["answer"], str)


def test_bad_image_is_a_clean_json_error(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["describe", str(bad), "--json"]) == 1
    error = json.loads(capsys.readouterr().out)
    assert error["error"] == "MediaError" and "bad.png" in error["message"]


def test_chat_loop_commands_and_turns(tmp_path: Path) -> None:
    import io

    from emu_agent.agent import Agent
    from emu_agent.cli_agent import chat_loop
    from emu_agent.media import MediaStore
    from emu_agent.testing import ScriptedModel
    from emu_agent.tools.base import ToolContext, tool

    @tool
    def edit_image(image: str, instruction: str, context: ToolContext) -> object:
        """Change an image by an instruction."""
        source = context.resolve_image(image)
        colour = "blue" if "blue" in instruction else "green"
        return context.media_store.add_image(Image.new("RGB", (8, 8), colour), derived_from=source)

    call = ScriptedModel.call
    model = ScriptedModel(
        [
            call("edit_image", image="image_1", instruction="make it blue"),
            "image_2 is blue.",
            call("edit_image", image="image_2", instruction="make it green"),
            "image_3 is green.",
        ]
    )
    agent = Agent(model, tools=[edit_image], media_store=MediaStore(tmp_path / "store"))
    image = _scene_png(tmp_path / "in.png")
    lines = [
        f"/image {image}",
        "make it blue",
        "make it green",
        "/undo",
        f"/save {tmp_path / 'out.png'}",
        f"/save {tmp_path / 'conv.json'}",
        "/frobnicate",
        "/quit",
        "never read",
    ]
    out, err = io.StringIO(), io.StringIO()
    assert chat_loop(agent, lines, out=out, err=err, as_json=False, progress=False) == 0
    assert out.getvalue().splitlines() == ["image_2 is blue.", "image_3 is green."]
    log = err.getvalue()
    assert "attached image_1" in log and "-> edit_image(" in log and "latest image is image_2" in log
    assert "unknown command /frobnicate" in log
    with Image.open(tmp_path / "out.png") as saved:
        assert saved.getpixel((0, 0)) == (0, 0, 255)  # the undone green edit is gone
    assert json.loads((tmp_path / "conv.json").read_text())["messages"]


def test_chat_json_events_over_stdin(tmp_path: Path) -> None:
    image = _scene_png(tmp_path / "in.png")
    proc = subprocess.run(
        [sys.executable, "-m", "emu_agent.cli", "chat", "--json", "--store", str(tmp_path / "s")],
        input=f"/help\n/image {image}\n/undo\n/quit\n",
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["type"] for e in events] == ["help", "attached", "error"]
    assert events[1]["handle"] == "image_1" and "nothing to undo" in events[2]["text"]
