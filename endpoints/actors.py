"""Jobs of endpoints: thin wrappers over services. Sent to an endpoint's own queue, never to their default one."""

import dramatiq


@dramatiq.actor(queue_name="endpoint-probe", max_retries=0, time_limit=2 * 60 * 1000)
def endpoint_probe(endpoint_id: str, probe_id: str, hold_seconds: float = 0.0) -> None:
    from endpoints import services

    services.endpoint_probe_answer(endpoint_id=endpoint_id, probe_id=probe_id, hold_seconds=hold_seconds)
