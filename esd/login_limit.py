"""Rate limit on the admin's login form (the API's `auth/token` has DRF's throttle): password guessing gets 429.

Counted per client address (esd.client_address: X-Forwarded-For only from ESD_TRUSTED_PROXIES) in the cache (`ESD_CACHE_URL`; use Redis when several web processes serve), over
the window of `ESD_LOGIN_RATE` ("10/min" by default, DRF's notation). Only POSTs to the login page count.
"""

from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from rest_framework.throttling import SimpleRateThrottle

from .client_address import client_address


class LoginRateLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path == reverse("admin:login"):
            allowed, window = SimpleRateThrottle.parse_rate(None, settings.ESD_LOGIN_RATE)  # type: ignore[arg-type]
            key = f"esd-login:{client_address(request)}"
            cache.add(key, 0, timeout=window)
            if cache.incr(key) > (allowed or 0):
                return HttpResponse(
                    "Too many login attempts from this address; wait a minute and try again.",
                    status=429,
                    content_type="text/plain",
                    headers={"Retry-After": str(window)},
                )
        return self.get_response(request)
