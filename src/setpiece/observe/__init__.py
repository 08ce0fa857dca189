"""Observability of a running stack: Prometheus metrics and OpenTelemetry traces.

Turned on by ``Stack(..., observe=Observability(...))`` (or ``setpiece run --metrics-port`` /
``--otlp``). This package is an extension of the runtime (:class:`Observe`); its dependencies
(the ``otel`` extra: ``opentelemetry-sdk``, ``opentelemetry-exporter-otlp-proto-http``,
``prometheus-client``) are imported only when a runtime that observes starts.
"""

from setpiece.observe._api import ObserveMethods
from setpiece.observe._extension import EXTENSION, OBSERVE_SCOPE, Observe
from setpiece.observe._serve import serve_metrics

__all__ = ["EXTENSION", "OBSERVE_SCOPE", "Observe", "ObserveMethods", "serve_metrics"]
