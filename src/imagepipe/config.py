"""Every knob of imagepipe, read once from the environment (prefix ``IMAGEPIPE_``).

The README's configuration table documents each field; keep the two in step.
"""

from __future__ import annotations

import base64
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from PIL import Image
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from imagepipe.imaging import plugins
from imagepipe.imaging.formats import FormatName, can_write

MiB = 1024 * 1024
# The database password compose.yaml falls back to when POSTGRES_PASSWORD is unset.
DEV_ONLY_SECRET = "dev-only-insecure-password"

OutputFormat = FormatName | Literal["auto"]
# API keys: a list (each key its own tenant) or tenant name -> that tenant's keys.
KeySet = tuple[str, ...] | dict[str, tuple[str, ...]]
# A tenant's name is its owner id in the database (at most 64 characters there).
TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# JSON bodies (POST /uploads, webhooks…) are never larger than this; uploads stream.
MAX_JSON_BODY_BYTES = 64 * 1024
_RATE = re.compile(r"(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day|s|m|h|d)")
_RATE_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


# A variant as IMAGEPIPE_VARIANTS gives it: the longest side (contain in that square),
# or a box {"width", "height", "fit", "gravity"} (every key present once validated).
# The names mirror imaging.crop's Fit and Gravity, which config may not import.
VariantSetting = int | dict[str, int | str]
VARIANT_FITS = ("contain", "cover")
VARIANT_GRAVITIES = ("center", "smart", "focal")
_VARIANT_FIELDS = ("width", "height", "fit", "gravity")


def parse_variant(name: str, value: object) -> VariantSetting:
    """One entry of IMAGEPIPE_VARIANTS; ValueError naming the variant and the fault."""
    if not name.isidentifier():
        raise ValueError(f"variant {name!r}: the name must be an identifier")
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"variant {name!r}: the box must be > 0, not {value}")
        return value
    if not isinstance(value, dict):
        raise ValueError(
            f"variant {name!r}: expected a number (longest side) or an object "
            f'{{"width", "height", "fit", "gravity"}}, not {value!r}'
        )
    if unknown := sorted(set(value) - set(_VARIANT_FIELDS)):
        raise ValueError(
            f"variant {name!r}: unknown fields {unknown} (allowed: width, height, fit, gravity)"
        )
    box: dict[str, int | str] = {}
    for side in ("width", "height"):
        number = value.get(side)
        if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
            raise ValueError(f"variant {name!r}: {side} must be a whole number > 0")
        box[side] = number
    box["fit"] = fit = value.get("fit", "contain")
    box["gravity"] = gravity = value.get("gravity", "center")
    if fit not in VARIANT_FITS:
        raise ValueError(f"variant {name!r}: fit must be one of {list(VARIANT_FITS)}")
    if gravity not in VARIANT_GRAVITIES:
        raise ValueError(f"variant {name!r}: gravity must be one of {list(VARIANT_GRAVITIES)}")
    if fit == "contain" and gravity != "center":
        # A contained variant keeps the whole image: there is nothing to place.
        raise ValueError(f"variant {name!r}: gravity {gravity!r} needs fit 'cover'")
    return box


