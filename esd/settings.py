"""ESD server settings.

Everything comes from the environment (django-environ); the defaults are the embedded, single-machine set-up
of architecture.md §1 (SQLite and local storage under ESD_DATA_DIR, the in-process broker) and are safe for
production: DEBUG off, a secret key that is never a constant, hosts limited to loopback.
docs/configuration.md lists every variable read here.
"""

import ipaddress
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from esd.broker import dramatiq_broker_setting
from esd.secret_key import read_secret_key
from esd.storage_backends import backend_config

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

# --- Where the embedded defaults keep their files -------------------------------------------------------------
ESD_DATA_DIR = Path(env.str("ESD_DATA_DIR", default="var"))
if not ESD_DATA_DIR.is_absolute():
    ESD_DATA_DIR = BASE_DIR / ESD_DATA_DIR


# --- Django core -----------------------------------------------------------------------------------------------
# DJANGO_SECRET_KEY, or the random key `make run` wrote into the data folder (esd/secret_key.py); reading the
# settings writes nothing.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or read_secret_key(ESD_DATA_DIR)
if not SECRET_KEY:
    raise ImproperlyConfigured(
        f"No secret key: set DJANGO_SECRET_KEY (the same on every web replica), or write one into {ESD_DATA_DIR} "
        f"with `python -m esd.secret_key {ESD_DATA_DIR}` (make run does this)"
    )
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "django_dramatiq",
    "esd",
    "accounts",
    "checkpoints",
    "endpoints",
    "inferences",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "esd.login_limit.LoginRateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "esd.urls"
WSGI_APPLICATION = "esd.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{ESD_DATA_DIR / 'db.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DJANGO_CONN_MAX_AGE", default=0))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded set-up runs web threads and worker threads on one file: WAL lets readers go on while a worker
    # writes, IMMEDIATE transactions take the write lock up front (no deadlocked upgrades), and a writer waits for
    # the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            # NORMAL is safe with WAL (no corruption; a power cut may lose the last commits) and skips an fsync per commit
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# ESD has no anonymous object access (guardian docs/configuration.md).
ANONYMOUS_USER_NAME = None
GUARDIAN_RAISE_403 = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = ESD_DATA_DIR / "static"
STORAGES_STATICFILES = "whitenoise.storage.CompressedManifestStaticFilesStorage"

# Bodies are capped before they are parsed: ESD's largest JSON body is a list of 100 ids.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("ESD_MAX_REQUEST_BYTES", default=1024 * 1024)
# Uploaded files above 2.5 MB wait here while they arrive (Django's upload handler, and esd_serve's buffering of
# request bodies): in the data folder, not /tmp, which is often a RAM-backed tmpfs far smaller than a checkpoint.
FILE_UPLOAD_TEMP_DIR = env.str("ESD_UPLOAD_TEMP_DIR", default=str(ESD_DATA_DIR / "tmp"))

