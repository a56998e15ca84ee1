"""Shared fixtures: users with roles, API tokens, and a client that speaks to the ESD routes as clients do."""

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client

from accounts import services
from accounts.models import Role, User
from accounts.roles import IT_OPERATOR

PREFIX = "/" + settings.ESD_API_PREFIX


# Modules that start real processes, HTTP servers or compilations: most of the suite's minutes. `make test-fast`
# leaves them (and the browser tests, marked e2e) out; `make test` and CI run everything.
SLOW_MODULES = {
    "checkpoints/test_download.py",
    "checkpoints/test_store_failures.py",
    "endpoints/test_processes.py",
    "esd/test_moving_to_a_fleet.py",
    "esd/test_walkthrough.py",
    "inferences/test_api.py",
    "inferences/test_compile.py",
    "inferences/test_compile_cache.py",
    "inferences/test_recovery.py",
    "security/test_fuzz.py",
    "test_bench_smoke.py",
}
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.relative_to(TESTS).as_posix()
        if module.startswith("e2e/"):
            item.add_marker(pytest.mark.e2e)
        elif module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def esd_hex(username: str) -> str:
    """ESD 1.4.0's bearer: the upper-case base16 of the username."""
    return username.encode().hex().upper()


@dataclass
class EsdResponse:
    status: int
    body: Any
    headers: Any
    raw: bytes


