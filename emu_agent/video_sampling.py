"""Frame sampling from videos with PyAV by seeking, keeping each frame's timestamp.

Decoding a whole stream to keep 16 frames wastes almost all the work. :func:`sample_frames` first reads the
keyframe times by demuxing (:func:`keyframe_times`: packets only, no decoding), then for each wanted time seeks
to the keyframe before it (``container.seek(pts, stream=..., backward=True)``, in the stream's ``time_base``) and
decodes forward only until the wanted frame. When that keyframe is not ahead of where the decoder already is, it
decodes on instead of seeking, so no group of pictures is decoded twice. Exact frames are identical to those of
a full decode. (A file whose packets carry no keyframe flags falls back to seeking unless the wanted time is
within the largest keyframe spacing seen so far.)

Sampling modes:

- ``"uniform"``: ``max_frames`` times spread evenly over ``[start, end]``, first and last frame included (by
  frame index when the frame rate is known, by time otherwise). With ``exact=True`` those are the frames
  returned. By default (keyframe snapping) an interior time is served by the nearest keyframe when one lies
  within a quarter of the spacing (before or after it), so each frame stays in the middle half of its own slot
  of the clip and its reported timestamp is the keyframe's own; otherwise the sampler decodes forward to the
  exact frame. The first and last frames are always exact. Snapping makes sampling cost about one decoded frame
  per wanted frame when keyframes are at least twice as dense as the wanted frames.
- ``"scene"``: thumbnails of up to ``4 x max_frames`` uniformly spaced candidates are compared (mean absolute
  difference of 32x32 greyscale thumbnails); the first candidate is always kept, then the candidates right after
  the largest changes above ``scene_threshold`` (strongest first), and any slots left are filled by the candidate
  farthest in time from those already picked. Frames are returned in time order.

Timestamps are seconds from the start of the video stream (the stream's ``start_time`` is subtracted).

Long videos are answered in chunks (see :func:`plan_chunks`): when ``max_frames`` frames over the whole clip would
be more than ``max_gap_seconds`` apart, the clip is split into equal chunks short enough that they are not (at
most ``max_chunks`` chunks; past that the chunks grow), and each chunk gets its own ``max_frames`` frames.

PyAV (``pip install av``) is imported only when a function here is called.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from emu_agent.errors import InputError, MediaError, MissingDependencyError
from emu_agent.model.prompting import VideoFrames

if TYPE_CHECKING:
    from emu_agent.media import MediaStore, VideoRef

__all__ = [
    "Chunk",
    "Sampling",
    "VideoInfo",
    "keyframe_times",
    "plan_chunks",
    "probe",
    "sample_chunks",
    "sample_frames",
    "scene_picks",
]

Sampling = Literal["uniform", "scene"]
#: Candidates per wanted frame for scene sampling.
SCENE_CANDIDATES_PER_FRAME = 4
#: Thumbnail side used to compare scene candidates.
THUMBNAIL_SIDE = 32
#: Default mean-absolute-difference (0..1) above which two candidates count as a scene change.
SCENE_THRESHOLD = 0.08


@dataclass(frozen=True)
class VideoInfo:
    """What the sampler needs to know about the first video stream of a file."""

    path: Path
    label: str
    duration_seconds: float
    fps: float
    n_frames: int
    width: int
    height: int


@dataclass(frozen=True)
class Chunk:
    """A time range of a video, in seconds from its start."""

    index: int
    start: float
    end: float


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise MissingDependencyError("av", "av", "video") from exc
    return av


def _resolve_source(source: Any, store: MediaStore | None) -> tuple[Path, str]:
    """(path, label for messages) of a path or a stored :class:`VideoRef`."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return path, str(path)
    if type(source).__name__ == "VideoRef":
        store = store or source.store
        if store is None:
            raise InputError(f"VideoRef {source.sha256[:12]} is not bound to a MediaStore; pass store=")
        path = store.path_of(source)
        return path, str(path)
    raise InputError(f"a video source must be a path or a VideoRef, not {type(source).__name__}")


def _open(av: Any, path: Path, label: str) -> Any:
    if not path.is_file():
        raise MediaError(f"video file {label} does not exist")
    if path.stat().st_size == 0:
        raise MediaError(f"video file {label} is empty (0 bytes)")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"video file {label} can't be opened (corrupt or not a video): {exc}") from exc
    if not container.streams.video:
        container.close()
        raise MediaError(f"video file {label} has no video stream")
    return container


