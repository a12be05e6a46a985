"""`import emu_agent.memory` stays light: no chromadb, torch or transformers until a memory is used."""

from __future__ import annotations

import json
from typing import Any


def test_import_memory_loads_no_heavy_library(kit: Any) -> None:
    proc = kit.run_python(
        """
        import json, sys
        import emu_agent, emu_agent.memory
        from emu_agent.memory import MultimodalMemory, MemoryConfig, HashingEmbedder, MiniLMEmbedder
        MiniLMEmbedder()  # constructing it loads nothing
        heavy = ("chromadb", "torch", "transformers", "diffusers", "onnxruntime", "sentence_transformers")
        print(json.dumps({"heavy": [m for m in heavy if m in sys.modules], "name": emu_agent.memory.__name__,
                          "bare": "memory" in sys.modules}))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"heavy": [], "name": "emu_agent.memory", "bare": False}


def test_public_names() -> None:
    import emu_agent.memory as memory

    for name in memory.__all__:
        assert getattr(memory, name) is not None, name
    assert memory.MultimodalMemory.__module__ == "emu_agent.memory.base"
