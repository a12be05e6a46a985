"""Peak RSS while loading a checkpoint, relative to its size on disk: ``EmuModel.from_pretrained`` vs naive.

A random-weight model (~0.45 GB in bfloat16: LLaMA hidden 1024, 12 layers, FFN 2816, vocab 32272, plus a small
EVA) is saved with ``save_pretrained``. Each loader then runs in a *fresh* subprocess that first imports torch,
transformers, accelerate, safetensors and emu_agent and records its RSS (the baseline), resets the peak
(``/proc/self/clear_refs`` = 5), loads, and reads the peak (``VmHWM``):

- ours: ``EmuModel.from_pretrained(dir, dtype="bfloat16", device="cpu")`` (meta-device init, tensors assigned);
- naive-fp32: ``EmuModel(config)`` (random init in float32), ``.to(bfloat16)``, then
  ``load_state_dict(safetensors.torch.load_file(...))``;
- naive-bf16: the same but built with ``torch.set_default_dtype(torch.bfloat16)`` (no float32 copy).

Reported: (peak - baseline) / size of the weight files, after loading and again after touching every weight
(sum of each tensor); the goal is judged on the latter, since tensors that stay memory-mapped are only paged
in when first used. ``VmHWM`` counts resident file-backed pages of memory-mapped files (``RssFile``) as well
as anonymous memory (``RssAnon``); both are printed. Goal: ours <= 1.3x.

Run: ``python bench/load_memory.py [--json]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GOAL = 1.3
MODES = ("ours", "naive-fp32", "naive-bf16")


def proc_status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile in bytes."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def child(mode: str, folder: str) -> dict[str, Any]:
    import accelerate  # noqa: F401  (imported before the baseline, as from_pretrained needs it)
    import safetensors.torch
    import torch
    from transformers import LlamaForCausalLM  # noqa: F401

    from emu_agent.model import loading  # noqa: F401
    from emu_agent.model.config import EmuConfig
    from emu_agent.model.emu import EmuModel
    from emu_agent.model.tokenizer import EmuTokenizer

    torch.set_num_threads(2)
    baseline = proc_status()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    start = time.perf_counter()
    if mode == "ours":
        model = EmuModel.from_pretrained(folder, dtype="bfloat16", device="cpu")
    else:
        config = EmuConfig.from_json_file(Path(folder) / "config.json")
        tokenizer = EmuTokenizer.from_pretrained(folder, instruct=config.instruct)
        if mode == "naive-bf16":
            torch.set_default_dtype(torch.bfloat16)
        model = EmuModel(config, tokenizer=tokenizer).to(torch.bfloat16).eval()
        model.load_state_dict(safetensors.torch.load_file(str(Path(folder) / "model.safetensors")))
    seconds = time.perf_counter() - start
    loaded = proc_status()
    with torch.no_grad():
        # touch every page; a native-dtype sum (sum(dtype=float32) would make a float32 copy first)
        total = sum(float(t.sum()) for t in model.state_dict().values())
    touched = proc_status()
    return {"mode": mode, "baseline": baseline, "loaded": loaded, "touched": touched, "hwm_reset": reset,
            "load_s": seconds, "checksum": total, "dtype": str(model.dtype)}  # fmt: skip


def save_model(folder: Path) -> dict[str, Any]:
    import torch
    from _common import setup, small_model

    setup(0)
    model = small_model(hidden=1024, layers=12, heads=16, intermediate=2816, vision_width=448, vision_layers=4)
    model.to(torch.bfloat16).save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    weights = sum(p.stat().st_size for p in folder.glob("model*.safetensors"))
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"params": params, "weights_bytes": weights, "folder_bytes": total}


def run_child(mode: str, folder: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(folder)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> dict[str, Any]:
    from _common import environment

    env = environment()  # before the run: its load average is the machine's, not ours
    with tempfile.TemporaryDirectory(prefix="emu-load-bench-") as tmp:
        folder = Path(tmp) / "model"
        size = save_model(folder)
        children = {mode: run_child(mode, folder) for mode in MODES}
    disk = size["weights_bytes"]
    results = {}
    for mode, r in children.items():
        base = r["baseline"]["VmRSS"]
        results[mode] = {
            "ratio_loaded": (r["loaded"]["VmHWM"] - base) / disk,
            "ratio_touched": (r["touched"]["VmHWM"] - base) / disk,
            **r,
        }
    checksums = {round(r["checksum"], 1) for r in children.values()}
    return {
        "benchmark": "load_memory",
        "checkpoint": size,
        "results": results,
        "same_weights": len(checksums) == 1,
        "goal": GOAL,
        "goal_met": results["ours"]["ratio_touched"] <= GOAL,
        "environment": env,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    results = run()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    from _common import print_table

    mb = 1024**2
    size = results["checkpoint"]
    print(f"checkpoint: {size['params'] / 1e6:.0f}M params, weights {size['weights_bytes'] / mb:.0f} MiB on disk")
    rows = []
    for mode, r in results["results"].items():
        base = r["baseline"]["VmRSS"]
        for stage in ("loaded", "touched"):
            st = r[stage]
            ratio = f"{r['ratio_' + stage]:.2f}x"
            seconds = r["load_s"] if stage == "loaded" else ""
            rows.append([mode, stage, base / mb, (st["VmHWM"] - base) / mb, ratio, st["RssAnon"] / mb,
                         st["RssFile"] / mb, seconds])  # fmt: skip
    headers = ["loader", "after", "imports MiB", "peak-imports MiB", "ratio", "anon MiB", "file MiB", "load s"]
    print_table(headers, rows)
    print(f"goal ours <= {GOAL:g}x: {'met' if results['goal_met'] else 'NOT met'}; "
          f"same weights loaded: {results['same_weights']}")  # fmt: skip


if __name__ == "__main__":
    main()
