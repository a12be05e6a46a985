"""The look-first eval rows: paired with the direct rows' examples, scored on the model's own descriptions."""

from __future__ import annotations

from emu_agent.world.eval import TARGETS, draw_examples
from emu_agent.world.look_first_eval import LOOK_FIRST_TASKS, score_look_first
from emu_agent.world.scene import caption


class ReadingOracle:
    """Describes each eval image with its true caption (or a wrong one) and answers a question right only when
    the description it is shown is the true one: a harness test, not a model."""

    def __init__(self, seed: int, limit: int, describe_wrong: bool = False) -> None:
        self.describe_wrong = describe_wrong
        self.captions: dict[bytes, str] = {}
        self.answers: dict[tuple[bytes, str], str] = {}
        for task in LOOK_FIRST_TASKS:
            for ex in draw_examples(task, seed=seed, limit=limit):
                image, question = ex.prompt[0][1]
                self.captions[image.tobytes()] = caption(ex.meta["scene"])
                self.answers[(image.tobytes(), question)] = ex.answer

    def generate_texts(self, prompts: list, max_new_tokens: int) -> list[str]:
        out = []
        for turns in prompts:
            key = turns[0][1][0].tobytes()
            if len(turns) == 1:
                out.append("a red circle at nowhere" if self.describe_wrong else self.captions[key])
            else:
                shown, question = turns[1][1][0], turns[2][1][0]
                out.append(self.answers[(key, question)] if shown == self.captions[key] else "?")
        return out


def test_rows_pair_with_the_direct_tasks_and_use_the_models_own_descriptions() -> None:
    rows = {r.task: r for r in score_look_first(ReadingOracle(3, 6), seed=3, limit=6)}
    assert set(rows) == {f"look_first_{t}" for t in LOOK_FIRST_TASKS}
    for task in LOOK_FIRST_TASKS:
        row = rows[f"look_first_{task}"]
        assert row.n == 6 and row.score == 1.0 and row.target == TARGETS[task], row
        examples = draw_examples(task, seed=3, limit=6)
        assert row.heldout_n == sum(bool(ex.meta["heldout"]) for ex in examples)  # splits carry over
        assert row.paraphrase_n == sum(ex.meta["template_split"] == "eval" for ex in examples)
        assert "6/6 descriptions exact" in row.note
    wrong = {r.task: r for r in score_look_first(ReadingOracle(3, 6, describe_wrong=True), seed=3, limit=6)}
    assert all(r.score == 0.0 and "0/6 descriptions exact" in r.note for r in wrong.values())