def _info(av: Any, container: Any, path: Path, label: str) -> VideoInfo:
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    n_frames = int(stream.frames) or (round(duration * fps) if fps and duration else 0)
    if not duration and fps and n_frames:
        duration = n_frames / fps
    width, height = stream.codec_context.width, stream.codec_context.height
    return VideoInfo(path, label, duration, fps, n_frames, width, height)


def probe(source: str | os.PathLike[str] | VideoRef, *, store: MediaStore | None = None) -> VideoInfo:
    """Duration, frame rate, frame count and size of a video file or stored video (no decoding).

    Raises:
        MediaError: the file is missing, empty, corrupt or has no video stream; the message names it.
    """
    av = _import_av()
    path, label = _resolve_source(source, store)
    container = _open(av, path, label)
    try:
        return _info(av, container, path, label)
    finally:
        container.close()


# ---------------------------------------------------------------------------------------------- wanted times


def _uniform_times(info: VideoInfo, count: int, start: float, end: float) -> list[float]:
    """``count`` times evenly over [start, end]: on frame boundaries when the frame rate is known."""
    if info.fps > 0:
        first = math.ceil(start * info.fps - 1e-6)
        last_frame = info.n_frames - 1 if info.n_frames else math.floor(end * info.fps)
        last = min(math.floor(end * info.fps + 1e-6), last_frame)
        if end >= info.duration_seconds - 1e-6 and info.n_frames:
            last = last_frame  # "to the end" means the last frame, even if duration rounds below it
        last = max(last, first)
        indices = sorted({int(i) for i in np.linspace(first, last, min(count, last - first + 1)).round()})
        return [i / info.fps for i in indices]
    if count == 1:
        return [start]
    return [float(t) for t in np.linspace(start, end, count)]


def _check_range(info: VideoInfo, start: float | None, end: float | None) -> tuple[float, float]:
    duration = info.duration_seconds
    lo = 0.0 if start is None else float(start)
    hi = duration if end is None else float(end)
    if duration:
        hi = min(hi, duration)
    if lo < 0 or hi < lo or (duration and lo > duration):
        raise InputError(f"invalid time range start={start!r}, end={end!r} for {info.label} ({duration:.2f} s long)")
    return lo, hi


# ---------------------------------------------------------------------------------------------- decoding


def keyframe_times(container: Any) -> list[float]:
    """Times (s from the stream start) of the keyframes of the first video stream, read by demuxing only.

    Demuxing reads packets without decoding them (about 6 µs a packet), then the container is rewound.
    Empty when the container flags no keyframes.
    """
    stream = container.streams.video[0]
    time_base = float(stream.time_base)
    origin = int(stream.start_time or 0)
    times = []
    for packet in container.demux(stream):
        stamp = packet.pts if packet.pts is not None else packet.dts
        if packet.is_keyframe and stamp is not None and packet.size:
            times.append((stamp - origin) * time_base)
    container.seek(origin, stream=stream, backward=True)
    return sorted(times)


