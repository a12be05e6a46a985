"""A resumable, seeded training stage: AdamW, warm-up + cosine LR, checkpoints, a progress bar.

Each step draws its data from ``random.Random(f"{seed}/{stage}/{step}")``, so a resumed run sees the same
batches it would have seen without the interruption.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["StageResult", "run_stage", "step_rng"]


def step_rng(seed: int, stage: str, step: int) -> random.Random:
    """The data RNG of one step (independent of how many steps ran before in this process)."""
    return random.Random(f"{seed}/{stage}/{step}")


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class StageResult(dict):
    """Final metrics of a stage (a dict: ``steps``, ``seconds``, ``loss`` and whatever ``evaluate`` returned)."""


def _save(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer, step: int, log: list[dict]) -> None:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path / "weights.tmp"))
    torch.save(optimizer.state_dict(), path / "optimizer.tmp")
    (path / "weights.tmp").replace(path / "weights.safetensors")
    (path / "optimizer.tmp").replace(path / "optimizer.pt")
    (path / "state.json").write_text(json.dumps({"step": step, "log": log}))


def _resume(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict]]:
    if not (path / "state.json").exists():
        return 0, []
    from safetensors.torch import load_file

    if not (path / "optimizer.pt").is_file():
        from emu_agent.errors import InputError

        raise InputError(
            f"{str(path)!r} holds weights without optimizer state (unpacked from a checkpoint?): it cannot be "
            "resumed; start a new run dir (an LM phase can start from it with lm_init)"
        )
    module.load_state_dict(load_file(str(path / "weights.safetensors")))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    state = json.loads((path / "state.json").read_text())
    return int(state["step"]), list(state["log"])


def run_stage(
    name: str,
    module: nn.Module,
    loss_fn: Callable[[int], dict[str, torch.Tensor]],
    *,
    steps: int,
    lr: float,
    checkpoint_dir: Path,
    weight_decay: float = 0.01,
    warmup: int = 50,
    checkpoint_every: int = 100,
    log_every: int = 25,
    evaluate: Callable[[], dict[str, float]] | None = None,
    eval_every: int = 0,
    progress: bool = True,
    time_limit_s: float | None = None,
) -> StageResult:
    """Train ``module``'s trainable parameters on ``loss_fn(step)`` (a dict of losses, summed)."""
    from tqdm.auto import tqdm

    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    start, log = _resume(checkpoint_dir, module, optimizer)
    module.train()
    started = time.perf_counter()
    bar = tqdm(total=steps, initial=start, desc=name, disable=not progress, dynamic_ncols=True)
    running: dict[str, float] = {}
    done = start
    for step in range(start, steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * _lr_factor(step, steps, warmup)
        losses = loss_fn(step)
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        for key, value in losses.items():
            value = float(value.detach())
            running[key] = 0.9 * running.get(key, value) + 0.1 * value
        bar.update(1)
        bar.set_postfix({k: f"{v:.4f}" for k, v in running.items()})
        done = step + 1
        if done % log_every == 0:
            entry: dict[str, Any] = {"step": done, "seconds": round(time.perf_counter() - started, 1), **running}
            if evaluate is not None and eval_every and done % eval_every == 0:
                module.eval()
                entry.update(evaluate())
                module.train()
                if progress:  # stdout may carry --json output: the log line goes to stderr, like the bar
                    bar.write(f"[{name}] {json.dumps(entry)}", file=sys.stderr)
            log.append(entry)
        if done % checkpoint_every == 0 or done == steps:
            _save(checkpoint_dir, module, optimizer, done, log)
        if time_limit_s is not None and time.perf_counter() - started > time_limit_s:
            _save(checkpoint_dir, module, optimizer, done, log)
            break
    bar.close()
    module.eval()
    result = StageResult(steps=done, seconds=round(time.perf_counter() - started, 1), **running)
    if evaluate is not None:
        result.update(evaluate())
    return result
