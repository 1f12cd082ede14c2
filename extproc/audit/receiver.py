"""A minimal OTLP/gRPC trace receiver that keeps what it is sent.

For tests and for looking at what the gateway exports without running a
collector: ``python -m extproc.audit.receiver --port 4317`` prints one line
per span. It implements ``opentelemetry.proto.collector.trace.v1.TraceService``
from the ``opentelemetry-proto`` package; nothing is stored on disk.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    events: list[Any]  # [(name, {attributes})]


def _value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def _attributes(key_values: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


class _Service(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.receiver._add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """``start()`` on an ephemeral loopback port; ``spans()`` decodes what
    arrived; ``raw`` keeps every request's serialized bytes."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        # The generated gRPC module carries no annotations.
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Service(self), self._server)  # type: ignore[no-untyped-call]
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        self.host = host
        self._lock = threading.Lock()
        self.requests: list[Any] = []
        self.raw: list[bytes] = []

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(0).wait()

    def _add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self._lock:
            self.requests.append(request)
            self.raw.append(request.SerializeToString())

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            requests = list(self.requests)
        return decode(requests)

    def take(self) -> list[ReceivedSpan]:
        """The spans received since the last ``take``, forgetting them."""
        with self._lock:
            requests = self.requests[:]
            del self.requests[:], self.raw[:]
        return decode(requests)

    def wait_for(self, predicate: Callable[[list[ReceivedSpan]], T], timeout: float = 30.0, interval: float = 0.1) -> T:
        """Poll ``predicate(spans)`` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self.spans())
            if result or time.monotonic() > deadline:
                return result
            time.sleep(interval)


def decode(requests: Iterable[trace_service_pb2.ExportTraceServiceRequest]) -> list[ReceivedSpan]:
    """The spans in ExportTraceServiceRequests, flattened."""
    out = []
    for request in requests:
        for resource_spans in request.resource_spans:
            service = _attributes(resource_spans.resource.attributes).get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    out.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes=_attributes(span.attributes),
                            events=[(e.name, _attributes(e.attributes)) for e in span.events],
                        )
                    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the spans an OTLP/gRPC exporter sends.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4317)
    args = parser.parse_args(argv)
    receiver = OtlpReceiver(args.host, args.port).start()
    print(f"OTLP/gRPC receiver on {receiver.endpoint}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            for span in receiver.take():  # printed, then forgotten: memory stays flat
                parent = span.parent_span_id or "-"
                print(f"{span.service:16} {span.trace_id} {span.span_id} parent={parent:16} {span.name}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
