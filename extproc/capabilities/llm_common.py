"""What the LLM capabilities share: get the parsed request or the 4xx that
explains why there is none."""

from __future__ import annotations

from extproc.context import Deny, RequestContext
from extproc.llm.request import LlmRequest, LlmRequestError, llm_request


def parsed_or_deny(ctx: RequestContext, max_bytes: int) -> LlmRequest | Deny:
    try:
        return llm_request(ctx, max_bytes)
    except LlmRequestError as exc:
        return exc.deny
