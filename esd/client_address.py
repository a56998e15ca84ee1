"""The address of the client behind a request, for per-client limits (admin login, `POST auth/token`).

`X-Forwarded-For` is anyone's to write: read as is, a password guesser rotates it and gets a fresh bucket per guess.
It is read only when the peer is one of ESD_TRUSTED_PROXIES (addresses or networks), from the right, skipping the
trusted hops: the first address no trusted proxy stands for is the client. Without trusted proxies the peer
(`REMOTE_ADDR`) is the client; behind an untrusted proxy that is the proxy, one bucket for everyone, which is why a
deployment behind one sets ESD_TRUSTED_PROXIES (docs/deployment.md).
"""

import ipaddress
from functools import cache

from django.conf import settings
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@cache
def _trusted(spelled: tuple[str, ...]) -> tuple[Network, ...]:
    # settings.py has refused what does not parse
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spelled if item.strip())


def _is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def client_address(request: HttpRequest) -> str:
    peer = request.META.get("REMOTE_ADDR", "")
    networks = _trusted(tuple(settings.ESD_TRUSTED_PROXIES))
    if not networks or not _is_trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return hop
    return hops[0] if hops else peer


class ClientScopedRateThrottle(ScopedRateThrottle):
    """DRF's scoped throttle, keyed on client_address (DRF's own reads any X-Forwarded-For as the client)."""

    def get_ident(self, request: Request) -> str:
        return client_address(request._request)
