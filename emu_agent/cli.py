"""The ``emu-agent`` command line. Every command takes ``--json``; progress goes to stderr."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emu_agent.errors import EmuAgentError

__all__ = ["main"]


def _progress(message: str, *, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def _load_model(spec: str | None, *, quiet: bool) -> tuple[Any, str]:
    """A checkpoint folder/file, ``emu-tiny`` when shipped, else the random-weight smoke model."""
    from emu_agent.model.emu import EmuModel
    from emu_agent.model.loading import builtin_model_dir

    if spec and spec != "emu-tiny":
        return EmuModel.from_pretrained(spec), spec
    if builtin_model_dir("emu-tiny").is_dir():
        return EmuModel.from_pretrained("emu-tiny"), "emu-tiny"
    if spec == "emu-tiny":
        raise EmuAgentError("emu-tiny is not installed in this build; pass --model <checkpoint folder>")
    from emu_agent.model.random_model import random_emu_model

    _progress(
        "NOTE: emu-tiny is not shipped yet, so this demo runs a small RANDOM-WEIGHT model. Every stage runs "
        "for real (EVA encoder, LLaMA, regression, diffusion decoder), but its text and images are noise.",
        quiet=quiet,
    )
    return random_emu_model(seed=0), "random-tiny (random weights)"


def run_demo(out: Path, model_spec: str | None, *, quiet: bool) -> dict[str, Any]:
    """Describe a scene, answer about it, generate, edit, answer about a clip; write images and a transcript."""
    from emu_agent.demo import run_demo as run_world_demo

    model, model_name = _load_model(model_spec, quiet=quiet)
    return run_world_demo(model, model_name, out, progress=lambda message: _progress(message, quiet=quiet))


def _print_error(exc: Exception, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    else:
        print(f"error: {exc}", file=sys.stderr)


def _cmd_demo(args: argparse.Namespace) -> int:
    result = run_demo(args.out, args.model, quiet=args.json)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for step in result["steps"]:
            detail = step.get("answer", step.get("detected", ""))
            mark = "ok" if step["ok"] else "MISS"
            print(f"[{mark}] {step['step']}: {detail}  (expected: {step['expected']})")
        print(f"\nWrote images and the transcript to {result['out_dir']} ({result['transcript']})")
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    from emu_agent import __version__

    print(json.dumps({"version": __version__}) if args.json else __version__)
    return 0


def _cmd_average(args: argparse.Namespace) -> int:
    from emu_agent.model.averaging import average_checkpoints

    out = average_checkpoints(
        args.checkpoints, args.out, weights=args.weights, overwrite=args.overwrite, progress=not args.json
    )
    training = json.loads((out / "training.json").read_text())["averaged"]
    if args.json:
        print(json.dumps({"out": str(out), "checkpoints": training["checkpoints"], "weights": training["weights"]}))
    else:
        print(f"Wrote the weighted mean of {len(args.checkpoints)} checkpoints to {out}")
    return 0


def _register_average(sub: Any) -> None:
    average = sub.add_parser(
        "average-checkpoints",
        help="average the weights of checkpoints of one architecture and tokenizer (a model soup)",
    )
    average.add_argument("checkpoints", nargs="+", help="two or more checkpoint folders (or emu-tiny)")
    average.add_argument("--out", type=Path, required=True, help="folder to write the averaged checkpoint to")
    average.add_argument("--weights", type=float, nargs="+", help="one weight per checkpoint (default: equal)")
    average.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    average.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    average.set_defaults(handler=_cmd_average)


def _register_demo(sub: Any) -> None:
    demo = sub.add_parser("demo", help="describe, answer, generate, edit and answer about a clip")
    demo.add_argument("--out", type=Path, default=Path("emu-agent-out"), help="folder for images and transcript")
    demo.add_argument("--model", default=None, help="emu-tiny or a checkpoint folder/file")
    demo.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    demo.set_defaults(handler=_cmd_demo)


def _register_version(sub: Any) -> None:
    version = sub.add_parser("version", help="print the version")
    version.add_argument("--json", action="store_true")
    version.set_defaults(handler=_cmd_version)


def _registrars() -> list[Any]:
    """One function per command (or group of commands), each adding its sub-parser with a ``handler``."""
    from emu_agent import cli_agent
    from emu_agent.world import commands as world_commands

    return [
        _register_demo,
        _register_version,
        _register_average,
        *cli_agent.REGISTRARS,
        world_commands.add_train_command,
        world_commands.add_eval_command,
        world_commands.add_probe_command,
    ]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emu-agent", description="A visual assistant SDK on Emu models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except EmuAgentError as exc:
        _print_error(exc, as_json=args.json)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
