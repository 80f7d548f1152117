"""What the standard ``OTEL_*`` variables ask of subrelay's traces, read once at start-up.

The names, defaults and formats are the OpenTelemetry specification's (environment variables, OTLP exporter,
batch span processor, samplers), so a deployment's usual settings work unchanged: the endpoint (the base one
gets ``/v1/traces`` appended, the per-signal one is used as it is), headers (``k=v,k2=v2``, values
URL-decoded), the timeout (milliseconds, as the specification says; the Python SDK read seconds), gzip
compression, TLS files, the service name and resource attributes, the sampler and its argument, and the
batch processor's delay, queue and batch sizes. A malformed value logs one warning and its default is used:
tracing is an observer, it never stops the proxy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from proxy.observe.redact import get_logger

log = get_logger("subrelay.tracing")
ALL = 1 << 64  # a root-sampling bound every trace id's low 64 bits are below (always on)


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces."""
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return False
    exporters = {part.strip().lower() for part in (env.get("OTEL_TRACES_EXPORTER") or "").split(",") if part.strip()}
    if "none" in exporters:
        return False
    return "otlp" in exporters or bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                                       or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


@dataclass(frozen=True, slots=True)
class OtelSettings:
    endpoint: str = "http://localhost:4318/v1/traces"
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0  # seconds, per export request (retries included)
    gzip: bool = False
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    resource: dict[str, str] = field(default_factory=dict)
    root_bound: int = ALL  # a root span is sampled when its trace id's low 64 bits are below this
    follow_parent: bool = True  # parentbased_*: a remote parent's sampled flag decides
    schedule_delay: float = 5.0  # seconds between exports (OTEL_BSP_SCHEDULE_DELAY, ms)
    max_queue: int = 2048  # spans waiting; past this they are dropped and counted
    max_batch: int = 512  # spans per export request
    export_timeout: float = 30.0  # OTEL_BSP_EXPORT_TIMEOUT: the bound on one batch's export, retries included


def settings_from_env(env: Mapping[str, str], version: str = "") -> OtelSettings:
    """The settings, every malformed value warned about and defaulted."""
    def get(*names: str) -> str:
        for name in names:
            value = (env.get(name) or "").strip()
            if value:
                return value
        return ""

    endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if not endpoint:
        endpoint = (get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318").removesuffix("/") + "/v1/traces"
    protocol = get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol != "http/protobuf":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s: subrelay exports OTLP over http/protobuf only", protocol[:20])
    compression = get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION").lower()
    if compression not in ("", "none", "gzip"):
        log.warning("OTEL_EXPORTER_OTLP_COMPRESSION=%s: only gzip or none; sending uncompressed", compression[:20])
    timeout = _number(get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
                      "OTEL_EXPORTER_OTLP_TIMEOUT", 10000) / 1000
    if timeout < 0.1:
        log.warning("OTEL_EXPORTER_OTLP_TIMEOUT is in milliseconds (the specification's unit): %g ms is very short",
                    timeout * 1000)
    root_bound, follow = _sampler(get("OTEL_TRACES_SAMPLER").lower(), get("OTEL_TRACES_SAMPLER_ARG"))
    max_queue = int(_number(get("OTEL_BSP_MAX_QUEUE_SIZE"), "OTEL_BSP_MAX_QUEUE_SIZE", 2048, minimum=1))
    max_batch = int(_number(get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"), "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, minimum=1))
    return OtelSettings(
        endpoint=endpoint, headers=_pairs(get("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
                                          "OTEL_EXPORTER_OTLP_HEADERS", lower=True),
        timeout=timeout, gzip=compression == "gzip",
        ca_file=get("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE") or None,
        client_cert=get("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE") or None,
        client_key=get("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY") or None,
        resource=_resource(env, version), root_bound=root_bound, follow_parent=follow,
        schedule_delay=_number(get("OTEL_BSP_SCHEDULE_DELAY"), "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000,
        max_queue=max_queue, max_batch=min(max_batch, max_queue),
        export_timeout=_number(get("OTEL_BSP_EXPORT_TIMEOUT"), "OTEL_BSP_EXPORT_TIMEOUT", 30000) / 1000)


def endpoint_parts(endpoint: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path with query) of an http(s) endpoint, or None when it is not one."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _number(raw: str, name: str, default: int, minimum: float = 0) -> float:
    """A number (milliseconds, or a count), the default when it is unset or malformed."""
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum or value == float("inf"):
        log.warning("%s=%s is not a number (>= %g); using %d", name, raw[:20], minimum, default)
        return default
    return value


def _pairs(raw: str, name: str, lower: bool = False) -> dict[str, str]:
    """``k=v,k2=v2`` with URL-encoded values (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES)."""
    pairs: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, equals, value = item.partition("=")
        key = unquote(key).strip()
        if not equals or not key:
            log.warning("%s: %r is not key=value; left out", name, item[:40] if "HEADERS" not in name else "…")
            continue
        pairs[key.lower() if lower else key] = unquote(value).strip()
    return pairs


def _resource(env: Mapping[str, str], version: str) -> dict[str, str]:
    """The resource's attributes: the SDK-style telemetry.sdk.* (naming subrelay's own exporter), then
    OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME over both (default ``subrelay``)."""
    resource = {"telemetry.sdk.language": "python", "telemetry.sdk.name": "subrelay",
                "telemetry.sdk.version": version or "unknown", "service.name": "subrelay"}
    resource.update(_pairs(env.get("OTEL_RESOURCE_ATTRIBUTES") or "", "OTEL_RESOURCE_ATTRIBUTES"))
    service = (env.get("OTEL_SERVICE_NAME") or "").strip()
    if service:
        resource["service.name"] = service
    return resource


def _sampler(name: str, argument: str) -> tuple[int, bool]:
    """(root bound, follow the parent) for OTEL_TRACES_SAMPLER; the default is parentbased_always_on."""
    def ratio() -> int:
        try:
            rate = float(argument) if argument else 1.0
        except ValueError:
            rate = -1.0
        if not 0.0 <= rate <= 1.0:
            log.warning("OTEL_TRACES_SAMPLER_ARG=%s is not a ratio in [0, 1]; using 1.0", argument[:20])
            rate = 1.0
        return round(rate * ALL)  # the SDK's TraceIdRatioBased: the trace id's low 64 bits below this

    samplers = {"always_on": (lambda: ALL, False), "always_off": (lambda: 0, False), "traceidratio": (ratio, False),
                "parentbased_always_on": (lambda: ALL, True), "parentbased_always_off": (lambda: 0, True),
                "parentbased_traceidratio": (ratio, True)}
    if name and name not in samplers:
        log.warning("OTEL_TRACES_SAMPLER=%s is not one subrelay knows; using parentbased_always_on", name[:30])
    bound, follow = samplers.get(name or "parentbased_always_on", samplers["parentbased_always_on"])
    return bound(), follow
