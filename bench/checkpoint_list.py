"""`GET /checkpoints?page=N` against 100,000 checkpoints of 10 roles in PostgreSQL: latency and queries per page.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/checkpoint_list.py [--checkpoints 100000]

Creates a scratch database (Django's test-database machinery, dropped at the end), fills it with checkpoints made
as the create service makes them (one file each, the creator's change/delete grants, a view grant to the
creator's role), and times requests through Django's full request path (test client: middleware, auth, view,
visibility and filters in SQL, serialization) at pages 1, 10, 100 and 1,000 of 10 per page, for an administrator
(every checkpoint) and for a user of one role (a tenth of them), counting SQL queries. Goal: time and query count
the same at every page. Not a test: the figures go in docs/benchmarks.md.
"""

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.scratch import in_scratch_test_database

ROLES = 10
PAGES = (1, 10, 100, 1000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoints", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--explain", action="store_true", help="print PostgreSQL's plan of one user page's queries")
    args = parser.parse_args()

    in_scratch_test_database(lambda: run(args))


def fill(count: int, owners: list, groups: list) -> None:
    from django.contrib.auth.models import Permission

    from checkpoints.models import (
        Checkpoint,
        CheckpointFile,
        CheckpointGroupObjectPermission,
        CheckpointUserObjectPermission,
    )

    permissions = {
        permission.codename.split("_")[0]: permission
        for permission in Permission.objects.filter(
            content_type__app_label="checkpoints", content_type__model="checkpoint"
        )
    }
    for start in range(0, count, 5000):
        checkpoints = [
            Checkpoint(id=uuid.uuid4(), type="Lora", status="Active", created_by=owners[index % ROLES],
                       params={"message": f"model {index}"})
            for index in range(start, min(start + 5000, count))
        ]  # fmt: skip
        Checkpoint.objects.bulk_create(checkpoints)
        CheckpointFile.objects.bulk_create(
            CheckpointFile(checkpoint=checkpoint, name=f"{checkpoint.id}.safetensors") for checkpoint in checkpoints
        )
        CheckpointUserObjectPermission.objects.bulk_create(
            CheckpointUserObjectPermission(user=checkpoint.created_by, permission=permissions[action],
                                           content_object=checkpoint)
            for checkpoint in checkpoints
            for action in ("change", "delete")
        )  # fmt: skip
        CheckpointGroupObjectPermission.objects.bulk_create(
            CheckpointGroupObjectPermission(group=groups[owners.index(checkpoint.created_by)],
                                            permission=permissions["view"], content_object=checkpoint)
            for checkpoint in checkpoints
        )  # fmt: skip


def run(args: argparse.Namespace) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext as capture
    from django.utils import timezone

    from accounts import services
    from accounts.models import Role, User

    services.roles_ensure_builtin()
    admin = services.admin_ensure(username="admin", password="bench-pw-1")
    roles = [services.role_upsert(actor=admin, name=f"team{n}", permissions=["checkpoint:list"]) for n in range(ROLES)]
    owners = [User.objects.create_user(username=f"user{n}", password="x") for n in range(ROLES)]
    for owner, role in zip(owners, roles, strict=True):
        services.user_set_roles(user=owner, roles=[role])
    started = time.perf_counter()
    fill(args.checkpoints, owners, [Role.objects.get(pk=role.pk).group for role in roles])
    now = timezone.now()
    with connection.cursor() as cursor:  # a real history: one checkpoint a minute
        cursor.execute(
            "UPDATE checkpoints_checkpoint SET created_at = %s - (row_number * interval '1 minute') FROM "
            "(SELECT id AS row_id, row_number() OVER (ORDER BY id) AS row_number FROM checkpoints_checkpoint) AS n "
            "WHERE id = n.row_id",
            [now],
        )
        for table in (
            "checkpoint",
            "checkpointfile",
            "checkpointuserobjectpermission",
            "checkpointgroupobjectpermission",
        ):
            cursor.execute(f"VACUUM ANALYZE checkpoints_{table}")  # as autovacuum leaves a real database
    print(f"{args.checkpoints} checkpoints of {ROLES} roles inserted in {time.perf_counter() - started:.1f} s")
    viewers = [
        ("admin (user:all, every checkpoint)", services.api_token_create(user=admin)[1]),
        ("user0 (one role, a tenth of them)", services.api_token_create(user=owners[0])[1]),
    ]
    for title, token in viewers:
        print(title)
        client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
        for page in PAGES:
            query = {"page": str(page), "per_page": "10"}
            client.get("/prod/checkpoints", query)  # warm
            times = []
            for _ in range(args.requests):
                begun = time.perf_counter()
                response = client.get("/prod/checkpoints", query)
                times.append((time.perf_counter() - begun) * 1000)
            data = response.json()["data"]
            assert response.status_code == 200 and len(data["checkpoints"]) == 10, response.content[:300]
            with capture(connection) as queries:
                client.get("/prod/checkpoints", query)
            if args.explain and page == PAGES[0]:
                explain(connection, [query["sql"] for query in queries.captured_queries])
            times.sort()
            print(
                f"  page {page:<5} of {data['pages']:<6} p50 {statistics.median(times):7.1f} ms  "
                f"p99 {times[int(len(times) * 0.99) - 1]:7.1f} ms  queries {len(queries)}"
            )


def explain(connection, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for sql in statements:
            if "checkpoints_checkpoint" in sql and sql.lstrip().upper().startswith("SELECT"):
                cursor.execute(f"EXPLAIN ANALYZE {sql}")
                print("\n".join(row[0] for row in cursor.fetchall()))


if __name__ == "__main__":
    main()
