"""Frame sampling of a 60 s clip, 16 frames: seeking (emu_agent.video_sampling) vs decoding everything.

The clip is generated with PyAV in a temp folder: 320x240 at 30 fps (1,800 frames), libx264 ``preset=veryfast``,
moving gradients plus a moving white bar. Two GOP settings: a keyframe every 2 s (``gop_size=60``, the usual
streaming setting) and x264's default (``keyint=250`` with scene-cut detection, i.e. a keyframe every ~8.3 s).

Paths, timed in the same process, interleaved round by round (so load drifts hit all of them alike):

- ``decode all``: decode every frame of the stream and convert the 16 evenly spaced ones to RGB (what
  ``MediaStore.load_video_frames`` did before seeking);
- ``seek (exact)``: ``sample_frames(path, 16, exact=True)``, the same 16 frames, checked pixel-identical;
- ``seek (snap)``: ``sample_frames(path, 16)``, the default: interior frames may be the nearest keyframe within a
  quarter of the spacing (first and last exact).

Every path opens the file itself and converts with one reused swscale context. Both wall-clock and CPU time
(``time.process_time``, all threads of this process) are reported: on a shared machine the CPU time is the
steadier measure of the work each path does. Run:
``python bench/video_sampling.py [--json] [--reps 15] [--warmup 2]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import emit, environment, print_table

from emu_agent.video_sampling import _FrameConverter, sample_frames

SECONDS, FPS, WIDTH, HEIGHT, FRAMES = 60, 30, 320, 240, 16
GOPS: dict[str, int | None] = {"keyframe every 2 s": 60, "x264 default (keyint 250)": None}


def make_clip(path: Path, gop: int | None) -> Path:
    """The 60 s test clip (see the module docstring)."""
    import av

    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if gop is not None:
            stream.gop_size = gop
        stream.options = {"preset": "veryfast"}
        for i in range(SECONDS * FPS):
            arr = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
            arr[..., 0] = (xx + 3 * i) % 256
            arr[..., 1] = (yy + i) % 256
            arr[..., 2] = i * 255 // (SECONDS * FPS)
            bar = int(WIDTH / 2 + WIDTH / 3 * np.sin(i / 20))
            arr[100:140, max(bar - 20, 0) : bar + 20] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_all(path: Path, count: int = FRAMES) -> list[tuple[float, Any]]:
    """Baseline: decode the whole stream, convert the ``count`` evenly spaced frames (first and last included)."""
    import av

    converter = _FrameConverter(av)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keep = {int(i) for i in np.linspace(0, stream.frames - 1, count).round()}
        return [
            (float(frame.time), converter.image(frame))
            for index, frame in enumerate(container.decode(stream))
            if index in keep
        ]


def time_interleaved(
    paths: dict[str, Callable[[], Any]], *, warmup: int, reps: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and CPU seconds (this process, all threads) of each path, one call of each per round."""
    for _ in range(warmup):
        for fn in paths.values():
            fn()
    wall: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(reps):
        for name, fn in paths.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def bench_clip(path: Path, *, warmup: int, reps: int) -> dict[str, Any]:
    baseline = decode_all(path)
    exact = sample_frames(path, FRAMES, exact=True)
    snapped = sample_frames(path, FRAMES)
    same_times = np.allclose([t for t, _ in baseline], exact.timestamps or [], atol=1e-6)
    identical = bool(same_times) and all(
        np.array_equal(np.asarray(a), np.asarray(b)) for (_, a), b in zip(baseline, exact.frames, strict=True)
    )
    times, cpu = time_interleaved(
        {
            "decode all": lambda: decode_all(path),
            "seek (exact)": lambda: sample_frames(path, FRAMES, exact=True),
            "seek (snap)": lambda: sample_frames(path, FRAMES),
        },
        warmup=warmup,
        reps=reps,
    )
    p50 = {name: statistics.median(ts) for name, ts in times.items()}
    cpu_p50 = {name: statistics.median(ts) for name, ts in cpu.items()}
    return {
        "p50_s": p50,
        "spread": {name: (max(ts) - min(ts)) / p50[name] for name, ts in times.items()},
        "speedup_vs_decode_all": {name: p50["decode all"] / p for name, p in p50.items()},
        "cpu_p50_s": cpu_p50,
        "cpu_speedup_vs_decode_all": {name: cpu_p50["decode all"] / p for name, p in cpu_p50.items()},
        "exact_frames_identical_to_full_decode": identical,
        "snap_timestamps": snapped.timestamps,
        "bytes": path.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, Any] = {"environment": environment(), "frames": FRAMES, "clips": {}}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, gop in GOPS.items():
            path = make_clip(Path(folder) / f"clip-{gop or 'default'}.mp4", gop)
            result = bench_clip(path, warmup=args.warmup, reps=args.reps)
            results["clips"][label] = result
            for name, p50 in result["p50_s"].items():
                rows.append(
                    [label, name, p50 * 1000, f"{result['spread'][name]:.0%}",
                     f"{result['speedup_vs_decode_all'][name]:.1f}x", result["cpu_p50_s"][name] * 1000,
                     f"{result['cpu_speedup_vs_decode_all'][name]:.1f}x"]
                )  # fmt: skip
            rows.append([label, "exact == full decode", result["exact_frames_identical_to_full_decode"], *[""] * 4])
    emit(results, args.json)
    if not args.json:
        print_table(["clip", "path", "p50 ms", "spread", "speed-up", "CPU p50 ms", "CPU speed-up"], rows)


if __name__ == "__main__":
    main()
