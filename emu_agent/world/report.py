"""The eval report: per-task score rows, with Markdown, JSON and a PNG contact sheet of samples.

``report.write(out_dir)`` writes ``report.md``, ``report.json`` and ``samples.png`` (inputs, outputs and
prompts side by side, so a person can look at what the model did).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["EvalReport", "EvalSample", "TaskScore"]


@dataclass
class TaskScore:
    """One row: a task's score over ``n`` examples, its held-out-composition score, its score on eval-only
    phrasings, its score on the second renderer (caption and VQA), and the target it should reach. ``by_kind``
    splits the score by the kind of request where a task has kinds (edit: recolour, move, remove, add; video
    QA: the question asked)."""

    task: str
    n: int
    score: float | None
    heldout_n: int = 0
    heldout_score: float | None = None
    paraphrase_n: int = 0
    paraphrase_score: float | None = None  # on eval-only templates
    alt_n: int = 0
    alt_score: float | None = None  # inputs drawn by the "alt" renderer
    target: float | None = None
    note: str = ""
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (right, n), e.g. edit by edit kind

    @property
    def passed(self) -> bool | None:
        """Whether the score reaches the target (None when there is no target or no score)."""
        if self.target is None or self.score is None:
            return None
        return self.score >= self.target


@dataclass
class EvalSample:
    """One example as a person should see it: input images, prompt text, expected and produced output."""

    task: str
    prompt: str
    expected: str
    output: str
    ok: bool
    images: list[Image.Image] = field(default_factory=list)  # inputs (images, video frames, shots)
    output_image: Image.Image | None = None  # generated / edited image
    target_image: Image.Image | None = None


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


@dataclass
class EvalReport:
    """Scores per task, plus samples and run info. See :func:`emu_agent.world.eval.evaluate`."""

    rows: list[TaskScore]
    samples: list[EvalSample] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def row(self, task: str) -> TaskScore:
        """The row for ``task``."""
        for row in self.rows:
            if row.task == task:
                return row
        raise KeyError(task)

    def to_markdown(self) -> str:
        """A Markdown table of the rows, with run info above it."""
        lines = ["# emu-agent world eval", ""]
        lines += [f"- {key}: {value}" for key, value in self.info.items()]
        lines += [
            "",
            "| task | n | score | held-out compositions | eval-only phrasings | alt renderer | target | pass |",
            "|---|---:|---:|---:|---:|---:|---:|:---:|",
        ]
        for r in self.rows:
            mark = {True: "yes", False: "no", None: "-"}[r.passed]
            lines.append(
                f"| {r.task} | {r.n} | {_pct(r.score)} | {_pct(r.heldout_score)} (n={r.heldout_n}) "
                f"| {_pct(r.paraphrase_score)} (n={r.paraphrase_n}) "
                f"| {_pct(r.alt_score)}{f' (n={r.alt_n})' if r.alt_n else ''} | {_pct(r.target)} | {mark} |"
                + (f" {r.note}" if r.note else "")
            )
        kinds = [r for r in self.rows if r.by_kind]
        if kinds:
            lines += ["", "By kind (right / n):", ""]
            lines += [
                f"- {r.task}: " + ", ".join(f"{kind} {ok}/{n}" for kind, (ok, n) in sorted(r.by_kind.items()))
                for r in kinds
            ]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        """Rows, info and the text of the samples as JSON."""
        samples = [
            {k: v for k, v in asdict(s).items() if k not in ("images", "output_image", "target_image")}
            for s in self.samples
        ]
        rows = [{**asdict(r), "passed": r.passed} for r in self.rows]
        return json.dumps({"info": self.info, "rows": rows, "samples": samples}, indent=2, default=str)

    def write(self, out_dir: str | Path) -> Path:
        """Write report.md, report.json and samples.png into ``out_dir`` (created if needed)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(self.to_markdown(), encoding="utf-8")
        (out / "report.json").write_text(self.to_json(), encoding="utf-8")
        samples_png(self.samples).save(out / "samples.png")
        return out


_THUMB = 96
_ROW = _THUMB + 40
_WIDTH = 1200


def _wrap(text: str, width: int) -> list[str]:
    words, lines, line = text.replace("\n", " ").split(" "), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line]


def samples_png(samples: list[EvalSample]) -> Image.Image:
    """A contact sheet: one row per sample, inputs, then output (framed green if right, red if wrong), then text."""
    from PIL import Image, ImageDraw

    sheet = Image.new("RGB", (_WIDTH, max(1, len(samples)) * _ROW + 8), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, sample in enumerate(samples):
        y = 4 + i * _ROW
        x = 4
        thumbs = sample.images[-6:]
        for image in thumbs:
            sheet.paste(image.convert("RGB").resize((_THUMB, _THUMB), Image.Resampling.NEAREST), (x, y))
            x += _THUMB + 4
        for label, image in (("target", sample.target_image), ("output", sample.output_image)):
            if image is not None:
                x += 8
                sheet.paste(image.convert("RGB").resize((_THUMB, _THUMB), Image.Resampling.NEAREST), (x, y))
                draw.text((x, y + _THUMB + 2), label, fill=(0, 0, 0))
                x += _THUMB + 4
        colour = (20, 160, 20) if sample.ok else (200, 20, 20)
        draw.rectangle((2, y - 2, x, y + _THUMB + 1), outline=colour, width=2)
        text = [f"[{sample.task}] {'OK' if sample.ok else 'WRONG'}", *_wrap(f"prompt: {sample.prompt}", 90)]
        text += _wrap(f"expected: {sample.expected}", 90) + _wrap(f"output: {sample.output}", 90)
        draw.multiline_text((x + 10, y), "\n".join(text[:9]), fill=(0, 0, 0), spacing=2)
    return sheet
