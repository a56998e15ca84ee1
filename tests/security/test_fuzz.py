"""Fuzzing the API from its own OpenAPI schema (schemathesis), with a valid token and with none.

Every route and method; each generated request must get no 5xx, a documented status code, a JSON body where JSON
is documented, and a body that matches the documented schema. (Schema-valid requests may still be refused with a
4xx: a role that does not exist, say; that is not a failure here.)

`make test` runs a short pass (ESD_FUZZ_EXAMPLES, default 15 per route and credential); `bench/fuzz_api.py` runs
the long one and prints the request count. Requests are counted per run in tests/security/artifacts/fuzz.json.
"""

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from esd.wsgi import application

EXAMPLES = int(os.environ.get("ESD_FUZZ_EXAMPLES", "15"))
# `make test` replays the same examples every run (a failure is reproducible); the long run explores anew.
RANDOM = bool(os.environ.get("ESD_FUZZ_RANDOM"))
SUMMARY = Path(__file__).resolve().parent / "artifacts" / "fuzz.json"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = application
counts: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def summary():
    yield
    SUMMARY.parent.mkdir(exist_ok=True)
    SUMMARY.write_text(json.dumps(dict(counts), indent=2, sort_keys=True) + "\n")


@pytest.fixture
def wsgi_calls(db):
    """The app is called as WSGI, not through Django's test client: keep the test's connection open as the client
    would (Django closes connections when a request finishes)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(wsgi_calls, admin_user, token_for):
    return token_for(admin_user)


def check(case, headers: dict[str, str]) -> None:
    response = case.call_and_validate(headers=headers, checks=CHECKS)
    counts["requests"] += 1
    counts[f"status {response.status_code // 100}xx"] += 1


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=not RANDOM)
def test_with_a_valid_token(case, token):
    check(case, {"Authorization": f"Bearer {token}"})


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=not RANDOM)
def test_without_credentials(case, wsgi_calls):
    check(case, {})
