"""Build what a unit test feeds the pipeline: identities, requests, contexts,
capabilities and policies (from objects or from the YAML a user writes), and
run a request through the real pipeline phase by phase.

Everything here is the real thing (the real ``RequestContext``, the real
policy loader, ``extproc.pipeline``'s phases); only the transport (gRPC,
Envoy) is left out. A test that needs gRPC uses tests/unit/services.
"""

from __future__ import annotations

import json
import tempfile
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from extproc.capabilities.base import Capability
from extproc.context import ANONYMOUS, Deny, HttpRequest, Identity, Mode, Phase, RequestContext
from extproc.pipeline import resolve_route, run_phase
from extproc.policy.loader import load_policy_dir
from extproc.policy.model import CompiledRoute, PolicySet
from extproc.runtime import Runtime

C = TypeVar("C", bound="Capability[Any]")

HOST = "gw.test"
CHAT = "/v1/chat/completions"
JSON = {"content-type": "application/json"}


# -- who is calling ------------------------------------------------------------


def identity(
    subject: str | None = "alice",
    *,
    roles: Iterable[str] = (),
    scopes: Iterable[str] = (),
    methods: Iterable[str] = ("jwt",),
    claims: Mapping[str, Any] | None = None,
    delegation: Iterable[str] = (),
    **fields: Any,
) -> Identity:
    """An authenticated caller (by JWT unless ``methods`` says otherwise);
    ``fields``: the other ``Identity`` attributes (tenant, principal, agent_id...)."""
    return Identity(
        subject=subject,
        roles=frozenset(roles),
        scopes=frozenset(scopes),
        methods=frozenset(methods),
        claims=dict(claims or {}),
        delegation=tuple(delegation),
        **fields,
    )


# -- capabilities, routes, policies ----------------------------------------------


def capability(
    cls: type[C], config: Mapping[str, Any] | None = None, mode: Mode = Mode.ENFORCE, runtime: Runtime | None = None
) -> C:
    """``cls`` with ``config`` validated as a policy file's would be."""
    validated = cls.Config.model_validate(dict(config or {}))
    return cls(validated, mode, runtime or Runtime(quota_backend="memory"))


def route(*capabilities: Capability[Any], name: str = "r", source: str = "test:1") -> CompiledRoute:
    return CompiledRoute(name, source, tuple(capabilities))


def policy(*routes: CompiledRoute, revision: str = "rev1", unmatched_allow: bool = False) -> PolicySet:
    return PolicySet(revision, {r.name: r for r in routes}, unmatched_allow=unmatched_allow)


def compile_policy(
    text: str,
    directory: Path | None = None,
    runtime: Runtime | None = None,
    files: Mapping[str, str] | None = None,
) -> PolicySet:
    """The policy a ``policy.yaml`` holding ``text`` (dedented) compiles to,
    through the real loader: validation, file:line errors and all.
    ``files``: other files beside it (keys, key sets) by name. Pass
    ``directory`` when the policy must outlive this call on disk."""
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="extproc-policy-") as scratch:
            return compile_policy(text, Path(scratch), runtime, files)
    (directory / "policy.yaml").write_text(textwrap.dedent(text))
    for name, content in (files or {}).items():
        (directory / name).write_text(content)
    return load_policy_dir(directory, runtime or Runtime(quota_backend="memory"))


def compile_route(text: str, name: str | None = None, **kwargs: Any) -> CompiledRoute:
    """One route of a compiled policy: ``name``, or the only one."""
    compiled = compile_policy(text, **kwargs)
    if name is None:
        (name,) = compiled.routes
    found = compiled.route_named(name)
    assert found is not None, f"no route {name!r} in {sorted(compiled.routes)}"
    return found


# -- requests --------------------------------------------------------------------


def request(
    method: str = "GET", path: str = "/", headers: Mapping[str, str] | None = None, host: str = HOST
) -> HttpRequest:
    return HttpRequest(method, path, host, dict(headers or {}))


