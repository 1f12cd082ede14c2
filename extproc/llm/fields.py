"""Field names of the LLM APIs, shared by the request walker and the
response rewriter.

A JSON object key that is one of the APIs' own field names is structure; any
other key is data the model reads (a tool argument's name, a JSON Schema
property, a template variable) and is scanned like a value. The list need
not be complete: a field missing here is merely scanned too.
"""

from __future__ import annotations

API_FIELDS = frozenset({
    # messages, parts and items
    "role", "content", "type", "text", "name", "arguments", "tool_calls", "function", "function_call", "id",
    "tool_call_id", "call_id", "item_id", "image_url", "url", "detail", "input_audio", "data", "format", "file",
    "file_id", "file_data", "filename", "refusal", "audio", "annotations", "source", "media_type", "cache_control",
    "citations", "input", "output", "tool_use_id", "is_error", "title", "context", "signature", "thinking",
    "status", "summary", "encrypted_content", "reasoning_content", "reasoning", "index", "logprobs",
    "finish_reason", "stop_reason", "message", "delta", "choices", "usage", "object", "model", "created",
    # tools and JSON Schema
    "tools", "tool_choice", "description", "parameters", "strict", "properties", "required", "items", "enum",
    "additionalProperties", "$schema", "$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "const",
    "default", "minimum", "maximum", "minLength", "maxLength", "pattern", "examples", "input_schema",
    "json_schema", "schema", "response_format", "nullable",
    # request options
    "prompt", "variables", "version", "metadata", "user", "stream", "stream_options", "include_usage",
    "temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "max_output_tokens", "n", "stop",
    "seed", "effort", "budget_tokens", "instructions", "system", "messages", "modalities", "prediction",
    "service_tier", "store", "truncation", "parallel_tool_calls", "previous_response_id", "include",
    # responses, usage and stream events
    "response", "item", "part", "content_block", "output_index", "content_index", "summary_index",
    "sequence_number", "output_text", "system_fingerprint", "created_at", "error", "code", "param",
    "incomplete_details", "stop_sequence", "event", "embedding", "prompt_tokens", "completion_tokens",
    "total_tokens", "input_tokens", "output_tokens", "prompt_tokens_details", "completion_tokens_details",
    "input_tokens_details", "output_tokens_details", "cached_tokens", "reasoning_tokens", "audio_tokens",
    "accepted_prediction_tokens", "rejected_prediction_tokens", "cache_creation_input_tokens",
    "cache_read_input_tokens", "server_tool_use", "web_search_requests", "partial_json",
})
