"""Package layout: tools/ and memory/ install as emu_agent.tools / emu_agent.memory; import emu_agent stays light."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import emu_agent

HEAVY = ("torch", "transformers", "diffusers", "chromadb", "langchain_core", "accelerate", "av")


def _run(code: str) -> str:
    # run outside the repo: `python -c` puts the cwd first on sys.path, which would shadow the installed package
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=tempfile.gettempdir()
    ).stdout


def test_mapped_subpackages_and_no_bare_top_level_names() -> None:
    out = _run(
        "import json, sys, emu_agent, emu_agent.tools, emu_agent.memory, emu_agent.messages, emu_agent.media\n"
        "print(json.dumps({'tools': emu_agent.tools.__name__, 'memory': emu_agent.memory.__name__,"
        " 'bare': [m for m in ('tools', 'memory') if m in sys.modules]}))"
    )
    found = json.loads(out)
    assert found == {"tools": "emu_agent.tools", "memory": "emu_agent.memory", "bare": []}


def test_import_emu_agent_is_light() -> None:
    out = _run(
        "import json, sys, emu_agent, emu_agent.messages, emu_agent.media, emu_agent.model.config\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    assert json.loads(out) == []


def test_public_names_resolve_lazily() -> None:
    for name in emu_agent.__all__:
        assert getattr(emu_agent, name) is not None, name
    assert emu_agent.EmuModel.__module__ == "emu_agent.model.emu"
    assert issubclass(emu_agent.InputError, ValueError)
    assert issubclass(emu_agent.MissingDependencyError, ImportError)
