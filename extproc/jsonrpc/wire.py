"""JSON-RPC 2.0 as MCP and A2A carry it over HTTP: strict parsing and the
errors a gateway answers with.

Parsing is stricter than most servers on purpose: the gateway and the server
must read the *same* message, or a policy could judge one thing while the
server executes another. So a body with duplicate object keys (which parsers
resolve differently), ``NaN``/``Infinity`` (not JSON), invalid UTF-8, a
lone UTF-16 surrogate escape (``"\\ud800"``: no character; parsers replace,
keep or reject it), a number beyond the interoperable range (an integer
outside ±(2**53 - 1) or a float that overflows to infinity: parsers in other
languages round them), nesting deeper than ``jsonstrict.MAX_DEPTH``, a
``jsonrpc`` other than ``"2.0"``, an id that is not a string or integer, or a
request without an id (anything that is not a notification) is refused with
the JSON-RPC error code the spec assigns:

* ``-32700`` parse error: not JSON at all;
* ``-32600`` invalid request: JSON, but not a valid message or batch (an
  empty or oversized batch, a batch where the protocol has none, a duplicate
  id inside a batch);
* ``-32602`` invalid params: the method's parameters cannot be governed
  (a ``tools/call`` without a tool name, arguments that are not an object);
* ``POLICY_DENIED`` (-32019): the gateway's policy refused the request.

-32019 sits in the implementation-defined server-error range: MCP reserves
-32000..-32019 for implementations (it allocates its own codes from -32020
up), and A2A allocates its codes from -32001 up (-32009 so far).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from extproc import jsonstrict
from extproc.audit import facts_of
from extproc.context import Deny
from extproc.jsonstrict import StrictJsonError

audit_of = facts_of  # the exchange's name for it

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
POLICY_DENIED = -32019

_ABSENT = object()


class JsonRpcError(Exception):
    """A body that fails as a whole (not one message of a batch)."""

    def __init__(self, code: int, message: str, id: Any = None):
        super().__init__(message)
        self.code, self.message, self.id = code, message, id


# I-JSON (RFC 7493): integers every parser represents exactly.
MAX_SAFE_INTEGER = 2**53 - 1
# Where a number parsers read differently may be: 16+ digits in a row, or a
# three-digit exponent. Matched on the raw text at C speed (inside strings
# too: a match only means the parsed value is walked).
_SUSPECT_NUMBER = re.compile(r"\d{16,}|[eE][+-]?\d{3,}")
# A surrogate in text decoded with surrogateescape (invalid UTF-8 in an SSE
# event): ``jsonstrict`` checks escapes, this is the raw form.
_RAW_SURROGATE = re.compile("[\ud800-\udfff]")


def _interoperable_numbers(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int) and abs(item) > MAX_SAFE_INTEGER:
            raise StrictJsonError("an integer is beyond ±(2**53 - 1), where parsers round it")
        elif isinstance(item, float) and math.isinf(item):
            raise StrictJsonError("a number overflows to infinity")


def loads_strict(raw: bytes | str) -> Any:
    """``extproc.jsonstrict.loads_strict`` (duplicate keys, NaN/Infinity,
    lone surrogates, invalid UTF-8, excessive nesting), plus what a JSON-RPC
    server written in another language would read differently: integers
    beyond ±(2**53 - 1) and numbers that overflow. Raises ``StrictJsonError``
    (a ``ValueError``) only."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise StrictJsonError("the body is not valid UTF-8") from None
    elif _RAW_SURROGATE.search(raw):
        raise StrictJsonError("the body is not valid UTF-8")
    value = jsonstrict.loads_strict(raw)
    if _SUSPECT_NUMBER.search(raw):
        _interoperable_numbers(value)
    return value


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no whitespace, UTF-8.
    (Numbers keep Python's repr, so 1 and 1.0 differ, as they do on the wire.)"""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def sha256_json(value: Any) -> str:
    """The audit fingerprint of arguments: never the values themselves.
    Never raises on what ``loads_strict`` accepted; anything else (a value
    built in code) is fingerprinted by its repr rather than failing a
    request in its audit step."""
    try:
        data = canonical_json(value)
    except (ValueError, TypeError, RecursionError):
        data = repr(value).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def valid_id(value: Any) -> bool:
    # MCP and A2A ids are strings or integers; null and fractional numbers are
    # allowed by JSON-RPC but make correlation ambiguous. bool is not an int here.
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def id_key(value: Any) -> tuple[str, Any]:
    """A dict key for an id that keeps 1 and "1" apart."""
    return ("s", value) if isinstance(value, str) else ("i", value)


@dataclass(slots=True)
class Message:
    index: int
    raw: dict[str, Any]
    id: Any  # None for notifications
    method: str | None  # None for a response the client sends (to a server's request)

    @property
    def kind(self) -> str:
        if self.method is None:
            return "response"
        return "notification" if self.id is None else "request"

    @property
    def params(self) -> Any:
        return self.raw.get("params")


@dataclass(slots=True)
class Invalid:
    index: int
    id: Any
    code: int
    message: str


@dataclass(slots=True)
class Envelope:
    batch: bool
    items: list[Message | Invalid]

    def messages(self) -> list[Message]:
        return [m for m in self.items if isinstance(m, Message)]


def _message(index: int, obj: Any, is_notification: Callable[[str], bool]) -> Message | Invalid:
    if not isinstance(obj, dict):
        return Invalid(index, None, INVALID_REQUEST, "a message must be a JSON object")
    raw_id = obj.get("id", _ABSENT)
    reply_id = raw_id if valid_id(raw_id) else None
    if obj.get("jsonrpc") != "2.0":
        return Invalid(index, reply_id, INVALID_REQUEST, 'jsonrpc must be exactly "2.0"')
    if raw_id is not _ABSENT and not valid_id(raw_id):
        return Invalid(index, None, INVALID_REQUEST, "id must be a string or an integer")
    method = obj.get("method", _ABSENT)
    if method is _ABSENT:
        # A response the client sends back to a server-initiated request.
        has_result, has_error = "result" in obj, "error" in obj
        if raw_id is _ABSENT or has_result == has_error:
            return Invalid(index, reply_id, INVALID_REQUEST, "a request needs a method")
        return Message(index, obj, raw_id, None)
    if not isinstance(method, str) or not method:
        return Invalid(index, reply_id, INVALID_REQUEST, "method must be a non-empty string")
    if "result" in obj or "error" in obj:
        return Invalid(index, reply_id, INVALID_REQUEST, "a request cannot carry a result or an error")
    params = obj.get("params", _ABSENT)
    if params is not _ABSENT and not isinstance(params, (dict, list)):
        return Invalid(index, reply_id, INVALID_REQUEST, "params must be an object or an array")
    if raw_id is _ABSENT:
        if not is_notification(method):
            return Invalid(index, None, INVALID_REQUEST, f"id missing: {method} is a request and needs an id")
        return Message(index, obj, None, method)
    return Message(index, obj, raw_id, method)


def parse(
    raw: bytes, *, max_batch: int, batches: bool = True, is_notification: Callable[[str], bool] = lambda method: False
) -> Envelope:
    """Parse a request body into messages. Whole-body failures raise
    ``JsonRpcError``; a bad message inside a batch becomes an ``Invalid`` item
    (with its id when one is readable)."""
    try:
        body = loads_strict(raw)
    except (ValueError, RecursionError) as exc:
        detail = str(exc) if isinstance(exc, StrictJsonError) else "the body is not valid JSON"
        raise JsonRpcError(PARSE_ERROR, f"Parse error: {detail}") from None
    if isinstance(body, list):
        if not batches:
            raise JsonRpcError(INVALID_REQUEST, "batch requests are not supported")
        if not body:
            raise JsonRpcError(INVALID_REQUEST, "an empty batch is not a request")
        if len(body) > max_batch:
            raise JsonRpcError(INVALID_REQUEST, f"batch too large: {len(body)} messages, at most {max_batch}")
        items = [_message(i, obj, is_notification) for i, obj in enumerate(body)]
        seen: set[Any] = set()
        for n, item in enumerate(items):
            if isinstance(item, Message) and item.id is not None:
                key = id_key(item.id)
                if key in seen:
                    items[n] = Invalid(item.index, item.id, INVALID_REQUEST, "duplicate id in batch")
                seen.add(key)
        return Envelope(True, items)
    if isinstance(body, dict):
        item = _message(0, body, is_notification)
        if isinstance(item, Invalid):
            raise JsonRpcError(item.code, item.message, item.id)
        return Envelope(False, [item])
    raise JsonRpcError(INVALID_REQUEST, "the body must be a JSON-RPC message object or a batch array")


# -- answers ------------------------------------------------------------------


def error_object(id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": id, "error": error}


def _acceptable(accept: str) -> set[str]:
    types = set()
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and media:
            types.add(media.lower())
    return types


def wants_sse(accept: str | None) -> bool:
    """Whether a refusal must be an SSE stream: the client accepts
    ``text/event-stream`` and not JSON (MCP clients normally accept both)."""
    if not accept:
        return False
    types = _acceptable(accept)
    if types & {"application/json", "application/*", "*/*"}:
        return False
    return "text/event-stream" in types


def sse_event(payload: Any) -> bytes:
    return b"event: message\ndata: " + dumps(payload) + b"\n\n"


def render(payload: dict[str, Any] | list[Any], sse: bool) -> tuple[bytes, str]:
    """A JSON-RPC answer as a body and its content type."""
    if not sse:
        return dumps(payload), "application/json"
    events = payload if isinstance(payload, list) else [payload]
    return b"".join(sse_event(e) for e in events), "text/event-stream"


def refusal(payload: dict[str, Any] | list[Any], *, status: int, code: str, reason: str, accept: str | None) -> Deny:
    """A ``Deny`` whose body is the JSON-RPC answer, as JSON or (for a client
    that accepts only SSE) as an event stream."""
    body, content_type = render(payload, wants_sse(accept))
    return Deny(status, code, reason, body=body, content_type=content_type)
