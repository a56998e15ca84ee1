"""`GET /inferences?limit=N` against 100,000 jobs in PostgreSQL: latency per page and queries per request.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/inference_list.py [--jobs 100000]

Creates a scratch database (Django's test-database machinery, dropped at the end), fills it with jobs of several
users, and times 200 requests through Django's full request path (test client: middleware, auth, view,
serialization) for the first page and for a deep page reached by `exclusive_start_key`, at limits 10, 50 and 200,
counting SQL queries. Goal: p50 <= 30 ms at limit=50, and a query count that does not grow with the page size.
Not a test: the figures go in docs/benchmarks.md.
"""

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.scratch import in_scratch_test_database


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    in_scratch_test_database(lambda: run(args))


def run(args: argparse.Namespace) -> None:
    from django.contrib.auth.models import Permission
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext as capture
    from django.utils import timezone

    from accounts import services
    from accounts.models import User
    from inferences.models import InferenceJob, InferenceJobUserObjectPermission

    def insert(jobs: list[InferenceJob]) -> None:
        """The jobs and the grants the create service gives each: its owner may view, change and delete it."""
        InferenceJob.objects.bulk_create(jobs)
        permissions = Permission.objects.filter(
            content_type__app_label="inferences", content_type__model="inferencejob"
        )
        InferenceJobUserObjectPermission.objects.bulk_create(
            InferenceJobUserObjectPermission(user=job.created_by, permission=permission, content_object=job)
            for job in jobs
            for permission in permissions
            if permission.codename.split("_")[0] in ("view", "change", "delete")
        )

    services.roles_ensure_builtin()
    admin = services.admin_ensure(username="admin", password="bench-pw-1")
    others = [User.objects.create_user(username=f"user{n}", password="x") for n in range(9)]
    token = services.api_token_create(user=admin)[1]
    owners = [admin, *others]
    now = timezone.now()
    started = time.perf_counter()
    batch = []
    for index in range(args.jobs):
        owner = owners[index % len(owners)]
        batch.append(
            InferenceJob(
                id=uuid.uuid4(), task_type="txt2img", inference_type="Async", state="succeeded", created_by=owner,
                image_names=["image_0.png"], prompt=f"prompt {index}",
                used_models={"Stable-diffusion": [{"id": "x", "model_name": "v1-5.safetensors", "s3": "s3://b/x",
                                                   "type": "Stable-diffusion"}]},
                endpoint_name="esd-async-bench", start_time=now, complete_time=now,
            )
        )  # fmt: skip
        if len(batch) == 5000:
            insert(batch)
            batch = []
    insert(batch)
    # spread creation times like a real history (one job every 2 s), so keyset pages are meaningful
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE inferences_inferencejob SET created_at = %s - (row_number * interval '2 seconds') FROM "
            "(SELECT id AS job, row_number() OVER (ORDER BY id) AS row_number FROM inferences_inferencejob) AS numbered "
            "WHERE id = numbered.job",
            [now],
        )
        # as autovacuum leaves a real database: statistics, and a visibility map that lets the grant lookups be
        # index-only scans
        for table in ("inferencejob", "inferencejobuserobjectpermission"):
            cursor.execute(f"VACUUM ANALYZE inferences_{table}")
    print(f"{args.jobs} jobs of {len(owners)} users inserted in {time.perf_counter() - started:.1f} s")
    role = services.role_upsert(actor=admin, name="viewers", permissions=["inference:list"])
    services.user_set_roles(user=others[0], roles=[role])
    viewers = [
        ("admin (inference:all, every job)", token),
        ("user0 (inference:list, own jobs)", services.api_token_create(user=others[0])[1]),
    ]
    for title, viewer_token in viewers:
        print(title)
        measure(Client(HTTP_AUTHORIZATION=f"Bearer {viewer_token}"), args, capture, connection)


def measure(client, args, capture, connection) -> None:
    url = "/prod/inferences"
    deep_key = None
    for limit in (10, 50, 200):
        for label in ("first page", "page 100"):
            query = {"limit": str(limit)}
            if label == "page 100":
                if deep_key is None:
                    key = None
                    for _ in range(100):
                        response = client.get(url, {"limit": "50", **({"exclusive_start_key": key} if key else {})})
                        key = response.json()["data"]["last_evaluated_key"]
                    deep_key = key
                query["exclusive_start_key"] = deep_key
            client.get(url, query)  # warm
            times = []
            for _ in range(args.requests):
                begun = time.perf_counter()
                response = client.get(url, query)
                times.append((time.perf_counter() - begun) * 1000)
            assert response.status_code == 200 and len(response.json()["data"]["inferences"]) == limit, (
                response.content[:300]
            )
            with capture(connection) as queries:
                client.get(url, query)
            times.sort()
            print(
                f"  limit={limit:<4} {label:<10} p50 {statistics.median(times):6.1f} ms  "
                f"p99 {times[int(len(times) * 0.99) - 1]:6.1f} ms  queries {len(queries)}"
            )


if __name__ == "__main__":
    main()
