"""``extproc policy explain``: how the policy decides one request.

Against a directory, the request runs through the real services in process
(``harness.Session``) and the explanation is built from the request's audit
record, the very facts the decision log carries, plus what each capability
changed (request and response headers, query, identity, body).

Against a running processor (``--processor HOST:PORT``) the request goes
through its real gRPC ext_authz/ext_proc API, exactly as Envoy sends it, so
the answer is that processor's current revision's. The per-capability facts
are then read back from its decision log (``--decision-log PATH``, matched
by the decision id the answer carries); without it, the answer alone.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from extproc.audit.record import AuditRecord, CapabilityOutcome, scrub
from extproc.capabilities.base import Capability
from extproc.context import Identity, Mode, Phase, RequestContext
from extproc.policy.loader import PolicyLoadError
from extproc.policy.model import CompiledRoute, PolicySet
from extproc.policytools.cases import IdentitySpec, LocatedCase, RequestSpec, load_cases
from extproc.policytools.harness import Outcome, Prepared, RemoteTransport, Session, place_credentials, send
from extproc.policytools.keys import TestKeys

TRACE_NAME = "explain.trace"


# -- what each capability changed -------------------------------------------


@dataclass(slots=True)
class _Snapshot:
    ctx_id: int
    request_set: dict[str, str]
    request_removed: list[str]
    response_set: dict[str, str]
    response_removed: list[str]
    query_removed: list[str]
    identity: Identity


def _snapshot(ctx: RequestContext) -> _Snapshot:
    return _Snapshot(
        id(ctx),
        dict(ctx.request_headers_out.set),
        list(ctx.request_headers_out.remove),
        dict(ctx.response_headers_out.set),
        list(ctx.response_headers_out.remove),
        list(ctx.query_remove),
        ctx.identity,
    )


def _identity_text(identity: Identity) -> str:
    parts = [
        f"{name}={value}"
        for name, value in (
            ("subject", identity.subject),
            ("tenant", identity.tenant),
            ("principal", identity.principal),
            ("agent", identity.agent_id),
            ("api_key", identity.api_key_id),
        )
        if value
    ]
    if identity.roles:
        parts.append("roles=" + ",".join(sorted(identity.roles)))
    if identity.methods:
        parts.append("via " + ",".join(sorted(identity.methods)))
    return " ".join(parts) or "anonymous"


def _changes(before: _Snapshot, after: _Snapshot) -> list[str]:
    out = []
    for name, value in after.request_set.items():
        if before.request_set.get(name) != value:
            out.append(f"sets request header {name}: {scrub(value)}")
    out += [f"removes request header {n}" for n in after.request_removed[len(before.request_removed) :]]
    for name, value in after.response_set.items():
        if before.response_set.get(name) != value:
            out.append(f"sets response header {name}: {scrub(value)}")
    out += [f"removes response header {n}" for n in after.response_removed[len(before.response_removed) :]]
    out += [f"removes query parameter {n}" for n in after.query_removed[len(before.query_removed) :]]
    if after.identity is not before.identity:
        out.append(f"identity: {_identity_text(after.identity)}")
    return out


class _TraceMark(Capability[Any]):
    """Runs last in each phase that has capabilities, so the last one's
    applied edits are seen too. Never recorded (filtered from the record)."""

    name = TRACE_NAME
    priority = -(10**9)

    def __init__(self) -> None:
        super().__init__(None, Mode.ENFORCE)


class ChangeTracer:
    """Wraps the handlers of a policy copy (one ``Session``'s own) to see,
    between one capability and the next, the edits the pipeline applied
    for it: what each capability changed."""

    def __init__(self, policy: PolicySet):
        self._changes: dict[str, list[str]] = {}
        self._pending: str | None = None
        self._before: _Snapshot | None = None
        mark = _TraceMark()
        for route in policy.routes.values():
            for phase, handlers in list(route.handlers.items()):
                if handlers:
                    wrapped = tuple((cap, self._wrap(cap.name, handler)) for cap, handler in handlers)
                    route.handlers[phase] = (*wrapped, (mark, self._wrap(None, None)))

    def _settle(self, ctx: RequestContext) -> None:
        now = _snapshot(ctx)
        before = self._before
        if self._pending is not None and before is not None and before.ctx_id == now.ctx_id:
            found = _changes(before, now)
            if found:
                self._changes.setdefault(self._pending, []).extend(found)
        self._before = now

    def _wrap(self, name: str | None, handler: Any) -> Any:
        async def traced(ctx: RequestContext) -> Any:
            self._settle(ctx)
            self._pending = name
            return await handler(ctx) if handler is not None else None

        return traced

    def take(self) -> dict[str, list[str]]:
        changes, self._changes, self._pending, self._before = self._changes, {}, None, None
        return changes


# -- the request -------------------------------------------------------------


def _body_arg(value: str | None) -> str | None:
    if value is not None and value.startswith("@"):
        return Path(value[1:]).read_text()
    return value


def request_from_args(args: argparse.Namespace) -> tuple[RequestSpec, int]:
    """The request to explain and how often to send it."""
    if args.case:
        file, _, name = args.case.partition(":")
        cases: list[LocatedCase] = load_cases(Path(file))
        chosen = [c for c in cases if not name or c.case.name == name]
        if not chosen:
            raise ValueError(f"no case named {name!r} in {file}")
        return chosen[0].case.request, chosen[0].case.repeat
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep:
            raise ValueError(f"--header {item!r}: expected NAME:VALUE")
        headers[name.strip().lower()] = value.strip()
    identity = None
    if args.claims or args.token or args.api_key or args.principal:
        identity = IdentitySpec(
            claims=json.loads(args.claims) if args.claims else None,
            token=args.token,
            api_key=args.api_key,
            principal=args.principal,
        )
    spec = RequestSpec.model_validate(
        {
            "method": args.method.upper(),
            "path": args.path,
            "host": args.host,
            "headers": headers,
            "identity": identity.model_dump(exclude_none=True) if identity else None,
            "body": _body_arg(args.body),
            "route": args.route,
            "filter": args.filter,
        }
    )
    return spec, max(1, args.repeat)


# -- the explanation ---------------------------------------------------------


def _route_match(policy: PolicySet, route: CompiledRoute) -> Any:
    file = route.source.rsplit(":", 1)[0]
    try:
        data = yaml.safe_load(Path(file).read_text())
    except (OSError, yaml.YAMLError):
        return None
    for spec in data.get("routes", []) if isinstance(data, dict) else []:
        if isinstance(spec, dict) and spec.get("name") == route.name:
            return spec.get("match")
    return None


def _why_route(policy: PolicySet, spec: RequestSpec, record: AuditRecord) -> str:
    if record.route is None:
        if any(c.capability == "router" and c.code.startswith("path_") for c in record.capabilities):
            return "none: the path is refused before any route is matched"
        if spec.route:
            return f"none: Envoy bound route {spec.route!r}, which the policy does not declare"
        return "none: no route's match claims the request, and defaults.unmatched is deny"
    route = policy.routes.get(record.route)
    if spec.route:
        return f"{record.route}: bound by Envoy (route {spec.route!r})"
    if route is None:
        return record.route
    match = _route_match(policy, route)
    shown = json.dumps(match, separators=(", ", ": ")) if match is not None else "its match"
    return f"{record.route}: the first route whose match claims it, {shown} ({route.source})"


def _outcome_for(record: AuditRecord, cap: Capability[Any], used: set[int]) -> CapabilityOutcome | None:
    for index, outcome in enumerate(record.capabilities):
        if index not in used and outcome.capability == cap.name and outcome.mode == cap.mode.value:
            used.add(index)
            return outcome
    return None


def _body_change(outcome: Outcome) -> list[str]:
    sent, upstream = outcome.sent, outcome.upstream
    if sent is None or upstream is None or sent.body == upstream.body or not sent.body:
        return []

    def lines(body: bytes) -> list[str]:
        try:
            return json.dumps(json.loads(body), indent=1, ensure_ascii=False).splitlines()
        except ValueError:
            return body.decode("utf-8", "replace").splitlines()

    diff = difflib.unified_diff(lines(sent.body), lines(upstream.body), "sent", "upstream", lineterm="", n=0)
    # The client's own text may carry what a guard redacts: scrubbed here too.
    return [scrub(line, 200) for line in diff if not line.startswith("@@")]


def explanation(
    outcome: Outcome, spec: RequestSpec, policy: PolicySet | None, source: str, repeat: int = 1
) -> dict[str, Any]:
    """The facts, as a dict (``--json``) that ``render`` prints."""
    record = outcome.record
    out: dict[str, Any] = {
        "request": f"{spec.method} {spec.path}" + (f" (sent {repeat} times, the last explained)" if repeat > 1 else ""),
        "source": source,
        "filter": outcome.filter,
        "decision_id": outcome.decision_id,
    }
    if record is not None:
        out["revision"] = record.revision
        out["route"] = _why_route(policy, spec, record) if policy is not None else (record.route or "none")
        if record.identity:
            out["identity"] = record.identity
        steps: list[dict[str, Any]] = []
        route = policy.routes.get(record.route) if policy is not None and record.route else None
        if route is not None:
            used: set[int] = set()
            for cap in route.capabilities:
                found = _outcome_for(record, cap, used)
                step: dict[str, Any] = {
                    "capability": cap.name,
                    "priority": cap.priority,
                    "mode": cap.mode.value,
                    "phases": [p.value for p in Phase if p in cap.phases()],
                    "verdict": found.decision if found else "not run",
                }
                if found is not None and found.code:
                    step["code"] = found.code
                if found is not None and found.reason:
                    step["reason"] = found.reason
                if outcome.changes.get(cap.name):
                    step["changed"] = outcome.changes[cap.name]
                steps.append(step)
            for index, extra in enumerate(record.capabilities):
                if index not in used:
                    steps.append({"capability": extra.capability, **extra.as_dict()})
        else:
            steps = [c.as_dict() for c in record.capabilities]
        out["capabilities"] = steps
        if record.facts:
            out["facts"] = record.facts
    if outcome.rule is not None:
        out["rule"] = outcome.rule
        out["rules"] = outcome.rules
    body = _body_change(outcome)
    if body:
        out["request_body_rewritten"] = body
    answer: dict[str, Any] = {"status": outcome.status, "allowed": outcome.allowed}
    if outcome.code:
        answer["code"] = outcome.code
    if outcome.decided_by:
        answer["decided_by"] = outcome.decided_by
    if outcome.allowed and outcome.upstream is not None:
        answer["upstream_headers_set"] = {k: scrub(v) for k, v in outcome.set_headers.items()}
        if outcome.removed_headers:
            answer["upstream_headers_removed"] = list(dict.fromkeys(outcome.removed_headers))
    out["answer"] = answer
    return out


def render(facts: dict[str, Any], out: TextIO) -> None:
    print(f"request:   {facts['request']}", file=out)
    revision = f" (revision {facts['revision']})" if "revision" in facts else ""
    print(f"policy:    {facts['source']}{revision}", file=out)
    print(f"filter:    {facts['filter']}   decision id {facts['decision_id']}", file=out)
    if "route" in facts:
        print(f"route:     {facts['route']}", file=out)
    if "identity" in facts:
        ident = facts["identity"]
        shown = " ".join(f"{k}={v if isinstance(v, str) else ','.join(v)}" for k, v in ident.items())
        print(f"identity:  {shown}", file=out)
    if "capabilities" in facts:
        print("capabilities, in the order they run:", file=out)
        for index, step in enumerate(facts["capabilities"], 1):
            head = f"  {index}. {step['capability']}"
            if "priority" in step:
                head += f" ({step['priority']}, {step['mode']}, {'/'.join(step['phases'])})"
            verdict = step.get("verdict", step.get("decision", ""))
            detail = ""
            if step.get("code"):
                detail += f" {step['code']}"
            if step.get("reason"):
                detail += f": {step['reason']}"
            print(f"{head:<58} {verdict}{detail}", file=out)
            for change in step.get("changed", ()):
                print(f"       {change}", file=out)
    elif facts.get("source", "").startswith("processor"):
        print("capabilities: not known (give --decision-log PATH, the processor's decision log)", file=out)
    if "rule" in facts:
        print(f"rule:      {facts['rule']}", file=out)
    for line in facts.get("request_body_rewritten", ()):
        print(f"  body {line}", file=out)
    if "facts" in facts:
        print("audit facts:", file=out)
        for key, value in facts["facts"].items():
            print(f"  {key}: {json.dumps(value)}", file=out)
    answer = facts["answer"]
    verdict = "allowed" if answer["allowed"] else "refused"
    line = f"answer:    {answer['status']} {verdict}"
    if answer.get("code"):
        line += f" ({answer['code']})"
    if answer.get("decided_by"):
        line += f", decided by {answer['decided_by']}"
    print(line, file=out)
    for name, value in answer.get("upstream_headers_set", {}).items():
        print(f"  upstream gets {name}: {value}", file=out)
    for name in answer.get("upstream_headers_removed", ()):
        print(f"  upstream loses {name}", file=out)


# -- running -----------------------------------------------------------------


async def explain_directory(directory: str, spec: RequestSpec, repeat: int = 1) -> tuple[Outcome, PolicySet]:
    with TestKeys() as keys:
        session = Session(directory, keys)
        try:
            session.tracer = ChangeTracer(session.policy)
            outcome: Outcome | None = None
            for _ in range(repeat):
                outcome = await session.send(spec)
            assert outcome is not None
            return outcome, session.policy
        finally:
            await session.aclose()


def record_from_log(line: dict[str, Any]) -> AuditRecord:
    """A decision log entry (extproc.audit.decision_log) back as a record."""
    result, inp = line.get("result", {}), line.get("input", {})
    caps = [
        CapabilityOutcome(c["capability"], c["mode"], c["decision"], c.get("reason", ""), c.get("code", ""))
        for c in result.get("records", [])
    ]
    allowed = bool(result.get("allowed"))
    return AuditRecord(
        decision_id=line.get("decision_id", "-"),
        revision=line.get("revision", "-"),
        filter=inp.get("filter", "-"),
        route=inp.get("route"),
        decision="allow" if allowed else ("error" if result.get("code") == "internal_error" else "deny"),
        status=None if allowed else result.get("status"),
        code=None if allowed else result.get("code"),
        reason=None if allowed else result.get("reason"),
        upstream_status=result.get("status") if allowed else None,
        capabilities=caps,
        identity=inp.get("identity", {}),
        facts=result.get("attributes", {}),
        decision_ns=line.get("metrics", {}).get("timer_decision_ns", 0),
    )


def find_decision(path: Path, decision_id: str, timeout: float = 3.0) -> dict[str, Any] | None:
    """The decision log line for ``decision_id`` (written off the request
    path, so it may land a moment after the answer)."""
    deadline = time.monotonic() + timeout
    needle = f'"decision_id":"{decision_id}"'
    while True:
        try:
            with path.open(encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    if decision_id in line and (needle in line.replace(" ", "")):
                        found: dict[str, Any] = json.loads(line)
                        return found
        except OSError:
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def remote_token(spec: RequestSpec, signing_key: str | None, kid: str | None) -> str | None:
    """The bearer token for a running processor: the case's, or its claims
    signed with ``signing_key`` (default: the demo key the demo policy trusts;
    iss and aud default to the demo issuer's)."""
    token = spec.identity.token if spec.identity else None
    if spec.identity is not None and spec.identity.claims is not None:
        from extproc.local import demo_keys

        load: Callable[[], Any] = demo_keys.load_demo_key
        key: Any = load()
        if signing_key:
            from cryptography.hazmat.primitives import serialization

            key = serialization.load_pem_private_key(Path(signing_key).read_bytes(), password=None)
        claims = dict(spec.identity.claims)
        now = int(time.time())
        issuer = claims.pop("iss", demo_keys.DEMO_ISSUER)
        audience = claims.pop("aud", demo_keys.DEMO_AUDIENCE)
        claims.setdefault("nbf", now)
        claims.setdefault("exp", now + spec.identity.ttl)
        token = demo_keys.mint(
            key,
            sub=str(claims.pop("sub", "explain")),
            issuer=issuer,
            audience=audience,
            kid=kid or demo_keys.DEMO_KID,
            ttl=spec.identity.ttl,
            extra=claims,
        )
    return token


async def explain_processor(address: str, spec: RequestSpec, repeat: int, token: str | None) -> Outcome:
    headers, path, principal = place_credentials(spec, None, token)
    wanted = spec.filter
    filter_ = wanted if wanted != "auto" else ("ext_proc" if spec.body_bytes() is not None else "ext_authz")
    transport = RemoteTransport(address)
    try:
        outcome: Outcome | None = None
        for _ in range(repeat):
            outcome = await send(transport, Prepared(spec, filter_, headers, path, principal))
        assert outcome is not None
        return outcome
    finally:
        await transport.aclose()


def main(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """0: explained (whatever the decision); 2: bad input or policy."""
    try:
        spec, repeat = request_from_args(args)
        if args.processor:
            token = remote_token(spec, args.signing_key, args.kid)
            outcome = asyncio.run(explain_processor(args.processor, spec, repeat, token))
            policy = None
            if args.decision_log:
                line = find_decision(Path(args.decision_log), outcome.decision_id)
                if line is None:
                    print(f"decision {outcome.decision_id} not found in {args.decision_log}", file=err)
                else:
                    outcome.record = record_from_log(line)
            source = f"processor {args.processor}"
        else:
            outcome, policy = asyncio.run(explain_directory(args.policies, spec, repeat))
            source = f"directory {args.policies}"
    except PolicyLoadError as exc:
        for error in exc.errors:
            print(error, file=err)
        return 2
    except (ValueError, OSError) as exc:
        print(f"extproc policy explain: {exc}", file=err)
        return 2
    facts = explanation(outcome, spec, policy, source, repeat)
    if args.json:
        print(json.dumps(facts, indent=2), file=out)
    else:
        render(facts, out)
    return 0
