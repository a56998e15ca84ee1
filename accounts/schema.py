"""How the OpenAPI schema describes this app's authentication classes (drf-spectacular extensions).

Imported by AccountsConfig.ready() so the extensions are registered before a schema is generated.
"""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "ApiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "ESD_AUTH_MODE=token: `Authorization: Bearer <API token>` (POST auth/token, the admin, "
            "or `manage.py create_api_token`).",
        }


class EsdUsernameScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.EsdHeaderAuthentication"
    name = "EsdUsername"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "username",
            "description": "ESD_AUTH_MODE=esd-1.4: a `username` header, or `Authorization: Bearer <upper-case hex "
            "of the username>` as ESD 1.4.0 clients send. Trusts every holder of the API key.",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.EsdSessionAuthentication"
    name = "Session"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid", "description": "A logged-in admin session."}
