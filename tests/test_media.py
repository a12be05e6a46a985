"""Tier 0 tests of the media store: real Pillow and PyAV, real files under tmp_path."""

from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emu_agent.errors import InputError, MediaError, MissingDependencyError
from emu_agent.media import ImageRef, MediaStore, VideoRef
from emu_agent.messages import Message

# ------------------------------------------------------------------ helpers


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    return MediaStore(tmp_path / "store")


def stored_files(store: MediaStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file())


def noise(width: int = 32, height: int = 24, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


def png_bytes(im: Image.Image, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, followed by a tiny (bogus) IDAT."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write_clip(path: Path, codec: str = "libx264", n_frames: int = 25, fps: int = 25, size: int = 64) -> list[int]:
    """Write a clip whose frame i is a flat grey of level 10 * i; returns the levels."""
    import av

    levels = [min(10 * i, 250) for i in range(n_frames)]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for level in levels:
            arr = np.full((size, size, 3), level, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return levels


# ------------------------------------------------------------------ images: round trip, layout, dedup


def test_round_trip_pil_keeps_pixels_and_layout(store: MediaStore) -> None:
    im = noise()
    ref = store.add_image(im)
    path = store.path_of(ref)
    assert path == store.root / ref.sha256[:2] / f"{ref.sha256}.png"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ref.sha256
    assert (ref.width, ref.height, ref.mime_type, ref.size_bytes) == (
        32,
        24,
        "image/png",
        path.stat().st_size,
    )
    assert ref.n_frames is None and ref.derived_from is None
    loaded = ref.load()
    assert loaded.mode == "RGB"
    assert np.array_equal(np.asarray(loaded), np.asarray(im))
    assert np.array_equal(np.asarray(store.load_image(ref)), np.asarray(im))
    assert np.array_equal(np.asarray(store.load_image(ref.sha256)), np.asarray(im))


def test_same_pixels_from_any_source_are_stored_once(store: MediaStore, tmp_path: Path) -> None:
    im = noise()
    file = tmp_path / "in.png"
    im.save(file, pnginfo=None, dpi=(300, 300))  # metadata must not change the hash
    refs = [
        store.add_image(im),
        store.add_image(im.copy()),
        store.add_image(np.asarray(im)),
        store.add_image(file),
        store.add_image(str(file)),
        store.add_image(file.read_bytes()),
    ]
    assert all(r == refs[0] for r in refs)
    assert len({hash(r) for r in refs}) == 1
    assert stored_files(store) == [store.path_of(refs[0])]  # one file, no temp files left


def test_second_add_does_not_rewrite(store: MediaStore) -> None:
    ref = store.add_image(noise())
    mtime = store.path_of(ref).stat().st_mtime_ns
    store.path_of(ref).chmod(0o444)
    assert store.add_image(noise()) == ref
    assert store.path_of(ref).stat().st_mtime_ns == mtime


def test_failed_write_leaves_nothing_behind(store: MediaStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("emu_agent.media.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.add_image(noise())
    assert stored_files(store) == []


def test_jpeg_is_stored_as_png_of_decoded_pixels(store: MediaStore, tmp_path: Path) -> None:
    file = tmp_path / "photo.jpg"
    noise(40, 30).save(file, quality=80)
    ref = store.add_image(file)
    with Image.open(file) as original:
        expected = np.asarray(original.convert("RGB"))
    assert store.path_of(ref).suffix == ".png"
    assert np.array_equal(np.asarray(ref.load()), expected)


# ------------------------------------------------------------------ numpy input


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((4, 5, 3), (10, 20, 30), dtype=np.uint8), (10, 20, 30)),
        (np.full((4, 5), 77, dtype=np.uint8), (77, 77, 77)),
        (np.full((4, 5, 1), 77, dtype=np.uint8), (77, 77, 77)),
        (np.full((4, 5, 4), (0, 0, 0, 0), dtype=np.uint8), (255, 255, 255)),  # transparent -> white
        (np.full((4, 5, 4), (10, 20, 30, 255), dtype=np.uint8), (10, 20, 30)),
    ],
)
def test_numpy_input(store: MediaStore, array: np.ndarray, expected: tuple[int, int, int]) -> None:
    ref = store.add_image(array)
    assert (ref.width, ref.height) == (5, 4)
    assert ref.load().getpixel((0, 0)) == expected


def test_numpy_non_contiguous(store: MediaStore) -> None:
    arr = np.asarray(noise())
    ref = store.add_image(arr[:, ::-1])
    assert np.array_equal(np.asarray(ref.load()), arr[:, ::-1])


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((4, 5, 3), dtype=np.float32), "float32"),
        (np.zeros((4, 5, 2), dtype=np.uint8), "shaped"),
        (np.zeros((2, 4, 5, 3), dtype=np.uint8), "shaped"),
        (np.zeros(7, dtype=np.uint8), "shaped"),
    ],
)
def test_numpy_bad_input(store: MediaStore, array: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        store.add_image(array)


def test_empty_numpy_array(store: MediaStore) -> None:
    with pytest.raises(MediaError, match="no pixels"):
        store.add_image(np.zeros((0, 5, 3), dtype=np.uint8))


def test_unsupported_input_type(store: MediaStore) -> None:
    with pytest.raises(InputError, match="int"):
        store.add_image(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------ hygiene: EXIF, modes, animation


def test_exif_orientation_is_applied(store: MediaStore, tmp_path: Path) -> None:
    # Stored 40 wide x 20 high, left half red, right half blue; orientation 6: rotate 90° clockwise to show.
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    file = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(file, exif=exif, quality=95)

    ref = store.add_image(file)
    assert (ref.width, ref.height) == (20, 40)
    loaded = ref.load()
    assert loaded.size == (20, 40)
    top, bottom = np.asarray(loaded)[5, 10], np.asarray(loaded)[35, 10]
    assert top[0] > 200 and top[2] < 60  # red on top
    assert bottom[2] > 200 and bottom[0] < 60  # blue at the bottom


def _palette_with_transparency() -> Image.Image:
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    im.putpixel((1, 1), 1)
    im.info["transparency"] = 0
    return im


def _cases() -> list[tuple[str, Image.Image, dict[tuple[int, int], tuple[int, int, int]]]]:
    white, half_blue = (255, 255, 255), (127, 127, 255)
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((1, 1), (0, 0, 255, 128))
    rgba.putpixel((2, 2), (9, 8, 7, 255))
    la = Image.new("LA", (4, 4), (0, 0))
    la.putpixel((1, 1), (50, 255))
    palette_plain = Image.new("P", (4, 4), 0)
    palette_plain.putpalette([12, 34, 56] + [0] * 765)
    cmyk = Image.new("CMYK", (4, 4), (0, 0, 0, 0))
    cmyk.putpixel((1, 1), (255, 0, 0, 0))
    i16 = Image.new("I;16", (4, 4), 0)
    i16.putpixel((1, 1), 65535)
    i16.putpixel((2, 2), 257 * 100)
    i32 = Image.new("I", (4, 4), 0)
    i32.putpixel((1, 1), 70000)  # clipped
    i32.putpixel((2, 2), 257 * 30)
    f = Image.new("F", (4, 4), 0.0)
    f.putpixel((1, 1), 128.4)
    f.putpixel((2, 2), 300.0)
    one = Image.new("1", (4, 4), 0)
    one.putpixel((1, 1), 1)
    gray = Image.new("L", (4, 4), 77)
    return [
        ("RGBA", rgba, {(0, 0): white, (1, 1): half_blue, (2, 2): (9, 8, 7)}),
        ("LA", la, {(0, 0): white, (1, 1): (50, 50, 50)}),
        ("P+transparency", _palette_with_transparency(), {(0, 0): white, (1, 1): (200, 10, 10)}),
        ("P", palette_plain, {(0, 0): (12, 34, 56)}),
        ("CMYK", cmyk, {(0, 0): white, (1, 1): (0, 255, 255)}),
        ("I;16", i16, {(0, 0): (0, 0, 0), (1, 1): white, (2, 2): (100, 100, 100)}),
        ("I", i32, {(0, 0): (0, 0, 0), (1, 1): white, (2, 2): (30, 30, 30)}),
        ("F", f, {(0, 0): (0, 0, 0), (1, 1): (128, 128, 128), (2, 2): white}),
        ("1", one, {(0, 0): (0, 0, 0), (1, 1): white}),
        ("L", gray, {(0, 0): (77, 77, 77)}),
    ]


@pytest.mark.parametrize(("mode", "image", "expected"), _cases(), ids=[c[0] for c in _cases()])
def test_modes_become_rgb(
    store: MediaStore, mode: str, image: Image.Image, expected: dict[tuple[int, int], tuple[int, int, int]]
) -> None:
    loaded = store.add_image(image).load()
    assert loaded.mode == "RGB"
    for xy, rgb in expected.items():
        assert np.allclose(loaded.getpixel(xy), rgb, atol=1), (mode, xy, loaded.getpixel(xy))


@pytest.mark.parametrize(("mode", "image", "expected"), _cases(), ids=[c[0] for c in _cases()])
def test_modes_from_files(
    store: MediaStore,
    tmp_path: Path,
    mode: str,
    image: Image.Image,
    expected: dict[tuple[int, int], tuple[int, int, int]],
) -> None:
    fmt = {"CMYK": "JPEG", "F": "TIFF", "I": "TIFF", "LA": "PNG"}.get(mode, "PNG")
    file = tmp_path / f"img.{fmt.lower()}"
    image.save(file, format=fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    with Image.open(file) as reopened:
        assert reopened.mode == image.mode or mode in {"P", "P+transparency", "I", "LA"}
    loaded = store.add_image(file).load()
    atol = 3 if fmt == "JPEG" else 1
    for xy, rgb in expected.items():
        assert np.allclose(loaded.getpixel(xy), rgb, atol=atol), (mode, xy, loaded.getpixel(xy))


def test_sixteen_bit_png_file(store: MediaStore, tmp_path: Path) -> None:
    arr = np.array([[0, 65535], [257 * 200, 257]], dtype=np.uint16)
    file = tmp_path / "deep.png"
    Image.fromarray(arr).save(file)
    with Image.open(file) as reopened:
        assert reopened.mode.startswith("I")
    loaded = np.asarray(store.add_image(file).load())
    assert loaded[:, :, 0].tolist() == [[0, 255], [200, 1]]


def _frames(colors: list[tuple[int, int, int]]) -> list[Image.Image]:
    return [Image.new("RGB", (8, 6), c) for c in colors]


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_animated_images_keep_first_frame(store: MediaStore, tmp_path: Path, fmt: str) -> None:
    first, *rest = _frames([(255, 0, 0), (0, 255, 0), (0, 0, 255)])
    file = tmp_path / f"anim.{fmt.lower()}"
    extra = {"lossless": True} if fmt == "WEBP" else {}
    first.save(file, format=fmt, save_all=True, append_images=rest, duration=100, loop=0, **extra)
    ref = store.add_image(file)
    assert ref.n_frames == 3
    assert np.allclose(ref.load().getpixel((3, 3)), (255, 0, 0), atol=2)

    with Image.open(file) as opened:  # an animated PIL image gives the same
        opened.seek(2)
        assert store.add_image(opened) == ref


# ------------------------------------------------------------------ guards: bombs, sizes, corrupt data


def test_pixel_limit_for_every_input_kind(tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "s", max_pixels=100)
    file = tmp_path / "big.png"
    noise(20, 20).save(file)
    for source in (file, noise(20, 20), np.zeros((20, 20, 3), dtype=np.uint8)):
        with pytest.raises(MediaError, match="400 pixels"):
            store.add_image(source)
    with pytest.raises(MediaError, match=r"big\.png"):
        store.add_image(file)
    assert stored_files(store) == []


def test_pixel_limit_checked_from_header_before_decoding(store: MediaStore, tmp_path: Path) -> None:
    # 10000 x 10000 = 100M pixels: over our 64M default and Pillow's warning threshold, under its error one.
    file = tmp_path / "bomb.png"
    file.write_bytes(png_with_header(10_000, 10_000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape
        with pytest.raises(MediaError, match=r"bomb\.png.*100,000,000 pixels"):
            store.add_image(file)


def test_pillow_decompression_bomb_error_becomes_media_error(tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "s", max_pixels=None)
    file = tmp_path / "huge.png"
    file.write_bytes(png_with_header(50_000, 50_000))
    with pytest.raises(MediaError, match=r"huge\.png.*decompression bomb") as info:
        store.add_image(file)
    assert isinstance(info.value.__cause__, Image.DecompressionBombError)


def test_max_image_bytes(tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "s", max_image_bytes=100)
    file = tmp_path / "heavy.png"
    noise().save(file)
    with pytest.raises(MediaError, match=r"heavy\.png.*over the image limit"):
        store.add_image(file)
    with pytest.raises(MediaError, match=r"upload\.png"):
        store.add_image(file.read_bytes(), name="upload.png")


def _truncated_png() -> bytes:
    data = png_bytes(noise(64, 64))
    return data[: len(data) // 2]


def _truncated_jpeg() -> bytes:
    buf = io.BytesIO()
    noise(64, 64).save(buf, format="JPEG")
    return buf.getvalue()[: len(buf.getvalue()) // 2]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"this is not an image at all", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a readable image"),
        (_truncated_png(), "truncated"),
        (_truncated_jpeg(), "truncated"),
    ],
    ids=["empty", "garbage", "broken-png-header", "truncated-png", "truncated-jpeg"],
)
def test_bad_files_name_the_file(store: MediaStore, tmp_path: Path, data: bytes, match: str) -> None:
    file = tmp_path / "suspicious_upload.img"
    file.write_bytes(data)
    with pytest.raises(MediaError, match=match) as info:
        store.add_image(file)
    assert "suspicious_upload.img" in str(info.value)
    with pytest.raises(MediaError, match="from_client"):
        store.add_image(data, name="from_client")
    assert stored_files(store) == []


def test_missing_file_and_directory(store: MediaStore, tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"nope\.png.*does not exist"):
        store.add_image(tmp_path / "nope.png")
    with pytest.raises(MediaError, match="directory"):
        store.add_image(tmp_path)


def test_truncated_lazy_pil_image(store: MediaStore, tmp_path: Path) -> None:
    with (
        Image.open(io.BytesIO(_truncated_png())) as lazy,
        pytest.raises(MediaError, match="can't be decoded"),
    ):
        store.add_image(lazy)


# ------------------------------------------------------------------ lineage, lookup, binding


def test_derived_from_lineage(store: MediaStore) -> None:
    source = store.add_image(noise(seed=1))
    edit = store.add_image(noise(seed=2), derived_from=source)
    edit_of_edit = store.add_image(noise(seed=3), derived_from=edit.sha256)
    assert edit.derived_from == source.sha256
    assert edit_of_edit.derived_from == edit.sha256
    # A generated image is a valid input to the next edit: the loaded edit can be stored again.
    assert store.add_image(edit.load()) == edit.model_copy(update={"derived_from": None})
    with pytest.raises(InputError, match="sha256"):
        store.add_image(noise(), derived_from="not-a-sha")


def test_has_delete_path_of(store: MediaStore) -> None:
    ref = store.add_image(noise())
    assert store.has(ref.sha256) and store.has(ref)
    assert store.delete(ref) is True
    assert not store.has(ref.sha256)
    assert store.delete(ref.sha256) is False
    with pytest.raises(MediaError, match=ref.sha256):
        store.path_of(ref)
    with pytest.raises(MediaError, match=ref.sha256):
        ref.load()
    for bad in ("../../etc/passwd", "A" * 64, ""):
        with pytest.raises(InputError):
            store.has(bad)
    assert store.has("0" * 64) is False


def test_refs_bind_without_changing_value(store: MediaStore) -> None:
    ref = store.add_image(noise())
    assert ref.store is store
    unbound = ImageRef.model_validate_json(ref.model_dump_json())
    assert unbound == ref and hash(unbound) == hash(ref)
    assert unbound.store is None
    with pytest.raises(InputError, match="not bound to a MediaStore"):
        unbound.load()
    assert unbound.load(store).size == (32, 24)
    assert unbound.bind(store).load().size == (32, 24)
    bound = ImageRef.model_validate_json(ref.model_dump_json(), context={"media_store": store})
    assert bound.store is store
    assert "store" not in ref.model_dump()
    with pytest.raises(ValueError, match="frozen"):
        ref.width = 3  # type: ignore[misc]


def test_importing_media_and_messages_stays_light() -> None:
    code = (
        "import sys, emu_agent.media, emu_agent.messages\n"
        "heavy = [m for m in ('torch', 'av', 'transformers', 'PIL') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ videos


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    write_clip(path)
    return path


def test_add_video_probes_and_stores_original_bytes(store: MediaStore, clip: Path) -> None:
    ref = store.add_video(clip)
    assert isinstance(ref, VideoRef)
    assert ref.mime_type == "video/mp4"
    assert (ref.width, ref.height, ref.n_frames) == (64, 64, 25)
    assert ref.fps == pytest.approx(25.0)
    assert ref.duration_seconds == pytest.approx(1.0, abs=0.05)
    assert ref.size_bytes == clip.stat().st_size
    assert ref.sha256 == hashlib.sha256(clip.read_bytes()).hexdigest()
    path = store.path_of(ref)
    assert path == store.root / ref.sha256[:2] / f"{ref.sha256}.mp4"
    assert path.read_bytes() == clip.read_bytes()
    assert store.add_video(clip.read_bytes()) == ref  # dedup
    assert stored_files(store) == [path]


def test_load_video_frames(store: MediaStore, tmp_path: Path) -> None:
    path = tmp_path / "levels.mp4"
    levels = write_clip(path)
    ref = store.add_video(path)
    frames = store.load_video_frames(ref)
    assert len(frames) == 25
    times = [t for t, _ in frames]
    assert times == pytest.approx([i / 25 for i in range(25)], abs=1e-6)
    for (_, image), level in zip(frames, levels, strict=True):
        assert image.mode == "RGB" and image.size == (64, 64)
        assert abs(float(np.asarray(image).mean()) - level) < 6

    few = ref.load_frames(max_frames=5)
    assert len(few) == 5
    assert [t for t, _ in few] == pytest.approx([0.0, 0.24, 0.48, 0.72, 0.96], abs=1e-6)
    assert len(store.load_video_frames(ref, max_frames=100)) == 25
    with pytest.raises(InputError, match="max_frames"):
        store.load_video_frames(ref, max_frames=0)


@pytest.mark.parametrize(
    ("name", "codec", "mime"),
    [("clip.mkv", "mpeg4", "video/x-matroska"), ("clip.avi", "mpeg4", "video/x-msvideo")],
)
def test_other_containers(store: MediaStore, tmp_path: Path, name: str, codec: str, mime: str) -> None:
    path = tmp_path / name
    write_clip(path, codec=codec, n_frames=10, fps=10, size=32)
    ref = store.add_video(path)
    assert ref.mime_type == mime
    assert (ref.n_frames, ref.width, ref.height) == (10, 32, 32)
    assert ref.duration_seconds == pytest.approx(1.0, abs=0.15)
    assert len(store.load_video_frames(ref)) == 10


def test_video_round_trips_in_a_message(store: MediaStore, clip: Path) -> None:
    ref = store.add_video(clip)
    message = Message.user("what moves?", ref)
    again = Message.model_validate_json(message.model_dump_json(), context={"media_store": store})
    assert again == message
    assert again.videos[0].store is store
    assert len(again.videos[0].load_frames(max_frames=2)) == 2


def test_video_derived_from(store: MediaStore, clip: Path) -> None:
    image = store.add_image(noise())
    assert store.add_video(clip, derived_from=image).derived_from == image.sha256


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("empty", "empty"),
        ("garbage", "not a readable video"),
        ("truncated", "not a readable video"),
        ("png", "still image"),
        ("text", "not a readable video"),
    ],
)
def test_bad_videos_name_the_file(store: MediaStore, clip: Path, tmp_path: Path, kind: str, match: str) -> None:
    data = {
        "empty": b"",
        "garbage": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "truncated": clip.read_bytes()[:2000],
        "png": png_bytes(noise()),
        "text": b"hello, this is a text file\n" * 50,
    }[kind]
    file = tmp_path / "broken_video.mp4"
    file.write_bytes(data)
    with pytest.raises(MediaError, match=match) as info:
        store.add_video(file)
    assert "broken_video.mp4" in str(info.value)
    assert stored_files(store) == []


def test_video_limits(tmp_path: Path, clip: Path) -> None:
    with pytest.raises(MediaError, match=r"clip\.mp4.*max_video_seconds"):
        MediaStore(tmp_path / "a", max_video_seconds=0.5).add_video(clip)
    with pytest.raises(MediaError, match=r"clip\.mp4.*over the video limit"):
        MediaStore(tmp_path / "b", max_video_bytes=100).add_video(clip)


def test_missing_pyav_names_the_pip_line(store: MediaStore, clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(MissingDependencyError, match="pip install av"):
        store.add_video(clip)


def test_copy_from_another_store_checks_the_bytes(store: MediaStore, tmp_path: Path) -> None:
    ref = store.add_image(Image.new("RGB", (8, 8), (200, 10, 10)))
    other = MediaStore(tmp_path / "other")
    copied = other.copy_from(store, ref)
    assert copied.read_bytes() == store.path_of(ref).read_bytes() and other.has(ref)
    assert other.copy_from(store, ref) == copied  # already there: nothing rewritten
    damaged = store.add_image(Image.new("RGB", (8, 8), (10, 200, 10)))
    store.path_of(damaged).write_bytes(b"not the original bytes")
    third = MediaStore(tmp_path / "third")
    with pytest.raises(MediaError, match=f"does not match its sha256 {damaged.sha256}"):
        third.copy_from(store, damaged)
    assert not third.has(damaged)
    with pytest.raises(MediaError, match="not in the media store"):
        third.copy_from(other, "0" * 64)