class _SeekingReader:
    """Decodes the frames shown at ascending times, seeking only when that beats decoding forward.

    With a keyframe index it seeks exactly when the keyframe before the wanted time lies ahead of the decoder's
    position (otherwise decoding forward is cheaper), and snaps to the nearest keyframe within ``snap`` on either
    side. Without one it seeks unless the wanted time is within the largest keyframe spacing seen so far, and
    snaps only to the keyframe a seek lands on.
    """

    def __init__(self, container: Any, info: VideoInfo, keyframes: Sequence[float] = ()) -> None:
        self.container = container
        self.info = info
        self.stream = container.streams.video[0]
        self.time_base = float(self.stream.time_base)
        self.origin = int(self.stream.start_time or 0)  # pts of the stream's first frame
        self.half_frame = 0.5 / info.fps if info.fps > 0 else 1e-3
        self.keyframes = list(keyframes)
        self.frames: Iterator[Any] | None = None
        self.position = -math.inf  # time of the last decoded frame
        self.pending: tuple[float, Any] | None = None  # a decoded frame not yet handed out
        self.keyframe_gap = 0.0  # largest keyframe spacing seen (used without an index)
        self.last_keyframe: float | None = None
        self.before_seek: float | None = None  # the position when the last seek happened
        self.seeks = 0
        self.decoded = 0

    def _time(self, frame: Any) -> float:
        if frame.pts is None:
            return self.position + (1.0 / self.info.fps if self.info.fps else 0.0)
        return (frame.pts - self.origin) * self.time_base

    def _seek(self, t: float) -> None:
        target = self.origin + math.floor(max(t, 0.0) / self.time_base + 1e-6)
        self.container.seek(target, stream=self.stream, backward=True)
        self.frames = self.container.decode(self.stream)
        self.before_seek = self.position if self.position > -math.inf else None
        self.position, self.pending, self.last_keyframe = -math.inf, None, None
        self.seeks += 1

    def _learn(self, t: float, is_keyframe: bool) -> None:
        if not is_keyframe or self.keyframes:
            return
        if self.last_keyframe is not None:
            self.keyframe_gap = max(self.keyframe_gap, t - self.last_keyframe)
        elif self.before_seek is not None and t <= self.before_seek + self.half_frame:
            self.keyframe_gap = max(self.keyframe_gap, self.before_seek - t)
        self.last_keyframe = t

    def _next(self) -> tuple[float, Any] | None:
        if self.pending is not None:
            item, self.pending = self.pending, None
            return item
        frame = next(self.frames, None) if self.frames is not None else None
        if frame is None:
            return None
        t = self._time(frame)
        self.decoded += 1
        self._learn(t, bool(frame.key_frame))
        self.position = t
        return t, frame

    def _advance_to(self, t: float, snap: float) -> tuple[float, Any] | None:
        """Decode up to the first frame at or after ``t``; the last frame if the stream ends first.

        The keyframe a seek lands on is taken as it is when it lies within ``snap`` seconds before ``t``.
        """
        best = None
        fresh = self.position == -math.inf  # nothing decoded since the last seek
        while (item := self._next()) is not None:
            best = item
            if item[0] >= t - max(self.half_frame, snap if fresh else 0.0):
                self.pending = item  # the same frame may serve the next wanted time too
                break
            fresh = False
        return best

    def _indexed_target(self, t: float, snap: float) -> tuple[float, bool]:
        """(time to decode exactly, whether to seek) using the keyframe index."""
        after = bisect.bisect_right(self.keyframes, t + self.half_frame)
        near = [k for k in self.keyframes[max(after - 1, 0) : after + 1] if abs(k - t) <= snap]
        if near:
            t = min(near, key=lambda k: (abs(k - t), k))
        key_index = bisect.bisect_right(self.keyframes, t + self.half_frame) - 1
        key = self.keyframes[key_index] if key_index >= 0 else 0.0
        seek = self.frames is None or self.position > t + self.half_frame or self.position < key - self.half_frame
        return t, seek

    def frame_at(self, t: float, snap: float = 0.0) -> tuple[float, Any]:
        """(time, frame) of the first frame at or after ``t`` (within half a frame), or of the last frame.

        With ``snap`` > 0 a keyframe at most ``snap`` seconds from ``t`` may be returned instead.
        """
        if self.keyframes:
            t, seek = self._indexed_target(t, snap)
            snap = 0.0
        else:
            behind = t < self.position - self.half_frame
            far = t - self.position > max(self.keyframe_gap, 2 * self.half_frame)
            seek = self.frames is None or behind or far
        if seek:
            self._seek(t)
        best = self._advance_to(t, snap)
        if best is None and t > 0:  # the seek gave nothing (e.g. past the end): decode from the start
            self._seek(0.0)
            best = self._advance_to(t, 0.0)
        if best is None:
            raise MediaError(f"video file {self.info.label} has no decodable frames")
        return best


def _decode_errors(av: Any) -> tuple[type[BaseException], ...]:
    return (av.FFmpegError, OSError, ValueError, EOFError, IndexError)


