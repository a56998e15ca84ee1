"""Which dramatiq broker ESD_BROKER_URL selects. Plain Python: settings.py imports it before Django is set up."""

from typing import Any

MIDDLEWARE = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Retries",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
]


def dramatiq_broker_setting(url: str) -> dict[str, Any]:
    """django_dramatiq's DRAMATIQ_BROKER for `url`: redis://… Redis, amqp://… RabbitMQ, empty the in-process
    broker that esd_serve's worker threads consume. Anything else is a configuration error."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        broker: dict[str, Any] = {"BROKER": "dramatiq.brokers.redis.RedisBroker", "OPTIONS": {"url": url}}
    elif url.startswith(("amqp://", "amqps://")):
        broker = {"BROKER": "dramatiq.brokers.rabbitmq.RabbitmqBroker", "OPTIONS": {"url": url}}
    elif not url:
        broker = {"BROKER": "dramatiq.brokers.stub.StubBroker", "OPTIONS": {}}
    else:
        raise ValueError("ESD_BROKER_URL must start with redis://, rediss://, unix://, amqp:// or amqps://")
    return {**broker, "MIDDLEWARE": list(MIDDLEWARE)}
