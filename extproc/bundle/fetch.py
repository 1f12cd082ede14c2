"""Conditional HTTP(S) GETs for the bundle follower (stdlib urllib, run in
the follower's thread)."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPMessage
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from extproc.bundle.archive import MAX_ARCHIVE_BYTES

USER_AGENT = "extproc-bundle"


class FetchError(Exception):
    """The location could not be read (network, HTTP status); one line,
    without the URL's credentials."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int  # 200, 304 (not modified) or 404 (absent)
    body: bytes
    etag: str | None


def check_url(url: str) -> str:
    """``url`` if it is http(s); urllib would also open file:// and ftp://."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {redact(url)}")
    return url


def redact(url: str) -> str:
    """``url`` for a log line: no user info, no query (a presigned URL's
    query is a credential)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: HTTPMessage, newurl: str
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise FetchError(f"redirected to a non-http(s) location ({urlsplit(newurl).scheme}:)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects())


def get(url: str, etag: str | None, timeout: float, max_bytes: int = MAX_ARCHIVE_BYTES) -> Response:
    headers = {"user-agent": USER_AGENT, "accept-encoding": "identity"}
    if etag is not None:
        headers["if-none-match"] = etag
    request = urllib.request.Request(url, headers=headers)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body = response.read(max_bytes + 1)
            new_etag = response.headers.get("etag")
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code in (304, 404):
            return Response(exc.code, b"", etag if exc.code == 304 else None)
        raise FetchError(f"{redact(url)}: HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise FetchError(f"{redact(url)}: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, a malformed answer
        raise FetchError(f"{redact(url)}: {exc}") from None
    if len(body) > max_bytes:
        raise FetchError(f"{redact(url)}: larger than {max_bytes} bytes")
    return Response(200, body, new_etag)
