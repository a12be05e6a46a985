"""fetch_image against a real HTTP server on 127.0.0.1 (and an HTTPS one with a throwaway certificate).

Positive cases opt in to the loopback server (``allow_private=True`` or ``allowed_networks``); every refused
address class is checked without any connection being made; redirects are checked hop by hop; size, time and
content-type limits are exercised for real.
"""

from __future__ import annotations

import io
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from PIL import Image

from emu_agent.errors import MediaError, ToolError
from emu_agent.media import MediaStore
from emu_agent.tools.base import ToolContext
from emu_agent.tools.fetch import AddressPolicy, FetchImage, URLRefusedError, refusal_reason
from emu_agent.tools.inputs import BUILTIN_SPECS


def encoded(fmt: str, size: tuple[int, int] = (24, 16)) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


PNG = encoded("PNG")
JPEG = encoded("JPEG")


class Handler(BaseHTTPRequestHandler):
    """Routes of the test server; every request is recorded on the server as (path, Host header)."""

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def send(self, body: bytes, content_type: str = "image/png", length: bool = True, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        self.server.seen.append((url.path, self.headers.get("Host")))  # type: ignore[attr-defined]
        query = parse_qs(url.query)
        routes = {
            "/img.png": lambda: self.send(PNG),
            "/img.jpg": lambda: self.send(JPEG, "image/jpeg"),
            "/wrong-header": lambda: self.send(PNG, "text/plain"),
            "/page": lambda: self.send(b"<html><body>not an image</body></html>", "image/png"),
            "/big": lambda: self.send(PNG + b"\0" * 5000),
            "/big-stream": self.big_stream,
            "/slow": self.slow,
            "/drip": self.drip,
            "/empty": lambda: self.send(b""),
            "/missing": lambda: self.send(b"nope", "text/plain", status=404),
            "/loop": lambda: self.redirect("/loop"),
            "/redirect": lambda: self.redirect(query["to"][0]),
        }
        routes.get(url.path, lambda: self.send(b"?", "text/plain", status=404))()

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def big_stream(self) -> None:  # no Content-Length: the body ends when the connection closes
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Connection", "close")
        self.end_headers()
        for _ in range(50):
            self.wfile.write(b"\0" * 1000)

    def slow(self) -> None:
        time.sleep(1.5)
        self.send(PNG)

    def drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(PNG)))
        self.end_headers()
        for start in range(0, len(PNG), 64):
            self.wfile.write(PNG[start : start + 64])
            self.wfile.flush()
            time.sleep(0.1)


class Server:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.seen = []  # type: ignore[attr-defined]
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def seen(self) -> list[tuple[str, str]]:
        return self.httpd.seen  # type: ignore[attr-defined]

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def context(store: MediaStore) -> ToolContext:
    """No model needed here: fetching only touches the network and the media store."""
    return ToolContext(media_store=store)


@pytest.fixture
def local() -> FetchImage:
    return FetchImage(allow_private=True, timeout=5.0)


# ---------------------------------------------------------------------------------------------- positive cases


def test_fetches_and_stores_an_image(server: Server, local: FetchImage, context: ToolContext) -> None:
    assert local.spec == BUILTIN_SPECS["fetch_image"]
    out = local(url=server.url("/img.png"), context=context)
    [ref] = out.images
    assert (ref.width, ref.height) == (24, 16) and context.media_store.has(ref)
    assert np.array_equal(np.asarray(context.media_store.load_image(ref)), np.asarray(Image.open(io.BytesIO(PNG))))
    assert out.data["content_type"] == "image/png" and out.data["bytes"] == len(PNG)
    jpeg = local(url=server.url("/img.jpg"), context=context)
    assert jpeg.data["content_type"] == "image/jpeg"


