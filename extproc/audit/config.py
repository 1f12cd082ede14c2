"""What the audit trail reads from the environment (no heavy imports here:
this decides whether the OpenTelemetry SDK is loaded at all)."""

from __future__ import annotations

import os
from importlib import metadata

DEFAULT_SERVICE_NAME = "extproc"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def tracing_endpoint() -> str | None:
    """The OTLP endpoint spans go to, or None when tracing is off:
    ``OTEL_SDK_DISABLED=true``, ``OTEL_TRACES_EXPORTER=none``, or neither
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` nor ``OTEL_EXPORTER_OTLP_ENDPOINT`` set."""
    if _env_true("OTEL_SDK_DISABLED"):
        return None
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporters in ("none", ""):
        return None
    return os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None


def package_version() -> str:
    try:
        return metadata.version("extproc")
    except metadata.PackageNotFoundError:
        return "0+unknown"