def parse_rate(text: str) -> tuple[int, int]:
    """(requests, seconds) of "600/minute", "10/second", "1000/hour", "50/30s"."""
    match = _RATE.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) < 1 or match.group(2) == "0":
        raise ValueError(f"not a rate: {text!r} (e.g. 600/minute, 10/second, 50/30s)")
    unit = _RATE_UNIT_SECONDS[match.group(3)[0]]
    return int(match.group(1)), int(match.group(2) or 1) * unit


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in "30d", "12h", "90m", "45s", "2w" or plain seconds; ValueError if not."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 30d, 12h, 90m, 3600)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


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
    storage_url: str | None = None
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
    allowed_formats: tuple[str, ...] = (
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
    variants: dict[str, VariantSetting] = Field(
        default_factory=lambda: dict[str, VariantSetting](small=150, medium=600, large=1200)
    )
    # "auto": JPEG for opaque images, PNG for images with transparency.
    output_format: OutputFormat = "auto"
    # Each variant is also made in these formats (base format never repeated). AVIF
    # costs several times the encode time of WebP (docs/benchmarks.md).
    extra_formats: tuple[FormatName, ...] = ("WEBP",)
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
    # Retries (with backoff 2, 4, 8… s, at most 60 s) of a task whose storage or
    # database failed; then it fails with service_unavailable (`imagepipe requeue`).
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
    api_keys: Annotated[KeySet, NoDecode] = ()
    admin_api_keys: Annotated[KeySet, NoDecode] = ()
    # Production refuses to start without keys unless this says so explicitly.
    allow_anonymous: bool = False
    # Per-tenant limits (without keys: of the one scope every client shares). Tasks
    # awaiting_upload, queued or processing: more uploads → 429 quota_exceeded.
    key_max_active_tasks: int = Field(default=10_000, ge=1)
    # Mutating requests per tenant, e.g. "600/minute" (GCRA in Redis, shared by every
    # API process); unset: no rate limit. Past it: 429 rate_limited.
    key_rate_limit: str | None = None
    # POST /upload bodies one tenant sends at once (over every API process), beside
    # max_concurrent_uploads per process: 429 too_many_concurrent_uploads.
    key_max_concurrent_uploads: int = Field(default=8, ge=1)
    # Open event streams and ?wait requests of one tenant: 429 too_many_followers.
    key_max_followers: int = Field(default=500, ge=1)
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()

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
    keep_originals: str = "always"
    task_retention: str | None = None
    retention_interval_seconds: float = Field(default=3600, gt=0)

    # Idempotency-Key: how long a key's first answer is replayed.
    idempotency_ttl_seconds: int = Field(default=24 * 3600, gt=0)

    # Webhooks. Deliveries to a per-upload callback_url are signed with this secret
    # (whsec_ + base64 of at least 24 bytes) unless the upload's owner made its own;
    # without it, uploads carrying callback_url are refused.
    webhook_secret: str | None = None
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
    webhook_retry_schedule: Annotated[tuple[float, ...], NoDecode] = (5, 30, 120, 600, 1800, 3600)
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
    url_signing_keys: Annotated[tuple[str, ...], NoDecode] = ()
    # Set: links are absolute (https://img.example.com/r/…); unset: paths (/r/…).
    public_base_url: str | None = None
    # Largest w or h an option string may ask for (400 invalid_options past it).
    on_demand_max_side: int = Field(default=4096, ge=1, le=65535)
    # Named option strings ({"thumb": "w:160,h:160,fit:cover"}); set: /r/ serves p:<name>.
    on_demand_presets: dict[str, str] = Field(default_factory=dict)
    # How long a first request waits for the worker before 503 rendering.
    on_demand_wait_seconds: float = Field(default=10.0, ge=0, le=60)
    # The single-render lock: a render not finished by then (its worker killed) is
    # published again by the next request. Kept well below visibility_timeout.
    on_demand_lock_seconds: float = Field(default=120.0, gt=0)
    # Bytes all derived renditions may take together (oldest made evicted by the
    # maintenance sweep); unset: no budget.
    on_demand_max_bytes: int | None = Field(default=None, ge=0)

    @field_validator("url_signing_keys", mode="before")
    @classmethod
    def _signing_keys_from_env(cls, value: object) -> object:
        # Raw strings, comma-separated; a JSON list of strings (what to_env writes) too.
        if not isinstance(value, str):
            return value
        try:
            listed = json.loads(value) if value.startswith("[") else None
        except ValueError:
            listed = None
        if isinstance(listed, list) and all(isinstance(key, str) for key in listed):
            return tuple(key for key in listed if key.strip())
        return tuple(key.strip() for key in value.split(",") if key.strip())

    @field_validator("public_base_url")
    @classmethod
    def _base_url_valid(cls, value: str | None) -> str | None:
        if not value or not value.strip():
            return None
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("IMAGEPIPE_PUBLIC_BASE_URL starts with http:// or https://")
        return value.strip().rstrip("/")

    @field_validator("on_demand_presets")
    @classmethod
    def _presets_named(cls, value: dict[str, str]) -> dict[str, str]:
        # The option strings themselves are parsed when the app starts (on_demand.options).
        for name in value:
            if not re.fullmatch(r"[a-z0-9_-]{1,32}", name):
                raise ValueError(f"preset name {name!r}: 1-32 of a-z 0-9 _ -")
        return value

    @model_validator(mode="after")
    def _on_demand_lock_below_visibility(self) -> Settings:
        if self.on_demand_lock_seconds * 2 > self.visibility_timeout:
            raise ValueError("on_demand_lock_seconds must be at most half of visibility_timeout")
        return self

    @field_validator("variants", mode="before")
    @classmethod
    def _variants_valid(cls, value: object) -> dict[str, VariantSetting]:
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, dict) or not value:
            raise ValueError("at least one variant is needed (a JSON object: name -> box)")
        return {str(name): parse_variant(str(name), entry) for name, entry in value.items()}

    @field_validator("allowed_formats")
    @classmethod
    def _formats_upper(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        banned = {"EPS", "PS", "PDF", "PSD", "SVG"}
        formats = tuple(f.upper() for f in value)
        if bad := banned.intersection(formats):
            raise ValueError(f"formats never allowed: {sorted(bad)}")
        # Refuse a name Pillow does not know (e.g. "JPG") now, not as a 500 per upload.
        plugins.register()
        if unknown := sorted(set(formats) - set(Image.OPEN)):
            raise ValueError(f"formats Pillow cannot open: {unknown}")
        return formats

    @field_validator("extra_formats")
    @classmethod
    def _formats_writable(cls, value: tuple[FormatName, ...]) -> tuple[FormatName, ...]:
        if missing := [name for name in value if not can_write(name)]:
            raise ValueError(f"this Pillow build cannot write {missing}")
        return tuple(dict.fromkeys(value))

    @field_validator("api_keys", "admin_api_keys", "cors_origins", mode="before")
    @classmethod
    def _list_from_env(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith(("[", "{")):
            return json.loads(text)
        return tuple(item.strip() for item in text.split(",") if item.strip())

    @field_validator("webhook_retry_schedule", mode="before")
    @classmethod
    def _schedule_from_env(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return tuple(parse_duration(item) for item in text.split(",") if item.strip())

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule_valid(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(seconds <= 0 for seconds in value):
            raise ValueError("the retry schedule is one or more positive durations")
        return value

    @field_validator("api_keys", "admin_api_keys")
    @classmethod
    def _keys_valid(cls, value: KeySet) -> KeySet:
        keys = [k for ks in value.values() for k in ks] if isinstance(value, dict) else value
        # An unset variable pasted into the list ('[""]') must not make the empty
        # bearer token a valid key.
        if any(not key.strip() for key in keys):
            raise ValueError("API keys must not be empty or blank")
        if isinstance(value, dict):
            for name, tenant_keys in value.items():
                # Not a 32-hex digest nor "anonymous": those are the owners of list-form
                # keys and of a service without keys, and must never name a tenant.
                if (
                    not TENANT_NAME.fullmatch(name)
                    or name == "anonymous"
                    or re.fullmatch(r"[0-9a-f]{32}", name)
                ):
                    raise ValueError(f"tenant name {name!r}: 1-64 of A-Z a-z 0-9 . _ -")
                if not tenant_keys:
                    raise ValueError(f"tenant {name!r} has no key")
        if len({key.strip() for key in keys}) != len(keys):
            raise ValueError("an API key is listed twice")
        return value

    @field_validator("key_rate_limit", mode="before")
    @classmethod
    def _rate_valid(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        parse_rate(str(value))
        return str(value).strip().lower()

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_valid(cls, value: str | None) -> str | None:
        # Refused here, not by every delivery failing (and retrying) for ever.
        if value is None or not value.strip():
            return None
        value = value.strip()
        body = value.removeprefix("whsec_")
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except ValueError:
            raw = b""
        if not value.startswith("whsec_") or len(raw) < 24:
            raise ValueError(
                "IMAGEPIPE_WEBHOOK_SECRET must be whsec_ followed by the base64 of at "
                "least 24 random bytes, e.g. whsec_$(openssl rand -base64 32)"
            )
        return value

    @field_validator("keep_originals")
    @classmethod
    def _keep_originals_valid(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("always", "never"):
            parse_duration(value)
        return value

    @field_validator("task_retention", mode="before")
    @classmethod
    def _retention_valid(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        parse_duration(str(value))
        return str(value).strip().lower()

    @field_validator("storage_url")
    @classmethod
    def _storage_url_valid(cls, value: str | None) -> str | None:
        if not value:
            return None
        url = urlsplit(value)
        if url.scheme == "file" and (url.netloc not in ("", "localhost") or not url.path):
            raise ValueError("a file storage URL is file:///absolute/path")
        if url.scheme == "s3" and not url.netloc:
            raise ValueError("an S3 storage URL is s3://BUCKET[/PREFIX]")
        if url.scheme not in ("file", "s3"):
            raise ValueError("the storage URL starts with file:// or s3://")
        return value

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