def test_content_type_is_sniffed_not_trusted(server: Server, local: FetchImage, context: ToolContext) -> None:
    out = local(url=server.url("/wrong-header"), context=context)
    assert out.data["content_type"] == "image/png" and out.data["declared_content_type"] == "text/plain"
    with pytest.raises(MediaError, match=r"/page returned 38 bytes that are not an image .*said image/png"):
        local(url=server.url("/page"), context=context)


def test_follows_redirects_and_pins_the_checked_address(server: Server, context: ToolContext) -> None:
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return {"images.test": ["127.0.0.1"]}[host]

    tool = FetchImage(allowed_networks=["127.0.0.1/32"], resolver=resolver)
    target = server.url("/img.png", host="images.test")
    out = tool(url=server.url(f"/redirect?to={target}", host="images.test"), context=context)
    assert out.data["redirects"] == [target] and out.data["final_url"] == target
    assert server.seen == [("/redirect", f"images.test:{server.port}"), ("/img.png", f"images.test:{server.port}")]
    assert calls == ["images.test", "images.test"]  # resolved once per connection, connected to what was checked


# ---------------------------------------------------------------------------------------------- refused addresses


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("[::1]", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.5.4", "a private address"),
        ("192.168.0.10", "a private address"),
        ("[fc00::5]", "a private address"),
        ("169.254.10.20", "a link-local address"),
        ("[fe80::1]", "a link-local address"),
        ("224.0.0.251", "a multicast address"),
        ("[ff02::1]", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("0.0.0.0", "an unspecified address"),
        ("100.64.0.1", "a non-global address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("[fd00:ec2::254]", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("[::ffff:127.0.0.1]", "a loopback address (embedded in ::ffff:7f00:1)"),
        ("[64:ff9b::a00:1]", "a private address (embedded in 64:ff9b::a00:1)"),
        ("[2002:c0a8:1::]", "a private address (embedded in 2002:c0a8:1::)"),
    ],
)
def test_refuses_every_internal_address_class(server: Server, context: ToolContext, host: str, reason: str) -> None:
    with pytest.raises(URLRefusedError, match=f"refused to fetch from .*: it is {re.escape(reason)}$"):
        FetchImage(timeout=2.0)(url=f"http://{host}:{server.port}/img.png", context=context)
    assert server.seen == []


def test_refuses_after_dns_resolution(server: Server, context: ToolContext) -> None:
    with pytest.raises(URLRefusedError, match=r"localhost \((127\.0\.0\.1|::1)\): it is a loopback address"):
        FetchImage()(url=server.url("/img.png", host="localhost"), context=context)
    mixed = FetchImage(resolver=lambda host, port: ["93.184.216.34", "10.0.0.7"])  # one bad address is enough
    with pytest.raises(URLRefusedError, match=r"rebind\.test \(10\.0\.0\.7\): it is a private address"):
        mixed(url="http://rebind.test/img.png", context=context)
    assert server.seen == []


def test_metadata_is_refused_even_when_private_is_allowed(context: ToolContext) -> None:
    def never(host: str, port: int) -> list[str]:
        raise AssertionError(f"{host} must be refused before DNS")

    tool = FetchImage(allow_private=True, allowed_networks=["0.0.0.0/0"], resolver=never)
    for url in ("http://metadata.google.internal/computeMetadata/v1/", "http://METADATA.google.internal./x"):
        with pytest.raises(URLRefusedError, match="cloud metadata host"):
            tool(url=url, context=context)
    with pytest.raises(URLRefusedError, match="cloud metadata address"):
        tool(url="http://169.254.169.254/latest/meta-data/", context=context)
    sneaky = FetchImage(allow_private=True, resolver=lambda host, port: ["169.254.169.254"])
    with pytest.raises(URLRefusedError, match=r"innocent\.test \(169\.254\.169\.254\): it is a cloud metadata"):
        sneaky(url="http://innocent.test/", context=context)


@pytest.mark.parametrize(
    "target", ["http://127.0.0.2:{port}/img.png", "http://10.9.8.7/x.png", "http://169.254.169.254/"]
)
def test_refuses_a_redirect_to_an_internal_address(server: Server, context: ToolContext, target: str) -> None:
    tool = FetchImage(allowed_networks=["127.0.0.1/32"])  # only the test server's own address is trusted
    target = target.format(port=server.port)
    with pytest.raises(URLRefusedError, match="refused to fetch from"):
        tool(url=server.url(f"/redirect?to={target}"), context=context)
    assert [path for path, _ in server.seen] == ["/redirect"]  # the second hop never connected


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://example.com/", "data:image/png;base64,AAAA"]
)
def test_only_http_and_https(context: ToolContext, url: str) -> None:
    with pytest.raises(URLRefusedError, match="only http and https"):
        FetchImage()(url=url, context=context)


