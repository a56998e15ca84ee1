"""Outbound HTTP that cannot be turned against the server's own network (architecture.md §5): checkpoint downloads
by URL and webhooks go through here.

Only http and https; the host's every address must be public (not private, loopback, link-local, multicast,
reserved or a cloud metadata address) unless ESD_DOWNLOAD_ALLOW_HOSTS names the host; the connection goes to the
address that was checked (no second DNS answer can swap it), and every redirect is checked the same way.
"""

import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

import urllib3
from django.conf import settings

MAX_REDIRECTS = 5
REDIRECTS = {301, 302, 303, 307, 308}
USER_AGENT = "esd-server/1.4"


class RequestRefused(Exception):
    """A permanent failure: retrying will not help (refused address, HTTP 4xx, not a model file, too large)."""


class TransientRequestError(Exception):
    """A failure worth retrying: connection errors, timeouts, HTTP 5xx or 429."""


@dataclass
class Fetched:
    response: urllib3.BaseHTTPResponse
    url: str
    length: int | None

    def filename(self) -> str:
        """The server's file name: Content-Disposition first, else the last part of the final URL's path."""
        return disposition_filename(self.response.headers.get("Content-Disposition", "")) or url_filename(self.url)

    def close(self) -> None:
        self.response.release_conn()


def url_filename(url: str) -> str:
    return unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])


def disposition_filename(header: str) -> str:
    match = re.search(r"filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)", header)
    if match:
        return unquote(match.group(1).strip().strip('"')).rsplit("/", 1)[-1]
    match = re.search(r'filename\s*=\s*"?([^";]+)"?', header)
    return match.group(1).strip().rsplit("/", 1)[-1] if match else ""


def _refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for label, test in (
        ("loopback", address.is_loopback),
        ("link-local (cloud metadata)", address.is_link_local),
        ("reserved", address.is_reserved or address.is_unspecified),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
    ):
        if test:
            return label
    return None if address.is_global else "not public"


def _allowed_host(host: str) -> bool:
    return host.lower().strip("[]") in {name.lower().strip("[]") for name in settings.ESD_DOWNLOAD_ALLOW_HOSTS}


def resolve_checked(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, address to connect to) for a URL that may be fetched; RequestRefused otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise RequestRefused(f"only http and https URLs can be downloaded, not {parts.scheme or 'no scheme'}")
    if parts.username or parts.password:
        raise RequestRefused("URLs with a user name or password are not accepted")
    host = parts.hostname
    if not host:
        raise RequestRefused("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise RequestRefused("the URL's port is not valid") from exc
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RequestRefused(f"the host {host} cannot be resolved") from exc
    addresses = [str(answer[4][0]) for answer in answers]
    if not _allowed_host(host):
        for address in addresses:
            reason = _refused_address(ipaddress.ip_address(address.split("%", 1)[0]))
            if reason:
                raise RequestRefused(
                    f"the host {host} resolves to a {reason} address ({address}); downloads may only reach public "
                    "addresses (an operator can allow a host with ESD_DOWNLOAD_ALLOW_HOSTS)"
                )
    return parts.scheme, host, port, addresses[0]


def _request(
    url: str,
    timeout: float,
    *,
    method: str = "GET",
    body: bytes | None = None,
    extra_headers: dict[str, str] | None = None,
) -> urllib3.BaseHTTPResponse:
    scheme, host, port, address = resolve_checked(url)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if scheme == "https" else 80
    headers = {"Host": host if port == default_port else f"{host}:{port}", "User-Agent": USER_AGENT}
    headers.update(extra_headers or {})
    pool_timeout = urllib3.Timeout(connect=min(timeout, 15.0), read=timeout)
    pool: urllib3.HTTPConnectionPool
    if scheme == "https":
        # Connect to the checked address, but verify the certificate of (and send SNI for) the host name.
        pool = urllib3.HTTPSConnectionPool(
            address, port, server_hostname=host, assert_hostname=host, ssl_context=ssl.create_default_context(),
            timeout=pool_timeout, retries=False,
        )  # fmt: skip
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=pool_timeout, retries=False)
    try:
        return pool.urlopen(
            method, target, body=body, headers=headers, redirect=False, preload_content=False, retries=False
        )
    except urllib3.exceptions.SSLError as exc:
        raise RequestRefused(f"TLS failed with {host}: {exc}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise TransientRequestError(f"could not reach {host}: {exc}") from exc


def post_json(url: str, body: bytes, headers: dict[str, str], timeout: float = 10.0) -> int:
    """POST a JSON body to a checked address (the same SSRF rules as downloads; no redirects). The status code."""
    response = _request(
        url, timeout, method="POST", body=body, extra_headers={"Content-Type": "application/json", **headers}
    )
    try:
        response.drain_conn()
        return response.status
    finally:
        response.release_conn()


def open_url(url: str, *, follow_redirects: bool = True, timeout: float | None = None) -> Fetched:
    """GET `url` (checking it and every redirect), ready to stream. Raises RequestRefused or
    TransientRequestError."""
    timeout = timeout or settings.ESD_DOWNLOAD_TIMEOUT
    for _ in range(MAX_REDIRECTS + 1):
        response = _request(url, timeout)
        if response.status in REDIRECTS and follow_redirects:
            location = response.headers.get("Location")
            response.release_conn()
            if not location:
                raise RequestRefused(f"HTTP {response.status} redirect without a Location")
            url = urljoin(url, location)
            continue
        if response.status == 429 or response.status >= 500:
            response.release_conn()
            raise TransientRequestError(f"the server answered HTTP {response.status}")
        if response.status >= 400:
            response.release_conn()
            raise RequestRefused(f"the server answered HTTP {response.status} for {url}")
        if follow_redirects and response.headers.get("Content-Type", "").lower().startswith("text/html"):
            response.release_conn()
            raise RequestRefused("the URL returned an HTML page, not a model file: use the file's direct download link")
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        return Fetched(response=response, url=url, length=length)
    raise RequestRefused(f"more than {MAX_REDIRECTS} redirects")
