"""Content-addressed media store and the references that messages carry instead of pixels.

Every image or video that enters the system is stored once in a :class:`MediaStore` on disk and is referred
to by an :class:`ImageRef` or :class:`VideoRef`: its sha256, mime type, size and pixel/timing metadata, plus
an optional ``derived_from`` (the sha256 of the source an edit started from). Messages serialise these
references as plain JSON; nothing in conversation state is ever base64-encoded.

Store layout: ``root/<sha[:2]>/<sha>.<ext>``. A file is written once, atomically (temp file + ``os.replace``);
adding the same content again returns an equal reference and writes nothing.

What is stored:

- **Images** are cleaned first (EXIF orientation applied, first frame of animations, every mode converted to
  RGB, alpha composited onto white) and stored as a lossless PNG of the cleaned RGB pixels, without metadata.
  The sha256 is the hash of those PNG bytes, so the same pixels give the same reference however they arrived
  (PIL image, numpy array, JPEG file, ...), for a given Pillow/zlib build.
- **Videos** are stored as the original bytes (the sha256 is of those bytes); the container is sniffed and
  probed with PyAV (``pip install av``), which is imported only when a video is touched.

Binding refs to a store: a reference returned by a store remembers that store in a private, non-serialised
attribute, so ``ref.load()`` works without arguments. A reference parsed from JSON is unbound; bind it by
passing the store explicitly (``ref.load(store)``, ``store.load_image(ref)``), with ``ref.bind(store)``, or by
validating with a context: ``Message.model_validate_json(data, context={"media_store": store})``. Binding
never affects equality, hashing or serialisation.
"""

from __future__ import annotations

import io
import os
import re
import struct
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, model_validator

from emu_agent.errors import InputError, MediaError, MissingDependencyError

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["MEDIA_STORE_CONTEXT_KEY", "ImageRef", "MediaStore", "VideoRef"]

#: Key of the pydantic validation context that binds parsed references to a store.
MEDIA_STORE_CONTEXT_KEY = "media_store"

_SHA256_PATTERN = r"^[0-9a-f]{64}$"
_SHA256_RE = re.compile(_SHA256_PATTERN)
_IMAGE_MIME = "image/png"
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_INT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
# Exceptions that Pillow raises for corrupt, truncated or unsupported data.
_PIL_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)
# container-format token -> (mime type, file extension)
_VIDEO_FORMATS: dict[str, tuple[str, str]] = {
    "mp4": ("video/mp4", "mp4"),
    "mov": ("video/quicktime", "mov"),
    "matroska": ("video/x-matroska", "mkv"),
    "webm": ("video/webm", "webm"),
    "avi": ("video/x-msvideo", "avi"),
    "mpegts": ("video/mp2t", "ts"),
    "mpeg": ("video/mpeg", "mpg"),
    "ogg": ("video/ogg", "ogv"),
    "flv": ("video/x-flv", "flv"),
    "gif": ("image/gif", "gif"),
}
_WEBM_CODECS = frozenset({"vp8", "vp9", "av1"})