# --- Security headers and cookies ------------------------------------------------------------------------------
# DJANGO_HTTPS=true is for deployments served over HTTPS (directly or behind a proxy that sets
# X-Forwarded-Proto): secure cookies, HSTS and the redirect to https.
ESD_HTTPS = env.bool("DJANGO_HTTPS", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = ESD_HTTPS
CSRF_COOKIE_SECURE = ESD_HTTPS
SECURE_SSL_REDIRECT = ESD_HTTPS
SECURE_HSTS_SECONDS = 31536000 if ESD_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = ESD_HTTPS
SECURE_HSTS_PRELOAD = ESD_HTTPS
if ESD_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- The ESD API ----------------------------------------------------------------------------------------------
ESD_API_PREFIX = env.str("ESD_API_PREFIX", default="prod/").strip("/")
ESD_API_PREFIX = f"{ESD_API_PREFIX}/" if ESD_API_PREFIX else ""
ESD_API_VERSION = "1.4.0"

ESD_AUTH_MODES = ("token", "esd-1.4")
ESD_AUTH_MODE = env.str("ESD_AUTH_MODE", default="token")
if ESD_AUTH_MODE not in ESD_AUTH_MODES:
    raise ImproperlyConfigured(f"ESD_AUTH_MODE must be one of {', '.join(ESD_AUTH_MODES)}, not {ESD_AUTH_MODE!r}")
ESD_API_KEY = env.str("ESD_API_KEY", default="")

# CORS for the API routes only. Any origin is allowed, but never together with credentials (architecture.md §5):
# the API authenticates with headers, not cookies.
CORS_URLS_REGEX = rf"^/{ESD_API_PREFIX}.*$"
CORS_ALLOWED_ORIGINS = env.list("ESD_CORS_ALLOWED_ORIGINS", default=[])
CORS_ALLOW_ALL_ORIGINS = not CORS_ALLOWED_ORIGINS
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "content-type",
    "username",
    "x-api-key",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-user-agent",
]
CORS_EXPOSE_HEADERS = ["x-api-version", "x-esd-server-version"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "accounts.authentication.EsdHeaderAuthentication",
        "accounts.authentication.EsdSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "esd.openapi.EsdAutoSchema",
    "EXCEPTION_HANDLER": "esd.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_RATES": {"auth": env.str("ESD_AUTH_RATE", default="10/min")},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "ESD server API",
    "DESCRIPTION": (
        "The ESD 1.4.0 API (Extension for Stable Diffusion on AWS), self-hosted. "
        "Every ESD route answers the `{statusCode, message, data}` envelope; authentication is described in "
        "docs/api.md (ESD_AUTH_MODE)."
    ),
    "VERSION": ESD_API_VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["esd.openapi.strip_optional_slash"],
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "ApiKey": {
                "type": "apiKey",
                "in": "header",
                "name": "x-api-key",
                "description": "Required on every ESD route when the deployment sets ESD_API_KEY.",
            }
        }
    },
}

CACHES = {"default": env.cache("ESD_CACHE_URL", default="locmemcache://")}

# --- Background work -------------------------------------------------------------------------------------------
# redis://... selects Redis, amqp://... RabbitMQ; unset means dramatiq's in-process broker (esd_serve).
ESD_BROKER_URL = env.str("ESD_BROKER_URL", default="")
try:
    DRAMATIQ_BROKER = dramatiq_broker_setting(ESD_BROKER_URL, env.float("ESD_WORKER_DEAD_AFTER_SECONDS", default=20.0))
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from exc
DRAMATIQ_AUTODISCOVER_MODULES = ["actors"]

# --- Object storage --------------------------------------------------------------------------------------------
# "local" keeps files under ESD_DATA_DIR/storage; "s3" uses any S3-compatible store through django-storages'
# own AWS_* settings. ESD_S3_PUBLIC_ENDPOINT_URL is the address clients outside the server's network use for
# presigned URLs.
ESD_STORAGE = env.str("ESD_STORAGE", default="local")
# The address clients use to reach this server; the local store's signed upload/download URLs start with it.
ESD_PUBLIC_URL = env.str("ESD_PUBLIC_URL", default="http://127.0.0.1:8000")
ESD_STORAGE_ROOT = ESD_DATA_DIR / "storage"
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="esd")
AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default="") or None
AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default="") or None
AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default="") or None
AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", default="") or None
ESD_S3_PUBLIC_ENDPOINT_URL = env.str("ESD_S3_PUBLIC_ENDPOINT_URL", default="") or AWS_S3_ENDPOINT_URL
try:
    _default_storage = backend_config(
        ESD_STORAGE,
        root=ESD_STORAGE_ROOT,
        bucket=AWS_STORAGE_BUCKET_NAME,
        endpoint_url=AWS_S3_ENDPOINT_URL,
        region=AWS_S3_REGION_NAME,
        access_key=AWS_ACCESS_KEY_ID,
        secret_key=AWS_SECRET_ACCESS_KEY,
    )
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from exc
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": STORAGES_STATICFILES},
}

