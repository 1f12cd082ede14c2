"""A real identity provider stand-in: a stdlib HTTP server on an ephemeral
loopback port serving a JWKS and an OIDC discovery document. Keys can be
swapped (rotation), the server can answer 500 or be stopped (outage), and it
counts every hit per path so tests can assert how often it was called."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from extproc.local.demo_keys import jwks_for

JWKS_PATH = "/jwks.json"
DISCOVERY_PATH = "/.well-known/openid-configuration"


class IdpServer:
    def __init__(self, issuer: str = "https://idp.test", delay: float = 0.0):
        self.issuer = issuer
        self.jwks: dict = {"keys": []}
        self.discovery: dict | None = None  # None: the default document pointing at JWKS_PATH
        self.status = 200
        self.delay = delay
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with server._lock:
                    server.hits[self.path] += 1
                if server.delay:
                    time.sleep(server.delay)
                if server.status != 200:
                    body, status = b'{"error":"down"}', server.status
                elif self.path == JWKS_PATH:
                    body, status = json.dumps(server.jwks).encode(), 200
                elif self.path == DISCOVERY_PATH:
                    doc = (
                        server.discovery
                        if server.discovery is not None
                        else {"issuer": server.issuer, "jwks_uri": server.url + JWKS_PATH}
                    )
                    body, status = json.dumps(doc).encode(), 200
                else:
                    body, status = b"{}", 404
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._running = True

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH

    @property
    def discovery_url(self) -> str:
        return self.url + DISCOVERY_PATH

    def serve_keys(self, public_keys: dict) -> None:
        self.jwks = jwks_for(public_keys)

    def stop(self) -> None:
        if self._running:
            self._running = False
            self.httpd.shutdown()
            self.httpd.server_close()
            self._thread.join(5)
