"""The OpenAPI schema covers every route with the bodies the routes really validate, and the docs page works."""

import io

import pytest
import yaml
from django.core.management import call_command

from accounts.api import schemas
from checkpoints.api import schemas as checkpoint_schemas
from endpoints.api import schemas as endpoint_schemas
from inferences.api import schemas as inference_schemas
from tests.conftest import PREFIX

ROUTES = {
    "ping": {"get"},
    "roles": {"get", "post", "delete"},
    "users": {"get", "post", "delete"},
    "auth/token": {"post"},
    "checkpoints": {"get", "post", "delete"},
    "checkpoints/{checkpoint_id}": {"put"},
    "endpoints": {"get", "post", "delete"},
    "inferences": {"get", "post", "delete"},
    "inferences/{job_id}": {"get"},
    "inferences/{job_id}/start": {"put"},
    "inferences/{job_id}/cancel": {"put"},
}


@pytest.fixture(scope="module")
def spec():
    out = io.StringIO()
    # --fail-on-warn: a route the generator cannot describe fails the suite.
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    return yaml.safe_load(out.getvalue())


def test_every_route_and_method_is_documented(spec):
    documented = {path: set(methods) - {"parameters"} for path, methods in spec["paths"].items()}
    assert documented == {PREFIX + route: methods for route, methods in ROUTES.items()}


@pytest.mark.parametrize(
    ("route", "method", "schema"),
    [
        ("roles", "post", schemas.ROLE_CREATE),
        ("roles", "delete", schemas.ROLE_DELETE),
        ("users", "post", schemas.USER_CREATE),
        ("users", "delete", schemas.USER_DELETE),
        ("auth/token", "post", schemas.TOKEN_CREATE),
        ("checkpoints", "post", checkpoint_schemas.CHECKPOINT_CREATE),
        ("checkpoints", "delete", checkpoint_schemas.CHECKPOINT_DELETE),
        ("checkpoints/{checkpoint_id}", "put", checkpoint_schemas.CHECKPOINT_UPDATE),
        ("endpoints", "post", endpoint_schemas.ENDPOINT_CREATE),
        ("endpoints", "delete", endpoint_schemas.ENDPOINT_DELETE),
        ("inferences", "post", inference_schemas.INFERENCE_CREATE),
        ("inferences", "delete", inference_schemas.INFERENCE_DELETE),
    ],
)
def test_request_bodies_are_the_validated_schemas(spec, route, method, schema):
    documented = spec["paths"][PREFIX + route][method]["requestBody"]["content"]["application/json"]["schema"]
    assert documented == schema


def test_responses_show_the_envelope(spec):
    ok = spec["paths"][PREFIX + "roles"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(ok["properties"]) == {"statusCode", "message", "data"}
    assert "roles" in ok["properties"]["data"]["properties"]
    unauthorized = spec["paths"][PREFIX + "roles"]["get"]["responses"]["401"]["content"]["application/json"]
    assert unauthorized["schema"]["required"] == ["message"]


def test_security_schemes_are_described(spec):
    assert {"ApiToken", "EsdUsername", "Session", "ApiKey"} <= set(spec["components"]["securitySchemes"])


@pytest.mark.django_db
def test_schema_and_docs_are_served(client):
    schema = client.get(PREFIX + "openapi.json", headers={"Accept": "application/json"})
    assert schema.status_code == 200
    assert PREFIX + "roles" in schema.json()["paths"]
    docs = client.get(PREFIX + "docs")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    assert b"http" not in docs.content.split(b"swagger-ui-bundle.js")[0].rsplit(b'src="', 1)[-1]  # served locally
