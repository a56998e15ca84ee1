"""Queues on the configured dramatiq broker (Redis, RabbitMQ or in-process): a queue's depth, the messages it holds,
and sending a message to a named queue (each endpoint has its own). Broker-generic, so the apps that queue work
(checkpoint downloads, inference jobs, endpoint probes) share it without importing each other (esd/broker.py
chooses the broker; this uses it)."""

from typing import cast

import dramatiq
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


def queue_message(actor: dramatiq.Actor, queue_name: str, *args: object) -> dramatiq.Message:
    """The message `actor(*args)` for `queue_name` instead of the actor's own queue (each endpoint has its own),
    not sent yet: callers record its id before sending it."""
    return actor.message(*args).copy(queue_name=queue_name)


def enqueue(message: dramatiq.Message, broker: dramatiq.Broker | None = None) -> dramatiq.Message:
    broker = broker or dramatiq.get_broker()
    broker.declare_queue(message.queue_name)
    return broker.enqueue(message)


def send_to_queue(actor: dramatiq.Actor, queue_name: str, *args: object) -> dramatiq.Message:
    """Send `actor(*args)` to `queue_name` instead of the actor's own queue."""
    return enqueue(queue_message(actor, queue_name, *args), actor.broker)


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
