"""Frame sampling by seeking (emu_agent.video_sampling) on real clips written with PyAV.

Every frame of a test clip has its own grey level (4 * index), so a returned frame's index can be read from its
pixels and checked against its timestamp; exact sampling is compared pixel for pixel with a full decode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emu_agent.errors import InputError, MediaError
from emu_agent.media import MediaStore
from emu_agent.video_sampling import (
    Chunk,
    keyframe_times,
    plan_chunks,
    probe,
    sample_chunks,
    sample_frames,
    scene_picks,
)

av = pytest.importorskip("av")


def write_clip(path: Path, *, n_frames: int = 60, fps: int = 10, gop: int | None = 10, codec: str = "libx264") -> Path:
    """A 64x48 clip whose frame i is a flat grey of level 4 * i."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuv420p"
        if gop is not None:
            stream.gop_size = gop
        if codec == "mpeg4":
            stream.bit_rate = 4_000_000  # the default bitrate blurs the grey levels at this size
        for i in range(n_frames):
            arr = np.full((48, 64, 3), 4 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def level_index(image: object) -> int:
    """The frame index a grey level encodes."""
    return round(float(np.asarray(image).mean()) / 4)


def full_decode(path: Path) -> list[tuple[float, np.ndarray]]:
    with av.open(str(path)) as container:
        return [(float(f.time), f.to_ndarray(format="rgb24")) for f in container.decode(container.streams.video[0])]


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4")  # 6 s, 10 fps, keyframe every second


def test_probe(clip: Path) -> None:
    info = probe(clip)
    assert (info.n_frames, info.fps, info.width, info.height) == (60, 10.0, 64, 48)
    assert info.duration_seconds == pytest.approx(6.0, abs=0.01)


def test_exact_uniform_frames_match_full_decode(clip: Path) -> None:
    full = full_decode(clip)
    for count in (1, 2, 5, 16, 60, 100):
        frames = sample_frames(clip, count, exact=True)
        wanted = sorted({int(i) for i in np.linspace(0, 59, min(count, 60)).round()}) if count > 1 else [0]
        assert frames.timestamps == pytest.approx([i / 10 for i in wanted], abs=1e-6)
        for image, index in zip(frames.frames, wanted, strict=True):
            assert image.mode == "RGB" and image.size == (64, 48)
            assert np.array_equal(np.asarray(image), full[index][1])


def test_snapping_takes_near_keyframes_keeps_ends_exact_and_true_timestamps(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "gop5.mp4", gop=5)  # keyframes every 0.5 s
    frames = sample_frames(path, 5)  # ideal times 0, 1.5, 3.0, 4.4, 5.9; spacing 1.475 s, snap <= 0.37 s
    assert frames.timestamps == pytest.approx([0.0, 1.5, 3.0, 4.5, 5.9])  # 4.4 -> the keyframe at 4.5
    assert [level_index(im) for im in frames.frames] == [0, 15, 30, 45, 59]  # timestamps are the frames' own
    exact = sample_frames(path, 5, exact=True)
    assert exact.timestamps == pytest.approx([0.0, 1.5, 3.0, 4.4, 5.9])
    far = sample_frames(path, 3)  # ideal 0, 2.95, 5.9: keyframes 3.0 (0.05 away) -> snapped
    assert far.timestamps == pytest.approx([0.0, 3.0, 5.9])


def test_range_and_stored_ref(clip: Path, tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "media")
    ref = store.add_video(clip)
    frames = sample_frames(ref, 3, start=2.0, end=4.0, exact=True)
    assert frames.timestamps == pytest.approx([2.0, 3.0, 4.0])
    assert [level_index(im) for im in frames.frames] == [20, 30, 40]
    with pytest.raises(InputError, match="time range"):
        sample_frames(ref, 3, start=4.0, end=2.0)
    with pytest.raises(InputError, match="max_frames"):
        sample_frames(ref, 0)
    with pytest.raises(InputError, match="sampling"):
        sample_frames(ref, 3, "random")  # type: ignore[arg-type]


def test_max_side_downscales_in_the_decoder(clip: Path) -> None:
    frames = sample_frames(clip, 2, max_side=32)
    assert frames.frames[0].size == (32, 24)


def test_no_keyframe_index_falls_back_to_learning(clip: Path) -> None:
    from emu_agent.video_sampling import _info, _SeekingReader

    with av.open(str(clip)) as container:
        info = _info(av, container, clip, str(clip))
        assert keyframe_times(container) == pytest.approx([float(s) for s in range(6)])
        reader = _SeekingReader(container, info)  # no index
        got = [reader.frame_at(t)[0] for t in [i / 10 for i in range(0, 60, 3)]]
    assert got == pytest.approx([i / 10 for i in range(0, 60, 3)])
    assert reader.seeks < 20  # dense times: learnt the keyframe spacing and decoded forward


def test_long_gop_decodes_forward_instead_of_reseeking(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "long_gop.mp4", n_frames=60, gop=60)  # one keyframe
    frames = sample_frames(path, 12, exact=True)
    assert [level_index(im) for im in frames.frames] == [round(t * 10) for t in frames.timestamps]


def test_scene_sampling_finds_the_cuts(tmp_path: Path) -> None:
    path = tmp_path / "cuts.mp4"
    levels = [30] * 23 + [200] * 17 + [90] * 20  # cuts at frames 23 and 40
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for level in levels:
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), level, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    frames = sample_frames(path, 3, "scene")
    means = [float(np.asarray(im).mean()) for im in frames.frames]
    assert [round(m / 10) * 10 for m in means] == [30, 200, 90]
    assert frames.timestamps[0] == 0.0
    # right after each cut, within the candidate spacing (12 candidates over 5.9 s: 0.54 s)
    assert 2.3 <= frames.timestamps[1] <= 2.3 + 0.6 and 4.0 <= frames.timestamps[2] <= 4.0 + 0.6
    uniform = sample_frames(path, 3)
    assert [round(float(np.asarray(im).mean()) / 10) * 10 for im in uniform.frames] == [30, 200, 90]