class EsdClient:
    """Calls ESD routes with a raw JSON body, the way ESD's own clients do."""

    def __init__(self) -> None:
        self.client = Client()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        query: dict[str, Any] | None = None,
    ) -> EsdResponse:
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        response = self.client.generic(
            method,
            PREFIX + path,
            data=data,
            content_type="application/json",
            headers=all_headers,
            QUERY_STRING="&".join(f"{key}={value}" for key, value in (query or {}).items()),
        )
        content = response.content
        parsed = json.loads(content) if content else None
        return EsdResponse(response.status_code, parsed, response.headers, content)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    """Rate-limit counters live in the cache; each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def esd() -> EsdClient:
    return EsdClient()


def _account(username: str) -> User | None:
    """The creator named by a test: the account with that name, if the test made one (creators are links)."""
    return User.objects.filter(username=username).first()


@pytest.fixture
def make_role(db: Any) -> Callable[..., Role]:
    def make(name: str, permissions: list[str], creator: str = "admin") -> Role:
        role = Role.objects.create(group=Group.objects.create(name=name), created_by=_account(creator))
        services.role_set_permissions(role, permissions)
        return role

    return make


@pytest.fixture
def make_user(db: Any, make_role: Callable[..., Role]) -> Callable[..., User]:
    """A user holding a new role made of `permissions`, and/or the existing `roles`."""

    def make(
        username: str,
        permissions: list[str] | None = None,
        roles: list[str] | None = None,
        creator: str = "admin",
        password: str = "pw-12345",
        **fields: Any,
    ) -> User:
        user = User.objects.create_user(username=username, password=password, created_by=_account(creator), **fields)
        granted = [make_role(f"role-{username}", permissions)] if permissions else []
        granted += [Role.objects.select_related("group").get(group__name=name) for name in roles or []]
        services.user_set_roles(user=user, roles=granted)
        return user

    return make


@pytest.fixture
def admin_user(make_user: Callable[..., User]) -> User:
    """An administrator: IT Operator, staff and superuser, as esd_bootstrap and POST /users {initial} make one."""
    return services.admin_ensure(username="admin", password="admin-pw-1")


@pytest.fixture
def token_for(db: Any) -> Callable[[User], str]:
    def make(user: User) -> str:
        return services.api_token_create(user=user)[1]

    return make


@pytest.fixture
def it_operator(make_user: Callable[..., User]) -> User:
    return make_user("operator", roles=[IT_OPERATOR])


@pytest.fixture
def esd_mode(settings: Any) -> Any:
    settings.ESD_AUTH_MODE = "esd-1.4"
    return settings


# --- storage and network fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Any:
    """An S3-compatible HTTP server on loopback (moto's server mode)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def use_s3(settings: Any, endpoint: str) -> None:
    settings.ESD_STORAGE = "s3"
    settings.AWS_STORAGE_BUCKET_NAME = "esd-test"
    settings.AWS_S3_ENDPOINT_URL = endpoint
    settings.ESD_S3_PUBLIC_ENDPOINT_URL = endpoint
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_ACCESS_KEY_ID = "testing"
    settings.AWS_SECRET_ACCESS_KEY = "testing"
    from esd.storage import get_storage

    storage = get_storage()
    storage.ensure_bucket()
    for key in storage.list_keys(""):
        storage.delete(key)
    for upload in storage.client.list_multipart_uploads(Bucket=storage.bucket).get("Uploads", []):
        storage.multipart_abort(upload["Key"], upload["UploadId"])


@pytest.fixture(params=["local", "s3"])
def store(request: Any, settings: Any, tmp_path: Any) -> Any:
    """Each test using it runs against the local store and against the S3 server."""
    from esd.storage import get_storage

    if request.param == "s3":
        use_s3(settings, request.getfixturevalue("moto_server"))
    else:
        settings.ESD_STORAGE = "local"
        settings.ESD_STORAGE_ROOT = tmp_path / "storage"
        # Local "presigned" URLs point at this server; a real one answers them.
        settings.ESD_PUBLIC_URL = request.getfixturevalue("live_server").url
    return get_storage()


@pytest.fixture
def tmpfs(tmp_path: Any) -> Any:
    """mount(size) -> a fresh filesystem of that size ("2m"), unmounted after the test: a disk that really fills
    up. Mounting needs root, as this project's CI runs; elsewhere the test fails saying so."""
    import subprocess

    mounted: list[Any] = []

    def mount(size: str) -> Any:
        target = tmp_path / f"tmpfs-{len(mounted)}"
        target.mkdir()
        command = ["/usr/bin/mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)]
        done = subprocess.run(command, capture_output=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"this test mounts a {size} tmpfs and must run as root: {done.stderr.decode()}")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["/usr/bin/umount", "--lazy", str(target)], check=True)


@pytest.fixture
def file_server() -> Any:
    from tests.helpers import FileServer

    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def allow_loopback(settings: Any) -> Any:
    """Downloads may reach the tests' own loopback server (as an operator would allow an internal host)."""
    settings.ESD_DOWNLOAD_ALLOW_HOSTS = ["127.0.0.1"]
    return settings


@pytest.fixture
def dramatiq_worker(transactional_db: Any) -> Any:
    """A real dramatiq worker on the configured broker (the in-process one, or Redis on CI)."""
    import dramatiq

    broker = dramatiq.get_broker()
    broker.flush_all()
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    yield worker
    stop_worker(worker)


def stop_worker(worker: Any) -> None:
    """Stop a dramatiq worker and detach it from its broker.

    dramatiq leaves a stopped worker's middleware on the broker, which then keeps consuming newly declared queues
    into a worker that no longer runs; messages would vanish in the next test.
    """
    worker.stop()
    broker = worker.broker
    broker.middleware[:] = [
        middleware for middleware in broker.middleware if getattr(middleware, "worker", None) is not worker
    ]


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until `condition()` is truthy; fail with a clear message otherwise."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


# --- brokers -------------------------------------------------------------------------------------------------------

TEST_REDIS_URL = os.environ.get("ESD_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def redis_broker(url: str = TEST_REDIS_URL) -> Any:
    """A dramatiq Redis broker of the tests' own (a database number apart from the configured broker's)."""
    from django_dramatiq.middleware import DbConnectionsMiddleware
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.middleware import AgeLimit, Callbacks, Retries, TimeLimit

    middleware = [AgeLimit(), TimeLimit(), Callbacks(), Retries(), DbConnectionsMiddleware()]
    return RedisBroker(url=url, middleware=middleware, heartbeat_timeout=4000)


@pytest.fixture
def use_broker() -> Any:
    """use(broker): make it the one every actor sends to and workers consume, for one test; the configured one
    after (brokers made with redis_broker() are flushed)."""
    import contextlib

    import dramatiq
    import redis
    from dramatiq.brokers.redis import RedisBroker

    original = dramatiq.get_broker()
    actors = [original.get_actor(name) for name in original.get_declared_actors()]
    swapped: list[Any] = []

    def use(broker: Any) -> Any:
        for actor in actors:
            broker.declare_actor(actor)
            actor.broker = broker  # declaring does not rebind: Actor.send enqueues on actor.broker
        dramatiq.set_broker(broker)
        swapped.append(broker)
        return broker

    yield use
    for actor in actors:
        original.declare_actor(actor)
        actor.broker = original
    dramatiq.set_broker(original)
    for broker in swapped:
        if isinstance(broker, RedisBroker):
            with contextlib.suppress(redis.ConnectionError):  # an unreachable one, standing for a broker that is down
                broker.client.flushdb()
        broker.close()