class _MediaRef(BaseModel):
    """Fields and store binding shared by image and video references."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=_SHA256_PATTERN, description="sha256 (hex) of the stored bytes")
    mime_type: str = Field(description="mime type of the stored bytes")
    size_bytes: int = Field(ge=0, description="size of the stored file in bytes")
    derived_from: str | None = Field(
        default=None, pattern=_SHA256_PATTERN, description="sha256 of the media this one was made from"
    )

    _store: MediaStore | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _bind_from_context(self, info: ValidationInfo) -> Self:
        store = (info.context or {}).get(MEDIA_STORE_CONTEXT_KEY) if info is not None else None
        if store is not None:
            self._store = store if isinstance(store, MediaStore) else MediaStore(store)
        return self

    def __eq__(self, other: object) -> bool:
        # Compare fields only: the bound store is a runtime convenience, not part of the value.
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__  # type: ignore[union-attr]

    def __hash__(self) -> int:
        return hash((type(self), *self.__dict__.values()))

    @property
    def store(self) -> MediaStore | None:
        """The store this reference is bound to, if any (never serialised)."""
        return self._store

    def bind(self, store: MediaStore) -> Self:
        """Return a copy of this reference bound to ``store`` (so ``load`` needs no argument)."""
        ref = self.model_copy()
        ref._store = store
        return ref

    def _resolve_store(self, store: MediaStore | None) -> MediaStore:
        store = store or self._store
        if store is None:
            raise InputError(
                f"{type(self).__name__} {self.sha256[:12]} is not bound to a MediaStore; pass one "
                f"(ref.load(store)) or validate with context={{'{MEDIA_STORE_CONTEXT_KEY}': store}}"
            )
        return store


class ImageRef(_MediaRef):
    """A reference to an image in a :class:`MediaStore`.

    The stored bytes are always a PNG of the cleaned RGB pixels, so ``mime_type`` is ``"image/png"``.
    ``n_frames`` is set (> 1) when the source was animated (GIF/APNG/WebP); only its first frame is stored.
    """

    mime_type: str = Field(default=_IMAGE_MIME, description="mime type of the stored bytes")
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    n_frames: int | None = Field(default=None, ge=1, description="frame count of an animated source")

    def load(self, store: MediaStore | None = None) -> Image.Image:
        """Load the image as an RGB PIL image from ``store`` or the store this ref is bound to."""
        return self._resolve_store(store).load_image(self)


class VideoRef(_MediaRef):
    """A reference to a video in a :class:`MediaStore`; the stored bytes are the original file."""

    duration_seconds: float = Field(ge=0)
    n_frames: int = Field(ge=1)
    fps: float = Field(ge=0)
    width: int = Field(ge=1)
    height: int = Field(ge=1)

    def load_frames(
        self, store: MediaStore | None = None, max_frames: int | None = None
    ) -> list[tuple[float, Image.Image]]:
        """Decode frames as ``(timestamp_seconds, RGB image)``; see :meth:`MediaStore.load_video_frames`."""
        return self._resolve_store(store).load_video_frames(self, max_frames=max_frames)


class MediaStore:
    """A content-addressed store of images and videos under ``root``.

    Args:
        root: folder of the store (created on the first write).
        max_pixels: largest image accepted (width x height), checked from the header before decoding, as a
            guard against decompression bombs. ``None`` disables the check (Pillow's own hard limit, twice
            ``PIL.Image.MAX_IMAGE_PIXELS``, still applies).
        max_image_bytes: largest image file/bytes accepted. ``None``: no limit.
        max_video_bytes: largest video file/bytes accepted. ``None``: no limit.
        max_video_seconds: longest video accepted. ``None``: no limit.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        max_pixels: int | None = 64_000_000,
        max_image_bytes: int | None = 64 * 2**20,
        max_video_bytes: int | None = 2**30,
        max_video_seconds: float | None = 3600.0,
    ) -> None:
        self.root = Path(root)
        self.max_pixels = max_pixels
        self.max_image_bytes = max_image_bytes
        self.max_video_bytes = max_video_bytes
        self.max_video_seconds = max_video_seconds

    def __repr__(self) -> str:
        return f"MediaStore({str(self.root)!r})"

    # ---------------------------------------------------------------- images

    def add_image(
        self,
        image: Image.Image | np.ndarray | str | os.PathLike[str] | bytes | bytearray | memoryview,
        *,
        derived_from: str | ImageRef | VideoRef | None = None,
        name: str | None = None,
    ) -> ImageRef:
        """Clean an image, store it once as PNG and return its bound reference.

        ``image`` may be a PIL image, a path, encoded bytes, or a uint8 numpy array shaped (H, W), (H, W, 1),
        (H, W, 3) or (H, W, 4). Cleaning:

        - EXIF orientation is applied;
        - animated images (GIF/APNG/WebP) keep their first frame and ``n_frames`` records the frame count
          (an animated PIL image is rewound to frame 0);
        - every mode (RGBA, LA, P, CMYK, 16-bit, float, 1-bit, L, ...) becomes RGB, with alpha and palette
          transparency composited onto white; integer "I"/"I;16" pixels are read as 0..65535 and scaled to
          8 bits; float "F" pixels are read as 0..255 and clipped.

        ``name`` labels the data in error messages (default: the path, or a description of the bytes).

        Raises:
            MediaError: the data is empty, corrupt, truncated, not an image, or over a size limit; the message
                names the file (or ``name``).
            InputError: an unsupported input type or array shape/dtype.
        """
        parent = _sha_of(derived_from)
        if _is_pil_image(image):
            label = name or "PIL image"
            im, n_frames = self._prepare_pil(image, label)
        elif isinstance(image, np.ndarray):
            label = name or f"numpy array {image.shape}"
            im, n_frames = self._prepare_array(image, label), None
        elif isinstance(image, (str, os.PathLike, bytes, bytearray, memoryview)):
            data, label = _read_source(image, name, self.max_image_bytes, "image")
            im, n_frames = self._decode_image(data, label)
        else:
            raise InputError(f"add_image takes a PIL image, numpy array, path or bytes, not {type(image).__name__}")
        png = _encode_png(_to_rgb(im, label))
        sha = _sha256(png)
        self._write_once(sha, "png", png)
        ref = ImageRef(
            sha256=sha,
            size_bytes=len(png),
            width=im.width,
            height=im.height,
            n_frames=n_frames if n_frames and n_frames > 1 else None,
            derived_from=parent,
        )
        return ref.bind(self)

    def load_image(self, ref: ImageRef | str) -> Image.Image:
        """Load a stored image as an RGB PIL image (fully decoded, file closed)."""
        from PIL import Image

        path = self.path_of(ref)
        try:
            with Image.open(path) as im:
                im.load()
                return im.convert("RGB") if im.mode != "RGB" else im.copy()
        except _PIL_DECODE_ERRORS as exc:
            raise MediaError(f"stored image {path} can't be read: {exc}") from exc

    def _decode_image(self, data: bytes, label: str) -> tuple[Image.Image, int]:
        from PIL import Image

        try:
            # Our max_pixels check below is the authority (so Pillow's warning is muted); Pillow's hard
            # limit, DecompressionBombError, still applies and becomes a MediaError.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data))  # lazy: reads the header only
                self._check_pixels(im.width, im.height, label)
                n_frames = int(getattr(im, "n_frames", 1))
                im.seek(0)
                im.load()  # full decode, so truncation shows up here
        except Image.DecompressionBombError as exc:
            raise MediaError(f"{label} is too large to decode safely (decompression bomb guard): {exc}") from exc
        except Image.UnidentifiedImageError as exc:
            raise MediaError(f"{label} is not a readable image (unknown or corrupt format)") from exc
        except _PIL_DECODE_ERRORS as exc:
            raise MediaError(f"{label} is corrupt or truncated: {exc}") from exc
        return self._exif_transpose(im, label), n_frames

    def _prepare_pil(self, image: Image.Image, label: str) -> tuple[Image.Image, int]:
        self._check_pixels(image.width, image.height, label)
        n_frames = int(getattr(image, "n_frames", 1))
        try:
            if n_frames > 1:
                image.seek(0)
            image.load()
        except _PIL_DECODE_ERRORS as exc:
            raise MediaError(f"{label} can't be decoded: {exc}") from exc
        return self._exif_transpose(image, label), n_frames

    def _prepare_array(self, array: np.ndarray, label: str) -> Image.Image:
        from PIL import Image

        if array.dtype != np.uint8:
            raise InputError(
                f"{label} has dtype {array.dtype}; images as arrays must be uint8 "
                "(e.g. (x * 255).round().clip(0, 255).astype(np.uint8))"
            )
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
            raise InputError(f"{label} must be shaped (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")
        self._check_pixels(array.shape[1], array.shape[0], label)
        return Image.fromarray(np.ascontiguousarray(array))  # L, RGB or RGBA from the shape

    def _check_pixels(self, width: int, height: int, label: str) -> None:
        if width <= 0 or height <= 0:
            raise MediaError(f"{label} has no pixels ({width}x{height})")
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise MediaError(
                f"{label} is {width}x{height} = {width * height:,} pixels, over the limit of "
                f"{self.max_pixels:,} (MediaStore max_pixels)"
            )

    @staticmethod
    def _exif_transpose(im: Image.Image, label: str) -> Image.Image:
        from PIL import ImageOps

        try:
            return ImageOps.exif_transpose(im)
        except _PIL_DECODE_ERRORS as exc:
            raise MediaError(f"{label} has unreadable EXIF orientation data: {exc}") from exc

    # ---------------------------------------------------------------- videos

    def add_video(
        self,
        video: str | os.PathLike[str] | bytes | bytearray | memoryview,
        *,
        derived_from: str | ImageRef | VideoRef | None = None,
        name: str | None = None,
    ) -> VideoRef:
        """Probe a video with PyAV, store its original bytes once and return its bound reference.

        Raises:
            MediaError: empty, corrupt, not a video (no video stream, or a still image), no decodable
                frame, or over ``max_video_bytes`` / ``max_video_seconds``; the message names the file (or
                ``name``).
            MissingDependencyError: PyAV is not installed.
        """
        if not isinstance(video, (str, os.PathLike, bytes, bytearray, memoryview)):
            raise InputError(f"add_video takes a path or bytes, not {type(video).__name__}")
        parent = _sha_of(derived_from)
        data, label = _read_source(video, name, self.max_video_bytes, "video")
        info = _probe_video(data, label)
        if self.max_video_seconds is not None and info["duration_seconds"] > self.max_video_seconds:
            raise MediaError(
                f"{label} lasts {info['duration_seconds']:.1f} s, over the limit of "
                f"{self.max_video_seconds} s (MediaStore max_video_seconds)"
            )
        sha = _sha256(data)
        ext = info.pop("ext")
        self._write_once(sha, ext, data)
        return VideoRef(sha256=sha, size_bytes=len(data), derived_from=parent, **info).bind(self)

    def load_video_frames(self, ref: VideoRef | str, max_frames: int | None = None) -> list[tuple[float, Image.Image]]:
        """Decode a stored video into ``(timestamp_seconds, RGB PIL image)`` pairs, in order.

        With ``max_frames``, at most that many frames are returned, spread evenly over the whole clip (first
        and last frame included), decoded by seeking (:func:`emu_agent.video_sampling.sample_frames`, exact
        frames); without it the whole stream is decoded.
        """
        if max_frames is not None and max_frames < 1:
            raise InputError(f"max_frames must be >= 1 or None, got {max_frames}")
        av = _import_av()
        path = self.path_of(ref)
        if max_frames is not None and isinstance(ref, VideoRef) and ref.n_frames > max_frames:
            from emu_agent.video_sampling import sample_frames

            sampled = sample_frames(path, max_frames, exact=True)
            return list(zip(sampled.timestamps or [], sampled.frames, strict=True))
        frames: list[tuple[float, Image.Image]] = []
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                fps = float(stream.average_rate or 0) or None
                for index, frame in enumerate(container.decode(stream)):
                    t = frame.time if frame.time is not None else (index / fps if fps else 0.0)
                    frames.append((float(t), frame.to_image()))
        except (av.FFmpegError, OSError, ValueError, IndexError) as exc:
            raise MediaError(f"stored video {path} can't be decoded: {exc}") from exc
        if max_frames is not None and len(frames) > max_frames:  # n_frames was an underestimate
            picks = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
            frames = [frames[i] for i in picks]
        return frames

    # ---------------------------------------------------------------- files

    def path_of(self, ref: ImageRef | VideoRef | str) -> Path:
        """Path of a stored file. Raises MediaError if it is not in this store."""
        sha = _sha_of(ref)
        path = self._find(sha)  # type: ignore[arg-type]
        if path is None:
            raise MediaError(f"media {sha} is not in the media store at {self.root}")
        return path

    def has(self, sha256: str | ImageRef | VideoRef) -> bool:
        """Whether the store holds the content with this sha256."""
        return self._find(_sha_of(sha256)) is not None  # type: ignore[arg-type]

    def delete(self, sha256: str | ImageRef | VideoRef) -> bool:
        """Delete stored content; returns whether anything was deleted. References to it become dangling."""
        path = self._find(_sha_of(sha256))  # type: ignore[arg-type]
        if path is None:
            return False
        path.unlink(missing_ok=True)
        return True

    def copy_from(self, source: MediaStore, ref: ImageRef | VideoRef | str) -> Path:
        """Copy one stored file from another store into this one (a no-op if it is already here).

        The bytes are checked against their sha256 first, so a damaged source file is never copied.

        Raises:
            MediaError: the source store doesn't hold it, or its bytes no longer match their sha256.
        """
        sha = _sha_of(ref)
        existing = self._find(sha)  # type: ignore[arg-type]
        if existing is not None:
            return existing
        path = source.path_of(sha)  # type: ignore[arg-type]
        data = path.read_bytes()
        if _sha256(data) != sha:
            raise MediaError(f"{path} does not match its sha256 {sha}: the source media store is damaged")
        return self._write_once(sha, path.suffix.lstrip(".") or "png", data)  # type: ignore[arg-type]

    def _find(self, sha: str) -> Path | None:
        folder = self.root / sha[:2]
        if not folder.is_dir():
            return None
        return next((p for p in folder.glob(f"{sha}.*") if p.is_file()), None)

    def _write_once(self, sha: str, ext: str, data: bytes) -> Path:
        existing = self._find(sha)
        if existing is not None:
            return existing
        folder = self.root / sha[:2]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{sha}.{ext}"
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=f".{ext}")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


