"""The scenes world that emu-tiny is trained and scored on.

Scenes are 1 to 3 coloured shapes on a 3x3 grid (:mod:`~emu_agent.world.vocab`, :mod:`~emu_agent.world.scene`),
drawn by two seeded renderers (:mod:`~emu_agent.world.render`) and read back exactly by a rule-based checker
(:mod:`~emu_agent.world.checker`). Edits (:mod:`~emu_agent.world.edits`) and short clips
(:mod:`~emu_agent.world.video`) build on them; :mod:`~emu_agent.world.tasks` turns all of it into training and
eval examples with paraphrased requests (:mod:`~emu_agent.world.templates`), and :mod:`~emu_agent.world.eval`
scores a model on them.

Everything is deterministic given the ``random.Random`` passed in; nothing here touches a global RNG. Importing
this package imports no torch (names are resolved lazily; only :func:`evaluate` needs torch, and imports it late).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from emu_agent._lazy import lazy_attributes

# public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "SceneObject": "emu_agent.world.scene",
    "Scene": "emu_agent.world.scene",
    "caption": "emu_agent.world.scene",
    "parse_caption": "emu_agent.world.scene",
    "sample_scene": "emu_agent.world.scene",
    "is_heldout_triple": "emu_agent.world.scene",
    "render_scene": "emu_agent.world.render",
    "detect_objects": "emu_agent.world.checker",
    "check_image": "emu_agent.world.checker",
    "DetectedScene": "emu_agent.world.checker",
    "ImageCheck": "emu_agent.world.checker",
    "Edit": "emu_agent.world.edits",
    "sample_edit": "emu_agent.world.edits",
    "apply_edit": "emu_agent.world.edits",
    "Clip": "emu_agent.world.video",
    "sample_clip": "emu_agent.world.video",
    "render_clip": "emu_agent.world.video",
    "templates": "emu_agent.world.templates",
    "TextExample": "emu_agent.world.tasks",
    "ImageExample": "emu_agent.world.tasks",
    "TASKS": "emu_agent.world.tasks",
    "sample_example": "emu_agent.world.tasks",
    "sample_mixture": "emu_agent.world.tasks",
    "text_corpus": "emu_agent.world.tasks",
    "evaluate": "emu_agent.world.eval",
    "probe_encoder": "emu_agent.world.probe",
    "EvalReport": "emu_agent.world.eval",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # names for type checkers; at run time they resolve lazily through __getattr__
    from emu_agent.world.checker import DetectedScene, ImageCheck, check_image, detect_objects  # noqa: F401
    from emu_agent.world.edits import Edit, apply_edit, sample_edit  # noqa: F401
    from emu_agent.world.eval import EvalReport, evaluate  # noqa: F401
    from emu_agent.world.probe import probe_encoder  # noqa: F401
    from emu_agent.world.render import render_scene  # noqa: F401
    from emu_agent.world.scene import Scene, SceneObject, caption, is_heldout_triple, parse_caption, sample_scene  # noqa: F401
    from emu_agent.world.tasks import TASKS, ImageExample, TextExample, sample_example, sample_mixture, text_corpus  # noqa: F401
    from emu_agent.world.templates import templates  # noqa: F401
    from emu_agent.world.video import Clip, render_clip, sample_clip  # noqa: F401


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
