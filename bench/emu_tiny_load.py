"""emu-tiny cold load: ``EmuModel.from_pretrained("emu-tiny")`` (the shipped safetensors, CPU, no network).

Goal: under 5 s. Baseline, in the same run: building the same architecture with random weights
(``build_emu_tiny``), i.e. what the load costs on top of constructing the modules. Each measurement runs in a
fresh subprocess so imports and caches are cold for both.

    python bench/emu_tiny_load.py [--reps 3] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile

import _common

LOAD = (
    "import time; t = time.perf_counter(); from emu_agent.model.emu import EmuModel; "
    "m = EmuModel.from_pretrained('emu-tiny'); print(time.perf_counter() - t)"
)
BUILD = (
    "import time; t = time.perf_counter(); from emu_agent.model.tokenizer import EmuTokenizer; "
    "from emu_agent.model.loading import builtin_model_dir; from emu_agent.world.tiny import build_emu_tiny; "
    "m = build_emu_tiny(EmuTokenizer.from_pretrained(builtin_model_dir('emu-tiny'))); print(time.perf_counter() - t)"
)


def _run(code: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tempfile.gettempdir()
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = [_run(LOAD) for _ in range(args.reps)]
    build = [_run(BUILD) for _ in range(args.reps)]
    results = {
        "environment": _common.environment(),
        "from_pretrained_p50_s": statistics.median(load),
        "random_init_p50_s": statistics.median(build),
        "ratio_load_over_init": statistics.median(load) / statistics.median(build),
        "goal_s": 5.0,
    }
    if args.json:
        _common.emit(results, True)
    else:
        _common.print_table(
            ["path", "p50 s"],
            [
                ["from_pretrained('emu-tiny')", results["from_pretrained_p50_s"]],
                ["random init", results["random_init_p50_s"]],
            ],
        )
        print(f"ratio {results['ratio_load_over_init']:.2f}x; goal < 5 s")


if __name__ == "__main__":
    main()
