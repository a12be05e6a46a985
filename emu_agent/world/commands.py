"""``emu-agent train-tiny`` and ``emu-agent eval``: train emu-tiny on the scenes world, and score a model on it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_eval_command", "add_probe_command", "add_train_command", "run_eval", "run_probe", "run_train"]


def add_train_command(subparsers: Any) -> None:
    """Register ``train-tiny``."""
    parser = subparsers.add_parser("train-tiny", help="train emu-tiny on the scenes world (resumable)")
    parser.add_argument("--run-dir", type=Path, required=True, help="checkpoints of each stage go here")
    parser.add_argument("--out", type=Path, help="write the assembled model here when all stages are done")
    parser.add_argument("--stage", choices=["encoder", "decoder", "lm", "decoder_ft", "all"], default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoder-steps", type=int, default=1100)
    parser.add_argument(
        "--encoder-grayscale",
        type=float,
        default=0.0,
        help="fraction of encoder images shown in grayscale (colour targets ignored): shape read apart from colour",
    )
    parser.add_argument(
        "--encoder-off-palette",
        type=float,
        default=0.0,
        help="fraction of encoder images painted in colours the world never names (colour targets ignored)",
    )
    parser.add_argument(
        "--encoder-init", type=Path, help="start the encoder from this run dir's encoder/ (a new phase: fresh schedule)"
    )
    parser.add_argument("--decoder-steps", type=int, default=1500)
    parser.add_argument(
        "--decoder-init", type=Path, help="start the decoder from this run dir's decoder/ (a new phase: fresh schedule)"
    )
    parser.add_argument("--lm-steps", type=int, default=2500)
    parser.add_argument(
        "--decoder-ft-steps", type=int, default=0, help="fine-tune the decoder on regressed embeddings (0: skip)"
    )
    parser.add_argument("--lm-batch", type=int, default=32)
    parser.add_argument("--decoder-batch", type=int, default=16)
    parser.add_argument("--lm-lr", type=float, default=1e-3)
    parser.add_argument("--decoder-lr", type=float, default=1e-3)
    parser.add_argument("--encoder-lr", type=float, default=1e-3)
    parser.add_argument(
        "--lm-init", type=Path, help="start the LM from this run dir's lm/ weights (a new phase: fresh schedule)"
    )
    parser.add_argument(
        "--lm-layers",
        type=int,
        help="LLaMA depth; above the starting LM's, the new phase grows it (identity layers, LLaMA Pro style)",
    )
    parser.add_argument(
        "--lm-seed-plurals",
        action="store_true",
        help="start the LM phase with each shape plural's input embedding ('squares?') copied from its singular's",
    )
    parser.add_argument(
        "--lm-split-plurals",
        action="store_true",
        help="drop the tokenizer's shape-plural merges first, so 'squares?' reads as the caption's 'square' + 's?'",
    )
    parser.add_argument(
        "--lm-rollout",
        type=float,
        default=0.0,
        help="fraction of image targets trained on the LM's own free-running regression (against exposure bias)",
    )
    parser.add_argument(
        "--from-checkpoint",
        metavar="CHECKPOINT",
        help="go on from an assembled checkpoint (emu-tiny or a folder): its encoder, decoder and tokenizer are "
        "unpacked into --run-dir as finished stages and a new LM phase starts from its LM",
    )
    parser.add_argument("--mixture", type=Path, help="JSON file of task weights for the LM (default: the built-in)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--time-limit", type=float, help="stop each stage after this many seconds (resumable)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Run the chosen stage(s); with ``--out`` assemble the checkpoint."""
    import torch
    from pydantic import ValidationError

    from emu_agent.errors import InputError
    from emu_agent.world.train import (
        TrainConfig,
        assemble,
        train_decoder,
        train_decoder_on_regressed,
        train_encoder,
        train_lm,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.from_checkpoint:
        _unpack_for_training(args)
    options = dict(
        run_dir=args.run_dir,
        seed=args.seed,
        encoder_steps=args.encoder_steps,
        encoder_grayscale=args.encoder_grayscale,
        encoder_off_palette=args.encoder_off_palette,
        encoder_init=args.encoder_init,
        decoder_init=args.decoder_init,
        decoder_steps=args.decoder_steps,
        lm_steps=args.lm_steps,
        decoder_ft_steps=args.decoder_ft_steps,
        lm_batch=args.lm_batch,
        decoder_batch=args.decoder_batch,
        lm_lr=args.lm_lr,
        decoder_lr=args.decoder_lr,
        encoder_lr=args.encoder_lr,
        lm_init=args.lm_init,
        lm_layers=args.lm_layers,
        lm_seed_plurals=args.lm_seed_plurals,
        lm_split_plurals=args.lm_split_plurals,
        lm_rollout=args.lm_rollout,
        lm_mixture=json.loads(args.mixture.read_text()) if args.mixture else None,
        time_limit_s=args.time_limit,
        progress=not args.json,
    )
    try:
        config = TrainConfig(**options)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise InputError(f"train-tiny: {field}={first.get('input')!r}: {first['msg']}") from None
    stages = {
        "encoder": train_encoder,
        "decoder": train_decoder,
        "lm": train_lm,
        "decoder_ft": train_decoder_on_regressed,
    }
    chosen = list(stages) if args.stage == "all" else [args.stage]
    if args.from_checkpoint:  # the checkpoint's encoder and decoder are final
        chosen = [name for name in chosen if name not in ("encoder", "decoder")]
    if args.stage == "all" and args.decoder_ft_steps <= 0:
        chosen.remove("decoder_ft")
    summary: dict[str, Any] = {}
    for name in chosen:
        summary[name] = stages[name](config)
    if args.out:
        summary["checkpoint"] = str(assemble(args.run_dir, args.out))
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        for name, result in summary.items():
            print(f"{name}: {result}", file=sys.stderr)
    return 0


def _unpack_for_training(args: argparse.Namespace) -> None:
    """``--from-checkpoint``: unpack into ``--run-dir`` (once) and start the LM phase from the checkpoint's LM."""
    from emu_agent.errors import InputError
    from emu_agent.world.unpack import checkpoint_fingerprint, unpack_checkpoint, unpacked_fingerprint, unpacked_from

    if args.stage in ("encoder", "decoder"):
        raise InputError(
            f"train-tiny: --stage {args.stage} with --from-checkpoint: the checkpoint's {args.stage} is final "
            "(train it in a fresh run dir without --from-checkpoint)"
        )
    earlier = unpacked_from(args.run_dir / "encoder")
    if earlier is None:
        unpack_checkpoint(args.from_checkpoint, args.run_dir)
    elif earlier != str(args.from_checkpoint):  # going on in a run dir unpacked before: from the same checkpoint
        raise InputError(
            f"train-tiny: --run-dir {str(args.run_dir)!r} was unpacked from {earlier!r}, not "
            f"--from-checkpoint {str(args.from_checkpoint)!r}; use a new run dir"
        )
    else:  # the same name: it must still be the same weights (an installed "emu-tiny" changes between builds)
        recorded, current = unpacked_fingerprint(args.run_dir / "encoder"), checkpoint_fingerprint(args.from_checkpoint)
        if recorded != current:
            raise InputError(
                f"train-tiny: --run-dir {str(args.run_dir)!r} was unpacked from {earlier!r} with weights sha256 "
                f"{(recorded or 'unrecorded')[:12]}, but {earlier!r} now has {current[:12]}; use a new run dir"
            )
    if args.lm_init is None:
        args.lm_init = args.run_dir / "checkpoint-lm"


def add_eval_command(subparsers: Any) -> None:
    """Register ``eval``."""
    parser = subparsers.add_parser("eval", help="score a model on held-out scenes-world tasks")
    parser.add_argument("--model", default="emu-tiny", help="emu-tiny or a checkpoint folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=50, help="examples per task")
    parser.add_argument(
        "--tasks",
        nargs="*",
        help="only these tasks (default: all, plus 'agent': tool calling); 'look_first' adds VQA and counting "
        "answered as a follow-up to the model's own description (measured, not how emu-tiny answers)",
    )
    parser.add_argument("--out", type=Path, default=Path("eval-report"), help="report.md, report.json, samples.png")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate, write the report files and print a summary."""
    from emu_agent.model.emu import EmuModel
    from emu_agent.world.agent_eval import score_tool_calls
    from emu_agent.world.eval import evaluate
    from emu_agent.world.look_first import score_look_first

    model = EmuModel.from_pretrained(args.model, dtype="float32", device="cpu")
    tasks = args.tasks or None
    extra = {"agent": score_tool_calls, "look_first": score_look_first}
    scorers = {name: scorer for name, scorer in extra.items() if name in (tasks or ["agent"])}
    world_tasks = [t for t in tasks if t not in extra] if tasks else None
    report = evaluate(
        model, seed=args.seed, limit=args.limit, tasks=world_tasks, progress=not args.json, extra_scorers=scorers
    )
    report.write(args.out)
    if args.json:
        print(report.to_json())
    else:
        print(report.to_markdown())
        print(f"\nreport written to {args.out.resolve()}", file=sys.stderr)
    return 0


def add_probe_command(subparsers: Any) -> None:
    """Register ``probe``."""
    parser = subparsers.add_parser(
        "probe", help="read a model's frozen image embeddings with a linear probe: trained vs unseen compositions"
    )
    parser.add_argument("--model", default="emu-tiny", help="emu-tiny or a checkpoint folder")
    parser.add_argument("--steps", type=int, default=300, help="probe training steps (batch 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.set_defaults(handler=run_probe)


def run_probe(args: argparse.Namespace) -> int:
    """Train the probe and print per-split shape, colour and whole-scene reads."""
    from emu_agent.model.emu import EmuModel
    from emu_agent.world.probe import PROBE_SPLITS, probe_encoder

    model = EmuModel.from_pretrained(args.model, dtype="float32", device="cpu")
    scores = probe_encoder(model, steps=args.steps, seed=args.seed)
    if args.json:
        print(json.dumps({"model": args.model, "steps": args.steps, "seed": args.seed, "scores": scores}))
        return 0
    print("| split | object shape | object colour | whole scene |\n|---|---:|---:|---:|")
    for split in PROBE_SPLITS:
        row = [f"{100 * scores[f'{split}_{k}']:.1f}%" for k in ("shape", "colour", "scene")]
        print(f"| {split} | " + " | ".join(row) + " |")
    return 0