class _FrameConverter:
    """Decoded frames -> RGB PIL images or grey thumbnails, through one reused swscale context.

    A fresh ``frame.to_image()`` sets up a new scaler (and its threads) for every frame, which costs more than
    decoding a small frame; one :class:`~av.video.reformatter.VideoReformatter` per sampling run does not.
    """

    def __init__(self, av: Any, max_side: int | None = None) -> None:
        self.reformatter = av.video.reformatter.VideoReformatter()
        self.max_side = max_side

    def _size(self, frame: Any) -> tuple[int, int]:
        if self.max_side is None or max(frame.width, frame.height) <= self.max_side:
            return frame.width, frame.height
        scale = self.max_side / max(frame.width, frame.height)
        return max(1, round(frame.width * scale)), max(1, round(frame.height * scale))

    def image(self, frame: Any) -> Any:
        """An RGB PIL image of the frame, downscaled to ``max_side`` if set."""
        from PIL import Image

        width, height = self._size(frame)
        rgb = self.reformatter.reformat(frame, width=width, height=height, format="rgb24", threads=1)
        return Image.fromarray(rgb.to_ndarray())

    def thumbnail(self, frame: Any) -> np.ndarray:
        """A THUMBNAIL_SIDE x THUMBNAIL_SIDE greyscale array in [0, 1]."""
        gray = self.reformatter.reformat(frame, width=THUMBNAIL_SIDE, height=THUMBNAIL_SIDE, format="gray", threads=1)
        return gray.to_ndarray().astype(np.float32) / 255.0


def _decode_at(
    av: Any,
    container: Any,
    info: VideoInfo,
    times: Sequence[float],
    convert: Any,
    snaps: Sequence[float] | None = None,
    use_index: bool = True,
) -> list[tuple[float, Any]]:
    """``convert(frame)`` of the frame shown at each time (ascending); one entry per distinct frame.

    ``snaps[i]`` lets wanted time ``i`` take the keyframe up to that many seconds before it (0: exact).
    """
    out: list[tuple[float, Any]] = []
    snaps = snaps or [0.0] * len(times)
    try:
        reader = _SeekingReader(container, info, keyframe_times(container) if use_index else ())
        for t, snap in zip(times, snaps, strict=True):
            actual, frame = reader.frame_at(t, snap)
            if out and abs(out[-1][0] - actual) < 1e-9:
                continue  # two wanted times fell on the same frame
            out.append((actual, convert(frame)))
    except MediaError:
        raise
    except _decode_errors(av) as exc:
        raise MediaError(f"video file {info.label} can't be decoded (corrupt or truncated): {exc}") from exc
    return out


def _snaps(times: Sequence[float], exact: bool) -> list[float]:
    """How far each wanted time may move to a keyframe: never the first and last, else a quarter spacing."""
    if exact or len(times) < 3:
        return [0.0] * len(times)
    spacing = (times[-1] - times[0]) / (len(times) - 1)
    return [0.0, *[spacing / 4] * (len(times) - 2), 0.0]


# ---------------------------------------------------------------------------------------------- scene picking


def scene_picks(
    times: Sequence[float], thumbnails: Sequence[np.ndarray], count: int, threshold: float = SCENE_THRESHOLD
) -> list[int]:
    """Indices (ascending) of ``count`` candidates: the first, then the biggest changes, then time coverage."""
    n = len(times)
    if n <= count:
        return list(range(n))
    changes = [float(np.abs(thumbnails[i] - thumbnails[i - 1]).mean()) for i in range(1, n)]
    picked = [0]
    for i in sorted(range(1, n), key=lambda i: -changes[i - 1]):
        if len(picked) == count or changes[i - 1] < threshold:
            break
        picked.append(i)
    while len(picked) < count:  # farthest-point fill over time
        rest = [i for i in range(n) if i not in picked]
        picked.append(max(rest, key=lambda i: (min(abs(times[i] - times[j]) for j in picked), -i)))
    return sorted(picked)


# ---------------------------------------------------------------------------------------------- public API


