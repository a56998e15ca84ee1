"""Pickup latency: enqueue -> the actor starts, on an idle worker, per broker, ESD's worker set-up beside dramatiq's
default configuration, in one run.

    .venv/bin/python bench/pickup_latency.py [--messages 50] [--idle-ms 300]
        [--redis redis://127.0.0.1:6379/0] [--amqp amqp://guest:guest@127.0.0.1:5672/]

Each message is sent after the worker has been idle for --idle-ms (so its consumer has backed off, as a GPU worker
between jobs has). ESD's set-up is what endpoints.runtime uses: worker_timeout = ESD_WORKER_POLL_MS (10 ms) and a
prefetch of one; dramatiq's default is worker_timeout = 1000 ms and a prefetch of twice the threads.
Prints p50 and p99 in milliseconds. Not a test: the figures go in docs/benchmarks.md.
"""

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import AgeLimit, Callbacks, Retries, TimeLimit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stats import percentile

ESD_POLL_MS = 10


def measure(make_broker, *, esd: bool, messages: int, idle_ms: int) -> list[float]:
    broker = make_broker()
    started: dict[str, float] = {}
    arrived = threading.Event()
    queue = f"pickup-{uuid.uuid4().hex[:8]}"

    def mark(key: str) -> None:
        started[key] = time.perf_counter()
        arrived.set()

    actor = dramatiq.Actor(mark, broker=broker, actor_name=f"mark_{queue}", queue_name=queue, priority=0, options={})
    if esd:
        worker = dramatiq.Worker(broker, queues={queue}, worker_threads=1, worker_timeout=ESD_POLL_MS)
        worker.queue_prefetch = 1
    else:
        worker = dramatiq.Worker(broker, queues={queue}, worker_threads=1)
    worker.start()
    latencies = []
    try:
        for index in range(messages + 3):  # the first three warm the connections up
            time.sleep(idle_ms / 1000)
            arrived.clear()
            key = f"m{index}"
            sent = time.perf_counter()
            actor.send(key)
            if not arrived.wait(10):
                raise RuntimeError("a message was not picked up within 10 s")
            if index >= 3:
                latencies.append((started[key] - sent) * 1000)
    finally:
        worker.stop()
        broker.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--idle-ms", type=int, default=300)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()

    def middleware() -> list[dramatiq.Middleware]:
        # dramatiq's defaults without its Prometheus exporter (which needs a worker process of its own).
        return [AgeLimit(), TimeLimit(), Callbacks(), Retries()]

    brokers = {
        "in-process": lambda: StubBroker(middleware=middleware()),
        "redis": lambda: RedisBroker(url=args.redis, middleware=middleware()),
        "rabbitmq": lambda: RabbitmqBroker(url=args.amqp, middleware=middleware()),
    }
    print(f"pickup latency, {args.messages} messages, each after {args.idle_ms} ms idle (ms)")
    print(f"  {'broker':<11} {'set-up':<17} {'p50':>7} {'p99':>7} {'mean':>7}")
    for name, make in brokers.items():
        for esd in (True, False):
            try:
                values = measure(make, esd=esd, messages=args.messages, idle_ms=args.idle_ms)
            except Exception as exc:
                print(f"  {name:<11} unavailable: {exc}")
                break
            label = "ESD (10 ms poll)" if esd else "dramatiq default"
            print(
                f"  {name:<11} {label:<17} {statistics.median(values):7.1f} {percentile(values, 0.99):7.1f} "
                f"{statistics.fmean(values):7.1f}"
            )


if __name__ == "__main__":
    main()
