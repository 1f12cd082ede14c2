"""A real HTTP server for bundle tests: serves files from memory with strong
ETags and If-None-Match (304), in a thread on an ephemeral loopback port."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class BundleServer:
    def __init__(self, etags: bool = True) -> None:
        self.etags = etags  # False: a server that ignores If-None-Match and sends no ETag
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, int, str | None]] = []  # (path, status, if-none-match)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.port = 0

    def publish(self, name: str, archive: bytes, signature: bytes | None) -> None:
        """The archive at /name and its signature at /name.sig (absent: None)."""
        with self._lock:
            self.files[f"/{name}"] = archive
            if signature is None:
                self.files.pop(f"/{name}.sig", None)
            else:
                self.files[f"/{name}.sig"] = signature

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self, port: int = 0) -> BundleServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    body = server.files.get(self.path)
                condition = self.headers.get("if-none-match")
                if body is None:
                    status = 404
                else:
                    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
                    status = 304 if condition == etag and server.etags else 200
                with server._lock:
                    server.requests.append((self.path, status, condition))
                self.send_response(status)
                if body is not None and server.etags:
                    self.send_header("etag", etag)
                self.send_header("content-length", str(len(body) if status == 200 and body is not None else 0))
                self.end_headers()
                if status == 200 and body is not None:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
