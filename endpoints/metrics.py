"""The Prometheus page (/metrics): per endpoint, queue depth, live and busy workers, backlog and the desired
instance count, computed from the database and the broker when scraped, so every web replica answers the same.
A KEDA ScaledObject or an HPA on `esd_endpoint_desired_instances` scales each endpoint's workers (docs/deploy.md).
"""

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Info, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from esd.version import VERSION

from .autoscaling import scaling
from .models import Endpoint, EndpointStatus
from .selectors import endpoint_current, with_live_counts

LABELS = ["endpoint", "endpoint_type", "instance_type"]


class EndpointCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "queue": GaugeMetricFamily("esd_endpoint_queue_depth", "Messages waiting in the endpoint's queue.", labels=LABELS),
            "live": GaugeMetricFamily("esd_endpoint_live_workers", "Workers with a recent heartbeat.", labels=LABELS),
            "busy": GaugeMetricFamily("esd_endpoint_busy_workers", "Live workers running a job.", labels=LABELS),
            "backlog": GaugeMetricFamily("esd_endpoint_backlog", "Queued plus running jobs.", labels=LABELS),
            "desired": GaugeMetricFamily(
                "esd_endpoint_desired_instances", "Instances the backlog calls for, within [min, max].", labels=LABELS
            ),
            "max": GaugeMetricFamily("esd_endpoint_max_instances", "The endpoint's maximum instance count.", labels=LABELS),
            "up": GaugeMetricFamily("esd_endpoint_in_service", "1 when the endpoint is InService.", labels=LABELS),
        }  # fmt: skip
        for endpoint in with_live_counts(Endpoint.objects.exclude(status=EndpointStatus.DELETING)):
            endpoint_current(endpoint)
            labels = [endpoint.name, endpoint.endpoint_type, endpoint.instance_type]
            live, busy = getattr(endpoint, "live", 0), getattr(endpoint, "busy", 0)  # annotated by the queryset
            figures = scaling(endpoint, live, busy)
            families["queue"].add_metric(labels, figures.queue_depth)
            families["live"].add_metric(labels, live)
            families["busy"].add_metric(labels, busy)
            families["backlog"].add_metric(labels, figures.backlog)
            families["desired"].add_metric(labels, figures.desired)
            families["max"].add_metric(labels, endpoint.initial_instance_count)
            families["up"].add_metric(labels, 1 if endpoint.status == EndpointStatus.IN_SERVICE else 0)
        yield from families.values()


registry = CollectorRegistry(auto_describe=False)
registry.register(EndpointCollector())
# which version answers: an upgrade shows on the dashboards (CHANGELOG.md says what changed)
Info("esd_server", "The ESD server's version and the ESD API version it speaks.", registry=registry).info(
    {"version": VERSION, "esd_api_version": settings.ESD_API_VERSION}
)


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.ESD_METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return HttpResponse("metrics need the ESD_METRICS_TOKEN bearer token\n", status=401)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
