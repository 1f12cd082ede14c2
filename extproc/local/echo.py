"""The demo upstream: echoes the request it received as JSON, so a user (and
a test) sees exactly what the gateway let through and which headers it set.
POSTs under /v1/ are answered by the mock model (``mock_llm``).

It sits behind Envoy's pooled keep-alive connections and in benchmarks, so it
keeps HTTP/1.1 framing exact: no body on HEAD, 1xx, 204 or 304 (a stray body
would be read as the next response: a 502), chunked request bodies read to
the end, and TCP_NODELAY (headers and body are separate writes; with Nagle
and the peer's delayed ACK each response stalled ~40 ms).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from extproc.local import mock_llm

_NO_BODY_STATUSES = frozenset({204, 304})


class _EchoHttpServer(ThreadingHTTPServer):
    model_requests: list[bytes]  # raw bodies the mock model received


class _EchoHandler(BaseHTTPRequestHandler):
    server: _EchoHttpServer
    protocol_version = "HTTP/1.1"
    server_version = "extproc-echo"
    disable_nagle_algorithm = True  # socketserver sets TCP_NODELAY on each connection

    def _read_body(self) -> bytes | None:
        """The request body, or None when its framing is unreadable (the
        connection is then closed, never reused out of step)."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(1024)
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    return None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)  # the CRLF after each chunk
        length = self.headers.get("content-length") or "0"
        if not length.isdigit():
            return None
        return self.rfile.read(int(length)) if int(length) else b""

    def _echo(self) -> None:
        body = self._read_body()
        if body is None:
            self.close_connection = True
            return self._json(400, {"error": {"message": "unreadable request body framing"}})
        if self.command == "POST" and self.path.startswith("/v1/"):
            return self._model(body)
        payload = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
        ).encode()
        self._send(200, payload, ("x-upstream", "echo"))

    def _model(self, raw: bytes) -> None:
        self.server.model_requests.append(raw)  # what the model saw, for the tests
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._json(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
        status, payload, events = mock_llm.answer(self.path.split("?", 1)[0], body)
        if events is None:
            return self._json(status, payload or {})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for event in events:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            time.sleep(0.002)  # let deltas travel as separate chunks
        self.wfile.write(b"0\r\n\r\n")

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode())

    def _send(self, status: int, body: bytes, *headers: tuple[str, str]) -> None:
        """One response with exact framing: HEAD gets GET's headers (and its
        content-length) without the body; 1xx, 204 and 304 get neither."""
        bodiless = status < 200 or status in _NO_BODY_STATUSES
        self.send_response(status)
        if not bodiless:
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if not bodiless and self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _echo

    def log_message(self, format: str, *args: Any) -> None:
        pass


class EchoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.httpd = _EchoHttpServer((host, port), _EchoHandler)
        self.httpd.daemon_threads = True
        self.httpd.model_requests = []
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="echo-upstream", daemon=True)

    def start(self) -> EchoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