def sample_frames(
    source: str | os.PathLike[str] | VideoRef,
    max_frames: int,
    sampling: Sampling = "uniform",
    start: float | None = None,
    end: float | None = None,
    *,
    store: MediaStore | None = None,
    max_side: int | None = None,
    max_pixels: int | None = None,
    scene_threshold: float = SCENE_THRESHOLD,
    exact: bool = False,
) -> VideoFrames:
    """Up to ``max_frames`` RGB frames of a video with their timestamps, decoded by seeking.

    Args:
        source: a video file path, or a :class:`~emu_agent.media.VideoRef` (bound, or with ``store``).
        max_frames: how many frames at most (fewer when the range holds fewer frames).
        sampling: ``"uniform"`` or ``"scene"`` (see the module docstring).
        start, end: the time range in seconds from the start of the video (default: all of it).
        max_side: downscale frames (in the decoder) so that their longer side is at most this.
        max_pixels: refuse videos whose frames have more pixels than this.
        scene_threshold: for ``"scene"``, the mean absolute thumbnail difference (0..1) that counts as a change.
        exact: take exactly the frames at the evenly spaced times. By default an interior frame may instead be
            the nearest keyframe when that is within a quarter of the spacing of its wanted time (no decoding
            forward; the timestamp returned is the keyframe's own). The first and last are always exact.

    Raises:
        MediaError: the file is missing, empty, corrupt, truncated, has no video stream or no decodable frame, or
            its frames are over ``max_pixels``; the message names the file.
        InputError: a bad ``max_frames``, ``sampling`` or time range.
    """
    if not isinstance(max_frames, int) or max_frames < 1:
        raise InputError(f"max_frames must be an int >= 1, got {max_frames!r}")
    if sampling not in ("uniform", "scene"):
        raise InputError(f"sampling must be 'uniform' or 'scene', got {sampling!r}")
    av = _import_av()
    path, label = _resolve_source(source, store)
    container = _open(av, path, label)
    try:
        info = _info(av, container, path, label)
        if max_pixels is not None and info.width * info.height > max_pixels:
            raise MediaError(
                f"video file {label} is {info.width}x{info.height} = {info.width * info.height:,} pixels per frame, "
                f"over the limit of {max_pixels:,}"
            )
        lo, hi = _check_range(info, start, end)
        converter = _FrameConverter(av, max_side)
        if sampling == "uniform":
            times = _uniform_times(info, max_frames, lo, hi)
        else:
            candidates = _uniform_times(info, max_frames * SCENE_CANDIDATES_PER_FRAME, lo, hi)
            thumbs = _decode_at(av, container, info, candidates, converter.thumbnail, _snaps(candidates, exact))
            picks = scene_picks([t for t, _ in thumbs], [x for _, x in thumbs], max_frames, scene_threshold)
            times = [thumbs[i][0] for i in picks]
        snaps = _snaps(times, exact) if sampling == "uniform" else None  # scene picks are actual frame times
        frames = _decode_at(av, container, info, times, converter.image, snaps)
    finally:
        container.close()
    if not frames:
        raise MediaError(f"video file {label} has no decodable frames between {lo:.2f} s and {hi:.2f} s")
    return VideoFrames([image for _, image in frames], [round(t, 6) for t, _ in frames])


def plan_chunks(
    duration_seconds: float, max_frames: int, *, max_gap_seconds: float = 4.0, max_chunks: int = 8
) -> list[Chunk]:
    """Split ``[0, duration]`` into equal chunks so that ``max_frames`` frames per chunk are at most
    ``max_gap_seconds`` apart; at most ``max_chunks`` chunks (longer chunks past that). One chunk if short."""
    if max_frames < 1 or max_gap_seconds <= 0 or max_chunks < 1:
        raise InputError(
            f"plan_chunks needs max_frames >= 1, max_gap_seconds > 0 and max_chunks >= 1; got "
            f"{max_frames}, {max_gap_seconds}, {max_chunks}"
        )
    span = max_frames * max_gap_seconds
    count = 1 if duration_seconds <= span else min(max_chunks, math.ceil(duration_seconds / span))
    size = duration_seconds / count
    return [Chunk(i, i * size, duration_seconds if i == count - 1 else (i + 1) * size) for i in range(count)]


def sample_chunks(
    source: str | os.PathLike[str] | VideoRef,
    max_frames: int,
    sampling: Sampling = "uniform",
    *,
    store: MediaStore | None = None,
    max_gap_seconds: float = 4.0,
    max_chunks: int = 8,
    max_side: int | None = None,
    max_pixels: int | None = None,
    exact: bool = False,
) -> list[tuple[Chunk, VideoFrames]]:
    """:func:`plan_chunks` over a video, then :func:`sample_frames` for each chunk."""
    info = probe(source, store=store)
    chunks = plan_chunks(info.duration_seconds, max_frames, max_gap_seconds=max_gap_seconds, max_chunks=max_chunks)
    out = []
    for chunk in chunks:
        # chunks share boundaries; a later chunk starts just after the previous one's end frame
        start = chunk.start if chunk.index == 0 else chunk.start + (0.5 / info.fps if info.fps else 1e-3)
        frames = sample_frames(
            source,
            max_frames,
            sampling,
            start,
            chunk.end,
            store=store,
            max_side=max_side,
            max_pixels=max_pixels,
            exact=exact,
        )
        out.append((chunk, frames))
    return out
