"""The emu-agent CLI: the demo end to end (random-weight model until emu-tiny ships) and --json output."""

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
