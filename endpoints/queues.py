"""The dramatiq side of endpoints: queue depth per broker, and sending a message to an endpoint's queue."""

from typing import cast

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker


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


def send_to_queue(actor: dramatiq.Actor, queue_name: str, *args: object) -> dramatiq.Message:
    """Send `actor(*args)` to `queue_name` instead of the actor's own queue (each endpoint has its own)."""
    broker = actor.broker
    broker.declare_queue(queue_name)
    message = actor.message(*args).copy(queue_name=queue_name)
    return broker.enqueue(message)