# --- Checkpoints -------------------------------------------------------------------------------------------------
ESD_MAX_CHECKPOINT_BYTES = env.int("ESD_MAX_CHECKPOINT_BYTES", default=20 * 1024**3)
# Hosts (names or IP addresses) that downloads may reach even though they resolve to private, loopback or
# link-local addresses. Empty: only public addresses.
ESD_DOWNLOAD_ALLOW_HOSTS = env.list("ESD_DOWNLOAD_ALLOW_HOSTS", default=[])
ESD_DOWNLOAD_TIMEOUT = env.float("ESD_DOWNLOAD_TIMEOUT", default=60.0)  # seconds without a byte before giving up
ESD_DOWNLOAD_RETRIES = env.int("ESD_DOWNLOAD_RETRIES", default=3)  # on transient network errors
ESD_DOWNLOAD_RETRY_DELAY = env.float("ESD_DOWNLOAD_RETRY_DELAY", default=2.0)  # seconds, times 4 per further retry
# Workers keep model files here, by sha256, within a size budget (least recently used go first).
ESD_MODEL_CACHE_DIR = Path(env.str("ESD_MODEL_CACHE_DIR", default=str(ESD_DATA_DIR / "model-cache")))
ESD_MODEL_CACHE_BYTES = env.int("ESD_MODEL_CACHE_BYTES", default=100 * 1024**3)

# --- Endpoints (worker pools) --------------------------------------------------------------------------------------
ESD_WORKER_HEARTBEAT_SECONDS = env.float("ESD_WORKER_HEARTBEAT_SECONDS", default=5.0)
ESD_WORKER_DEAD_AFTER_SECONDS = env.float("ESD_WORKER_DEAD_AFTER_SECONDS", default=20.0)
# How long an idle worker sleeps between looks at its queue (Redis is polled; dramatiq's default is up to 1000 ms).
ESD_WORKER_POLL_MS = env.int("ESD_WORKER_POLL_MS", default=10)
# Every this many seconds each worker queues again the jobs of its queues whose broker message is known lost (a
# broker restarted without persistence, a start while it was down), once they have waited that long.
ESD_REQUEUE_AFTER_SECONDS = env.float("ESD_REQUEUE_AFTER_SECONDS", default=30.0)
# Instance types accepted besides ESD's `ml.*` names: the labels workers advertise.
ESD_INSTANCE_TYPES = env.list("ESD_INSTANCE_TYPES", default=["cpu", "cuda", "gpu"])
ESD_MAX_INSTANCES = env.int("ESD_MAX_INSTANCES", default=64)  # instances (workers) one endpoint may ask for
ESD_MAX_TOTAL_INSTANCES = env.int("ESD_MAX_TOTAL_INSTANCES", default=256)  # their sum over all endpoints
# SageMaker's account quotas per instance type ("ml.g5.2xlarge=8,ml.g4dn.16xlarge=0"): instances of that type over all
# endpoints; a type listed here is bounded by its quota instead of ESD_MAX_INSTANCES
ESD_INSTANCE_QUOTAS = env.dict("ESD_INSTANCE_QUOTAS", default={})
try:
    ESD_INSTANCE_QUOTAS = {kind.strip(): int(quota) for kind, quota in ESD_INSTANCE_QUOTAS.items()}
except ValueError as exc:
    raise ImproperlyConfigured(f"ESD_INSTANCE_QUOTAS: each quota must be a whole number ({exc})") from exc
if any(quota < 0 for quota in ESD_INSTANCE_QUOTAS.values()):
    raise ImproperlyConfigured("ESD_INSTANCE_QUOTAS: quotas cannot be negative")
