"""``emu-agent demo``: one model sees, describes, answers, generates, edits and watches a clip.

Runs on emu-tiny (shipped in the package). Every step uses the scenes world, so each answer and image is
checked exactly (the transcript marks it ✓ or ✗): a caption against the scene, an answer against the truth,
generated and edited images through the world's image checker.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

__all__ = ["run_demo"]


def _step(steps: list[dict[str, Any]], title: str, prompt: str, expected: str, ok: bool, **extra: Any) -> None:
    steps.append({"step": title, "prompt": prompt, "expected": expected, "ok": bool(ok), **extra})


def run_demo(model: Any, model_name: str, out: Path, *, progress: Any = None) -> dict[str, Any]:
    """Run the five steps on ``model``; write the images and ``transcript.md`` into ``out``."""
    from emu_agent.model.prompting import VideoFrames
    from emu_agent.world.checker import check_image, detect_objects
    from emu_agent.world.render import render_scene
    from emu_agent.world.scene import Scene, SceneObject, caption
    from emu_agent.world.tasks import stated_answer, where_statements
    from emu_agent.world.video import describe_event, render_clip, sample_clip

    say = progress or (lambda message: None)
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    scene = Scene((SceneObject("red", "circle", "top left"), SceneObject("blue", "square", "bottom right")), "white")
    picture = render_scene(scene, rng)
    picture.save(out / "scene.png")
    steps: list[dict[str, Any]] = []
    ask = {"max_new_tokens": 64}  # room for a worked answer ("... yes so bottom right")

    say("[1/5] describe a scene")
    text = model.generate_text([("user", [picture, "describe the image."])], **ask)
    _step(steps, "describe a scene", "describe the image.", caption(scene), text == caption(scene), answer=text)

    say("[2/5] answer a question about it")
    question = "where is the blue square?"
    text = model.generate_text([("user", [picture, question])], **ask).strip()
    # emu-tiny may work the answer out object by object; right only if every object and mark is (as the eval)
    blue_square = scene.objects[1]  # the object asked about
    right = ("bottom right", *where_statements(scene.objects, blue_square))
    worked = {"worked": text} if stated_answer(text) != text else {}
    _step(steps, "answer a question", question, "bottom right", text in right, answer=stated_answer(text), **worked)

    say("[3/5] generate an image")
    prompt = "a green triangle at center"
    generated = model.generate_image(prompt, seed=0)
    generated.save(out / "generated.png")
    check = check_image(generated, (SceneObject("green", "triangle", "center"),))
    seen = caption(detect_objects(generated).objects) if check.detected else "nothing"
    _step(steps, "generate an image", prompt, prompt, check.ok, image="generated.png", detected=seen)

    say("[4/5] edit it")
    instruction = "make the green triangle yellow."
    edited = model.generate_image([generated, instruction], seed=0)
    edited.save(out / "edited.png")
    check = check_image(edited, (SceneObject("yellow", "triangle", "center"),))
    seen = caption(detect_objects(edited).objects) if check.detected else "nothing"
    expected = "a yellow triangle at center"
    _step(steps, "edit it", instruction, expected, check.ok, image="edited.png", detected=seen)

    say("[5/5] answer about a clip")
    clip = sample_clip(random.Random(3), kinds=("move",))
    frames = render_clip(clip, random.Random(3))
    for index, frame in enumerate(frames):
        frame.save(out / f"clip_{index}.png")
    question = "what happened?"
    text = model.generate_text([("user", [VideoFrames(frames, list(clip.timestamps)), question])], **ask)
    truth = describe_event(clip.event)
    _step(steps, "answer about a clip", question, truth, text == truth, answer=text, frames=len(frames))

    transcript = out / "transcript.md"
    transcript.write_text(_markdown(model_name, steps, len(frames)))
    return {
        "model": model_name,
        "out_dir": str(out),
        "transcript": str(transcript),
        "steps": steps,
        "correct": sum(s["ok"] for s in steps),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _markdown(model_name: str, steps: list[dict[str, Any]], n_frames: int) -> str:
    lines = [f"# emu-agent demo\n\nModel: **{model_name}**\n", "Input scene:\n\n![input scene](scene.png)\n"]
    for index, step in enumerate(steps, 1):
        mark = "✓" if step["ok"] else "✗"
        lines.append(f"## {index}. {step['step']} {mark}\n\n**Prompt:** {step['prompt']}\n")
        if "answer" in step:
            lines.append(f"**Answer:** {step['answer']}\n\n**Expected:** {step['expected']}\n")
        if "worked" in step:
            lines.append(f"**Worked out as:** {step['worked']}\n")
        if "image" in step:
            lines.append(f"![{step['step']}]({step['image']})\n\n**Checker saw:** {step['detected']}\n")
        if "frames" in step:
            lines.append(" ".join(f"![frame {i}](clip_{i}.png)" for i in range(n_frames)) + "\n")
    return "\n".join(lines)
