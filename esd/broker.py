"""Which dramatiq broker ESD_BROKER_URL selects. Plain Python: settings.py imports it before Django is set up."""

from typing import Any

MIDDLEWARE = [
    "dramatiq.middleware.AgeLimit",
    "dramatiq.middleware.TimeLimit",
    "dramatiq.middleware.Callbacks",
    "dramatiq.middleware.Retries",
    "django_dramatiq.middleware.DbConnectionsMiddleware",
]


def dramatiq_broker_setting(url: str, dead_after_seconds: float = 20.0) -> dict[str, Any]:
    """django_dramatiq's DRAMATIQ_BROKER for `url`: redis://… Redis, amqp://… RabbitMQ, empty the in-process
    broker that esd_serve's worker threads consume. Anything else is a configuration error.

    On Redis, a consumer that stops heartbeating (a killed worker) has its unacknowledged messages requeued once
    dramatiq's heartbeat timeout passes; it is set to the time after which ESD counts a worker dead (dramatiq's
    default is 60 s), and maintenance runs often enough to notice. RabbitMQ redelivers as the connection drops.
    """
    if url.startswith(("redis://", "rediss://", "unix://")):
        options = {"url": url, "heartbeat_timeout": int(dead_after_seconds * 1000), "maintenance_chance": 10_000}
        broker: dict[str, Any] = {"BROKER": "dramatiq.brokers.redis.RedisBroker", "OPTIONS": options}
    elif url.startswith(("amqp://", "amqps://")):
        broker = {"BROKER": "dramatiq.brokers.rabbitmq.RabbitmqBroker", "OPTIONS": {"url": url}}
    elif not url:
        broker = {"BROKER": "dramatiq.brokers.stub.StubBroker", "OPTIONS": {}}
    else:
        raise ValueError("ESD_BROKER_URL must start with redis://, rediss://, unix://, amqp:// or amqps://")
    return {**broker, "MIDDLEWARE": list(MIDDLEWARE)}