def context(
    target: Capability[Any] | CompiledRoute | PolicySet | None = None,
    method: str = "GET",
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    *,
    host: str = HOST,
    who: Identity = ANONYMOUS,
    attributes: dict[str, Any] | None = None,
    body: bytes | Mapping[str, Any] | list[Any] | None = None,
    route_name: str | None = None,
    via: str = "",
    resolve: bool = True,
) -> RequestContext:
    """A request's context, on its route when there is one.

    ``target``: a capability (then alone on a route ``route_name`` or "r"),
    a route, a whole policy (the route is ``route_name``, else the one its
    matchers pick), or nothing (a capability's handler called directly).
    ``body``: bytes as sent, or a JSON document (serialized, with a JSON
    content type unless ``headers`` sets one). ``via``: the Envoy filter
    that asked, for the audit record. ``resolve=False`` leaves the route
    unresolved, for a test that runs ``pipeline.start`` itself."""
    headers = dict(headers or {})
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        headers.setdefault("content-type", "application/json")
    if isinstance(target, Capability):
        target = route(target, name=route_name or "r")
    if isinstance(target, CompiledRoute):
        route_name = target.name
        target = policy(target)
    ctx = RequestContext(target or policy(), request(method, path, headers, host), attributes)
    if target is not None and resolve:
        deny = resolve_route(ctx, route_name)
        assert deny is None, f"no route for {method} {path}: {deny}"
    ctx.identity = who
    ctx.filter = via
    ctx.request_body = body
    return ctx


def chat(
    target: Capability[Any] | CompiledRoute | PolicySet,
    messages: list[Any] | None = None,
    *,
    model: str = "m",
    path: str = CHAT,
    **fields: Any,
) -> RequestContext:
    """An OpenAI-style chat completion request; ``fields``: more of its body
    (``max_tokens``, ``stream``...) or ``context`` keywords (``who``, ``headers``...)."""
    body_fields = {k: fields.pop(k) for k in list(fields) if k not in _CONTEXT_KEYWORDS}
    body = {"model": model, "messages": messages or [user("hi")], **body_fields}
    return context(target, "POST", path, body=body, **fields)


_CONTEXT_KEYWORDS = frozenset({"headers", "host", "who", "attributes", "route_name", "via"})


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def sent_json(ctx: RequestContext) -> Any:
    """The request body as it goes upstream, parsed."""
    assert ctx.request_body is not None
    return json.loads(ctx.request_body)


# -- running the pipeline ----------------------------------------------------------


async def send(ctx: RequestContext) -> Deny | None:
    """The request phases the route needs, as the ext_proc service runs
    them: headers, then the body if there is one, stopping at a refusal."""
    deny = await run_phase(ctx, Phase.REQUEST_HEADERS)
    if deny is None and ctx.request_body is not None:
        deny = await run_phase(ctx, Phase.REQUEST_BODY)
    return deny


async def respond(
    ctx: RequestContext,
    chunks: bytes | Mapping[str, Any] | list[bytes],
    *,
    status: int = 200,
    content_type: str = "application/json",
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """Run the response phases over an upstream answer (one body, a JSON
    document, or a list of streamed chunks) and return what the client
    receives, every chunk replacement applied. A refusal fails the test."""
    if isinstance(chunks, Mapping):
        chunks = [json.dumps(chunks).encode()]
    elif isinstance(chunks, bytes):
        chunks = [chunks]
    ctx.response_status = status
    ctx.response_headers = {"content-type": content_type, **(headers or {})}
    deny = await run_phase(ctx, Phase.RESPONSE_HEADERS)
    assert deny is None, deny
    out = b""
    for n, chunk in enumerate(chunks):
        ctx.response_chunk, ctx.response_end, ctx.response_chunk_replaced = chunk, n == len(chunks) - 1, False
        deny = await run_phase(ctx, Phase.RESPONSE_BODY)
        assert deny is None, deny
        out += ctx.response_chunk if ctx.response_chunk_replaced else chunk
    return out


def error_json(deny: Deny | None) -> Any:
    """A refusal's body in the protocol's own error shape, parsed."""
    assert deny is not None and deny.body is not None, deny
    return json.loads(deny.body)
