"""``fetch_image``: download an image over http(s) with httpx, safely, into the media store.

Server-side request forgery is the danger: a URL chosen by a model (or by text inside an image) must not reach
the machine's own services, the local network or a cloud metadata endpoint. The rules:

- **Schemes**: ``http`` and ``https`` only.
- **Addresses**: loopback, private, link-local, multicast, unspecified, reserved, shared (CGNAT) and every other
  non-global address is refused, including IPv4 addresses embedded in IPv6 (``::ffff:a.b.c.d``, NAT64
  ``64:ff9b::/96``, 6to4 ``2002::/16``, Teredo). Cloud metadata endpoints (``169.254.169.254``,
  ``169.254.170.2``, ``fd00:ec2::254``, ``100.100.100.200``, ``metadata.google.internal``...) are refused
  always, even with ``allow_private=True``.
- **Checked after DNS resolution, on every connection**: the check runs inside the transport's
  ``connect_tcp``, which resolves the host itself, refuses the whole name if *any* of its addresses is refused,
  and connects to the checked address. The connection is thus pinned to the address that was checked (no DNS
  rebinding window between check and connect). TLS still uses the URL's host name for SNI and certificate
  checks, and the ``Host`` header is the URL's, because httpcore starts TLS on the pinned socket with the
  origin's host name.
- **Redirects** are followed by hand, at most ``max_redirects``; every hop is checked the same way (scheme, then
  addresses on connect).
- **No proxies from the environment** (``trust_env=False``): a proxy would resolve names itself, beyond the check.
- **Limits**: ``max_bytes`` (the declared ``Content-Length`` is checked first, then the stream is cut off at the
  limit, counting decoded bytes) and ``timeout`` seconds for the whole fetch, redirects included.
- **Content type is sniffed** from the bytes with Pillow (PNG, JPEG, GIF, WebP, BMP, TIFF); the server's header
  is reported but not trusted. The image is then cleaned and stored by the media store (which applies its own
  pixel-count guard).

Residual risks: DNS resolution itself is not bounded by ``timeout`` (``getaddrinfo`` has no timeout; the agent's
tool timeout still applies), and a host that is allowed may redirect to another allowed host that serves
something unexpected (it is still only stored if it is an image). ``allow_private=True`` or ``allowed_networks``
opt out of the address rules for trusted setups (and for tests against a local server).
"""

from __future__ import annotations

import io
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from emu_agent.errors import MediaError, MissingDependencyError, ToolError

try:
    import httpcore
    import httpx
except ImportError as exc:  # pragma: no cover - httpx is installed with the package's extras
    raise MissingDependencyError("httpx", "httpx", "fetch_image") from exc
from emu_agent.tools.base import Tool, ToolContext, ToolOutput
from emu_agent.tools.inputs import FetchImageInput, builtin_spec

__all__ = [
    "METADATA_ADDRESSES",
    "METADATA_HOSTS",
    "AddressPolicy",
    "FetchImage",
    "URLRefusedError",
    "refusal_reason",
    "sniff_image_type",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

METADATA_HOSTS: frozenset[str] = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.packet.net",
    }
)
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS resolver
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::253",
        "100.100.100.200",  # Alibaba Cloud
    )
)
SNIFFED_FORMATS: dict[str, str] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_SPEC = builtin_spec("fetch_image")


class URLRefusedError(ToolError):
    """The URL, or an address its host resolves to, is not allowed (scheme, private address, metadata...)."""