def test_scene_picks_fill_by_time_coverage() -> None:
    flat = [np.zeros((2, 2))] * 10
    assert scene_picks([float(i) for i in range(10)], flat, 3) == [0, 4, 9]  # ties: the earlier
    assert scene_picks([0.0, 1.0], flat[:2], 5) == [0, 1]


def test_plan_chunks() -> None:
    assert plan_chunks(10.0, 8) == [Chunk(0, 0.0, 10.0)]
    chunks = plan_chunks(60.0, 8, max_gap_seconds=4.0)
    assert [(c.start, c.end) for c in chunks] == [(0.0, 30.0), (30.0, 60.0)]
    many = plan_chunks(3600.0, 8, max_chunks=8)
    assert len(many) == 8 and many[-1].end == 3600.0
    with pytest.raises(InputError):
        plan_chunks(10.0, 0)


def test_sample_chunks_do_not_share_frames(clip: Path) -> None:
    chunks = sample_chunks(clip, 4, max_gap_seconds=0.5, exact=True)  # 6 s / (4 * 0.5 s) -> 3 chunks
    assert len(chunks) == 3
    times = [t for _, frames in chunks for t in frames.timestamps]
    assert times == sorted(set(times))
    assert times[0] == 0.0 and times[-1] == pytest.approx(5.9)


@pytest.mark.parametrize(("name", "codec"), [("clip.mkv", "mpeg4"), ("clip.avi", "mpeg4"), ("clip.webm", "libvpx-vp9")])
def test_other_containers(tmp_path: Path, name: str, codec: str) -> None:
    path = write_clip(tmp_path / name, n_frames=30, codec=codec)
    frames = sample_frames(path, 4, exact=True)
    assert frames.timestamps == pytest.approx([0.0, 1.0, 1.9, 2.9], abs=0.051)
    assert [level_index(im) for im in frames.frames] == [round(t * 10) for t in frames.timestamps]


def test_bad_files_name_the_file(tmp_path: Path, clip: Path) -> None:
    missing = tmp_path / "missing.mp4"
    with pytest.raises(MediaError, match=r"missing\.mp4 does not exist"):
        sample_frames(missing, 4)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty.mp4 is empty"):
        sample_frames(empty, 4)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(MediaError, match=r"garbage\.mp4"):
        sample_frames(garbage, 4)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 3])
    with pytest.raises(MediaError, match=r"truncated\.mp4"):
        sample_frames(truncated, 4)
    with pytest.raises(MediaError, match=r"clip.mp4 is 64x48 = 3,072 pixels per frame, over the limit of 1,000"):
        sample_frames(clip, 4, max_pixels=1000)
    still = tmp_path / "still.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(still)
    frames = sample_frames(still, 4)  # a still image is a one-frame "video" to PyAV: one frame, no crash
    assert len(frames.frames) == 1