def test_refusal_reason_accepts_global_addresses() -> None:
    import ipaddress

    for address in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"):
        assert refusal_reason(ipaddress.ip_address(address)) is None
    policy = AddressPolicy(resolver=lambda host, port: ["93.184.216.34"])
    assert policy.resolve("example.test", 80) == ["93.184.216.34"]


# ---------------------------------------------------------------------------------------------- limits


def test_size_limits(server: Server, context: ToolContext) -> None:
    tool = FetchImage(allow_private=True, max_bytes=len(PNG) + 100)
    with pytest.raises(MediaError, match=rf"/big is {len(PNG) + 5000:,} bytes, over the limit of {len(PNG) + 100:,}"):
        tool(url=server.url("/big"), context=context)
    with pytest.raises(MediaError, match=r"/big-stream sent more than the limit of .* bytes; stopped reading"):
        tool(url=server.url("/big-stream"), context=context)
    with pytest.raises(MediaError, match="returned an empty body"):
        tool(url=server.url("/empty"), context=context)


def test_time_limits(server: Server, context: ToolContext) -> None:
    tool = FetchImage(allow_private=True, timeout=0.5)
    start = time.monotonic()
    with pytest.raises(ToolError, match=r"fetching http://127\.0\.0\.1:\d+/slow timed out after 0\.5 s"):
        tool(url=server.url("/slow"), context=context)
    assert time.monotonic() - start < 1.4
    with pytest.raises(ToolError, match="/drip timed out"):  # each read is quick; the whole fetch is not
        tool(url=server.url("/drip"), context=context)


def test_redirect_loops_and_http_errors(server: Server, local: FetchImage, context: ToolContext) -> None:
    with pytest.raises(ToolError, match="redirected more than 5 times"):
        local(url=server.url("/loop"), context=context)
    with pytest.raises(ToolError, match="answered HTTP 404"):
        local(url=server.url("/missing"), context=context)
    with pytest.raises(ToolError, match="can't resolve the host"):
        FetchImage(resolver=lambda h, p: (_ for _ in ()).throw(OSError("no such host")))(
            url="http://nowhere.test/x.png", context=context
        )


# ---------------------------------------------------------------------------------------------- https


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=images.test", "-addext", "subjectAltName=DNS:images.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def test_https_uses_the_host_name_for_sni_and_certificate_while_pinned(
    tls_files: tuple[Path, Path], context: ToolContext
) -> None:
    key, cert = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = Server(tls=server_context)
    try:
        trust = ssl.create_default_context(cafile=str(cert))
        tool = FetchImage(
            allowed_networks=["127.0.0.1/32"], resolver=lambda host, port: ["127.0.0.1"], verify=trust, timeout=5.0
        )
        out = tool(url=server.url("/img.png", host="images.test", scheme="https"), context=context)
        assert out.images and names == ["images.test"]
        assert server.seen == [("/img.png", f"images.test:{server.port}")]
        wrong = FetchImage(allowed_networks=["127.0.0.1/32"], resolver=lambda h, p: ["127.0.0.1"], verify=trust)
        with pytest.raises(ToolError, match="failed: ConnectError"):  # certificate is for images.test, not other
            wrong(url=server.url("/img.png", host="other.test", scheme="https"), context=context)
    finally:
        server.close()
