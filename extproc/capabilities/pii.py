"""``pii``: keep personal data and secrets out of prompts and completions.

Requests: every prompt string (of the configured roles) is scanned; entity
types map to actions — ``redact`` (``[EMAIL_1]``), ``mask`` (last 4 kept),
``pseudonymize`` (a placeholder the model sees, restored in the response for
the same caller; the mapping lives only for this request) or ``block``.
Detection sees through disguises (fullwidth or other-script digits,
invisible characters, odd dashes, dots and spaces: see ``guard.fold``) and
across parts: the request's strings are also scanned joined, so a value
split over content parts or messages is replaced in every part it touches.
Large requests are scanned in a worker process (``guard.offload``).

Responses (SSE streams, JSON, and any other text as text; gzip/deflate
decoded, another content coding withheld with a 502): placeholders are restored and, with
``responses: true``, new personal data the model produced is sanitized too,
as it streams: a value split across two chunks is still caught, at the cost
of holding back at most a few dozen characters (see ``StreamSanitizer``).
In responses ``pseudonymize`` acts as ``redact``: a value the model made up
has no caller to be restored for. A ``block`` entity in a streamed response
ends the stream with an error event: what was sent is sent, the rest is not.

Only entity types and counts are recorded, never values: the audit facts
``pii.<entity>`` (request and response together) and ``guard.action``, in
monitor mode too.
"""

from __future__ import annotations

import hashlib

from pydantic import Field

from extproc.capabilities.base import Capability, register
from extproc.capabilities.llm_common import parsed_or_deny
from extproc.context import Deny, Mode, RequestContext
from extproc.encodings import StreamDecoder, decoder_for
from extproc.guard import facts, offload
from extproc.guard.pii import PartsRedaction, PiiConfig, PiiScanner, PseudonymVault, StreamRestorer, StreamSanitizer
from extproc.headers import content_encoding
from extproc.llm.errors import llm_error
from extproc.llm.response import JsonRewriter, SseRewriter
from extproc.runtime import DEFAULT_RUNTIME, Runtime

ALL_ROLES = ("system", "user", "assistant", "tool")
BLOCKED_MESSAGE = "the request contains data that may not be sent to the model"
WITHHELD_MESSAGE = "the response was withheld by the gateway's content policy"


class PiiCapabilityConfig(PiiConfig):
    roles: list[str] = Field(default_factory=lambda: list(ALL_ROLES), description="Message roles to sanitize.")
    responses: bool = Field(True, description="Also sanitize what the model returns.")
    max_body_bytes: int = Field(4 << 20, ge=1024)


def _sanitize_parts(
    key: str, config: PiiCapabilityConfig, texts: list[str], vault: PseudonymVault, alone: list[bool]
) -> tuple[PartsRedaction, PseudonymVault]:
    """A request's scan, runnable in a scan worker process (see offload)."""
    scanner = offload.cached(key, lambda: PiiScanner(config))
    return scanner.sanitize_parts(texts, vault, alone), vault


class _Chain:
    """Sanitize the model's new output, then restore the caller's pseudonyms."""

    __slots__ = ("restorer", "sanitizer")

    def __init__(self, sanitizer: StreamSanitizer | None, restorer: StreamRestorer):
        self.sanitizer, self.restorer = sanitizer, restorer

    def feed(self, text: str) -> str:
        if self.sanitizer is not None:
            text = self.sanitizer.feed(text)
        return self.restorer.feed(text)

    def flush(self) -> str:
        text = self.sanitizer.flush() if self.sanitizer is not None else ""
        return self.restorer.feed(text) + self.restorer.flush()


class _ResponseState:
    __slots__ = ("api", "chains", "decoder", "rewriter", "stopped", "streaming")

    def __init__(self) -> None:
        self.rewriter: JsonRewriter | SseRewriter | None = None
        self.decoder: StreamDecoder | None = None
        self.chains: list[_Chain] = []
        self.stopped = False
        self.streaming = False
        self.api = ""


