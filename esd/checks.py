"""`manage.py check --deploy` warnings of this project's own settings."""

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def esd_mode_without_key(app_configs: Any, **kwargs: Any) -> list[Warning]:
    """esd-1.4 mode trusts whoever holds the API key; with no key set, that is anybody who can reach the server."""
    if settings.ESD_AUTH_MODE != "esd-1.4" or settings.ESD_API_KEY:
        return []
    return [
        Warning(
            "ESD_AUTH_MODE is esd-1.4 but ESD_API_KEY is not set: esd-1.4 mode trusts the user a request names "
            "(username header, bearer, `creator`), so without a key anyone who reaches the server acts as anyone.",
            hint="Set ESD_API_KEY to a long random value and give it to the ESD clients (docs/api.md).",
            id="esd.W001",
        )
    ]