# ---------------------------------------------------------------------------------------------- address policy


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal_reason(ip: IPAddress) -> str | None:
    """Why an address is refused ("a loopback address", ...), or None if it is a global unicast address."""
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    inner = _embedded_ipv4(ip)
    if inner is not None:
        reason = refusal_reason(inner)
        return f"{reason} (embedded in {ip})" if reason else None
    checks = (
        (ip.is_multicast, "a multicast address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (not ip.is_global, "a non-global address"),
    )
    return next((reason for flagged, reason in checks if flagged), None)


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class AddressPolicy:
    """Which hosts and addresses a fetch may connect to; resolves names and checks every address.

    Args:
        allow_private: allow every address class except cloud metadata endpoints.
        allowed_networks: networks (e.g. ``"127.0.0.1/32"``) allowed despite the rules, metadata excepted.
        resolver: ``resolver(host, port) -> [ip, ...]`` (default: ``socket.getaddrinfo``); tests inject one.
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        allowed_networks: Iterable[str] = (),
        resolver: Resolver | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.allowed_networks = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        self.resolver = resolver or _system_resolver

    def check_address(self, ip: IPAddress, host: str) -> None:
        """Raise :class:`URLRefusedError` if ``ip`` (an address of ``host``) may not be connected to."""
        reason = refusal_reason(ip)
        if reason is None:
            return
        metadata = "cloud metadata" in reason
        allowed = self.allow_private or any(ip in net for net in self.allowed_networks)
        if metadata or not allowed:
            shown = host if host == str(ip) else f"{host} ({ip})"
            raise URLRefusedError(f"refused to fetch from {shown}: it is {reason}")

    def resolve(self, host: str, port: int) -> list[str]:
        """The checked addresses of ``host``, in resolver order. Refuses the host if any address is refused."""
        name = host.strip("[]").rstrip(".").lower()
        if name in METADATA_HOSTS:
            raise URLRefusedError(f"refused to fetch from {host}: it is a cloud metadata host")
        try:
            literal = ipaddress.ip_address(name.split("%", 1)[0])
        except ValueError:
            literal = None
        if literal is not None:
            self.check_address(literal, host)
            return [str(literal)]
        try:
            found = list(dict.fromkeys(self.resolver(name, port)))
        except (OSError, UnicodeError) as exc:
            raise ToolError(f"can't resolve the host {host!r}: {exc}") from exc
        if not found:
            raise ToolError(f"the host {host!r} has no addresses")
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in found]
        for ip in addresses:
            self.check_address(ip, host)
        return [str(ip) for ip in addresses]


class _PinnedBackend(httpcore.NetworkBackend):
    """httpcore network backend that resolves and checks the host, then connects to the checked address."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.SyncBackend()
        self.connections: list[tuple[str, str, int]] = []  # (host, address, port), for tests and logs

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in self.policy.resolve(host, port):
            try:
                stream = self.inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            self.connections.append((host, address, port))
            return stream
        raise error or ToolError(f"can't connect to {host}:{port}")

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise URLRefusedError("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _PinnedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connection pool uses :class:`_PinnedBackend` (and no proxy)."""

    def __init__(self, policy: AddressPolicy, *, ssl_context: ssl.SSLContext) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        self.backend = _PinnedBackend(policy)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=4,
            max_keepalive_connections=0,
            network_backend=self.backend,
        )


# ---------------------------------------------------------------------------------------------- the tool


def sniff_image_type(data: bytes) -> str | None:
    """The mime type of ``data`` judged from its bytes by Pillow, or None if it is not an accepted image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return SNIFFED_FORMATS.get(str(image.format))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


class FetchImage(Tool):
    """``fetch_image``: download an image over http(s) into the media store, refusing internal addresses.

    Args:
        allow_private: allow private, loopback, link-local... addresses (never cloud metadata endpoints).
        allowed_networks: networks allowed despite the address rules, e.g. ``["10.0.0.0/8"]``.
        max_bytes: largest download accepted.
        timeout: seconds for the whole fetch, redirects included.
        max_redirects: redirects followed at most.
        verify: verify TLS certificates (True), or an ``ssl.SSLContext`` to verify with (e.g. a private CA).
        resolver: ``resolver(host, port) -> [ip, ...]`` instead of the system's DNS (tests).
        user_agent: the ``User-Agent`` header.
    """

    name = "fetch_image"
    description = _SPEC.description
    input_model = FetchImageInput

    def __init__(
        self,
        *,
        allow_private: bool = False,
        allowed_networks: Iterable[str] = (),
        max_bytes: int = 20 * 2**20,
        timeout: float = 20.0,
        max_redirects: int = 5,
        verify: bool | ssl.SSLContext = True,
        resolver: Resolver | None = None,
        user_agent: str = "emu-agent/0.1 (fetch_image)",
    ) -> None:
        self.policy = AddressPolicy(allow_private=allow_private, allowed_networks=allowed_networks, resolver=resolver)
        self.max_bytes = max_bytes
        self.fetch_timeout = timeout
        self.timeout = timeout + 5.0  # the agent's hard limit, a little above the fetch's own
        self.max_redirects = max_redirects
        self.verify = verify
        self._ssl_context: ssl.SSLContext | None = None
        self.headers = {"User-Agent": user_agent, "Accept": "image/*", "Accept-Encoding": "identity"}

    def run(self, arguments: FetchImageInput, context: ToolContext) -> ToolOutput:  # type: ignore[override]
        url = arguments.url.strip()
        data, final_url, declared, hops = self.download(url, context)
        sniffed = sniff_image_type(data)
        if sniffed is None:
            raise MediaError(
                f"{url} returned {len(data):,} bytes that are not an image Pillow can read as "
                f"{'/'.join(SNIFFED_FORMATS)} (the server said {declared or 'no content type'})"
            )
        ref = context.media_store.add_image(data, name=url)
        return ToolOutput(
            images=[ref],  # the image (with its handle) is the result the model reads
            data={
                "summary": f"Fetched a {ref.width}x{ref.height} {sniffed} image from {final_url}",
                "url": url,
                "final_url": final_url,
                "redirects": hops,
                "content_type": sniffed,
                "declared_content_type": declared,
                "bytes": len(data),
                "sha256": ref.sha256,
            },
        )

    def download(self, url: str, context: ToolContext | None = None) -> tuple[bytes, str, str | None, list[str]]:
        """(bytes, final URL, declared content type, redirect hops) of ``url``, every rule applied."""
        deadline = time.monotonic() + self.fetch_timeout
        hops: list[str] = []
        if self._ssl_context is None:  # loading the CA bundle takes a while: once per tool
            self._ssl_context = httpx.create_ssl_context(verify=self.verify)
        transport = _PinnedTransport(self.policy, ssl_context=self._ssl_context)
        with httpx.Client(transport=transport, follow_redirects=False, trust_env=False, headers=self.headers) as client:
            current = _parse_url(url)
            for _ in range(self.max_redirects + 1):
                result = self._get(client, current, deadline, context)
                if isinstance(result, httpx.URL):
                    hops.append(str(result))
                    current = result
                    continue
                data, declared = result
                return data, str(current), declared, hops
        raise ToolError(f"{url} redirected more than {self.max_redirects} times (last to {hops[-1]})")

    def _get(
        self, client: httpx.Client, url: httpx.URL, deadline: float, context: ToolContext | None
    ) -> httpx.URL | tuple[bytes, str | None]:
        """One request: the redirect target, or (body, declared content type)."""
        _check_scheme(url)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ToolError(f"fetching {url} timed out after {self.fetch_timeout} s")
        try:
            with client.stream("GET", url, timeout=httpx.Timeout(remaining)) as response:
                if response.is_redirect:
                    return _parse_url(str(url.join(response.headers["location"])))
                if response.status_code != 200:
                    raise ToolError(f"{url} answered HTTP {response.status_code} {response.reason_phrase}")
                declared = response.headers.get("content-type")
                return self._read(response, url, deadline, context), declared
        except httpx.TimeoutException as exc:
            raise ToolError(f"fetching {url} timed out after {self.fetch_timeout} s") from exc
        except httpx.HTTPError as exc:
            raise ToolError(f"fetching {url} failed: {type(exc).__name__}: {exc}") from exc

    def _read(self, response: httpx.Response, url: httpx.URL, deadline: float, context: ToolContext | None) -> bytes:
        declared_length = response.headers.get("content-length", "")
        if declared_length.isdigit() and int(declared_length) > self.max_bytes:
            raise MediaError(f"{url} is {int(declared_length):,} bytes, over the limit of {self.max_bytes:,} bytes")
        chunks: list[bytes] = []
        total = 0
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > self.max_bytes:
                raise MediaError(f"{url} sent more than the limit of {self.max_bytes:,} bytes; stopped reading")
            if time.monotonic() > deadline:
                raise ToolError(f"fetching {url} timed out after {self.fetch_timeout} s")
            if context is not None:
                context.raise_if_cancelled()
            chunks.append(chunk)
        if not total:
            raise MediaError(f"{url} returned an empty body")
        return b"".join(chunks)


def _parse_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise ToolError(f"{url!r} is not a valid URL: {exc}") from exc
    _check_scheme(parsed)
    return parsed


def _check_scheme(url: httpx.URL) -> None:
    if url.scheme not in ("http", "https"):
        raise URLRefusedError(f"refused to fetch {str(url)!r}: only http and https URLs are allowed")
    if not url.host:
        raise ToolError(f"{str(url)!r} has no host")
