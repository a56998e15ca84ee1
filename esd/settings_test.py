"""Settings for the test suite: the real settings, with what only slows tests down swapped out.

The database and the broker still come from DATABASE_URL and ESD_BROKER_URL, so CI runs the suite against
PostgreSQL and Redis.
"""

import os
import tempfile
from pathlib import Path

# Set before the real settings are read, which refuse to start without a key
os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-production")

from .settings import *  # noqa: F403

ESD_DATA_DIR = Path(tempfile.mkdtemp(prefix="esd-test-"))
ESD_STORAGE_ROOT = ESD_DATA_DIR / "storage"
if ESD_STORAGE == "local":  # noqa: F405
    STORAGES["default"]["OPTIONS"]["location"] = str(ESD_STORAGE_ROOT)  # type: ignore[index]  # noqa: F405
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_ROOT = ESD_DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every request when it is missing
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not the shared-cache in-memory database: that one fails concurrent writers at once ("table is
    # locked") instead of waiting, unlike the file `make run` uses; worker threads and live servers write too.
    DATABASES["default"]["TEST"] = {"NAME": str(ESD_DATA_DIR / "test.sqlite3")}  # noqa: F405
