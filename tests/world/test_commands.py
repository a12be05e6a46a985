"""``emu-agent train-tiny`` (a smoke run of tens of steps) and ``emu-agent eval`` through the real CLI."""

from __future__ import annotations

import json

from emu_agent.cli import main


def test_train_tiny_then_eval_from_the_command_line(tmp_path, capsys) -> None:
    run, model = tmp_path / "run", tmp_path / "model"
    argv = [
        "train-tiny", "--run-dir", str(run), "--out", str(model), "--encoder-steps", "10", "--decoder-steps", "4",
        "--lm-steps", "10", "--lm-batch", "4", "--decoder-batch", "2", "--decoder-ft-steps", "2", "--threads", "1",
        "--lm-rollout", "0.5", "--json",
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["encoder"]["steps"] == 10 and summary["lm"]["steps"] == 10 and summary["decoder"]["steps"] == 4
    assert summary["decoder_ft"]["steps"] == 2
    training = json.loads((model / "training.json").read_text())
    assert (model / "config.json").exists() and training["steps"]["lm"] == 10
    assert training["lm_phases"][-1]["rollout"] == 0.5

    report_dir = tmp_path / "report"
    argv = ["eval", "--model", str(model), "--limit", "1", "--tasks", "caption", "t2i", "agent", "look_first"]
    assert main([*argv, "--out", str(report_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    tasks = {row["task"] for row in report["rows"]}
    assert {"caption", "t2i", "tool_call_validity", "tool_routing"} <= tasks
    assert {"look_first_vqa_where", "look_first_count", "look_first_exists"} <= tasks and "count" not in tasks
    for name in ("report.md", "report.json", "samples.png"):
        assert (report_dir / name).stat().st_size > 0


def test_eval_reports_a_missing_model_as_json(tmp_path, capsys) -> None:
    assert main(["eval", "--model", str(tmp_path / "nope"), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "ModelLoadError"


def test_train_tiny_rejects_an_out_of_range_option_by_name(tmp_path, capsys) -> None:
    argv = ["train-tiny", "--run-dir", str(tmp_path / "run"), "--stage", "lm", "--lm-rollout", "2", "--json"]
    assert main(argv) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["error"] == "InputError" and "lm_rollout=2.0" in out["message"]
    assert not (tmp_path / "run" / "lm").exists()  # nothing started