@register
class Pii(Capability[PiiCapabilityConfig]):
    name = "pii"
    priority = 500
    Config = PiiCapabilityConfig

    def __init__(
        self, config: PiiCapabilityConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME
    ) -> None:
        super().__init__(config, mode, runtime)
        # The key finds this scanner again in a scan worker process (and here,
        # for inline scans): built once per process and config.
        self._scan_key = "pii:" + hashlib.sha256(config.model_dump_json().encode()).hexdigest()
        self._scanner = offload.cached(self._scan_key, lambda: PiiScanner(config))
        response_config = config.model_copy(
            update={
                "entities": {e: ("redact" if a == "pseudonymize" else a) for e, a in config.entities.items()},
                "custom": [
                    c.model_copy(update={"action": "redact"}) if c.action == "pseudonymize" else c
                    for c in config.custom
                ],
            }
        )
        self._response_scanner = PiiScanner(response_config) if config.responses else None
        self._roles = frozenset(config.roles)
        # Per instance: two pii capabilities on one route (one in monitor
        # mode, say) must not feed or overwrite each other's state.
        self._vault_key, self._response_key = f"pii.vault:{id(self)}", f"pii.response:{id(self)}"

    async def on_request_body(self, ctx: RequestContext) -> Deny | None:
        request = parsed_or_deny(ctx, self.config.max_body_bytes)
        if isinstance(request, Deny):
            return request
        if self._response_scanner is not None:
            # The answer is read on its way back: ask for it uncompressed.
            ctx.remove_request_header("accept-encoding")
        vault = PseudonymVault()
        ctx.state[self._vault_key] = vault
        slots = request.texts(self._roles)
        texts = [slot.text for slot in slots]
        keys = [slot.is_key for slot in slots]
        result, vault = await offload.scan(
            sum(map(len, texts)), _sanitize_parts, self._scan_key, self.config, texts, vault, keys
        )
        ctx.state[self._vault_key] = vault  # a worker process returns its own copy
        for slot, before, after in zip(slots, texts, result.texts, strict=True):
            if after != before:
                request.replace(ctx, slot, after)  # staged: dropped in monitor mode
        ctx.state["pii.request_entities"] = result.counts
        facts.note_entities(ctx, result.counts)
        if result.blocked:
            facts.note_action(ctx, "block")
            return llm_error(
                request.api,
                400,
                "invalid_request_error",
                BLOCKED_MESSAGE,
                reason=f"blocked entities: {','.join(sorted(result.blocked))}",
                code="content_policy",
            )
        for entity in result.counts:
            facts.note_action(ctx, self._scanner.entities[entity])
        return None

    async def on_response_headers(self, ctx: RequestContext) -> Deny | None:
        request = ctx.established.llm_request
        vault = ctx.state.get(self._vault_key)
        if request is None or (self._response_scanner is None and not vault):
            return None
        content_type = ctx.response_headers.get("content-type", "").split(";", 1)[0].strip().lower()
        state = _ResponseState()
        state.api = request.api
        encoding = content_encoding(ctx.response_headers)
        if encoding:
            # Asked for uncompressed (on_request_body), an upstream may still
            # compress: read through what can be decoded, withhold the rest.
            state.decoder = decoder_for(encoding, self.config.max_body_bytes * 2)
            if state.decoder is None:
                return llm_error(
                    request.api,
                    502,
                    "api_error",
                    WITHHELD_MESSAGE,
                    reason=f"response content-encoding {encoding} cannot be inspected",
                    code="content_policy",
                )
            ctx.remove_response_header("content-encoding")
        vault = vault if vault is not None else PseudonymVault()

        def make() -> _Chain:
            sanitizer = (
                StreamSanitizer(self._response_scanner, vault, self._response_scanner.min_holdback)
                if self._response_scanner is not None
                else None
            )
            chain = _Chain(sanitizer, StreamRestorer(vault))
            state.chains.append(chain)
            return chain

        if content_type == "text/event-stream":
            state.rewriter, state.streaming = SseRewriter(request.api, make), True
        else:
            # JSON, or whatever else was declared (text/plain, none at all):
            # the rewriter reads JSON as JSON and any other text as text.
            state.rewriter = JsonRewriter(request.api, make)
        ctx.state[self._response_key] = state
        return None

    async def on_response_body(self, ctx: RequestContext) -> Deny | None:
        state: _ResponseState | None = ctx.state.get(self._response_key)
        if state is None:
            return None
        if state.stopped or state.rewriter is None:
            ctx.replace_response_chunk(b"")
            return None
        try:
            chunk = state.decoder.feed(ctx.response_chunk, ctx.response_end) if state.decoder else ctx.response_chunk
            out = await offload.in_thread(len(chunk), state.rewriter.feed, chunk, ctx.response_end)
        except ValueError:
            # Beyond what we can inspect: stop rather than pass it unread.
            return self._stop(ctx, state, "response over the inspection limit")
        blocked = sorted({e for chain in state.chains if chain.sanitizer for e in chain.sanitizer.blocked})
        if blocked:
            return self._stop(ctx, state, f"blocked entities in response: {','.join(blocked)}")
        counts: dict[str, int] = {}
        for chain in state.chains:
            for entity, n in chain.sanitizer.counts.items() if chain.sanitizer else ():
                counts[entity] = counts.get(entity, 0) + n
        ctx.state["pii.response_entities"] = counts
        facts.note_entities(ctx, ctx.state.get("pii.request_entities", {}), counts)
        if self._response_scanner is not None:
            for entity in counts:
                facts.note_action(ctx, self._response_scanner.entities[entity])
        ctx.replace_response_chunk(out)
        return None

    def _stop(self, ctx: RequestContext, state: _ResponseState, reason: str) -> Deny | None:
        deny = llm_error(state.api, 502, "api_error", WITHHELD_MESSAGE, reason=reason, code="content_policy")
        if not state.streaming:
            return deny
        facts.note_action(ctx, "block")
        # Headers (200) are already on their way: end the stream with an error event.
        state.stopped = True
        ctx.replace_response_chunk(b"event: error\ndata: " + (deny.body or b"{}") + b"\n\ndata: [DONE]\n\n")
        ctx.state["pii.response_stopped"] = reason
        return None
