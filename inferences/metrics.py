"""Dynamic batching on the /metrics page: per endpoint, how many images its recent denoising loops held and the
UNet seconds each image cost, from the jobs that finished in the last RECENT_SECONDS (read from the database when
scraped, as the endpoint figures are, so every web replica answers the same)."""

from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from statistics import fmean

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .models import InferenceJob, JobStatus

RECENT_SECONDS = 300
MOST_JOBS = 10_000  # a scrape reads at most this many recent jobs


class BatchingCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["endpoint"]
        images = GaugeMetricFamily(
            "esd_endpoint_batch_images",
            f"Mean images per denoising loop over the txt2img jobs of the last {RECENT_SECONDS} s (1: no batching).",
            labels=labels,
        )
        largest = GaugeMetricFamily(
            "esd_endpoint_batch_images_max", f"Most images in one loop in the last {RECENT_SECONDS} s.", labels=labels
        )
        unet = GaugeMetricFamily(
            "esd_endpoint_unet_seconds_per_image",
            f"Mean sampling-loop (UNet) seconds per image over the last {RECENT_SECONDS} s.",
            labels=labels,
        )
        recent = (
            InferenceJob.objects.filter(
                status=JobStatus.SUCCEED, complete_time__gte=timezone.now() - timedelta(seconds=RECENT_SECONDS)
            )
            .exclude(endpoint_name="")
            .order_by("-complete_time")
            .values_list("endpoint_name", "batch_id", "batch_images", "image_count", "timings")[:MOST_JOBS]
        )
        loops: dict[str, dict[object, int]] = defaultdict(dict)  # endpoint -> loop -> its images
        per_image: dict[str, list[float]] = defaultdict(list)
        for endpoint, batch_id, batch_images, image_count, timings in recent:
            seconds = (timings or {}).get("unet_seconds_per_image")
            if seconds is None:
                continue  # not a k-diffusion generation: no loop to count
            per_image[endpoint].append(float(seconds))
            loop = batch_id or object()  # a job that ran alone is a loop of its own images
            loops[endpoint][loop] = batch_images if batch_id else max(image_count, 1)
        for endpoint in sorted(loops):
            sizes = list(loops[endpoint].values())
            images.add_metric([endpoint], fmean(sizes))
            largest.add_metric([endpoint], max(sizes))
            unet.add_metric([endpoint], fmean(per_image[endpoint]))
        yield from (images, largest, unet)
