"""Every knob of imagepipe, read once from the environment (prefix ``IMAGEPIPE_``).

The README's configuration table documents each field; keep the two in step. How text
values are parsed and checked lives beside this module (``config_parsing``,
``config_variants``, ``config_formats``); the names they export that callers use are
re-exported here.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from imagepipe.config_formats import FormatName, check_allowed, check_writable
from imagepipe.config_parsing import (
    TENANT_NAME,
    KeySet,
    check_base_url,
    check_keep_originals,
    check_keys,
    check_preset_names,
    check_schedule,
    check_storage_url,
    check_webhook_secret,
    list_from_env,
    optional_duration,
    optional_rate,
    parse_duration,
    parse_rate,
    schedule_from_env,
    signing_keys_from_env,
)
from imagepipe.config_variants import (
    VARIANT_FITS,
    VARIANT_GRAVITIES,
    VariantSetting,
    parse_variant,
    parse_variants,
)

__all__ = [
    "DEV_ONLY_SECRET",
    "MAX_JSON_BODY_BYTES",
    "TENANT_NAME",
    "VARIANT_FITS",
    "VARIANT_GRAVITIES",
    "KeySet",
    "MiB",
    "OutputFormat",
    "Settings",
    "VariantSetting",
    "parse_duration",
    "parse_rate",
    "parse_variant",
]

MiB = 1024 * 1024
# The database password compose.yaml falls back to when POSTGRES_PASSWORD is unset.
DEV_ONLY_SECRET = "dev-only-insecure-password"

OutputFormat = FormatName | Literal["auto"]
# JSON bodies (POST /uploads, webhooks…) are never larger than this; uploads stream.
MAX_JSON_BODY_BYTES = 64 * 1024

# API keys: JSON or comma-separated in the environment, checked as a set.
ApiKeys = Annotated[KeySet, NoDecode, BeforeValidator(list_from_env), AfterValidator(check_keys)]
RetrySchedule = Annotated[
    tuple[float, ...], NoDecode, BeforeValidator(schedule_from_env), AfterValidator(check_schedule)
]


class Settings(BaseSettings):
    # Errors never echo a value: a malformed secret or key must not reach the logs.
    model_config = SettingsConfigDict(
        env_prefix="IMAGEPIPE_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # "production" refuses the development-only secrets compose.yaml falls back to.
    environment: Literal["development", "production"] = "development"

    # Where the embedded defaults (SQLite file, local storage) live.
    data_dir: Path = Path("data")
    # sqlite+aiosqlite:///path or postgresql+asyncpg://...; None means a SQLite file
    # under data_dir. The worker derives its sync URL from this one.
    database_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    # file:///abs/path or s3://BUCKET[/PREFIX]; None means file:// under storage_root
    # (an older alias) or else data_dir/storage.
    storage_url: Annotated[str | None, AfterValidator(check_storage_url)] = None
    storage_root: Path | None = None
    # S3-compatible endpoint (SeaweedFS, MinIO…); None means AWS. Credentials and region
    # come from the standard AWS_* variables, read by the client itself.
    s3_endpoint_url: str | None = None
    # The endpoint as clients (browsers, the CLI) reach it, when that differs from the
    # one the services use (compose: http://seaweedfs:8333 inside, http://localhost:8333
    # on the host). Presigned URLs are signed for it; None means s3_endpoint_url.
    s3_public_endpoint_url: str | None = None
    # Every S3 call is bounded: connect and per-read timeouts, a fixed number of tries.
    s3_connect_timeout_seconds: float = Field(default=3.0, gt=0)
    s3_read_timeout_seconds: float = Field(default=10.0, gt=0)
    s3_max_attempts: int = Field(default=3, ge=1, le=10)
    # proxy: the API streams variant bytes; redirect: 307 to a presigned URL (where the
    # storage can make one).
    variant_delivery: Literal["proxy", "redirect"] = "proxy"
    presigned_url_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)
    # Direct uploads: how long the upload URL is valid; a task still awaiting_upload
    # after this is failed with upload_expired. At most 7 days (the S3 presign limit).
    direct_upload_ttl_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)

    # Limits checked at upload time (and again by the worker before a full decode).
    max_upload_bytes: int = Field(default=25 * MiB, gt=0)
    max_pixels: int = Field(default=50_000_000, gt=0)  # width * height * frames
    allowed_formats: Annotated[tuple[str, ...], AfterValidator(check_allowed)] = (
        "JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "HEIF", "AVIF"
    )  # fmt: skip
    # Pages/frames an upload may declare, whatever their size: tiny pages never reach
    # the pixel cap, but each one costs header work.
    max_frames: int = Field(default=1000, ge=1)
    # Bytes one decoded frame may take in memory (width * height * bytes per pixel of
    # the mode Pillow decodes to), so worker memory stays bounded by a known figure.
    max_decoded_bytes: int = Field(default=200 * MiB, gt=0)
    # Slow clients: a request head (request line + headers) must arrive within this of
    # its first byte (or of the connection opening); an upload body that sends no byte
    # for the idle timeout, or is not complete within the total one, is cut off.
    request_head_timeout_seconds: float = Field(default=10.0, gt=0)
    upload_idle_timeout_seconds: float = Field(default=30.0, gt=0)
    upload_timeout_seconds: float = Field(default=600.0, gt=0)
    # Uploads (POST /upload and direct-upload PUTs) one API process receives at once;
    # more are answered 503 too_many_uploads with Retry-After.
    max_concurrent_uploads: int = Field(default=16, ge=1)
    # Free space an upload must leave on the filesystem it is received on (and on
    # file:// storage); less is answered 503 insufficient_storage before any byte.
    min_free_disk_mb: int = Field(default=256, ge=0)
    # Header probes in the API run here, never in the shared thread pool, and each may
    # spend at most this much CPU time parsing a header.
    probe_concurrency: int = Field(default=2, ge=1)
    probe_cpu_seconds: float = Field(default=1.0, gt=0)

    # Previews: name -> longest side in pixels (fit inside that square), or a box
    # {"width", "height", "fit": contain|cover, "gravity": center|smart|focal}; both
    # forms mix in one map. Kept as given (a box with every key); imaging.shapes makes
    # each an imaging Box.
    variants: Annotated[dict[str, VariantSetting], BeforeValidator(parse_variants)] = Field(
        default_factory=lambda: dict[str, VariantSetting](small=150, medium=600, large=1200)
    )
    # "auto": JPEG for opaque images, PNG for images with transparency.
    output_format: OutputFormat = "auto"
    # Each variant is also made in these formats (base format never repeated). AVIF
    # costs several times the encode time of WebP (docs/benchmarks.md).
    extra_formats: Annotated[tuple[FormatName, ...], AfterValidator(check_writable)] = ("WEBP",)
    # Extra formats are made after the task succeeded, by follow-up work. On the host
    # that rendered the base, they start from the resized pixels it left in this local
    # spool (None: a directory under the system temp dir), up to this many MiB (oldest
    # evicted first; 0 turns the spool off: the follow-up decodes the original again).
    spool_dir: Path | None = None
    spool_max_mb: int = Field(default=256, ge=0)
    jpeg_quality: int = Field(default=85, ge=1, le=100)
    webp_quality: int = Field(default=80, ge=1, le=100)
    avif_quality: int = Field(default=60, ge=1, le=100)
    # Animated GIF/WebP keep at most this many frames in their animated WebP variants.
    max_animation_frames: int = Field(default=200, ge=1)

    # Worker time limits (seconds). The broker's visibility timeout must exceed the
    # hard limit, or Redis re-delivers a task that is still running.
    task_soft_time_limit: float = Field(default=60, gt=0)
    task_hard_time_limit: float = Field(default=90, gt=0)
    visibility_timeout: int = Field(default=600, gt=0)
    # A pool process whose resident memory is above this after a task is replaced
    # (Celery's worker_max_memory_per_child); 0 turns it off. Every input under the
    # pixel cap peaks below 250 MB, so more means fragmentation or a leak.
    worker_max_memory_per_child_mb: int = Field(default=400, ge=0)
    # Uploads (POST /upload, POST /uploads) are refused with 503 queue_full while more
    # tasks than this wait in the render queue; its length is read (one Redis LLEN) at
    # most once per queue_depth_cache_seconds per API process.
    max_queue_depth: int = Field(default=10000, ge=1)
    queue_depth_cache_seconds: float = Field(default=1.0, ge=0)
    # How often a task may be started before it is failed for good (poison images).
    # Claims given back because storage or the database failed do not count.
    max_attempts: int = Field(default=3, ge=1)
    # Retries (with backoff 2, 4, 8… s, at most 60 s: services.transient.RetryPolicy)
    # of worker work whose storage or database failed: a render then fails with
    # service_unavailable (`imagepipe requeue`); a re-render or extra format stays due.
    transient_retries: int = Field(default=5, ge=0)
    # Reconciler: re-enqueue queued tasks older than this, and processing tasks whose
    # lease (hard limit + margin) has expired.
    queued_grace_seconds: float = Field(default=30, gt=0)
    reconcile_interval_seconds: float = Field(default=15, gt=0)
    # A processing claim is trusted for the hard time limit plus this margin.
    lease_margin_seconds: float = Field(default=30, gt=0)

    # Publishing to the broker must never hang a request.
    broker_timeout_seconds: float = Field(default=3.0, gt=0)
    retry_after_seconds: int = Field(default=5, ge=1)

    # Security: empty means no API key is required. From the environment, a JSON list
    # or comma-separated (each key its own tenant), or a JSON object naming tenants
    # ({"tenant-a": ["key1", "key2"]}: several keys, one owner, so keys can rotate); an
    # empty value means none. With keys, a task belongs to the tenant whose key created
    # it; admin keys see (and delete) every task. services/tenancy.py reads these.
    api_keys: ApiKeys = ()
    admin_api_keys: ApiKeys = ()
    # Production refuses to start without keys unless this says so explicitly.
    allow_anonymous: bool = False
    # Per-tenant limits (without keys: of the one scope every client shares). Tasks
    # awaiting_upload, queued or processing: more uploads → 429 quota_exceeded.
    key_max_active_tasks: int = Field(default=10_000, ge=1)
    # Mutating requests per tenant, e.g. "600/minute" (GCRA in Redis, shared by every
    # API process); unset: no rate limit. Past it: 429 rate_limited.
    key_rate_limit: Annotated[str | None, BeforeValidator(optional_rate)] = None
    # POST /upload bodies one tenant sends at once (over every API process), beside
    # max_concurrent_uploads per process: 429 too_many_concurrent_uploads.
    key_max_concurrent_uploads: int = Field(default=8, ge=1)
    # Open event streams and ?wait requests of one tenant: 429 too_many_followers.
    key_max_followers: int = Field(default=500, ge=1)
    cors_origins: Annotated[tuple[str, ...], NoDecode, BeforeValidator(list_from_env)] = ()

    # Following a task (GET /tasks/{id}/events, ?wait=N): a Redis notification wakes
    # followers at once; they also re-read the row this often, so a lost notification
    # delays them by at most this long.
    events_reread_seconds: float = Field(default=5.0, gt=0)
    # A comment line this often keeps proxies from closing a quiet event stream.
    events_keepalive_seconds: float = Field(default=15.0, gt=0)
    # An event stream ends after this long (the client reconnects, EventSource does it
    # by itself): a follower holds its slot and its re-reads for a bounded time.
    events_max_stream_seconds: float = Field(default=600.0, gt=0)

    # Retention. Originals (which carry the EXIF/GPS the previews drop): "always",
    # "never" (removed once the task succeeds) or a duration after the task finished
    # ("30d", "12h", "90m", "3600s" or plain seconds). Finished tasks older than
    # task_retention are removed with their files; unset keeps them. Applied by
    # `imagepipe purge` and by beat every retention_interval_seconds.
    keep_originals: Annotated[str, AfterValidator(check_keep_originals)] = "always"
    task_retention: Annotated[str | None, BeforeValidator(optional_duration)] = None
    retention_interval_seconds: float = Field(default=3600, gt=0)

    # Idempotency-Key: how long a key's first answer is replayed.
    idempotency_ttl_seconds: int = Field(default=24 * 3600, gt=0)

    # Webhooks. Deliveries to a per-upload callback_url are signed with this secret
    # (whsec_ + base64 of at least 24 bytes) unless the upload's owner made its own;
    # without it, uploads carrying callback_url are refused.
    webhook_secret: Annotated[str | None, AfterValidator(check_webhook_secret)] = None
    # Allow webhook URLs that resolve to loopback, private or link-local addresses.
    webhook_allow_private: bool = False
    # Bound on the whole of each delivery attempt: connect, send, the answer's head
    # (its body is never read).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # Bound on resolving a webhook URL's host (at subscription, upload and each
    # attempt); lookups run on a few threads of their own, never the shared pool.
    webhook_resolve_timeout_seconds: float = Field(default=5.0, gt=0)
    # The wait before each retry of a failed delivery ("5s,30s,2m,…" or JSON seconds),
    # jittered by a fifth; a delivery ends failed after one attempt more than listed.
    webhook_retry_schedule: RetrySchedule = (5, 30, 120, 600, 1800, 3600)
    # Subscriptions of one key (409 webhook_limit past it).
    key_max_webhooks: int = Field(default=50, ge=1)
    # Replays of one key waiting to be delivered (429 too_many_replays past it).
    key_max_pending_replays: int = Field(default=100, ge=1)
    # Each sweep hands the broker at most this many due deliveries, at most
    # webhook_sweep_per_owner of one owner (oldest first): one owner's backlog never
    # floods the broker or delays the others.
    webhook_sweep_limit: int = Field(default=500, ge=1)
    webhook_sweep_per_owner: int = Field(default=20, ge=1)

    # Prometheus endpoint of each worker (0: off). The API serves its own at /metrics.
    # Loopback by default; containers set 0.0.0.0 so the stack's Prometheus reaches it.
    worker_metrics_port: int = Field(default=9808, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"

    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: str = "INFO"

    # --- on-demand renditions (services/on_demand) ----------------------------------
    # HMAC keys of /r/ links, comma-separated raw strings: the first signs, all verify
    # (rotation). Empty: /r/ answers 404 and POST /tasks/{id}/links 409.
    url_signing_keys: Annotated[
        tuple[str, ...], NoDecode, BeforeValidator(signing_keys_from_env)
    ] = ()
    # Set: links are absolute (https://img.example.com/r/…); unset: paths (/r/…).
    public_base_url: Annotated[str | None, AfterValidator(check_base_url)] = None
    # Largest w or h an option string may ask for (400 invalid_options past it).
    on_demand_max_side: int = Field(default=4096, ge=1, le=65535)
    # Named option strings ({"thumb": "w:160,h:160,fit:cover"}); set: /r/ serves p:<name>.
    on_demand_presets: Annotated[dict[str, str], AfterValidator(check_preset_names)] = Field(
        default_factory=dict
    )
    # How long a first request waits for the worker before 503 rendering.
    on_demand_wait_seconds: float = Field(default=10.0, ge=0, le=60)
    # The single-render lock: a render not finished by then (its worker killed) is
    # published again by the next request. At most half of visibility_timeout; unset,
    # 120 s or that half, whichever is shorter.
    on_demand_lock_seconds: float = Field(default=120.0, gt=0)
    # Bytes all derived renditions may take together (oldest made evicted by the
    # maintenance sweep); unset: no budget.
    on_demand_max_bytes: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _on_demand_lock_below_visibility(self) -> Settings:
        if "on_demand_lock_seconds" not in self.model_fields_set:
            # A short visibility timeout (a test's, a small deployment's) shortens the
            # default lock with it, rather than refusing settings nobody wrote.
            half = self.visibility_timeout / 2
            if self.on_demand_lock_seconds > half:
                object.__setattr__(self, "on_demand_lock_seconds", half)
        if self.on_demand_lock_seconds * 2 > self.visibility_timeout:
            raise ValueError("on_demand_lock_seconds must be at most half of visibility_timeout")
        return self

    @model_validator(mode="after")
    def _limits_consistent(self) -> Settings:
        if self.task_soft_time_limit >= self.task_hard_time_limit:
            raise ValueError("task_soft_time_limit must be below task_hard_time_limit")
        if self.visibility_timeout <= self.task_hard_time_limit:
            raise ValueError("visibility_timeout must exceed task_hard_time_limit")
        if self.environment == "production" and DEV_ONLY_SECRET in (self.database_url or ""):
            raise ValueError("the development-only database password is refused in production")
        if self.environment == "production" and not self.keys_required and not self.allow_anonymous:
            raise ValueError(
                "production needs IMAGEPIPE_API_KEYS (or IMAGEPIPE_ALLOW_ANONYMOUS=true to "
                "serve without keys)"
            )
        return self

    @property
    def keys_required(self) -> bool:
        """Whether requests need an API key (regular or admin)."""
        return bool(self.api_keys or self.admin_api_keys)

    @property
    def key_rate(self) -> tuple[int, int] | None:
        """(requests, seconds) of ``key_rate_limit``; None when unset."""
        return None if self.key_rate_limit is None else parse_rate(self.key_rate_limit)

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'imagepipe.db').resolve()}"

    @cached_property
    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return (self.storage_root or self.data_dir / "storage").resolve().as_uri()

    @cached_property
    def resolved_storage_root(self) -> Path:
        """The directory of a ``file://`` storage URL."""
        url = urlsplit(self.resolved_storage_url)
        if url.scheme != "file":
            raise ValueError(f"not a local storage URL: {self.resolved_storage_url}")
        return Path(unquote(url.path)).resolve()

    @property
    def keep_originals_seconds(self) -> float | None:
        """How long after a task succeeds its original is kept; None: for ever."""
        if self.keep_originals == "always":
            return None
        return 0.0 if self.keep_originals == "never" else parse_duration(self.keep_originals)

    @property
    def task_retention_seconds(self) -> float | None:
        """How long a finished task is kept; None: for ever."""
        return None if self.task_retention is None else parse_duration(self.task_retention)

    @property
    def lease_seconds(self) -> float:
        """How long a processing claim is trusted before the reconciler takes it back."""
        return self.task_hard_time_limit + self.lease_margin_seconds

    def to_env(self) -> dict[str, str]:
        """The ``IMAGEPIPE_*`` variables that give another process these same settings.

        Every field is written (unset optional ones are left out), so a subprocess
        started with them reads back an equal ``Settings``.
        """
        env: dict[str, str] = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None:
                continue
            text = value if isinstance(value, str) else json.dumps(value)
            env[f"IMAGEPIPE_{name.upper()}"] = text
        return env
