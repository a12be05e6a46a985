"""The world package: lazy exports resolve, and nothing but eval pulls in torch."""

from __future__ import annotations

import subprocess
import sys

import emu_agent.world as world


def test_every_export_resolves() -> None:
    for name in world.__all__:
        assert getattr(world, name) is not None, name
    assert sorted(dir(world)) == sorted(world.__all__)


def test_world_modules_import_without_torch() -> None:
    code = (
        "import sys\n"
        "import emu_agent.world\n"
        "from emu_agent.world import tasks, checker, render, edits, video, templates, scene, vocab, fewshot\n"
        "from emu_agent.world import eval as world_eval\n"
        "tasks.text_corpus(20, 0)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
