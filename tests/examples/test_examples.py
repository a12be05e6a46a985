"""Every example runs end to end (on emu-tiny when shipped, else the random-weight model) in under a minute.

Each runs in a subprocess from the temp folder: the repo root would shadow the installed package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run(name: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        env=env,
        timeout=600,  # a hang guard, not a speed check (speed lives in bench/)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_visual_assistant_chat(tmp_path: Path) -> None:
    out = _run("visual_assistant_chat.py", "--out", str(tmp_path))
    assert "you> draw a red circle at top left" in out and "assistant>" in out
    assert "-> " in out  # the agent called a tool


def test_image_script(tmp_path: Path) -> None:
    out = _run("image_script.py", "--out", str(tmp_path))
    assert "-> image_3" in out and "lineage:" in out
    assert (tmp_path / "compare.png").is_file()


def test_accessibility_describer(tmp_path: Path) -> None:
    out = _run("accessibility_describer.py", "--out", str(tmp_path))
    alt = next(line for line in out.splitlines() if line.startswith("alt text"))
    assert int(alt.split("(")[1].split(" chars")[0]) <= 125
    if shutil.which("espeak-ng") is None:
        assert "espeak-ng is not installed" in out
        return
    assert "spoke the description" in out  # .ci/run installs espeak-ng where it can, so this path runs in CI
    wav = (tmp_path / "description.wav").read_bytes()
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and len(wav) > 10_000  # a real recording, not a header


def test_video_qa(tmp_path: Path) -> None:
    out = _run("video_qa.py", "--out", str(tmp_path))
    assert out.count("Q: ") == 2 and "frames at [0.0" in out
