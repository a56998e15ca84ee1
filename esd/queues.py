"""Queues on the configured dramatiq broker (Redis, RabbitMQ or in-process): a queue's depth, the messages it holds,
and sending a message to a named queue (each endpoint has its own). Broker-generic, so the apps that queue work
(checkpoint downloads, inference jobs, endpoint probes) share it without importing each other (esd/broker.py
chooses the broker; this uses it)."""

from typing import Any, cast

import dramatiq
from django.db import transaction
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import dq_name


def queue_depth(queue_name: str, broker: dramatiq.Broker | None = None) -> int:
    """Messages waiting in a queue (not yet taken by a worker), whichever broker is configured."""
    broker = broker or dramatiq.get_broker()
    if isinstance(broker, StubBroker):
        queue = broker.queues.get(queue_name)
        return queue.qsize() if queue is not None else 0
    if isinstance(broker, RedisBroker):
        return int(cast(int, broker.client.llen(f"{broker.namespace}:{queue_name}")))
    if isinstance(broker, RabbitmqBroker):
        broker.declare_queue(queue_name)
        ready, _, _ = broker.get_queue_message_counts(queue_name)
        return int(ready)
    return 0


def actor_queue(actor_name: str) -> str:
    """The queue of the actor named `actor_name` (its decorator's queue_name)."""
    return str(dramatiq.get_broker().get_actor(actor_name).queue_name)


def message_for(
    actor_name: str, *args: object, queue_name: str | None = None, options: dict[str, Any] | None = None
) -> dramatiq.Message:
    """The message that runs the actor named `actor_name` with `args`, on `queue_name` instead of the actor's own
    where given (each endpoint has its own), not sent yet: callers may record its id first.

    Work is queued by the actor's name through here, so the services that queue it never import the actors that
    wrap them (which import those services): each app registers its actors when Django starts (its AppConfig)."""
    message = dramatiq.get_broker().get_actor(actor_name).message(*args)
    return message.copy(queue_name=queue_name or message.queue_name, options={**message.options, **(options or {})})


def enqueue(message: dramatiq.Message, broker: dramatiq.Broker | None = None) -> dramatiq.Message:
    broker = broker or dramatiq.get_broker()
    broker.declare_queue(message.queue_name)
    return broker.enqueue(message)


def send(actor_name: str, *args: object, queue_name: str | None = None) -> dramatiq.Message:
    """Send the actor named `actor_name` its `args` now."""
    return enqueue(message_for(actor_name, *args, queue_name=queue_name))


def send_after_commit(actor_name: str, *args: object, queue_name: str | None = None) -> None:
    """Send it once the current transaction commits (at once outside one), so no worker sees rows not yet written."""
    transaction.on_commit(lambda: send(actor_name, *args, queue_name=queue_name))


def pending_messages(queue_name: str, broker: dramatiq.Broker | None = None) -> list[dramatiq.Message] | None:
    """The messages a broker holds for a queue: waiting, delayed for a retry, or taken by a consumer that has not
    acknowledged them. None where the broker cannot be asked without consuming: RabbitMQ (its durable queues keep
    messages across restarts) and the in-process broker (its messages live as long as the process).

    On Redis, dramatiq keeps each message's body in the hash `<namespace>:<queue>.msgs` (`<queue>.DQ.msgs` while
    it waits for a retry) from enqueue until acknowledgement, under a Redis-only id that changes with each retry;
    the message id inside the body does not. A Redis that restarted without persistence has none of them, which is
    how a lost message is told from a slow one.
    """
    broker = broker or dramatiq.get_broker()
    if not isinstance(broker, RedisBroker):
        return None
    return [
        dramatiq.Message.decode(body)
        for name in (queue_name, dq_name(queue_name))
        for _, body in broker.client.hscan_iter(f"{broker.namespace}:{name}.msgs", count=1000)
    ]