# -------------------------------------------------------------------- helpers


def _is_pil_image(obj: Any) -> bool:
    if "PIL" not in type(obj).__module__:
        return False
    from PIL import Image

    return isinstance(obj, Image.Image)


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _sha_of(value: str | ImageRef | VideoRef | None) -> str | None:
    """The sha256 of a ref or a sha string, validated (also keeps paths built from it inside the store)."""
    if value is None:
        return None
    sha = value.sha256 if isinstance(value, _MediaRef) else value
    if not isinstance(sha, str) or not _SHA256_RE.match(sha):
        raise InputError(f"expected a sha256 (64 lowercase hex chars) or a media ref, got {value!r}")
    return sha


def _read_source(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    name: str | None,
    limit: int | None,
    kind: str,
) -> tuple[bytes, str]:
    """Read a path or bytes, enforcing the byte limit; returns (data, label for messages)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or f"{kind} bytes ({len(data):,} bytes)"
    else:
        path = Path(source)
        label = name or str(path)
        try:
            size = path.stat().st_size
            if limit is not None and size > limit:
                raise MediaError(f"{label} is {size:,} bytes, over the {kind} limit of {limit:,} bytes")
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise MediaError(f"{kind} file {label} does not exist") from exc
        except IsADirectoryError as exc:
            raise MediaError(f"{kind} path {label} is a directory, not a file") from exc
        except OSError as exc:
            raise MediaError(f"{kind} file {label} can't be read: {exc}") from exc
    if not data:
        raise MediaError(f"{label} is empty (0 bytes)")
    if limit is not None and len(data) > limit:
        raise MediaError(f"{label} is {len(data):,} bytes, over the {kind} limit of {limit:,} bytes")
    return data, label


def _to_rgb(im: Image.Image, label: str) -> Image.Image:
    """Convert any Pillow mode to RGB; alpha (and palette/colour-key transparency) is put onto white."""
    from PIL import Image

    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in _INT_MODES:
        # 16/32-bit integer pixels are read as 0..65535 and scaled to 0..255.
        arr = np.asarray(im).astype(np.float64)
        return Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    if mode == "F":
        # Float pixels follow Pillow's own convention: 0..255, clipped; NaN -> 0.
        arr = np.nan_to_num(np.asarray(im), nan=0.0)
        return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), mode="L").convert("RGB")
    try:
        if mode in _ALPHA_MODES or "transparency" in im.info:
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return im.convert("RGB")
    except ValueError as exc:
        raise MediaError(f"{label} has image mode {mode!r}, which can't be converted to RGB") from exc


def _encode_png(im: Image.Image) -> bytes:
    """Lossless PNG of the RGB pixels only (no metadata), so equal pixels give equal bytes."""
    from PIL import Image

    clean = Image.frombytes("RGB", im.size, im.tobytes())
    buf = io.BytesIO()
    clean.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise MissingDependencyError("av", "av", "video") from exc
    return av


def _probe_video(data: bytes, label: str) -> dict[str, Any]:
    """Sniff and probe a video with PyAV; decodes the first frame to prove the stream is readable."""
    av = _import_av()
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            fmt = container.format.name
            if "_pipe" in fmt or fmt == "image2":
                raise MediaError(f"{label} is a still image ({fmt}), not a video; use add_image")
            if not container.streams.video:
                raise MediaError(f"{label} has no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            duration = _duration_seconds(stream, container, av)
            width, height = stream.codec_context.width, stream.codec_context.height
            mime, ext = _video_mime(fmt, stream.codec_context.name, data)
            n_frames = int(stream.frames)
            if next(container.decode(stream), None) is None:
                raise MediaError(f"{label} has no decodable video frame")
        n_frames = n_frames or _count_packets(data, av)
    except MediaError:
        raise
    except (av.FFmpegError, OSError, ValueError, EOFError, IndexError) as exc:
        raise MediaError(f"{label} is not a readable video (corrupt or unknown format): {exc}") from exc
    if not duration and fps:
        duration = n_frames / fps
    if width <= 0 or height <= 0 or n_frames <= 0:
        raise MediaError(f"{label} has no usable video frames ({width}x{height}, {n_frames} frames)")
    return {
        "mime_type": mime,
        "ext": ext,
        "duration_seconds": float(duration or 0.0),
        "n_frames": n_frames,
        "fps": fps,
        "width": width,
        "height": height,
    }


def _duration_seconds(stream: Any, container: Any, av: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _count_packets(data: bytes, av: Any) -> int:
    """Frame count for containers that don't record it (e.g. Matroska): count video packets, no decoding."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


def _video_mime(fmt: str, codec: str, data: bytes) -> tuple[str, str]:
    tokens = fmt.split(",")
    if "mp4" in tokens:
        return _VIDEO_FORMATS["mov" if data[8:12] == b"qt  " else "mp4"]
    if "matroska" in tokens:
        return _VIDEO_FORMATS["webm" if codec in _WEBM_CODECS else "matroska"]
    for token in tokens:
        if token in _VIDEO_FORMATS:
            return _VIDEO_FORMATS[token]
    return "application/octet-stream", "bin"
