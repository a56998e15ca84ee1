"""ESD_BROKER_URL selects the broker, and a message really travels through it (Redis and RabbitMQ on CI)."""

import os
import socket
import threading
import uuid

import dramatiq
import pytest
from django.conf import settings
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker

from esd.broker import dramatiq_broker_setting
from tests.conftest import stop_worker

AMQP_URL = os.environ.get("ESD_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.mark.parametrize(
    ("url", "broker"),
    [
        ("redis://127.0.0.1:6379/0", "dramatiq.brokers.redis.RedisBroker"),
        ("amqp://guest:guest@127.0.0.1:5672/", "dramatiq.brokers.rabbitmq.RabbitmqBroker"),
        ("", "dramatiq.brokers.stub.StubBroker"),
    ],
)
def test_url_selects_the_broker(url, broker):
    setting = dramatiq_broker_setting(url)
    assert setting["BROKER"] == broker
    assert "django_dramatiq.middleware.DbConnectionsMiddleware" in setting["MIDDLEWARE"]


def test_unknown_scheme_is_a_configuration_error():
    with pytest.raises(ValueError, match="must start with"):
        dramatiq_broker_setting("kafka://somewhere")


def test_the_configured_broker_is_the_one_in_use():
    url = settings.ESD_BROKER_URL
    expected = RedisBroker if url.startswith("redis") else RabbitmqBroker if url.startswith("amqp") else StubBroker
    assert isinstance(dramatiq.get_broker(), expected)


def _round_trip(broker: dramatiq.Broker) -> None:
    """Send one message through `broker` and have an in-process worker run it."""
    done = threading.Event()
    received: list[str] = []
    queue = f"esd-test-{uuid.uuid4().hex[:8]}"

    def echo(value: str) -> None:
        received.append(value)
        done.set()

    actor = dramatiq.Actor(echo, broker=broker, actor_name=f"echo_{queue}", queue_name=queue, priority=0, options={})
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        actor.send("hello")
        assert done.wait(timeout=15), "the worker never ran the message"
        assert received == ["hello"]
    finally:
        stop_worker(worker)
        if hasattr(broker, "client"):
            broker.client.delete(f"dramatiq:{queue}", f"dramatiq:{queue}.msgs", f"dramatiq:{queue}.DQ")


def test_a_message_travels_through_the_configured_broker():
    _round_trip(dramatiq.get_broker())


def _amqp_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
        return True
    except OSError:
        return False


def test_a_message_travels_through_rabbitmq():
    if not _amqp_reachable():
        # On CI RabbitMQ runs; there a missing server must fail the run, not hide behind a skip.
        if os.environ.get("CI"):
            pytest.fail("RabbitMQ is not reachable on 127.0.0.1:5672 (CI expects it)")
        pytest.skip("no RabbitMQ on 127.0.0.1:5672 (CI runs this)")
    broker = RabbitmqBroker(url=AMQP_URL)
    try:
        _round_trip(broker)
    finally:
        broker.close()
