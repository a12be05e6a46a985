"""``evaluate(model)``: score a model on the scenes world with its real API, task by task.

- text tasks (caption, VQA, counting, video QA, few-shot): ``model.generate_texts`` on batches of prompts
  (chat turns for chat examples, interleaved lists for few-shot), greedy, scored by exact match with the answer
  or with another exact statement of it (video QA: a question about one fact of the event, "what vanished?",
  may be answered "a red square" or with the event's full sentence, "the red square disappeared from left";
  the row's note says how many used each form);
- image tasks (t2i, edit): ``model.generate_image(prompt, seed=...)``, scored by :func:`check_image`: every
  requested object in the right colour, shape and cell, and nothing else.

Each row also reports the held-out compositions, the eval-only phrasings and, for caption and VQA, inputs drawn
by the second ("alt") renderer. ``extra_scorers`` adds rows computed elsewhere (e.g. tool-call validity and
routing): each is called as ``scorer(model, seed=seed, limit=limit)`` and returns a :class:`TaskScore` or a
list of them.

Examples are drawn per task from ``random.Random(f"{seed}:{task}")`` so adding a task never changes another's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from emu_agent.errors import InputError
from emu_agent.world.checker import check_image
from emu_agent.world.report import EvalReport, EvalSample, TaskScore
from emu_agent.world.tasks import TASKS, ImageExample, TextExample, sample_example

__all__ = [
    "ALT_TASKS",
    "TARGETS",
    "EvalReport",
    "EvalSample",
    "TaskScore",
    "draw_examples",
    "evaluate",
    "score_image",
    "score_text",
]

TARGETS: dict[str, float] = {
    "caption": 0.95,
    "vqa_colour": 0.95,
    "vqa_shape": 0.95,
    "vqa_where": 0.95,
    "exists": 0.95,
    "count": 0.95,
    "t2i": 0.90,
    "edit": 0.85,
    "video_qa": 0.90,
    "few_shot": 0.85,
}
ALT_TASKS = ("caption", "vqa_colour", "vqa_shape", "vqa_where", "exists", "count")
SAMPLES_PER_TASK = 3

# longest possible answers, to bound generation per task
_LONGEST_ANSWER = {
    "caption": " and ".join(["a yellow triangle at bottom right"] * 3),
    "video_qa": "the yellow triangle moved from bottom right to bottom left",
    "few_shot": "[purple, white, triangle, bottom right]",
    "count": " and ".join(["a yellow triangle at bottom right 3"] * 3) + " so 3",  # the tallied form
    "vqa_where": " and ".join(["a yellow triangle at bottom right colour yes shape yes"] * 3) + " so bottom right",
    "exists": " and ".join(["a yellow triangle at bottom right yes"] * 3) + " so yes",  # the tallied form
}
ExtraScorer = Callable[..., TaskScore | list[TaskScore]]


def score_text(output: str, answer: str, also_correct: Sequence[str] = ()) -> bool:
    """Exact match, after trimming surrounding whitespace, with ``answer`` or one of ``also_correct`` (the
    example's other exact statements of the same answer, :attr:`TextExample.also_correct`)."""
    return output.strip() == answer or output.strip() in also_correct


def score_image(image: Any, example: ImageExample) -> bool:
    """Whether ``image`` shows exactly the example's target objects (colour, shape, cell)."""
    return check_image(image, example.target_scene).ok


def draw_examples(
    task: str, *, seed: int = 0, limit: int = 50, style: str | None = None
) -> list[TextExample | ImageExample]:
    """The eval examples :func:`evaluate` uses for ``task`` (``style="alt"`` for the second-renderer set)."""
    rng = random.Random(f"{seed}:{task}:{style or 'train'}")
    return [sample_example(task, rng, split="eval", style=style) for _ in range(limit)]  # type: ignore[arg-type]


def _max_new_tokens(model: Any, task: str) -> int:
    tokenizer = getattr(model, "tokenizer", None)
    text = _LONGEST_ANSWER.get(task, "bottom right")
    if tokenizer is None:
        return 64
    return len(tokenizer.encode(text, add_bos=False)) + 6


def _prompt_text(items: Iterable[Any]) -> str:
    return " ".join(x if isinstance(x, str) else f"<{type(x).__name__}>" for x in items)


def _flat(example: TextExample | ImageExample) -> list[Any]:
    if isinstance(example, TextExample) and example.chat:
        return [x for _, turn in example.prompt for x in turn]
    return list(example.prompt)


def _input_images(example: TextExample | ImageExample) -> list[Any]:
    images = []
    for item in _flat(example):
        if isinstance(item, str):
            continue
        frames = getattr(item, "frames", None)
        images.extend(frames if frames is not None else [item])
    return images


class _Runner:
    def __init__(self, model: Any, *, batch_size: int, seed: int, bar: Any, image_kwargs: dict[str, Any]) -> None:
        self.model, self.batch_size, self.seed, self.bar = model, batch_size, seed, bar
        self.image_kwargs = image_kwargs
        self.samples: list[EvalSample] = []
        self.other_form: dict[str, int] = {}  # task -> outputs scored right by an ``also_correct`` statement

    def run_text(
        self, task: str, examples: Sequence[TextExample], keep: int, *, answers_of: str | None = None
    ) -> list[bool]:
        """Score ``examples``; ``answers_of`` names the task whose answers set the token budget (default:
        ``task``; the second-renderer rows are logged as ``"<task> (alt)"`` but answer as ``task``)."""
        results: list[bool] = []
        max_new = _max_new_tokens(self.model, answers_of or task)
        for start in range(0, len(examples), self.batch_size):
            batch = examples[start : start + self.batch_size]
            outputs = self.model.generate_texts([ex.prompt for ex in batch], max_new_tokens=max_new)
            for ex, output in zip(batch, outputs, strict=True):
                ok = score_text(output, ex.answer, ex.also_correct)
                results.append(ok)
                if ok and output.strip() != ex.answer:
                    self.other_form[task] = self.other_form.get(task, 0) + 1
                if len([s for s in self.samples if s.task == task]) < keep:
                    prompt = _prompt_text(_flat(ex))
                    self.samples.append(EvalSample(task, prompt, ex.answer, output, ok, _input_images(ex)))
            self.bar.update(len(batch))
        return results

    def run_image(self, task: str, examples: Sequence[ImageExample], keep: int) -> list[bool]:
        results: list[bool] = []
        for index, ex in enumerate(examples):
            image = self.model.generate_image(ex.prompt, seed=self.seed * 100003 + index, **self.image_kwargs)
            check = check_image(image, ex.target_scene)
            results.append(check.ok)
            if len([s for s in self.samples if s.task == task]) < keep:
                got = " and ".join(f"a {o.colour} {o.shape} at {o.cell}" for o in check.detected.objects)
                expected = " and ".join(f"a {o.colour} {o.shape} at {o.cell}" for o in ex.target_scene.objects)
                sample = EvalSample(
                    task, _prompt_text(ex.prompt), expected, got or "(nothing found)", check.ok,
                    _input_images(ex), output_image=image, target_image=ex.target,
                )  # fmt: skip
                self.samples.append(sample)
            self.bar.update(1)
        return results


def _mean(values: Sequence[bool]) -> float | None:
    return sum(values) / len(values) if values else None


_KIND_KEYS = {"edit": "kind", "video_qa": "question"}  # the meta entry that names an example's kind


def _by_kind(task: str, examples: Sequence[Any], results: Sequence[bool]) -> dict[str, tuple[int, int]]:
    key = _KIND_KEYS.get(task)
    if key is None:
        return {}
    tally: dict[str, tuple[int, int]] = {}
    for ex, ok in zip(examples, results, strict=True):
        right, n = tally.get(str(ex.meta[key]), (0, 0))
        tally[str(ex.meta[key])] = (right + ok, n + 1)
    return tally


def _row(task: str, examples: Sequence[Any], results: Sequence[bool]) -> TaskScore:
    heldout = [ok for ex, ok in zip(examples, results, strict=True) if ex.meta.get("heldout")]
    paraphrase = [ok for ex, ok in zip(examples, results, strict=True) if ex.meta.get("template_split") == "eval"]
    return TaskScore(
        task=task,
        n=len(results),
        score=_mean(results),
        heldout_n=len(heldout),
        heldout_score=_mean(heldout),
        paraphrase_n=len(paraphrase),
        paraphrase_score=_mean(paraphrase),
        target=TARGETS.get(task),
        by_kind=_by_kind(task, examples, results),
    )


def evaluate(
    model: Any,
    *,
    seed: int = 0,
    limit: int = 50,
    tasks: Sequence[str] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    extra_scorers: Mapping[str, ExtraScorer] | None = None,
    image_kwargs: Mapping[str, Any] | None = None,
) -> EvalReport:
    """Score ``model`` (an :class:`~emu_agent.model.emu.EmuModel`, or anything with ``generate_texts`` and
    ``generate_image``) on ``limit`` eval examples per task. ``image_kwargs`` go to ``generate_image`` (e.g.
    ``num_inference_steps``). A progress bar goes to stderr unless ``progress=False``."""
    from tqdm.auto import tqdm

    names = list(tasks) if tasks is not None else list(TASKS)
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise InputError(f"unknown eval tasks {unknown}; use names from {list(TASKS)}")
    if limit < 1:
        raise InputError(f"limit must be at least 1; got {limit}")
    has_decoder = getattr(model, "decoder", True) is not None
    started = time.perf_counter()
    plan = {t: draw_examples(t, seed=seed, limit=limit) for t in names}
    alt = {t: draw_examples(t, seed=seed, limit=limit, style="alt") for t in names if t in ALT_TASKS}
    total = sum(len(v) for v in plan.values() if has_decoder or isinstance(v[0], TextExample))
    total += sum(len(v) for v in alt.values())
    rows: list[TaskScore] = []
    with tqdm(total=total, desc="eval", disable=not progress, leave=False) as bar:
        runner = _Runner(model, batch_size=batch_size, seed=seed, bar=bar, image_kwargs=dict(image_kwargs or {}))
        for task in names:
            bar.set_postfix_str(task)
            examples = plan[task]
            if isinstance(examples[0], ImageExample):
                if not has_decoder:
                    rows.append(TaskScore(task, 0, None, target=TARGETS.get(task), note="(no image decoder)"))
                    continue
                row = _row(task, examples, runner.run_image(task, examples, SAMPLES_PER_TASK))  # type: ignore[arg-type]
            else:
                results = runner.run_text(task, examples, SAMPLES_PER_TASK)  # type: ignore[arg-type]
                row = _row(task, examples, results)
                if any(ex.also_correct for ex in examples):  # type: ignore[union-attr]
                    other = runner.other_form.get(task, 0)
                    own = sum(results) - other
                    row.note = f"{own}/{len(results)} in the answer's own form, {other} as the full statement"
            if task in alt:
                alt_results = runner.run_text(f"{task} (alt)", alt[task], 1, answers_of=task)  # type: ignore[arg-type]
                row.alt_n, row.alt_score = len(alt_results), _mean(alt_results)
            rows.append(row)
    for name, scorer in (extra_scorers or {}).items():
        result = scorer(model, seed=seed, limit=limit)
        extra = result if isinstance(result, list) else [result]
        rows.extend(extra)
        if not extra:
            rows.append(TaskScore(name, 0, None, note="(scorer returned nothing)"))
    config = getattr(model, "config", None)
    info = {
        "model": getattr(config, "variant", None) or type(model).__name__,
        "seed": seed,
        "limit": limit,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return EvalReport(rows, runner.samples, info)
