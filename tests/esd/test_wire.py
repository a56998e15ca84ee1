"""The wire details every ESD route shares (esd-behaviour.md §1)."""

import http.client
import json
from urllib.parse import urlsplit

import pytest

from tests.conftest import PREFIX

pytestmark = pytest.mark.django_db


def test_ping_answers_pong_with_the_api_version(esd):
    response = esd.call("GET", "ping")
    assert response.status == 200
    assert response.body == {"statusCode": 200, "message": "pong"}
    assert response.headers["x-api-version"] == "1.4.0"
    assert response.headers["Content-Type"] == "application/json"


def test_the_server_says_its_version_on_the_api_and_on_metrics(esd, client):
    # Issue 29.10: an upgrade shows (CHANGELOG.md says what each version changed); pyproject.toml is the one record
    import tomllib
    from pathlib import Path

    version = tomllib.loads(Path("pyproject.toml").read_text())["project"]["version"]
    assert esd.call("GET", "ping").headers["x-esd-server-version"] == version
    metrics = client.get("/metrics").content.decode()
    assert f'esd_server_info{{esd_api_version="1.4.0",version="{version}"}} 1.0' in metrics
    assert f"## {version}" in Path("CHANGELOG.md").read_text()


def test_routes_match_with_and_without_a_trailing_slash_and_never_redirect(esd, admin_user, token_for):
    token = token_for(admin_user)
    assert esd.call("GET", "roles", token=token).status == 200
    assert esd.call("GET", "roles/", token=token).status == 200
    assert esd.call("GET", "ping/").status == 200


def test_unknown_route_is_a_404_in_the_envelope(esd):
    response = esd.call("GET", "no-such-thing")
    assert response.status == 404
    assert response.body["statusCode"] == 404
    assert "no route GET" in response.body["message"]


def test_unsupported_method_is_a_405_in_the_envelope(esd, admin_user, token_for):
    response = esd.call("PATCH", "roles", {}, token=token_for(admin_user))
    assert response.status == 405
    assert response.body["statusCode"] == 405
    assert "PATCH" in response.body["message"]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{not json", "Invalid request body: not JSON"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "Invalid request body"),
        (b'"just a string"', "instance type (string) does not match any allowed primitive type"),
    ],
)
def test_unparsable_or_non_object_bodies_are_400_never_500(esd, admin_user, token_for, raw, fragment):
    response = esd.call("DELETE", "users", raw=raw, token=token_for(admin_user))
    assert response.status == 400
    assert response.body["statusCode"] == 400
    assert fragment in response.body["message"]


def test_huge_bodies_are_refused_before_parsing(esd, admin_user, token_for, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = {"user_name_list": ["x" * 60] * 100}
    response = esd.call("DELETE", "users", body, token=token_for(admin_user))
    assert response.status == 413
    assert response.body == {"statusCode": 413, "message": "request body is too large"}


def test_empty_body_is_validated_as_an_empty_object(esd, admin_user, token_for):
    response = esd.call("DELETE", "roles", token=token_for(admin_user))
    assert response.status == 400
    assert response.body == {
        "statusCode": 400,
        "message": '[object has missing required properties (["role_name_list"])]',
    }


def test_cors_allows_any_origin_without_credentials(esd):
    response = esd.call("GET", "ping", headers={"Origin": "https://webui.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_cors_preflight_needs_no_authentication(esd, settings):
    settings.ESD_API_KEY = "k" * 20
    response = esd.call(
        "OPTIONS",
        "users",
        headers={
            "Origin": "https://webui.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, authorization, content-type",
        },
    )
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    allowed = response.headers["Access-Control-Allow-Headers"]
    for header in ("x-api-key", "authorization", "content-type", "x-amz-date"):
        assert header in allowed


def test_plain_options_needs_no_authentication(esd, settings):
    settings.ESD_API_KEY = "k" * 20
    response = esd.call("OPTIONS", "users")
    assert response.status == 200
    assert "POST" in response.headers["Allow"]


def test_admin_is_not_under_cors(client):
    response = client.get("/admin/login/", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.django_db(transaction=True)
def test_json_bodies_without_content_type_over_real_http(live_server, admin_user, token_for):
    """ESD's test suite sends JSON without a Content-Type; a real HTTP request proves no header is needed."""
    token = token_for(admin_user)
    host = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=10)
    body = json.dumps({"role_name": "byoc", "creator": "admin", "permissions": ["sagemaker_endpoint:all"]})
    connection.putrequest("POST", PREFIX + "roles", skip_accept_encoding=True)
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body.encode())
    response = connection.getresponse()
    assert response.status == 201, response.read()
    assert json.loads(response.read()) == {"statusCode": 201, "message": "role created"}
    assert response.getheader("x-api-version") == "1.4.0"
    connection.close()
