"""emu-tiny cold load: ``EmuModel.from_pretrained("emu-tiny")`` (the shipped safetensors, CPU, no network).

Goal: under 5 s. Baselines, in the same run: building the same architecture with random weights
(``build_emu_tiny``), i.e. what the load costs on top of constructing the modules, and the load with the image
decoder built up front (``lazy_decoder=False``; the default defers it, and diffusers, to first use). Time to the
first image is measured for both loads, so the deferred cost is shown, not hidden. Each measurement runs in a
fresh subprocess so imports and caches are cold for all.

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
    "m = EmuModel.from_pretrained('emu-tiny'{options}); print(time.perf_counter() - t){then}"
)
FIRST_IMAGE = "; m.generate_image('a red circle at top left', seed=0); print(time.perf_counter() - t)"
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
    environment = _common.environment()
    runs: dict[str, list[float]] = {name: [] for name in ("lazy", "eager", "init", "lazy_image", "eager_image")}
    for _ in range(args.reps):  # interleaved, so a change in machine load hits every path alike
        runs["lazy"].append(_run(LOAD.format(options="", then="")))
        runs["eager"].append(_run(LOAD.format(options=", lazy_decoder=False", then="")))
        runs["init"].append(_run(BUILD))
        runs["lazy_image"].append(_run(LOAD.format(options="", then=FIRST_IMAGE)))
        runs["eager_image"].append(_run(LOAD.format(options=", lazy_decoder=False", then=FIRST_IMAGE)))
    p50 = {name: statistics.median(times) for name, times in runs.items()}
    results = {
        "environment": environment,
        "from_pretrained_p50_s": p50["lazy"],
        "from_pretrained_eager_decoder_p50_s": p50["eager"],
        "random_init_p50_s": p50["init"],
        "load_to_first_image_p50_s": p50["lazy_image"],
        "eager_load_to_first_image_p50_s": p50["eager_image"],
        "ratio_load_over_init": p50["lazy"] / p50["init"],
        "ratio_load_over_eager_load": p50["lazy"] / p50["eager"],
        "ratio_first_image_lazy_over_eager": p50["lazy_image"] / p50["eager_image"],
        "goal_s": 5.0,
    }
    if args.json:
        _common.emit(results, True)
    else:
        _common.print_table(
            ["path", "p50 s"],
            [
                ["from_pretrained('emu-tiny')", p50["lazy"]],
                ["baseline: from_pretrained(lazy_decoder=False)", p50["eager"]],
                ["baseline: random init", p50["init"]],
                ["load + first image", p50["lazy_image"]],
                ["baseline: eager load + first image", p50["eager_image"]],
            ],
        )
        print(
            f"load / eager load {results['ratio_load_over_eager_load']:.2f}x; load / random init "
            f"{results['ratio_load_over_init']:.2f}x; first image lazy / eager "
            f"{results['ratio_first_image_lazy_over_eager']:.2f}x; goal < 5 s"
        )


if __name__ == "__main__":
    main()