ESD_AUTOSCALE_TARGET_BACKLOG = env.int("ESD_AUTOSCALE_TARGET_BACKLOG", default=5)  # queued jobs per instance, as ESD
ESD_METRICS_TOKEN = env.str("ESD_METRICS_TOKEN", default="")  # when set, /metrics demands it as a bearer token
ESD_SERVE_DEVICE = env.str("ESD_SERVE_DEVICE", default="cpu")  # device of esd_serve's worker threads
ESD_SERVE_CONNECTION_LIMIT = env.int("ESD_SERVE_CONNECTION_LIMIT", default=1000)  # open connections esd_serve holds
ESD_SERVE_CHANNEL_TIMEOUT = env.int("ESD_SERVE_CHANNEL_TIMEOUT", default=30)  # seconds a silent connection may stay

# --- Inference engine (worker processes) ---------------------------------------------------------------------------
ESD_PIPELINE_CACHE_BYTES = env.int("ESD_PIPELINE_CACHE_BYTES", default=8 * 1024**3)  # loaded pipelines per process
# auto (fp16 on CUDA, fp32 on CPU), fp16, bf16, fp32, or fp8 (Ada/Hopper GPUs: the UNet's linear layers in float8)
ESD_ENGINE_DTYPE = env.str("ESD_ENGINE_DTYPE", default="auto")
if ESD_ENGINE_DTYPE not in ("auto", "fp16", "bf16", "fp32", "fp8"):
    raise ImproperlyConfigured(f"ESD_ENGINE_DTYPE must be auto, fp16, bf16, fp32 or fp8, not {ESD_ENGINE_DTYPE!r}")
# torch.compile of the UNet and VAE decoder: off, default, reduce-overhead (CUDA graphs) or max-autotune (CUDA graphs
# and autotuned kernels); true/false mean default/off
_compile = env.str("ESD_ENGINE_COMPILE", default="off").lower()
ESD_ENGINE_COMPILE = {"true": "default", "1": "default", "false": "off", "0": "off", "": "off"}.get(_compile, _compile)
if ESD_ENGINE_COMPILE not in ("off", "default", "reduce-overhead", "max-autotune"):
    raise ImproperlyConfigured(
        f"ESD_ENGINE_COMPILE must be off, default, reduce-overhead or max-autotune, not {ESD_ENGINE_COMPILE!r}"
    )
ESD_ENGINE_FUSE_QKV = env.bool("ESD_ENGINE_FUSE_QKV", default=True)  # CUDA: fused attention QKV projections
# Dynamic batching: a worker that takes a txt2img job waits up to this long for queued jobs of its endpoint that can
# share its denoising loop; unset (-1): 25 ms on CUDA workers, 0 (off) on CPU ones. At most ESD_MAX_BATCH_IMAGES.
ESD_BATCH_WINDOW_MS = env.int("ESD_BATCH_WINDOW_MS", default=-1)
ESD_MAX_BATCH_IMAGES = env.int("ESD_MAX_BATCH_IMAGES", default=16)
ESD_TORCH_THREADS = env.int("ESD_TORCH_THREADS", default=0)  # CPU threads per worker process; 0: all cores
ESD_ENGINE_VAE_TILING = env.bool("ESD_ENGINE_VAE_TILING", default=False)  # decode large images in tiles
# The most one job may need on a worker (inferences/engine/request/memory.py's estimate), checked at start and by the
# worker; 0: the machine's memory (a CUDA worker: its device's) less 10 %, at least 1 GiB
ESD_WORKER_MEMORY_BYTES = env.int("ESD_WORKER_MEMORY_BYTES", default=0)
ESD_MAX_IMAGE_SIDE = env.int("ESD_MAX_IMAGE_SIDE", default=2048)  # width/height cap of generated images
# Sizes a worker generates once at start, before it reports itself live, with the checkpoint its endpoint last ran
# (the model loaded, and compiled graphs made or loaded for each size): "512x512,1024x1024"; empty: no warm-up.
ESD_ENGINE_WARMUP: list[tuple[int, int]] = []
for _size in env.list("ESD_ENGINE_WARMUP", default=[]):
    _width, _, _height = _size.strip().lower().partition("x")
    if not (_width.isdigit() and _height.isdigit()) or not all(
        64 <= int(side) <= ESD_MAX_IMAGE_SIDE and int(side) % 8 == 0 for side in (_width, _height)
    ):
        raise ImproperlyConfigured(
            f"ESD_ENGINE_WARMUP: {_size.strip()!r} is not a size; give WIDTHxHEIGHT, comma-separated, each side a "
            f"multiple of 8 from 64 to {ESD_MAX_IMAGE_SIDE} (e.g. 512x512,1024x1024)"
        )
    ESD_ENGINE_WARMUP.append((int(_width), int(_height)))
