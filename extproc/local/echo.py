"""The demo upstream: echoes the request it received as JSON, so a user (and
a test) sees exactly what the gateway let through and which headers it set.
POSTs under /v1/ are answered by the mock model (``mock_llm``)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from extproc.local import mock_llm


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "extproc-echo"

    def _echo(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.command == "POST" and self.path.startswith("/v1/"):
            return self._model(body)
        payload = json.dumps({
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.send_header("x-upstream", "echo")
        self.end_headers()
        self.wfile.write(payload)

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
            return self._json(status, payload)
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

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _echo

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass


class EchoServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.httpd = ThreadingHTTPServer((host, port), _EchoHandler)
        self.httpd.daemon_threads = True
        self.httpd.model_requests = []  # raw bodies the mock model received
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="echo-upstream", daemon=True)

    def start(self) -> EchoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