# A job's live preview (the admin's job and Generate pages): A1111's "Approx cheap" picture every this many steps (and
# at most twice a second); 0: off
ESD_PREVIEW_EVERY = env.int("ESD_PREVIEW_EVERY", default=5)
if ESD_PREVIEW_EVERY < 0:
    raise ImproperlyConfigured(f"ESD_PREVIEW_EVERY must be 0 (off) or a number of steps, not {ESD_PREVIEW_EVERY}")
ESD_MAX_STEPS = env.int("ESD_MAX_STEPS", default=150)
ESD_MAX_IMAGES_PER_JOB = env.int("ESD_MAX_IMAGES_PER_JOB", default=16)  # batch_size x n_iter
# report: payload keys the engine does not honour are listed in ignored_parameters; refuse: such a job is refused
ESD_UNHONOURED_PARAMETERS = env.str("ESD_UNHONOURED_PARAMETERS", default="report")
if ESD_UNHONOURED_PARAMETERS not in ("report", "refuse"):
    raise ImproperlyConfigured(f"ESD_UNHONOURED_PARAMETERS must be report or refuse, not {ESD_UNHONOURED_PARAMETERS!r}")
ESD_LOGIN_RATE = env.str("ESD_LOGIN_RATE", default="10/min")  # admin login POSTs per client address
# Proxies (addresses or networks) whose X-Forwarded-For names the client, for the per-client limits above
ESD_TRUSTED_PROXIES = env.list("ESD_TRUSTED_PROXIES", default=[])
for _proxy in ESD_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy.strip(), strict=False)
    except ValueError as exc:
        raise ImproperlyConfigured(f"ESD_TRUSTED_PROXIES: {exc} (give addresses or networks, comma-separated)") from exc

# --- Inference jobs ----------------------------------------------------------------------------------------------
ESD_REALTIME_TIMEOUT = env.float("ESD_REALTIME_TIMEOUT", default=29.0)  # seconds a Real-time start waits (then 504)
ESD_INFERENCE_TIME_LIMIT = env.int("ESD_INFERENCE_TIME_LIMIT", default=3600)  # seconds a job may run
# seconds a running job may still take to finish once esd_serve or serve_endpoint is asked to stop (esd.shutdown)
ESD_SHUTDOWN_GRACE = env.float("ESD_SHUTDOWN_GRACE", default=30.0)
ESD_MAX_PAYLOAD_BYTES = env.int("ESD_MAX_PAYLOAD_BYTES", default=64 * 1024 * 1024)  # api_param.json
ESD_WEBHOOK_URL = env.str("ESD_WEBHOOK_URL", default="")  # POSTed on job start, success and failure
ESD_WEBHOOK_SECRET = env.str("ESD_WEBHOOK_SECRET", default="")  # HMAC-SHA256 key of X-ESD-Signature
# Background-removal models (<name>.onnx); `make` puts u2netp there. Never downloaded at run time.
U2NET_HOME = Path(env.str("U2NET_HOME", default=str(ESD_DATA_DIR / "models" / "u2net")))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("ESD_LOG_LEVEL", default="INFO")},
    # torchao (requirements-fp8.txt; diffusers imports it in every process where it is installed) warns at import
    # about each of its CUDA kernel libraries a CPU build of torch cannot load: noise, not a fault
    "loggers": {"torchao": {"level": "ERROR"}},
}
